use clap::Parser;
use tinysns_common::{shutdown::Shutdown, telemetry};
use tinysns_synchronizer::config::Args;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let print = args.print_config;
    let config = match args.resolve() {
        Ok(c) => c,
        Err(problem) => {
            eprintln!("error: {problem}");
            std::process::exit(2);
        }
    };
    if print {
        tinysns_common::cli::print_config(&config)?;
        return Ok(());
    }
    telemetry::init("info");
    // SIGTERM leaves first (`run::run`), then stops.
    tinysns_synchronizer::run::run(config, Shutdown::new()).await
}
