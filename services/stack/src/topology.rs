//! The whole system as local processes: broker, coordinator, and for every cluster its
//! servers and synchronizers, with the classic port layout or free ports.

use crate::accounts;
use crate::certs::CertFiles;
use crate::process::{Process, ProcessError};
use crate::proxy::Proxy;
use crate::rabbit::{RabbitError, RabbitMq};
use crate::{bin_dir, free_port};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tinysns_client::session::{Connection, Credentials};
use tinysns_common::auth::AuthMode;
use tinysns_common::coordinators::Coordinators;
use tinysns_common::features::FEATURE_LEVEL;
use tinysns_common::grpc::MemberCredentials;
use tinysns_common::proto::coordinator::membership_client::MembershipClient;
use tinysns_common::proto::coordinator::{
    ClusterView, ListClustersReply, ListClustersRequest, SwitchoverReply, SwitchoverRequest,
};
use tinysns_common::secret::ClusterSecret;
use tinysns_common::tls::TlsArgs;
use tinysns_common::topology::{classic_server_port, classic_synchronizer_port, cluster_of_synchronizer};
use tonic::transport::ClientTlsConfig;

/// The coordinator's `--heartbeat-interval` when none is given.
const COORDINATOR_DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(transparent)]
    Rabbit(#[from] RabbitError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("the system was not ready within {0:?}: {1}")]
    NotReady(Duration, String),
    #[error("coordinator: {0}")]
    Coordinator(String),
    #[error("the slow-disk library {0} is missing (run `cargo build -p tinysns-slow-sync`)")]
    NoSlowDiskLibrary(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// coordinator 9000, servers 10000.., synchronizers 9001.., RabbitMQ 5672.
    Classic,
    /// Whatever the OS has free: for tests running side by side.
    Free,
}

#[derive(Debug, Clone)]
pub enum Broker {
    /// Start a private RabbitMQ under the topology's directory.
    Private,
    /// The same, set up as a deployment sets it up (e.g. the operator's managed broker).
    PrivateWith(crate::rabbit::BrokerSetup),
    /// Use a running broker at this URL, under a namespace of our own.
    External(String),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    pub clusters: u32,
    pub servers_per_cluster: u32,
    pub synchronizers_per_cluster: u32,
    pub ports: Ports,
    pub broker: Broker,
    pub heartbeat_interval: Option<String>,
    pub failure_timeout: Option<String>,
    /// How users log in (`--auth`); password accounts unless a test asks for the classic mode.
    pub auth: AuthMode,
    /// Extra flags for every tsd (e.g. `--session-ttl 5s`).
    pub tsd_args: Vec<String>,
    /// Extra flags for the tsds of one cluster (e.g. a skewed clock).
    pub cluster_tsd_args: BTreeMap<u32, Vec<String>>,
    /// How many coordinators replicate their decisions (Raft); 1 for a single one.
    pub coordinators: u32,
    /// Every tsd's internal API and its path to the (first) coordinator run through a proxy
    /// a test can cut (`Member::links`). Needs a tokio runtime when the topology is prepared.
    pub partitionable: bool,
    /// Extra flags for every synchronizer (e.g. `--amqp-queue-type quorum`).
    pub synchronizer_args: Vec<String>,
    /// Every listener and channel over TLS, with certificates of a private CA made per run.
    pub tls: bool,
    /// Every tsd runs with the slow-disk library preloaded (`tinysns-slow-sync`, built beside
    /// the binaries), so a test can slow its flushes down (`Topology::slow_disk`).
    pub slow_disks: bool,
}

impl Options {
    /// The classic shape (3 clusters x 2 servers x 2 synchronizers) on free ports in `dir`,
    /// using the broker named by `TINYSNS_TEST_AMQP_URL` if set, else a private one.
    pub fn for_tests(dir: PathBuf) -> Self {
        let broker = match std::env::var("TINYSNS_TEST_AMQP_URL") {
            Ok(url) if !url.is_empty() => Broker::External(url),
            _ => Broker::Private,
        };
        Self {
            dir,
            clusters: 3,
            servers_per_cluster: 2,
            synchronizers_per_cluster: 2,
            ports: Ports::Free,
            broker,
            heartbeat_interval: None,
            failure_timeout: None,
            auth: AuthMode::Password,
            tsd_args: Vec::new(),
            cluster_tsd_args: BTreeMap::new(),
            synchronizer_args: Vec::new(),
            coordinators: 1,
            partitionable: false,
            tls: false,
            slow_disks: false,
        }
    }
}

pub struct CoordinatorNode {
    pub process: Process,
    pub port: u16,
    pub internal_port: u16,
    /// Its Prometheus endpoint (`http://127.0.0.1:<port>/metrics`).
    pub metrics_port: u16,
    /// Its plaintext health port (with `Options::tls`).
    pub health_port: Option<u16>,
}

pub struct Member {
    pub process: Process,
    pub port: u16,
    /// The internal API (tsd only; 0 for synchronizers, which serve none).
    pub internal_port: u16,
    /// Its Prometheus endpoint (`http://127.0.0.1:<port>/metrics`).
    pub metrics_port: u16,
    pub cluster: u32,
    /// With `Options::partitionable` (tsd only): the proxies its network links run through.
    pub links: Option<MemberLinks>,
}

/// The links of one tsd a test can partition: everything peers send to its internal API
/// (replication from its master, the synchronizer's calls), and its own path to the
/// coordinator (heartbeats).
pub struct MemberLinks {
    pub inbound: Proxy,
    pub to_coordinator: Proxy,
}

impl MemberLinks {
    fn start(internal_port: u16, coordinator_internal_port: u16) -> Result<Self, StackError> {
        let local = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        Ok(Self {
            inbound: Proxy::start(local(internal_port))?,
            to_coordinator: Proxy::start(local(coordinator_internal_port))?,
        })
    }
}

pub struct Topology {
    pub options: Options,
    pub rabbit: Option<RabbitMq>,
    pub amqp_url: String,
    pub namespace: String,
    /// The coordinators (one unless `Options::coordinators` asks for more), node id = index.
    pub coordinators: Vec<CoordinatorNode>,
    /// The cluster secret every member reads from `secret_file`.
    pub secret: ClusterSecret,
    pub secret_file: PathBuf,
    /// The PEM files every process uses, with `Options::tls`.
    pub certs: Option<CertFiles>,
    /// Password mode: users 1..=this have accounts (see `accounts`).
    registered: tokio::sync::Mutex<u64>,
    /// Keyed by (cluster, server id).
    pub servers: BTreeMap<(u32, u32), Member>,
    /// Keyed by synchronizer id.
    pub synchronizers: BTreeMap<u32, Member>,
}

fn coordinator_data_dir(dir: &std::path::Path, node: usize) -> PathBuf {
    dir.join(format!("coordinator-{node}"))
}

/// `127.0.0.1:p1,127.0.0.1:p2,...`
fn hosts(ports: impl Iterator<Item = u16>) -> String {
    ports.map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
}

/// The ports of one process: where clients, members and Prometheus reach it.
#[derive(Debug, Clone, Copy)]
struct ProcessPorts {
    client: u16,
    internal: u16,
    metrics: u16,
}

/// The coordinators' processes, one per set of ports; with several, each knows the others
/// as Raft peers.
fn lay_out_coordinators(
    options: &Options,
    ports: &[ProcessPorts],
    secret_arg: &str,
    tls_args: &[String],
    bins: &std::path::Path,
    log: &dyn Fn(&str) -> PathBuf,
) -> Result<Vec<CoordinatorNode>, StackError> {
    let peers = hosts(ports.iter().map(|p| p.internal));
    let mut nodes = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let mut args = strings(&[
            "-p",
            &p.client.to_string(),
            "--internal-port",
            &p.internal.to_string(),
            "--metrics-port",
            &p.metrics.to_string(),
            "--bind",
            "127.0.0.1",
            "--clusters",
            &options.clusters.to_string(),
            "--cluster-secret-file",
            secret_arg,
            "--auth",
            &options.auth.to_string(),
            "--data-dir",
            &coordinator_data_dir(&options.dir, i).display().to_string(),
        ]);
        if ports.len() > 1 {
            args.extend(strings(&["--peers", &peers, "--node-id", &i.to_string()]));
        }
        args.extend(tls_args.iter().cloned());
        // With TLS on its client port, the coordinator answers health checks in plaintext on
        // a port of their own, as probes on Kubernetes need.
        let health_port = if options.tls { Some(free_port()?) } else { None };
        if let Some(p) = health_port {
            args.extend(strings(&["--health-port", &p.to_string()]));
        }
        if let Some(h) = &options.heartbeat_interval {
            args.extend(strings(&["--heartbeat-interval", h]));
        }
        if let Some(f) = &options.failure_timeout {
            args.extend(strings(&["--failure-timeout", f]));
        }
        let name = if ports.len() > 1 {
            format!("coordinator-{i}")
        } else {
            "coordinator".to_string()
        };
        let process = Process::new(&name, bins.join("coordinator"), args, Vec::new(), log(&name));
        nodes.push(CoordinatorNode {
            process,
            port: p.client,
            internal_port: p.internal,
            metrics_port: p.metrics,
            health_port,
        });
    }
    Ok(nodes)
}

