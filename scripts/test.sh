#!/usr/bin/env bash
# Runs every check and test of tinysns on a fresh Debian machine; .ci/run calls this.
# Installs what is missing first (scripts/setup.sh), so nothing depends on hand-made setup.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

# A full check run builds everything once: incremental state would only cost disk (4 GiB).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step "setup"
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
echo "disk: $((free_kib / 1024 / 1024)) GiB free here; a clean run needs about 6 GiB"
if [ "$free_kib" -lt $((6 * 1024 * 1024)) ]; then
  echo "warning: less than 6 GiB free; the build may fail with 'No space left on device'" >&2
fi
bash scripts/setup.sh

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
# The end-to-end tests and the operator's wiring test run the real binaries; the fault tests
# also preload the slow-disk library into tsd.
cargo build --workspace --bins --locked
cargo build -p tinysns-slow-sync --locked

step "tests (unit, end-to-end against real RabbitMQ, operator)"
cargo test --workspace --locked --no-fail-fast -- --test-threads=2

step "Kubernetes manifests, Helm chart, CRD drift, shell scripts"
bash scripts/k8s-checks.sh

step "all checks passed"
