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

/// CPU time (user + system) a live process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command: state(3) ... utime(14) stime(15), 1-based.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux architecture this runs on.
    Some(ticks as f64 / 100.0)
}

/// CPU time all cores have spent busy (anything but idle and waiting for I/O) since boot,
/// in seconds, from `/proc/stat`.
pub fn busy_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is included in user).
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4)?;
    Some((total - idle) as f64 / 100.0)
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
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

/// The largest peak RSS among the processes of group `pgid`, with its pid, and the CPU
/// time of the whole group.
pub fn peak_rss_of_group(pgid: u32) -> Option<(u32, u64, f64)> {
    let pids = process_group(pgid);
    let cpu = pids.iter().filter_map(|pid| cpu_seconds(*pid)).sum();
    pids.into_iter()
        .filter_map(|pid| Some((pid, peak_rss(pid)?)))
        .max_by_key(|(_, rss)| *rss)
        .map(|(pid, rss)| (pid, rss, cpu))
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
        // Spin until the kernel has charged us a clock tick (however busy the machine is).
        let spin = std::time::Instant::now();
        while cpu_seconds(me).is_some_and(|s| s == 0.0) && spin.elapsed() < std::time::Duration::from_secs(10) {
            std::hint::black_box(0u64);
        }
        assert!(cpu_seconds(me).is_some_and(|s| s > 0.0));
        assert!(busy_cpu_seconds().is_some_and(|s| s > 0.0));
        assert!(load_average().is_some());
        assert_eq!(
            field("VmHWM:\t  1234 kB\n", "VmHWM").and_then(kib_to_bytes),
            Some(1234 * 1024)
        );
    }
}