/// The file whose number (milliseconds) slows a tsd's flushes down (`tinysns-slow-sync`).
fn slow_disk_control(dir: &std::path::Path, cluster: u32, server: u32) -> PathBuf {
    dir.join(format!("slow-disk-c{cluster}-s{server}.ms"))
}

/// The environment that preloads the slow-disk library into a tsd.
fn slow_disk_env(
    bins: &std::path::Path,
    dir: &std::path::Path,
    cluster: u32,
    server: u32,
) -> Result<Vec<(String, String)>, StackError> {
    let library = bins.join("libtinysns_slow_sync.so");
    if !library.exists() {
        return Err(StackError::NoSlowDiskLibrary(library.display().to_string()));
    }
    Ok(vec![
        ("LD_PRELOAD".into(), library.display().to_string()),
        (
            "TINYSNS_SLOW_SYNC_FILE".into(),
            slow_disk_control(dir, cluster, server).display().to_string(),
        ),
    ])
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

impl Topology {
    /// Starts everything and waits until every cluster has its masters.
    pub async fn start(options: Options) -> Result<Self, StackError> {
        Self::prepare(options)?.launch().await
    }

    /// Starts a prepared topology (after, say, preloading its stores) and waits until every
    /// cluster has its masters.
    pub async fn launch(mut self) -> Result<Self, StackError> {
        self.start_broker().await?;
        self.start_services()?;
        self.wait_ready(Duration::from_secs(30)).await?;
        Ok(self)
    }

    /// `(cluster, server)` of every tsd.
    pub fn server_ids(&self) -> Vec<(u32, u32)> {
        self.servers.keys().copied().collect()
    }

    pub fn servers_per_cluster(&self) -> u32 {
        self.options.servers_per_cluster
    }

    /// Lays out the processes without starting any.
    pub fn prepare(options: Options) -> Result<Self, StackError> {
        std::fs::create_dir_all(options.dir.join("logs"))?;
        let classic = options.ports == Ports::Classic;
        let port = |classic_port: u16| if classic { Ok(classic_port) } else { free_port() };
        let (secret, secret_file) = write_secret(&options.dir)?;
        let secret_arg = secret_file.display().to_string();
        let certs = if options.tls {
            Some(
                crate::certs::write_local_certs(&options.dir.join("tls"))
                    .map_err(|e| StackError::Io(std::io::Error::other(e)))?,
            )
        } else {
            None
        };
        // With TLS, synchronizers reach a private broker over amqps:// (checked against the
        // run's CA); its plain port stays for the harness's own probes.
        let (rabbit, amqp_url, namespace) = match &options.broker {
            Broker::Private | Broker::PrivateWith(_) => {
                let amqps = match &certs {
                    Some(files) => Some((files.clone(), port(5671)?)),
                    None => None,
                };
                let mut rabbit = RabbitMq::new(&options.dir.join("rabbitmq"), port(5672)?, port(25672)?, amqps)?;
                if let Broker::PrivateWith(setup) = &options.broker {
                    rabbit.set_up(setup)?;
                }
                let url = rabbit.client_url();
                (Some(rabbit), url, "tinysns".to_string())
            }
            Broker::External(url) => (None, url.clone(), format!("tinysns-{:08x}", rand::random::<u32>())),
        };
        let bins = bin_dir();
        let log = |name: &str| options.dir.join("logs").join(format!("{name}.log"));
        let tls_args = certs.as_ref().map(CertFiles::args).unwrap_or_default();
        let internal = |client_port: u16| {
            if classic {
                tinysns_common::cli::internal_port(client_port, None).map_err(std::io::Error::other)
            } else {
                free_port()
            }
        };
        // Always given explicitly: free ports are too high for the default (+30000), and
        // tests side by side must never share one.
        let metrics = |client_port: u16| {
            if classic {
                tinysns_common::metrics::metrics_port(client_port, None, &[])
                    .map_err(std::io::Error::other)?
                    .ok_or_else(|| std::io::Error::other("no metrics port"))
            } else {
                free_port()
            }
        };
        let coordinators = (0..options.coordinators.clamp(1, 9))
            .map(|i| {
                // Classic: 9000, then downwards (9001 and up are the synchronizers').
                let client = port(9000 - i as u16)?;
                Ok(ProcessPorts {
                    client,
                    internal: internal(client)?,
                    metrics: metrics(client)?,
                })
            })
            .collect::<Result<Vec<ProcessPorts>, StackError>>()?;
        let coordinators = lay_out_coordinators(&options, &coordinators, &secret_arg, &tls_args, &bins, &log)?;
        let coordinator_hosts = hosts(coordinators.iter().map(|c| c.port));
        let coordinator_internal = hosts(coordinators.iter().map(|c| c.internal_port));
        let mut servers = BTreeMap::new();
        for cluster in 1..=options.clusters {
            for server in 1..=options.servers_per_cluster {
                let p = port(classic_server_port(cluster, server, options.clusters))?;
                let internal_port = internal(p)?;
                let metrics_port = metrics(p)?;
                let data = options.dir.join(format!("cluster{cluster}-server{server}")); // see server_data_dir
                let links = if options.partitionable {
                    Some(MemberLinks::start(internal_port, coordinators[0].internal_port)?)
                } else {
                    None
                };
                let to_coordinator = match &links {
                    Some(l) => format!("127.0.0.1:{}", l.to_coordinator.port),
                    None => coordinator_internal.clone(),
                };
                let mut args = strings(&[
                    "-c",
                    &cluster.to_string(),
                    "-s",
                    &server.to_string(),
                    "-h",
                    &coordinator_hosts,
                    "--coordinator-internal-addresses",
                    &to_coordinator,
                    "-p",
                    &p.to_string(),
                    "--internal-port",
                    &internal_port.to_string(),
                    "--metrics-port",
                    &metrics_port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-secret-file",
                    &secret_arg,
                    "--auth",
                    &options.auth.to_string(),
                    "--data-dir",
                    &data.display().to_string(),
                ]);
                if let Some(l) = &links {
                    args.extend(strings(&[
                        "--internal-advertise",
                        &format!("127.0.0.1:{}", l.inbound.port),
                    ]));
                }
                let args = args
                    .into_iter()
                    .chain(options.tsd_args.iter().cloned())
                    .chain(options.cluster_tsd_args.get(&cluster).into_iter().flatten().cloned())
                    .chain(tls_args.iter().cloned())
                    .collect();
                let name = format!("tsd-c{cluster}-s{server}");
                let env = if options.slow_disks {
                    slow_disk_env(&bins, &options.dir, cluster, server)?
                } else {
                    Vec::new()
                };
                let process = Process::new(&name, bins.join("tsd"), args, env, log(&name));
                servers.insert(
                    (cluster, server),
                    Member {
                        process,
                        port: p,
                        internal_port,
                        metrics_port,
                        cluster,
                        links,
                    },
                );
            }
        }
        let mut synchronizers = BTreeMap::new();
        for id in 1..=options.clusters * options.synchronizers_per_cluster {
            let p = port(classic_synchronizer_port(id))?;
            let metrics_port = metrics(p)?;
            let args = strings(&[
                "-h",
                &coordinator_hosts,
                "--coordinator-internal-addresses",
                &coordinator_internal,
                "-p",
                &p.to_string(),
                "--metrics-port",
                &metrics_port.to_string(),
                "-i",
                &id.to_string(),
                "--bind",
                "127.0.0.1",
                "--cluster-secret-file",
                &secret_arg,
                "--auth",
                &options.auth.to_string(),
            ]);
            let args = args
                .into_iter()
                .chain(options.synchronizer_args.iter().cloned())
                .chain(tls_args.iter().cloned())
                .collect();
            let mut env = vec![
                ("AMQP_URL".to_string(), amqp_url.clone()),
                ("TINYSNS_AMQP_NAMESPACE".to_string(), namespace.clone()),
            ];
            if let Some(files) = &certs {
                env.push(("TINYSNS_AMQP_CA_FILE".to_string(), files.ca.display().to_string()));
            }
            let name = format!("synchronizer-{id}");
            let process = Process::new(&name, bins.join("synchronizer"), args, env, log(&name));
            let cluster = cluster_of_synchronizer(id, options.clusters).unwrap_or(1);
            synchronizers.insert(
                id,
                Member {
                    process,
                    port: p,
                    internal_port: 0,
                    metrics_port,
                    cluster,
                    links: None,
                },
            );
        }
        Ok(Self {
            options,
            rabbit,
            amqp_url,
            namespace,
            coordinators,
            secret,
            secret_file,
            certs,
            registered: tokio::sync::Mutex::new(0),
            servers,
            synchronizers,
        })
    }

    pub async fn start_broker(&mut self) -> Result<(), StackError> {
        if let Some(rabbit) = self.rabbit.as_mut() {
            rabbit.start(BROKER_START).await?;
        }
        Ok(())
    }

    /// Starts every service process that is not running.
    pub fn start_services(&mut self) -> Result<(), StackError> {
        for node in &mut self.coordinators {
            node.process.start()?;
        }
        for member in self.servers.values_mut().chain(self.synchronizers.values_mut()) {
            member.process.start()?;
        }
        Ok(())
    }

    /// Stops every service (SIGTERM) and the broker.
    pub fn stop_all(&mut self) {
        for member in self.synchronizers.values().chain(self.servers.values()) {
            member.process.terminate();
        }
        for member in self.synchronizers.values_mut().chain(self.servers.values_mut()) {
            member.process.wait_stopped(Duration::from_secs(15));
        }
        for node in &mut self.coordinators {
            node.process.stop(Duration::from_secs(10));
        }
        if let Some(rabbit) = self.rabbit.as_mut() {
            rabbit.stop();
        }
    }

    /// Every coordinator's client address, comma-separated (what `tsc -h` takes).
    pub fn coordinator_address(&self) -> String {
        hosts(self.coordinators.iter().map(|c| c.port))
    }

    /// The coordinator that leads right now (the one answering the members' API).
    pub async fn leading_coordinator(&self) -> Option<usize> {
        for (i, node) in self.coordinators.iter().enumerate() {
            let address = format!("127.0.0.1:{}", node.internal_port);
            let channel = tinysns_common::grpc::internal_channel(
                &address,
                Duration::from_millis(500),
                &self.member_credentials(),
            )
            .ok()?;
            let mut call = tonic::Request::new(ListClustersRequest {});
            call.set_timeout(Duration::from_secs(1));
            if MembershipClient::new(channel).list_clusters(call).await.is_ok() {
                return Some(i);
            }
        }
        None
    }

    /// A tsd's client address (where its health service answers too).
    pub fn server_address(&self, cluster: u32, server: u32) -> String {
        let member = self
            .servers
            .get(&(cluster, server))
            .expect("no such server in this topology");
        format!("127.0.0.1:{}", member.port)
    }

    /// The partition proxies of a tsd (`Options::partitionable`).
    pub fn links(&self, cluster: u32, server: u32) -> &MemberLinks {
        self.servers
            .get(&(cluster, server))
            .and_then(|m| m.links.as_ref())
            .expect("a partitionable topology with this server")
    }

    pub fn server(&mut self, cluster: u32, server: u32) -> &mut Process {
        &mut self
            .servers
            .get_mut(&(cluster, server))
            .expect("no such server in this topology")
            .process
    }

    /// The coordinator, server or synchronizer process of this name.
    pub fn process_named(&mut self, name: &str) -> Option<&mut Process> {
        let coordinators = self.coordinators.iter_mut().map(|c| &mut c.process);
        let members = self
            .servers
            .values_mut()
            .chain(self.synchronizers.values_mut())
            .map(|m| &mut m.process);
        coordinators.chain(members).find(|p| p.name == name)
    }

    pub fn synchronizer(&mut self, id: u32) -> &mut Process {
        &mut self
            .synchronizers
            .get_mut(&id)
            .expect("no such synchronizer in this topology")
            .process
    }

    /// How user `k` logs in: its numeric id in open mode; in password mode its generated
    /// account, registered (with users before it, so ids come out as `k`) on first need.
    pub async fn credentials(&self, k: u64) -> Result<Credentials, StackError> {
        if self.options.auth == AuthMode::Open {
            return Ok(Credentials::Open(k));
        }
        let mut registered = self.registered.lock().await;
        if *registered < k {
            accounts::register_in_order(&self.connection(), self.options.clusters, *registered + 1, k)
                .await
                .map_err(StackError::Coordinator)?;
            *registered = k;
        }
        Ok(accounts::credentials(k, self.options.clusters, false))
    }

    /// How other users name user `k` (FOLLOW's argument, LIST's entries): its username in
    /// password mode, its id in open mode.
    pub fn name(&self, k: u64) -> String {
        match self.options.auth {
            AuthMode::Open => k.to_string(),
            AuthMode::Password => accounts::username_for(k, self.options.clusters),
        }
    }

    /// `host:port` of each coordinator's members' API.
    pub fn coordinator_internal_addresses(&self) -> Vec<String> {
        self.coordinators
            .iter()
            .map(|c| format!("127.0.0.1:{}", c.internal_port))
            .collect()
    }

    /// What members present on internal calls.
    pub fn member_credentials(&self) -> MemberCredentials {
        MemberCredentials::new(Some(self.secret.clone()), self.client_tls(true))
    }

    /// TLS for a client of this system (`member`: presenting the members' certificate).
    pub fn client_tls(&self, member: bool) -> Option<ClientTlsConfig> {
        let files = self.certs.as_ref()?;
        let args = TlsArgs {
            tls_cert: member.then(|| files.cert.clone()),
            tls_key: member.then(|| files.key.clone()),
            tls_ca: Some(files.ca.clone()),
        };
        args.load().ok().flatten().map(|tls| tls.client())
    }

    /// How clients reach the system (the coordinator's address, and TLS if it uses it).
    pub fn connection(&self) -> Connection {
        Connection {
            coordinators: self
                .coordinators
                .iter()
                .map(|c| format!("127.0.0.1:{}", c.port))
                .collect(),
            tls: self.client_tls(false),
        }
    }

    /// The coordinators' members' API, as the operator reaches it (with the cluster secret).
    fn membership(&self) -> Result<Coordinators<MembershipClient<tinysns_common::grpc::InternalChannel>>, StackError> {
        let credentials = self.member_credentials();
        Coordinators::connect(&self.coordinator_internal_addresses(), |address| {
            tinysns_common::grpc::internal_channel(address, Duration::from_millis(500), &credentials)
                .map(MembershipClient::new)
        })
        .map_err(|e| StackError::Coordinator(e.to_string()))
    }

    /// Asks for a planned switchover of `cluster` to server `to` (or the best in-sync slave),
    /// as the operator does in a rolling upgrade; answers once it is done.
    pub async fn switchover(&self, cluster: u32, to: Option<u32>) -> Result<SwitchoverReply, tonic::Status> {
        let coordinators = self
            .membership()
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let request = SwitchoverRequest {
            cluster_id: cluster,
            to_member_id: to.unwrap_or(0),
            timeout_ms: 0,
        };
        let reply = coordinators
            .call(|mut client| {
                let mut call = tonic::Request::new(request);
                call.set_timeout(Duration::from_secs(30));
                async move { client.switchover(call).await }
            })
            .await?;
        Ok(reply.into_inner())
    }

    pub async fn views(&self) -> Result<Vec<ClusterView>, StackError> {
        Ok(self.list_clusters().await?.views)
    }

    /// How often members heartbeat (the coordinator's `--heartbeat-interval`).
    pub fn heartbeat_interval(&self) -> Duration {
        self.options
            .heartbeat_interval
            .as_deref()
            .and_then(|text| tinysns_common::cli::parse_duration(text).ok())
            .unwrap_or(COORDINATOR_DEFAULT_HEARTBEAT_INTERVAL)
    }

    /// The coordinator's view of every cluster, and the system's feature level.
    pub async fn list_clusters(&self) -> Result<ListClustersReply, StackError> {
        let reply = self
            .membership()?
            .call(|mut client| async move {
                let mut call = tonic::Request::new(ListClustersRequest {});
                call.set_timeout(Duration::from_secs(2));
                client.list_clusters(call).await
            })
            .await
            .map_err(|s| StackError::Coordinator(s.message().to_string()))?;
        Ok(reply.into_inner())
    }

    pub async fn view(&self, cluster: u32) -> Result<ClusterView, StackError> {
        self.views()
            .await?
            .into_iter()
            .find(|v| v.cluster_id == cluster)
            .ok_or_else(|| StackError::Coordinator(format!("no view of cluster {cluster}")))
    }

    /// The id of the cluster's master server, if it has one.
    pub async fn master_server(&self, cluster: u32) -> Option<u32> {
        self.view(cluster).await.ok()?.master.map(|m| m.member_id)
    }

    pub async fn master_synchronizer(&self, cluster: u32) -> Option<u32> {
        self.view(cluster).await.ok()?.sync_master.map(|m| m.member_id)
    }

    /// Waits until every cluster has a master, all its running members have joined, every
    /// slave holds its master's whole log, and the masters know that every member runs this
    /// release (its newest features are open: `tinysns_common::features`).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), StackError> {
        let started = Instant::now();
        let mut last = String::from("coordinator not reachable");
        while started.elapsed() < timeout {
            match self.readiness().await {
                Ok(None) => {
                    // The coordinator knows the level; every member hears it in the reply to
                    // its next heartbeat.
                    tokio::time::sleep(self.heartbeat_interval() * 2).await;
                    return Ok(());
                }
                Ok(Some(missing)) => last = missing,
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(StackError::NotReady(timeout, last))
    }

    /// None when ready, else what is missing.
    async fn readiness(&mut self) -> Result<Option<String>, StackError> {
        let ListClustersReply {
            views,
            system_feature_level,
            ..
        } = self.list_clusters().await?;
        if system_feature_level < FEATURE_LEVEL {
            return Ok(Some(format!(
                "system feature level {system_feature_level}, this release's is {FEATURE_LEVEL}"
            )));
        }
        for cluster in 1..=self.options.clusters {
            let Some(view) = views.iter().find(|v| v.cluster_id == cluster) else {
                return Ok(Some(format!("cluster {cluster} unknown")));
            };
            let servers = self
                .servers
                .iter_mut()
                .filter(|((c, _), _)| *c == cluster)
                .map(|(_, m)| m.process.is_running())
                .filter(|up| *up)
                .count();
            let syncs = self
                .synchronizers
                .values_mut()
                .filter(|m| m.cluster == cluster)
                .map(|m| m.process.is_running())
                .filter(|up| *up)
                .count();
            let joined_servers = view.master.iter().count() + view.slaves.len();
            let joined_syncs = view.sync_master.iter().count() + view.sync_slaves.len();
            if view.master.is_none() || joined_servers < servers {
                return Ok(Some(format!(
                    "cluster {cluster}: {joined_servers}/{servers} servers joined"
                )));
            }
            if view.in_sync_slaves.len() < view.slaves.len() {
                let behind = view.slaves.len() - view.in_sync_slaves.len();
                return Ok(Some(format!("cluster {cluster}: {behind} slave(s) still catching up")));
            }
            if (syncs > 0 && view.sync_master.is_none()) || joined_syncs < syncs {
                return Ok(Some(format!(
                    "cluster {cluster}: {joined_syncs}/{syncs} synchronizers joined"
                )));
            }
        }
        Ok(None)
    }

    /// A digest of each server's stored state (users, follows, posts and their log
    /// positions), read from its data directory: replicas of a cluster must agree.
    pub fn replica_digests(&self) -> BTreeMap<(u32, u32), Result<String, String>> {
        self.servers
            .keys()
            .map(|&(cluster, server)| {
                let digest = tinysns_tsd::store::open(&self.server_data_dir(cluster, server))
                    .and_then(|c| tinysns_tsd::store::state_digest(&c))
                    .map_err(|e| e.to_string());
                ((cluster, server), digest)
            })
            .collect()
    }

    /// Where coordinator `node` stores what it decided.
    pub fn coordinator_data_dir(&self, node: usize) -> PathBuf {
        coordinator_data_dir(&self.options.dir, node)
    }

    pub fn server_data_dir(&self, cluster: u32, server: u32) -> PathBuf {
        self.options.dir.join(format!("cluster{cluster}-server{server}"))
    }

    /// Makes every flush of the tsd's disk take `delay` longer (`None`: heals it). Needs
    /// `Options::slow_disks`.
    pub fn slow_disk(&self, cluster: u32, server: u32, delay: Option<Duration>) -> std::io::Result<()> {
        let control = slow_disk_control(&self.options.dir, cluster, server);
        match delay {
            Some(delay) => std::fs::write(control, delay.as_millis().to_string()),
            None => match std::fs::remove_file(control) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }

    /// Every service process' name and the URL of its Prometheus endpoint.
    pub fn metrics_urls(&self) -> Vec<(String, String)> {
        let url = |port: u16| format!("http://127.0.0.1:{port}/metrics");
        let coordinators = self
            .coordinators
            .iter()
            .map(|c| (c.process.name.clone(), url(c.metrics_port)));
        let members = self
            .servers
            .values()
            .chain(self.synchronizers.values())
            .map(|m| (m.process.name.clone(), url(m.metrics_port)));
        coordinators.chain(members).collect()
    }

    /// One line per process: name, state, port, metrics port, log.
    pub fn status_lines(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(rabbit) = self.rabbit.as_mut() {
            let port = rabbit.port;
            let state = if rabbit.is_running() { "running" } else { "STOPPED" };
            lines.push(format!(
                "{:<16} {:<8} port {:<6} log {}",
                "rabbitmq",
                state,
                port,
                rabbit.log().display()
            ));
        }
        let line = |p: &mut Process, port: u16, metrics: u16| {
            let state = if p.is_running() { "running" } else { "STOPPED" };
            format!(
                "{:<16} {:<8} port {:<6} metrics {:<6} log {}",
                p.name,
                state,
                port,
                metrics,
                p.log_path().display()
            )
        };
        for node in &mut self.coordinators {
            lines.push(line(&mut node.process, node.port, node.metrics_port));
        }
        for m in self.servers.values_mut().chain(self.synchronizers.values_mut()) {
            lines.push(line(&mut m.process, m.port, m.metrics_port));
        }
        lines
    }
}

/// Creates the run's cluster secret (readable by this user only) unless `dir` has one, so
/// that processes restarted from the same directory keep proving membership.
/// The longest wait for the private broker to start. An Erlang node that boots on its data
/// while two loaded systems share 2 cores (the fault suite's broker restarts run side by
/// side) was seen taking more than 60 s.
const BROKER_START: Duration = Duration::from_secs(180);

pub fn write_secret(dir: &std::path::Path) -> Result<(ClusterSecret, PathBuf), StackError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("cluster-secret");
    if !path.exists() {
        let text: String = (0..48)
            .map(|_| char::from(b"0123456789abcdef"[rand::random_range(0..16usize)]))
            .collect();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(format!("{text}\n").as_bytes())?;
    }
    let secret = ClusterSecret::from_file(&path).map_err(|e| StackError::Io(std::io::Error::other(e)))?;
    Ok((secret, path))
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.stop_all();
    }
}
