#!/usr/bin/env bash
# Hosts' side CPU per host of each phase of a deploy, measured exactly: the fleet's shared sshd
# (and so every session, shell, compose stand-in and exporter it starts) runs in a cgroup-v1
# `cpuacct` group, read before and after each phase. fleet.sh's "rest of the machine" CPU is
# /proc/stat's, which also counts the client, the Consul double and anything else running;
# this separates the hosts' side from all of that, phase by phase.
#
# Usage: sudo benches/phases.sh [N]        (default 100 hosts, forks 50)
# Needs root, cgroup v1 with cpuacct mounted at /sys/fs/cgroup/cpuacct, and release builds:
# PROMFLEET=… BENCH_FLEET=… as for fleet.sh (default: this tree's target/release).
# Prints one line per phase: wall time, hosts' side CPU per host, client CPU per host.
set -euo pipefail

N=${1:-100}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PF=${PROMFLEET:-$REPO/target/release/promfleet}
BF=${BENCH_FLEET:-$REPO/target/release/bench-fleet}
CG=/sys/fs/cgroup/cpuacct
[ -d "$CG" ] || { echo "phases.sh: no cgroup-v1 cpuacct at $CG" >&2; exit 1; }
OUT=$(mktemp -d /tmp/promfleet-phases.XXXXXX)
GROUP=$CG/promfleet-phases-$$
mkdir "$GROUP"

"$BF" --hosts "$N" --out "$OUT" > "$OUT.log" 2>&1 &
FLEET=$!
cleanup() {
    kill "$FLEET" 2>/dev/null || true
    wait "$FLEET" 2>/dev/null || true
    # The group's tasks are gone with the fleet; then it can be removed.
    for _ in $(seq 50); do rmdir "$GROUP" 2>/dev/null && break; sleep 0.2; done
}
trap cleanup EXIT
for _ in $(seq 300); do [ -f "$OUT/ready" ] && break; sleep 1; done
[ -f "$OUT/ready" ] || { echo "phases.sh: the fleet did not start (see $OUT.log)" >&2; exit 1; }
# shellcheck disable=SC1091
. "$OUT/env.sh"
SSHD=$(pgrep -f "sshd.*$FLEET_ROOT/.sshd/shared" | head -1)
echo "$SSHD" > "$GROUP/cgroup.procs"

SSH="ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes \
-o UserKnownHostsFile=$FLEET_KNOWN_HOSTS -o KexAlgorithms=curve25519-sha256 \
-o Ciphers=chacha20-poly1305@openssh.com -o Compression=no -i $FLEET_KEY -p $FLEET_PORT -l $FLEET_USER"
export SSH OUT PF FLEET_KNOWN_HOSTS REPO

# phase LABEL COMMAND: the command's wall time and client CPU (its process tree, through
# /usr/bin/time), and the group's CPU over it plus 2 s (sessions finishing after the client).
phase() {
    local label=$1 cmd=$2 s0 s1 t0 t1 client
    s0=$(cat "$GROUP/cpuacct.usage")
    t0=$(date +%s.%N)
    client=$( { /usr/bin/time -f "%U %S" bash -c "$cmd" > /dev/null 2> "$OUT/phase.err"; } 2>&1; tail -1 "$OUT/phase.err")
    t1=$(date +%s.%N)
    sleep 2
    s1=$(cat "$GROUP/cpuacct.usage")
    python3 - "$label" "$s0" "$s1" "$t0" "$t1" "$client" "$N" <<'PY'
import sys
label, s0, s1, t0, t1, client, n = sys.argv[1:]
n = int(n)
user, system = (float(x) for x in client.split())
print(f"{label:26s} wall {float(t1) - float(t0):6.2f} s   hosts' side {(int(s1) - int(s0)) / 1e6 / n:6.1f} ms/host"
      f"   client {(user + system) * 1000 / n:5.1f} ms/host")
PY
}

FLOOR='xargs -P 50 -I{} $SSH {} true < $OUT/hosts.txt'
DEPLOY='$PF exporters --playbook $REPO/playbooks/exporters.yml -i $OUT/promfleet.yml --known-hosts $FLEET_KNOWN_HOSTS --state-dir $OUT/state --no-agent --forks 50 -q'
phase "floor (ssh true)" "$FLOOR"
phase "preflight (full probe)" '$PF preflight -i $OUT/promfleet.yml --known-hosts $FLEET_KNOWN_HOSTS --no-agent --forks 50'
phase "floor (ssh true)" "$FLOOR"
phase "first run" "$DEPLOY"
phase "floor (ssh true)" "$FLOOR"
phase "re-run" "$DEPLOY"
phase "re-run --full-preflight" "$DEPLOY --full-preflight"
phase "floor (ssh true)" "$FLOOR"
