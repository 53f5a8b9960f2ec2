#!/usr/bin/env bash
# Install the Debian packages promfleet's tests and demo talk to (idempotent; needs root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# OpenSSH (client+server), Prometheus + promtool, Alertmanager + amtool, node-exporter,
# docker-compose v1, netns/iptables tools, sudo, curl; man-db and bash-completion, which
# tests/package.rs asks whether they find the installed package's man pages and completion;
# dpkg-dev for dpkg-shlibdeps (scripts/package.sh: the package's Depends); apache2-utils for
# htpasswd (tests/prom_tls.rs: the bcrypt hash of Prometheus' basic_auth_users); zsh for a test
# user whose login shell does not split fields as sh does (tests/transport.rs).
packages=(openssh-server openssh-client prometheus prometheus-alertmanager
          prometheus-node-exporter docker-compose iproute2 iptables sudo curl procps
          man-db bash-completion dpkg-dev apache2-utils zsh)
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
# ansible-core, the oracle of tests/ansible_inventory.rs (`ansible-inventory --list`); pinned so
# the expected answers do not move under the tests.
ansible_core=2.19.14
installed=$(ansible-inventory --version 2>/dev/null || true)
if [[ "$installed" != *"[core $ansible_core]"* ]]; then
  echo "installing: ansible-core==$ansible_core"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  fi
  pip_install=(python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore)
  # Debian's own python3 is "externally managed" (PEP 668): allow the install there.
  "${pip_install[@]}" "ansible-core==$ansible_core" 2>/dev/null || \
    "${pip_install[@]}" --break-system-packages "ansible-core==$ansible_core"
fi
