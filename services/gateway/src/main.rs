use clap::Parser;
use tinysns_common::shutdown::Shutdown;
use tinysns_common::telemetry;
use tinysns_gateway::config::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Err(problem) = args.check() {
        eprintln!("error: {problem}");
        std::process::exit(2);
    }
    if args.print_config {
        tinysns_common::cli::print_config(&args)?;
        return Ok(());
    }
    telemetry::init("info");
    // rustls needs one crypto provider for the whole process: ring, as tonic uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signal();
    tinysns_gateway::server::run(args, shutdown).await
}
