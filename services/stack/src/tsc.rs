//! Drives the real `tsc` binary over pipes, as a script or a person would.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Tsc {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<Mutex<String>>,
    /// tsc's log, kept so that a failing test can say why the client gave up.
    log: Arc<Mutex<String>>,
}

impl Tsc {
    /// `tsc -u <user>` (the classic login, open mode) with the coordinators at `hosts`
    /// (`-h`: `host:port`, comma-separated).
    pub fn start(hosts: &str, user: u64) -> std::io::Result<Self> {
        Self::start_with(hosts, &["-u", &user.to_string()], &[])
    }

    /// tsc with `args` after the coordinators' addresses, and `env` set (e.g. the password).
    pub fn start_with(hosts: &str, args: &[&str], env: &[(&str, &str)]) -> std::io::Result<Self> {
        let mut child = Command::new(crate::bin_dir().join("tsc"))
            .args(["-h", hosts])
            .args(args)
            .env_remove("TINYSNS_PASSWORD")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "tinysns=debug,tsc=debug,warn")
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
        let stderr = child.stderr.take().ok_or_else(|| std::io::Error::other("no stderr"))?;
        Ok(Self {
            child,
            stdin,
            output: collect(stdout),
            log: collect(stderr),
        })
    }

    /// What tsc logged on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Types `text` (include the newlines).
    pub fn send(&mut self, text: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = stdin.write_all(text.as_bytes());
            let _ = stdin.flush();
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes stdin (end of input).
    pub fn close_input(&mut self) {
        self.stdin = None;
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits until the output contains `needle` `times` times; returns the output either way.
    pub fn wait_for(&self, needle: &str, times: usize, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.output();
            if out.matches(needle).count() >= times {
                return Ok(out);
            }
            if Instant::now() > deadline {
                // The test harness shows this only when the test fails.
                eprintln!("tsc never printed {needle:?}; its log:\n{}", self.log());
                return Err(out);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit (after its input was closed); returns its output.
    pub fn finish(mut self, timeout: Duration) -> (Option<i32>, String) {
        self.close_input();
        let deadline = Instant::now() + timeout;
        let code = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(50));
        if code != Some(0) {
            eprintln!("tsc exited with {code:?}; its log:\n{}", self.log());
        }
        (code, self.output())
    }
}

/// Gathers everything `pipe` yields into a shared string, on a thread of its own.
fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

impl Drop for Tsc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
