//! Starts a whole tinysns system on this machine: a private RabbitMQ, the coordinator and
//! every cluster's servers and synchronizers, with the classic ports. Shows the state of
//! every process, says how to connect `tsc` and where each process' Prometheus metrics are,
//! and stops everything on Ctrl-C.

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use tinysns_stack::gateway::Gateway;
use tinysns_stack::topology::{Broker, Options, Ports, Topology};

#[derive(Debug, Parser)]
#[command(name = "tinysns-local", version, about = "Run tinysns locally")]
struct Args {
    /// Number of clusters.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    clusters: u32,
    /// Servers (tsd) per cluster: a master and its slaves.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=5))]
    servers: u32,
    /// Synchronizers per cluster.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=5))]
    synchronizers: u32,
    /// Where data and logs go.
    #[arg(long, default_value = ".local/run")]
    dir: PathBuf,
    /// Use this broker instead of starting a private one.
    #[arg(long, env = "TINYSNS_AMQP_URL")]
    amqp_url: Option<String>,
    /// Ports chosen by the OS instead of the classic layout (9000, 10000.., 5672).
    #[arg(long)]
    free_ports: bool,
    /// Coordinators: 1, or 3 (or 5) that replicate their decisions with Raft, so that
    /// killing one is not an outage.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=5))]
    coordinators: u32,
    /// Heartbeat interval handed to every member.
    #[arg(long)]
    heartbeat_interval: Option<String>,
    /// Silence after which a member is presumed dead.
    #[arg(long)]
    failure_timeout: Option<String>,
    #[command(flatten)]
    auth: tinysns_common::auth::AuthArgs,
    /// Port of the gateway (web UI and HTTP API); its metrics are on this + 30000. With
    /// --free-ports, one the OS picks.
    #[arg(long, default_value_t = 8080)]
    gateway_port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tinysns_common::telemetry::init("info");
    let options = Options {
        dir: args.dir.clone(),
        clusters: args.clusters,
        servers_per_cluster: args.servers,
        synchronizers_per_cluster: args.synchronizers,
        ports: if args.free_ports { Ports::Free } else { Ports::Classic },
        broker: args.amqp_url.map(Broker::External).unwrap_or(Broker::Private),
        heartbeat_interval: args.heartbeat_interval,
        failure_timeout: args.failure_timeout,
        auth: args.auth.auth,
        tsd_args: Vec::new(),
        cluster_tsd_args: Default::default(),
        synchronizer_args: Vec::new(),
        coordinators: args.coordinators,
        partitionable: false,
        tls: false,
        slow_disks: false,
    };
    println!(
        "Starting tinysns ({} accounts): {} coordinator(s), {} clusters x {} servers x {} synchronizers, data and logs in {}",
        args.auth.auth,
        args.coordinators,
        args.clusters,
        args.servers,
        args.synchronizers,
        args.dir.display()
    );
    let mut topology = Topology::prepare(options).context("cannot lay out the system")?;
    if topology.rabbit.is_some() {
        println!("Starting RabbitMQ (takes a few seconds)...");
    }
    topology.start_broker().await.context("RabbitMQ did not start")?;
    topology.start_services().context("cannot start the services")?;
    topology
        .wait_ready(Duration::from_secs(30))
        .await
        .context("the system did not come up")?;
    let ports = match args.free_ports {
        true => (tinysns_stack::free_port()?, tinysns_stack::free_port()?),
        false => (args.gateway_port, args.gateway_port.saturating_add(30000)),
    };
    let gateway = Gateway::start_on(&topology, "gateway", ports, &[])
        .await
        .context("the gateway did not start")?;
    print_status(&mut topology).await;
    let tsc = tinysns_stack::bin_dir().join("tsc");
    let (tsc, hosts) = (tsc.display(), topology.coordinator_address());
    match args.auth.auth {
        tinysns_common::auth::AuthMode::Password => {
            println!("\nReady. Create an account, then log in with it (tsc asks for the password):");
            println!("  {tsc} -h {hosts} --register -u alice");
            println!("  {tsc} -h {hosts} -u alice");
            println!("(scripts can set TINYSNS_PASSWORD or pass --password-file)");
            println!("Or open the web UI and sign up there: {}/", gateway.url);
        }
        tinysns_common::auth::AuthMode::Open => {
            println!("\nReady. Connect a client (one per user; users 1, 2, 3 live in clusters 1, 2, 3):");
            println!("  {tsc} -h {hosts} -u 1");
            println!(
                "(The web UI at {}/ needs accounts: start without --auth open.)",
                gateway.url
            );
        }
    }
    println!("The cluster secret is in {}.", topology.secret_file.display());
    println!("Prometheus metrics (plaintext HTTP; docs/metrics.md lists them):");
    for (name, url) in topology.metrics_urls() {
        println!("  {name:<16} {url}");
    }
    println!("  {:<16} http://127.0.0.1:{}/metrics", "gateway", gateway.metrics_port);
    println!("Press Ctrl-C to stop everything.\n");

    let mut last = topology.status_lines();
    loop {
        tokio::select! {
            _ = tinysns_common::shutdown::signal() => break,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {
                let now = topology.status_lines();
                if now != last {
                    println!("Process states changed:");
                    print_status(&mut topology).await;
                    last = now;
                }
            }
        }
    }
    println!("Stopping...");
    let mut gateway = gateway;
    gateway.process.stop(Duration::from_secs(10));
    topology.stop_all();
    println!("Stopped. Data kept in {}", args.dir.display());
    Ok(())
}

async fn print_status(topology: &mut Topology) {
    for line in topology.status_lines() {
        println!("  {line}");
    }
    if let Ok(views) = topology.views().await {
        for v in views {
            let name = |m: &Option<tinysns_common::proto::coordinator::Member>| {
                m.as_ref()
                    .map(|m| format!("{}@{}", m.member_id, m.address))
                    .unwrap_or_else(|| "none".into())
            };
            println!(
                "  cluster {}: term {} master server {} ({} slave(s)), master synchronizer {} ({} standby)",
                v.cluster_id,
                v.term,
                name(&v.master),
                v.slaves.len(),
                name(&v.sync_master),
                v.sync_slaves.len()
            );
        }
    }
}
