//! Runs the real benchmark binary in quick mode against a real system (the service binaries
//! beside it, as `cargo build --bins` leaves them) and checks that every figure is in the
//! JSON and that nothing was lost or left undelivered (the gateway phase's WebSocket
//! included: `tinysns-gateway` must be built beside the other binaries).

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn number(json: &Value, pointer: &str) -> f64 {
    json.pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} is missing or not a number in the results"))
}

/// Runs `tinysns-bench --quick --seed 7` with `extra` arguments in a directory of its own;
/// returns the results and their text.
fn run_quick(name: &str, extra: &[&str]) -> (Value, String) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test directory");
    let out = dir.join("results.json");
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_tinysns-bench"));
    let bins = std::env::var_os("TINYSNS_BIN_DIR")
        .map(PathBuf::from)
        .or_else(|| bench.parent().map(PathBuf::from))
        .expect("binary directory");
    for bin in ["tsd", "tinysns-gateway"] {
        assert!(
            bins.join(bin).exists(),
            "no {bin} in {}: run `cargo build --bins` first",
            bins.display()
        );
    }
    let output = Command::new(&bench)
        .args(["--quick", "--seed", "7", "--out"])
        .arg(&out)
        .arg("--dir")
        .arg(dir.join("system"))
        .args(extra)
        .env("TINYSNS_BIN_DIR", &bins)
        .output()
        .expect("run tinysns-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tinysns-bench failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("seed: 7"), "the seed is printed: {stdout}");
    let text = std::fs::read_to_string(&out).expect("results file");
    let json: Value = serde_json::from_str(&text).expect("results are JSON");
    (json, text)
}

#[test]
fn quick_mode_with_three_coordinators_reports_the_write_gap_when_the_leader_dies() {
    let (json, text) = run_quick(
        "bench-quick-coordinators",
        &["--coordinators", "3", "--failover-kill", "coordinator-leader"],
    );
    assert!(json["failover"]["skipped"].is_null(), "{text}");
    assert!(
        json["failover"]["killed"]
            .as_str()
            .is_some_and(|k| k.starts_with("coordinator-")),
        "{text}"
    );
    assert!(number(&json, "/failover/longest_write_gap_any_cluster_ms") > 0.0);
    for pointer in ["/lost/lost_posts", "/lost/missing_pairs", "/failover/acknowledged_lost"] {
        assert_eq!(number(&json, pointer), 0.0, "{pointer} must be 0\n{text}");
    }
    // Three coordinators ran (the killed one may be missing from the final memory figures).
    let coordinators = json["peak_rss_by_role"]
        .as_array()
        .expect("peak_rss_by_role")
        .iter()
        .find(|r| r["role"] == "coordinator")
        .and_then(|r| r["processes"].as_u64())
        .unwrap_or(0);
    assert!(coordinators >= 2, "{text}");
}

