#!/usr/bin/env bash
# Runs every check and test of tinysns on a fresh Debian machine; .ci/run calls this.
# Installs what is missing first (scripts/setup.sh), so nothing depends on hand-made setup.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "setup"
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
