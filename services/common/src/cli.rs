//! Command-line helpers shared by the service binaries.

use std::time::Duration;

/// Parses `250ms`, `1s`, `2m`... for timing flags.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// `--print-config`: prints the resolved configuration as one JSON object, so that
/// deployment tooling can check its wiring against the real binary.
pub fn print_config<T: serde::Serialize>(config: &T) -> Result<(), serde_json::Error> {
    println!("{}", serde_json::to_string(config)?);
    Ok(())
}

/// Resolves an id that is either given or derived from a StatefulSet pod's ordinal.
pub fn ordinal_from_env(pod_name: Option<&str>) -> Result<u32, String> {
    let pod = pod_name.ok_or_else(|| "no id given and POD_NAME is not set".to_string())?;
    crate::topology::ordinal_from_pod_name(pod).map_err(|e| e.to_string())
}
