#!/usr/bin/env bash
# Install the Debian packages promfleet's tests and demo talk to (idempotent; needs root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# OpenSSH (client+server), Prometheus + promtool, Alertmanager + amtool, node-exporter,
# docker-compose v1, netns/iptables tools, sudo, curl.
packages=(openssh-server openssh-client prometheus prometheus-alertmanager
          prometheus-node-exporter docker-compose iproute2 iptables sudo curl procps)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's packages may start their daemons; tests and demo start their own on other ports.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter ssh; do
  service "$svc" stop >/dev/null 2>&1 || true
done
