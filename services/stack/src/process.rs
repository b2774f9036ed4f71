//! One supervised service process: started with its log in a file, and stopped, killed,
//! paused or restarted on demand (the fault-injection tests need all of these).

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {name} ({bin}): {source}")]
    Spawn {
        name: String,
        bin: String,
        source: std::io::Error,
    },
    #[error("cannot open log {path}: {source}")]
    Log { path: String, source: std::io::Error },
}

pub struct Process {
    pub name: String,
    bin: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Process {
    pub fn new(name: &str, bin: PathBuf, args: Vec<String>, env: Vec<(String, String)>, log: PathBuf) -> Self {
        Self {
            name: name.to_string(),
            bin,
            args,
            env,
            log,
            child: None,
        }
    }

    pub fn start(&mut self) -> Result<(), ProcessError> {
        if self.is_running() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|source| ProcessError::Log {
                path: self.log.display().to_string(),
                source,
            })?;
        let err = log.try_clone().map_err(|source| ProcessError::Log {
            path: self.log.display().to_string(),
            source,
        })?;
        let child = Command::new(&self.bin)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            // Its own process group, so signals reach helpers it starts too (RabbitMQ's
            // start script runs the Erlang VM as a child).
            .process_group(0)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                name: self.name.clone(),
                bin: self.bin.display().to_string(),
                source,
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// Flags added to its command line from its next start on (a changed configuration, as
    /// a rolling update brings).
    pub fn add_args<S: Into<String>>(&mut self, args: impl IntoIterator<Item = S>) {
        self.args.extend(args.into_iter().map(Into::into));
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(-(pid as i32)), signal);
        }
    }

    /// Whether any process of its group is still alive (helpers it started included).
    fn group_alive(&self) -> bool {
        self.pid()
            .is_some_and(|pid| kill(Pid::from_raw(-(pid as i32)), None).is_ok())
    }

    /// kill -9.
    pub fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`. Returns whether it exited
    /// on its own.
    pub fn stop(&mut self, grace: Duration) -> bool {
        self.terminate();
        self.wait_stopped(grace)
    }

    /// SIGTERM (after SIGCONT, should it be paused), without waiting: members leave their
    /// cluster before they stop, so stopping many is quicker signalling them all first.
    pub fn terminate(&self) {
        self.signal(Signal::SIGCONT);
        self.signal(Signal::SIGTERM);
    }

    /// Waits up to `grace` for the process to exit, then kills it. Returns whether it exited
    /// on its own.
    pub fn wait_stopped(&mut self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            // Done when the process and everything it started are gone.
            if !self.is_running() && !self.group_alive() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// SIGSTOP: the process stays alive but does nothing (a hung server).
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop(Duration::from_secs(3));
        }
    }
}
