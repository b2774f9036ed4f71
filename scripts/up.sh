#!/usr/bin/env bash
# Starts the whole tinysns system locally: a private RabbitMQ, the coordinator and
# 3 clusters x (2 tsd + 2 synchronizers) on the classic ports, data and logs in .local/run.
# Prints how to connect tsc; Ctrl-C stops everything. Extra arguments go to tinysns-local
# (e.g. --clusters 5, --free-ports, --dir DIR; see --help).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
cargo build --release --locked -p tinysns-coordinator -p tinysns-tsd -p tinysns-synchronizer -p tinysns-tsc -p tinysns-stack
exec target/release/tinysns-local "$@"
