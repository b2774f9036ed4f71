//! A private RabbitMQ broker (Debian's `rabbitmq-server`), with its own node name, ports and
//! data under one directory, so it never touches a system broker or another test's.

use crate::process::{Process, ProcessError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

#[derive(Debug, thiserror::Error)]
pub enum RabbitError {
    #[error("{SERVER} is missing: run scripts/setup.sh (installs Debian's rabbitmq-server)")]
    NotInstalled,
    #[error("cannot prepare {path}: {source}")]
    Dir { path: String, source: std::io::Error },
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("RabbitMQ did not accept AMQP connections on port {port} within {waited:?}; log tail:\n{log}")]
    NotReady { port: u16, waited: Duration, log: String },
}

pub struct RabbitMq {
    pub port: u16,
    process: Process,
}

impl RabbitMq {
    /// Prepares (but does not start) a broker on `port` keeping its state in `dir`.
    pub fn new(dir: &Path, port: u16, dist_port: u16) -> Result<Self, RabbitError> {
        if !Path::new(SERVER).exists() {
            return Err(RabbitError::NotInstalled);
        }
        let mkdir = |p: PathBuf| {
            std::fs::create_dir_all(&p).map_err(|source| RabbitError::Dir {
                path: p.display().to_string(),
                source,
            })?;
            Ok::<_, RabbitError>(p)
        };
        let dir = mkdir(dir.to_path_buf())?;
        let mnesia = mkdir(dir.join("mnesia"))?;
        let logs = mkdir(dir.join("log"))?;
        let plugins = dir.join("enabled_plugins");
        std::fs::write(&plugins, "[].\n").map_err(|source| RabbitError::Dir {
            path: plugins.display().to_string(),
            source,
        })?;
        let s = |p: &Path| p.display().to_string();
        let env = vec![
            ("HOME".to_string(), s(&dir)),
            ("RABBITMQ_NODENAME".to_string(), format!("tinysns-{port}@localhost")),
            ("RABBITMQ_NODE_IP_ADDRESS".to_string(), "127.0.0.1".to_string()),
            ("RABBITMQ_NODE_PORT".to_string(), port.to_string()),
            ("RABBITMQ_DIST_PORT".to_string(), dist_port.to_string()),
            ("RABBITMQ_MNESIA_BASE".to_string(), s(&mnesia)),
            ("RABBITMQ_LOG_BASE".to_string(), s(&logs)),
            ("RABBITMQ_ENABLED_PLUGINS_FILE".to_string(), s(&plugins)),
            ("RABBITMQ_FEATURE_FLAGS_FILE".to_string(), s(&dir.join("feature_flags"))),
            ("RABBITMQ_PID_FILE".to_string(), s(&dir.join("rabbitmq.pid"))),
        ];
        let process = Process::new(
            "rabbitmq",
            PathBuf::from(SERVER),
            Vec::new(),
            env,
            dir.join("rabbitmq.out"),
        );
        Ok(Self { port, process })
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Starts the broker and waits until it accepts AMQP connections.
    pub async fn start(&mut self, timeout: Duration) -> Result<(), RabbitError> {
        self.process.start()?;
        let started = Instant::now();
        let url = self.url();
        while started.elapsed() < timeout {
            // Bounded: while the broker boots it can accept the socket and never answer.
            let attempt = lapin::Connection::connect(&url, lapin::ConnectionProperties::default());
            if let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(2), attempt).await {
                let _ = conn.close(200, "ready".into()).await;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(RabbitError::NotReady {
            port: self.port,
            waited: timeout,
            log: self.process.log_tail(20),
        })
    }

    /// Graceful stop (the broker persists its queues).
    pub fn stop(&mut self) {
        self.process.stop(Duration::from_secs(30));
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// The pid of the start script, which leads the process group the broker runs in (the
    /// Erlang VM is its child): for measuring its memory.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    pub fn log(&self) -> &Path {
        self.process.log_path()
    }
}
