//! A whole tinysns system as local processes, for the launcher (`tinysns-local`), the
//! end-to-end tests and the benchmark: `rabbit` runs a private RabbitMQ broker, `process`
//! supervises one service binary, `topology` starts and inspects the full system, and
//! `client` drives it through the same session code the `tsc` binary uses; `scrape` reads a
//! process' Prometheus endpoint.

pub mod accounts;
pub mod certs;
pub mod checker;
pub mod client;
pub mod gateway;
pub mod ports;
pub mod preload;
pub mod process;
pub mod proxy;
pub mod rabbit;
pub mod scrape;
pub mod topology;
pub mod tsc;
pub mod workload;

pub use ports::free_port;
use std::path::PathBuf;

/// Where the service binaries are: `TINYSNS_BIN_DIR`, else beside the running executable
/// (or one level up, for test executables in `target/<profile>/deps`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TINYSNS_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.join("tsd").exists() {
        dir
    } else {
        dir.parent().map(PathBuf::from).unwrap_or(dir)
    }
}
