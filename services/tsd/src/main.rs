use clap::Parser;
use tinysns_common::{shutdown::Shutdown, telemetry};
use tinysns_tsd::config::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match Args::parse().resolve_checked() {
        Ok(c) => c,
        Err(problem) => {
            eprintln!("error: {problem}");
            std::process::exit(2);
        }
    };
    if let Some(config) = config.print_only {
        tinysns_common::cli::print_config(&config)?;
        return Ok(());
    }
    telemetry::init("info");
    // SIGTERM leaves the cluster first (`server::run`), then stops.
    tinysns_tsd::server::run(config.config, Shutdown::new()).await
}
