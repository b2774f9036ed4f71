#!/usr/bin/env bash
# Starts the whole tinysns system locally: a private RabbitMQ, the coordinator and
# 3 clusters x (2 tsd + 2 synchronizers) on the classic ports, data and logs in .local/run.
# Starts a gateway too (the web UI and HTTP API on http://127.0.0.1:8080/).
# Prints how to connect tsc and each process' Prometheus metrics URL; Ctrl-C stops
# everything. Extra arguments go to tinysns-local (e.g. --clusters 5, --free-ports,
# --dir DIR; see --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
cargo build --release --locked -p tinysns-coordinator -p tinysns-tsd -p tinysns-synchronizer -p tinysns-tsc -p tinysns-gateway -p tinysns-stack
echo "Metrics: every process serves Prometheus /metrics over plain HTTP on its client port + 30000"
echo "(coordinator 39000, synchronizers 39001.., tsd 40000..; the URLs are listed once it is up)."
exec target/release/tinysns-local "$@"
