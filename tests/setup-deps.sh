#!/usr/bin/env bash
# Installs the system packages the tests and the demo need, only when missing (fresh machine):
# openssl and curl for the control plane, Alertmanager and Prometheus from Debian.
set -euo pipefail
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v prometheus-alertmanager >/dev/null || [ -x /usr/bin/prometheus-alertmanager ] || need+=(prometheus-alertmanager)
command -v prometheus >/dev/null || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  echo "[deps] installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # --no-install-recommends, and no service is started: tests start what they need themselves.
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian starts packaged daemons on install where an init system runs; tests own their ports.
  for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
    pkill -x "$svc" 2>/dev/null || true
  done
fi
command -v go >/dev/null || { echo "[deps] Go is required to build the control plane (go.dev toolchain)" >&2; exit 1; }
command -v cargo >/dev/null || { echo "[deps] Rust (cargo) is required" >&2; exit 1; }