#[test]
fn quick_mode_reports_every_figure_and_loses_nothing() {
    let (json, text) = run_quick("bench-quick", &[]);
    assert_eq!(json["seed"], 7);
    assert_eq!(json["mode"], "quick");
    for key in ["cores", "cpu_model", "memory_bytes", "kernel"] {
        assert!(!json["machine"][key].is_null(), "machine.{key} missing");
    }
    assert!(number(&json, "/machine/cores") >= 1.0);
    assert!(number(&json, "/machine_load/run_seconds") > 0.0);
    assert!(number(&json, "/machine_load/our_cpu_seconds") > 0.0);

    // Floors.
    for pointer in [
        "/floors/grpc_unary/p50_ms",
        "/floors/grpc_unary/p99_ms",
        "/floors/grpc_unary_calls_per_sec",
        "/floors/rabbitmq_publish_confirm_consume/p50_ms",
        "/floors/rabbitmq_publish_confirm_consume/p99_ms",
        "/floors/fdatasync/p50_ms",
        "/floors/fdatasync/p99_ms",
    ] {
        assert!(number(&json, pointer) > 0.0, "{pointer}");
    }

    // Figures, each with its ratio to the floor.
    for figure in ["/post_ack_latency", "/delivery/same_cluster", "/delivery/cross_cluster"] {
        for field in [
            "/latency/p50_ms",
            "/latency/p99_ms",
            "/latency/max_ms",
            "/ratio_p50",
            "/ratio_p99",
        ] {
            number(&json, &format!("{figure}{field}"));
        }
    }
    assert!(number(&json, "/throughput/posts_per_sec") > 0.0);
    number(&json, "/throughput/ratio_to_floor");
    assert!(number(&json, "/failover/time_to_first_ack_ms") > 0.0);
    number(&json, "/failover/ratio_to_floor");
    assert!(json["failover"]["skipped"].is_null());

    // Nothing lost, nothing undelivered.
    for pointer in [
        "/delivery/same_cluster/undelivered",
        "/delivery/cross_cluster/undelivered",
        "/lost/undelivered_live",
        "/lost/lost_posts",
        "/lost/missing_pairs",
        "/failover/acknowledged_lost",
    ] {
        assert_eq!(number(&json, pointer), 0.0, "{pointer} must be 0\n{text}");
    }
    assert!(number(&json, "/delivery/same_cluster/delivered") > 0.0);
    assert!(number(&json, "/delivery/cross_cluster/delivered") > 0.0);
    assert!(number(&json, "/lost/acknowledged_posts") > 0.0);
    assert!(number(&json, "/lost/checked_pairs") > 0.0);

    // The gateway phase: both ways timed on the same pairs, nothing missed or repeated on
    // the WebSocket.
    assert!(json["gateway"]["skipped"].is_null(), "{text}");
    assert!(number(&json, "/gateway/acknowledged_posts") > 0.0, "{text}");
    assert!(number(&json, "/gateway/all/pairs") > 0.0, "{text}");
    for way in ["grpc", "websocket", "added_per_delivery"] {
        for field in ["p50_ms", "p99_ms", "max_ms"] {
            number(&json, &format!("/gateway/all/{way}/{field}"));
        }
    }
    number(&json, "/gateway/all/added_p99_ms");
    assert!(number(&json, "/gateway/all/websocket/count") > 0.0);
    for pointer in [
        "/gateway/websocket_missed",
        "/gateway/websocket_duplicated",
        "/gateway/grpc_missed",
    ] {
        assert_eq!(number(&json, pointer), 0.0, "{pointer} must be 0\n{text}");
    }
    let gateway_targets = json["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter(|t| {
            t["name"]
                .as_str()
                .is_some_and(|n| n.contains("gateway") || n.contains("WebSocket"))
        })
        .count();
    assert_eq!(gateway_targets, 2, "{text}");

    // Peak memory of every role.
    let roles: Vec<&str> = json["peak_rss_by_role"]
        .as_array()
        .expect("peak_rss_by_role")
        .iter()
        .filter_map(|r| r["role"].as_str())
        .collect();
    for role in ["coordinator", "tsd", "synchronizer", "rabbitmq", "bench", "gateway"] {
        assert!(roles.contains(&role), "no peak RSS for {role}: {roles:?}");
    }
}

#[test]
fn quick_mode_with_the_mix_reports_stored_copies_and_reads_at_scale() {
    let (json, text) = run_quick(
        "bench-quick-mix",
        &[
            "--mix",
            "--topic-posts",
            "2000",
            "--clusters",
            "4",
            "--servers",
            "1",
            "--synchronizers",
            "1",
            "--no-failover",
            "--no-switchover",
        ],
    );
    // Each post kept in its author's cluster and at most in every cluster.
    let per_post = number(&json, "/stored_copies/copies_per_post");
    assert!((1.0..=4.0).contains(&per_post), "{per_post}\n{text}");
    assert!(number(&json, "/stored_copies/posts") >= number(&json, "/lost/acknowledged_posts"));
    assert!(number(&json, "/side_load/likes") > 0.0, "{text}");
    assert!(number(&json, "/side_load/messages") > 0.0, "{text}");
    assert_eq!(number(&json, "/side_load/failed"), 0.0, "{text}");
    for pointer in [
        "/topic_reads/history_at_home/p99_ms",
        "/topic_reads/history_elsewhere/p99_ms",
        "/topic_reads/inbox/p99_ms",
    ] {
        assert!(number(&json, pointer) > 0.0, "{pointer}\n{text}");
    }
    assert_eq!(number(&json, "/topic_reads/history_at_home/count"), 2000.0);
    assert_eq!(number(&json, "/lost/lost_posts"), 0.0, "{text}");
}
