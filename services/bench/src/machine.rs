//! What the benchmark ran on, and how much memory each process used at its peak.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub hostname: String,
    pub cores: usize,
    pub cpu_model: String,
    pub memory_bytes: u64,
    pub kernel: String,
    pub os: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The value of `key: value` lines (`/proc/cpuinfo`, `/proc/meminfo`, `/proc/<pid>/status`).
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// `"123 kB"` -> bytes.
fn kib_to_bytes(value: &str) -> Option<u64> {
    Some(value.split_whitespace().next()?.parse::<u64>().ok()? * 1024)
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = read("/proc/cpuinfo");
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default();
        Self {
            hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
            cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            cpu_model: field(&cpuinfo, "model name").unwrap_or("unknown").to_string(),
            memory_bytes: field(&read("/proc/meminfo"), "MemTotal")
                .and_then(kib_to_bytes)
                .unwrap_or(0),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            os,
        }
    }
}

/// Peak resident set size (VmHWM) of a live process, in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field(&status, "VmHWM").and_then(kib_to_bytes)
}

/// The live processes in process group `pgid` (a service and any helpers it started).
pub fn process_group(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = read(&format!("/proc/{pid}/stat"));
            // pid (comm) state ppid pgrp ...: comm may hold spaces, so parse after ')'.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<u32>().ok())
                == Some(pgid)
        })
        .collect()
}

/// The largest peak RSS among the processes of group `pgid`, with its pid.
pub fn peak_rss_of_group(pgid: u32) -> Option<(u32, u64)> {
    process_group(pgid)
        .into_iter()
        .filter_map(|pid| Some((pid, peak_rss(pid)?)))
        .max_by_key(|(_, rss)| *rss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_and_this_process() {
        let m = Machine::detect();
        assert!(m.cores >= 1);
        assert!(m.memory_bytes > 0);
        assert!(!m.kernel.is_empty());
        let me = std::process::id();
        assert!(peak_rss(me).is_some_and(|b| b > 0));
        assert_eq!(
            field("VmHWM:\t  1234 kB\n", "VmHWM").and_then(kib_to_bytes),
            Some(1234 * 1024)
        );
    }
}
