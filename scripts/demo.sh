#!/usr/bin/env bash
# promfleet demo on this machine, in one command (as root):
#
#   scripts/demo.sh            # install, start a local fleet, roll out, show Prometheus targets
#   scripts/demo.sh --down     # tear everything down
#
# It starts a fleet of local SSH hosts (real OpenSSH sshd on 127.0.x.y, HOSTS of them, groups
# IDE/Stage/Pet, plus a monitoring host), the Consul HTTP API *test double* (no Consul binary
# can be installed here), runs `promfleet exporters` over SSH (exporters are started by the
# test kit's compose stand-in, which validates each compose file with real docker-compose),
# then runs real Prometheus with promfleet's generated relabels and shows its targets.
#
# Ports: the Consul double and Prometheus take 127.0.0.1:18500 and :19090, or a free port if
# another program holds those (the demo says which); the exporters must get 9100/9105 on each
# demo host's 127.0.x.y address (the product's defaults), so a program listening on those ports
# on all addresses (0.0.0.0:9100) stops the demo with its name.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${PROMFLEET_DEMO_DIR:-/tmp/promfleet-demo}
HOSTS=${HOSTS:-12}

# Wait until LOG shows PATTERN while process PID runs; if PID exits first (or it takes over 60 s),
# show LOG and tear down what the demo started so far.
wait_for() {
  local log=$1 pattern=$2 pid=$3 what=$4
  for _ in $(seq 1 300); do
    grep -q "$pattern" "$log" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  grep -q "$pattern" "$log" 2>/dev/null && return 0
  echo "$what did not start:" >&2; cat "$log" >&2
  down; exit 1
}

down() {
  if [ -f "$DEMO/pids" ]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$DEMO/pids"
    sleep 2
  fi
  rm -rf "$DEMO"
  echo "demo torn down"
}
if [ "${1:-}" = "--down" ]; then down; exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "the demo starts sshd instances and creates a test login user: run it as root" >&2
  exit 1
fi
[ -d "$DEMO" ] && down

echo "== installing what the demo needs (Debian packages), building promfleet"
bash scripts/install-deps.sh
# sudo resets PATH (secure_path), which drops rustup's ~/.cargo/bin: build as the user who ran
# sudo, with their toolchain (and target/ stays theirs), or find root's own rustup install.
cargo=(cargo)
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
  user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
  cargo=(sudo -u "$SUDO_USER" -H env "PATH=$user_home/.cargo/bin:$PATH" cargo)
elif ! command -v cargo >/dev/null; then
  PATH="$HOME/.cargo/bin:$PATH"
fi
"${cargo[@]}" build --workspace --bins -q || {
  echo "building promfleet failed (no Rust toolchain? see https://rustup.rs)" >&2
  exit 1
}
BIN=${CARGO_TARGET_DIR:-target}/debug
mkdir -p "$DEMO"

CONSUL=127.0.0.1:$("$BIN/demo-port" 127.0.0.1 18500)
echo "== starting the Consul test double on $CONSUL and a fleet of $HOSTS SSH hosts"
setsid "$BIN/consul-double" --listen "$CONSUL" > "$DEMO/consul.log" 2>&1 < /dev/null &
pid=$!; echo $pid >> "$DEMO/pids"
wait_for "$DEMO/consul.log" "listening on http://$CONSUL" $pid "the Consul test double"
# --check-ports: the exporter ports (node_exporter_port, cadvisor_port in templates/defaults.yml).
setsid "$BIN/demo-fleet" --hosts "$HOSTS" --monitoring --consul "http://$CONSUL" \
  --check-ports 9100,9105 --inventory "$DEMO/inventory.yml" > "$DEMO/fleet.log" 2>&1 < /dev/null &
pid=$!; echo $pid >> "$DEMO/pids"
wait_for "$DEMO/fleet.log" "press Ctrl-C" $pid "the demo fleet"
KH=$(sed -n 's/^known_hosts: //p' "$DEMO/fleet.log")
[ -n "$KH" ] || { cat "$DEMO/fleet.log"; exit 1; }

echo "== the inventory (promfleet inventory list)"
"$BIN/promfleet" inventory list -i "$DEMO/inventory.yml"

echo "== rolling out the exporters: promfleet exporters -i inventory.yml"
"$BIN/promfleet" exporters -i "$DEMO/inventory.yml" --known-hosts "$KH" \
  --state-dir "$DEMO/state" || true

PROM=127.0.0.1:$("$BIN/demo-port" 127.0.0.1 19090)
echo "== real Prometheus with promfleet's generated relabel_configs on http://$PROM"
"$BIN/promfleet" render playbooks/monitoring.yml -i "$DEMO/inventory.yml" --out "$DEMO/rendered" 2>/dev/null
RENDERED=$(find "$DEMO/rendered" -name prometheus.yml | head -n 1)
"$BIN/demo-prometheus-config" "$RENDERED" "http://$CONSUL/promfleet-double/http_sd" > "$DEMO/prometheus.yml"
setsid prometheus --config.file="$DEMO/prometheus.yml" --storage.tsdb.path="$DEMO/prometheus-data" \
  --web.listen-address="$PROM" > "$DEMO/prometheus.log" 2>&1 < /dev/null &
pid=$!; echo $pid >> "$DEMO/pids"
wait_for "$DEMO/prometheus.log" "Server is ready to receive web requests" $pid "Prometheus"

echo "== promfleet's end-to-end check: every registered exporter UP in Prometheus"
"$BIN/promfleet" deploy playbooks/verify.yml -i "$DEMO/inventory.yml" --known-hosts "$KH" \
  --state-dir "$DEMO/state" -e "prometheus_url=http://$PROM" -e verify_timeout=60 -v || true

echo "== Prometheus targets (/api/v1/targets)"
curl -s "http://$PROM/api/v1/targets?state=active" | python3 -c '
import json, sys
ts = json.load(sys.stdin)["data"]["activeTargets"]
row = "%-16s %-10s %-7s %-34s %s"
print(row % ("job", "instance", "group", "endpoint", "health"))
for t in sorted(ts, key=lambda t: (t["scrapePool"], t["labels"].get("instance", ""))):
    l = t["labels"]
    print(row % (t["scrapePool"], l.get("instance", ""), l.get("group", ""), l.get("endpoint", ""), t["health"]))
'
cat <<MSG

Demo running: inventory $DEMO/inventory.yml, Prometheus http://$PROM, Consul test double http://$CONSUL
Try:   $BIN/promfleet exporters -i $DEMO/inventory.yml --known-hosts $KH --state-dir $DEMO/state   (a no-op now)
Tear down:   scripts/demo.sh --down
MSG
