#!/usr/bin/env bash
# Installs everything tinysns needs on a fresh Debian machine. Idempotent: a second run
# only checks. Used by scripts/up.sh, scripts/test.sh and therefore .ci/run.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing. Install Rust (1.89 or newer) with rustup: https://rustup.rs" >&2
  exit 1
fi

need_apt=()
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_apt+=(rabbitmq-server)
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
# The web UI's tests drive a real browser.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium fonts-dejavu-core)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} from Debian"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # The package's postinst starts a system-wide broker on 5672; tinysns runs its own private
  # instances, so keep the system one from starting (policy-rc.d) and stop it if it did.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  $SUDO systemctl stop rabbitmq-server >/dev/null 2>&1 || true
  $SUDO service rabbitmq-server stop >/dev/null 2>&1 || true
fi
