//! A private RabbitMQ broker (Debian's `rabbitmq-server`), with its own node name, ports and
//! data under one directory, so it never touches a system broker or another test's.

use crate::certs::CertFiles;
use crate::process::{Process, ProcessError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

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
    #[error("rabbitmqctl {args}: {why}")]
    Ctl { args: String, why: String },
}

/// A private broker set up as a deployment would set it up (e.g. as the operator configures
/// a managed node): extra rabbitmq.conf lines, and the user clients log in as (the
/// definitions the lines load create it; no `guest` then).
#[derive(Debug, Clone)]
pub struct BrokerSetup {
    pub conf: String,
    pub user: String,
    pub password: String,
}

pub struct RabbitMq {
    pub port: u16,
    /// The TLS (amqps) port, when the broker has one.
    pub tls_port: Option<u16>,
    process: Process,
    /// What `rabbitmqctl` needs to reach this node (its name, and HOME for the cookie).
    ctl_env: Vec<(String, String)>,
    config: PathBuf,
    /// (user, password) clients and the readiness probe log in with.
    user: (String, String),
}

impl RabbitMq {
    /// Prepares (but does not start) a broker on `port` keeping its state in `dir`; with
    /// `tls`, it also listens for amqps on the given port with those certificates.
    pub fn new(dir: &Path, port: u16, dist_port: u16, tls: Option<(CertFiles, u16)>) -> Result<Self, RabbitError> {
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
        let config = dir.join("rabbitmq.conf");
        let tls_port = tls.as_ref().map(|(_, p)| *p);
        let conf = match &tls {
            Some((files, tls_port)) => format!(
                "listeners.ssl.1 = 127.0.0.1:{tls_port}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_none\n\
                 ssl_options.fail_if_no_peer_cert = false\n",
                s(&files.ca),
                s(&files.cert),
                s(&files.key)
            ),
            None => String::new(),
        };
        std::fs::write(&config, conf).map_err(|source| RabbitError::Dir {
            path: config.display().to_string(),
            source,
        })?;
        let env = vec![
            ("RABBITMQ_CONFIG_FILE".to_string(), s(&config)),
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
        let ctl_env = env
            .iter()
            .filter(|(k, _)| k == "HOME" || k == "RABBITMQ_NODENAME")
            .cloned()
            .collect();
        let process = Process::new(
            "rabbitmq",
            PathBuf::from(SERVER),
            Vec::new(),
            env,
            dir.join("rabbitmq.out"),
        );
        Ok(Self {
            port,
            tls_port,
            process,
            ctl_env,
            config,
            user: ("guest".to_string(), "guest".to_string()),
        })
    }

    /// Applies a setup before the first start: appends its configuration and logs in as its
    /// user from then on.
    pub fn set_up(&mut self, setup: &BrokerSetup) -> Result<(), RabbitError> {
        let mut conf = std::fs::read_to_string(&self.config).map_err(|source| RabbitError::Dir {
            path: self.config.display().to_string(),
            source,
        })?;
        conf.push_str(&setup.conf);
        std::fs::write(&self.config, conf).map_err(|source| RabbitError::Dir {
            path: self.config.display().to_string(),
            source,
        })?;
        self.user = (setup.user.clone(), setup.password.clone());
        Ok(())
    }

    /// The plain AMQP URL (the harness's readiness probe, tests poking at the broker).
    pub fn url(&self) -> String {
        let (user, password) = &self.user;
        format!("amqp://{user}:{password}@127.0.0.1:{}/%2f", self.port)
    }

    /// The plain URL as `user`/`password`: what a client with other credentials gets.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("amqp://{user}:{password}@127.0.0.1:{}/%2f", self.port)
    }

    /// What the synchronizers use: amqps when the broker has TLS (the certificate names
    /// `localhost`), else the plain URL.
    pub fn client_url(&self) -> String {
        let (user, password) = &self.user;
        match self.tls_port {
            Some(port) => format!("amqps://{user}:{password}@localhost:{port}/%2f"),
            None => self.url(),
        }
    }

    /// Runs `rabbitmqctl <args>` against this broker (e.g. to raise a resource alarm).
    pub fn ctl(&self, args: &[&str]) -> Result<String, RabbitError> {
        let failed = |why: String| RabbitError::Ctl {
            args: args.join(" "),
            why,
        };
        let out = std::process::Command::new(CTL)
            .args(args)
            .envs(self.ctl_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .map_err(|e| failed(e.to_string()))?;
        if !out.status.success() {
            return Err(failed(String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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

    /// SIGKILL of the broker's whole process group: a node that gets no chance to flush.
    pub fn kill(&mut self) {
        self.process.kill();
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
