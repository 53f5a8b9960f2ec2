#!/bin/bash
# promfleet vs Ansible vs bare OpenSSH on a loopback fleet (one machine, one run).
# Usage: benches/fleet.sh [--hosts "100 500"] [--ansible-hosts "100"] [--ansible-forks "5 50"]
#                         [--scale 1000] [--max-startups 300:10:30:20] [--forks 50] [--out DIR]
# Needs root (the fleet creates users and runs sshd), /tmp/ansible-venv (ansible-core), and
# builds promfleet (release) and bench-fleet itself. Results: $OUT/results.jsonl and a
# markdown table on stdout (benches/table.py). Every step is bounded by a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
HOSTS="100 500"
ANSIBLE_HOSTS="100"
ANSIBLE_FORKS="5 50"
SCALE="1000"
MAXSTARTUPS="300:10:30:20"
FORKS=50
OUT=/tmp/promfleet-bench
while [ $# -gt 0 ]; do
    case $1 in
        --hosts) HOSTS=$2; shift 2 ;;
        --ansible-hosts) ANSIBLE_HOSTS=$2; shift 2 ;;
        --ansible-forks) ANSIBLE_FORKS=$2; shift 2 ;;
        --scale) SCALE=$2; shift 2 ;;
        --max-startups) MAXSTARTUPS=$2; shift 2 ;;
        --forks) FORKS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
ANSIBLE=${ANSIBLE:-/tmp/ansible-venv/bin/ansible-playbook}
BENCH_START=$(date +%s)
rm -rf "$OUT"; mkdir -p "$OUT"; chmod 755 "$OUT"
RESULTS=$OUT/results.jsonl
: > "$RESULTS"

cargo build --release --bin promfleet >&2
cargo build -p testkit --bin bench-fleet >&2
PF=$CARGO_TARGET_DIR/release/promfleet
BF=$CARGO_TARGET_DIR/debug/bench-fleet
M="python3 $REPO/benches/measure.py --results $RESULTS"

FLEET_PID=""
stop_fleet() {
    if [ -n "$FLEET_PID" ]; then
        kill -TERM "$FLEET_PID" 2>/dev/null || true
        timeout 120 tail --pid="$FLEET_PID" -f /dev/null || kill -KILL "$FLEET_PID" 2>/dev/null || true
        FLEET_PID=""
    fi
}
trap stop_fleet EXIT
trap "exit 1" TERM INT

# start_fleet DIR N [bench-fleet args...]: start and wait (bounded) until it is ready.
start_fleet() {
    local dir=$1 n=$2; shift 2
    mkdir -p "$dir"
    "$BF" --hosts "$n" --out "$dir" "$@" 2>"$dir/bench-fleet.log" &
    FLEET_PID=$!
    for _ in $(seq 600); do
        [ -f "$dir/ready" ] && break
        kill -0 "$FLEET_PID" 2>/dev/null || { cat "$dir/bench-fleet.log" >&2; exit 1; }
        sleep 0.2
    done
    [ -f "$dir/ready" ] || { echo "fleet of $n not ready in 120 s" >&2; exit 1; }
    # shellcheck disable=SC1091
    . "$dir/env.sh"
}

consul_count() {
    curl -s --max-time 10 "$CONSUL_URL/v1/agent/services" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'
}

check_services() {
    local want=$1 label=$2 got
    got=$(consul_count)
    if [ "$got" != "$want" ]; then
        echo "CHECK FAILED: $label: Consul double holds $got services, want $want" >&2
        echo "{\"label\": \"$label check\", \"error\": \"consul has $got services, want $want\"}" >> "$RESULTS"
    fi
}

# floor DIR N [KEX]: one OpenSSH `ssh host true` per host, $FORKS at a time. OpenSSH 9.2 picks
# sntrup761x25519 by default; KEX=curve25519-sha256 is what russh negotiates with this sshd.
floor() {
    local dir=$1 n=$2 kex=${3:-} label="floor ssh true" opt=""
    if [ -n "$kex" ]; then label="floor ssh true kex=$kex"; opt="-o KexAlgorithms=$kex"; fi
    $M --label "$label N=$n P=$FORKS" --timeout 600 --log "$dir/floor.log" -- \
        sh -c "xargs -P $FORKS -I{} ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes \
            -o IdentitiesOnly=yes -o ConnectTimeout=10 -o LogLevel=ERROR $opt \
            -o UserKnownHostsFile=$FLEET_KNOWN_HOSTS -i $FLEET_KEY -p $FLEET_PORT \
            $FLEET_USER@{} true < $dir/hosts.txt" || true
}

promfleet() {
    local dir=$1 n=$2 label=$3 forks=$4; shift 4
    $M --label "promfleet $label N=$n forks=$forks" --timeout 900 --log "$dir/promfleet-$label.log" -- \
        "$PF" exporters --playbook "$REPO/playbooks/exporters.yml" -i "$dir/promfleet.yml" \
        --known-hosts "$FLEET_KNOWN_HOSTS" --state-dir "$dir/state" --no-agent \
        --forks "$forks" -q "$@" || true
}

ansible() {
    local dir=$1 n=$2 forks=$3 label=$4
    grep -v -e '^deploy_dir:' -e '^compose_command:' "$REPO/templates/defaults.yml" > "$dir/defaults.yml"
    sed -e 's/host\.name/inventory_hostname/g' -e 's/host\.group/fleet_group/g' \
        "$REPO/templates/exporters/docker-compose.yml" | sed "1i #jinja2: trim_blocks: False" > "$dir/docker-compose.yml.j2"
    ANSIBLE_PIPELINING=True ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_FORKS=$forks \
    ANSIBLE_LOCAL_TEMP=$dir/ansible-tmp ANSIBLE_SSH_CONTROL_PATH_DIR=$dir/cp \
    ANSIBLE_RETRY_FILES_ENABLED=False ANSIBLE_NOCOLOR=1 \
    $M --label "ansible $label N=$n forks=$forks" --timeout 1200 --log "$dir/ansible-$label-f$forks.log" -- \
        "$ANSIBLE" -i "$dir/ansible.yml" "$REPO/benches/ansible/exporters.yml" \
        -e "bench_dir=$dir" || true
}

for n in $HOSTS; do
    dir=$OUT/n$n
    start_fleet "$dir" "$n"
    floor "$dir" "$n"
    promfleet "$dir" "$n" first "$FORKS"
    check_services $((2 * n)) "promfleet first N=$n"
    promfleet "$dir" "$n" rerun "$FORKS"
    floor "$dir" "$n" curve25519-sha256
    stop_fleet
    for an in $ANSIBLE_HOSTS; do
        [ "$an" = "$n" ] || continue
        for f in $ANSIBLE_FORKS; do
            adir=$OUT/n$n-ansible-f$f
            start_fleet "$adir" "$n"
            ansible "$adir" "$n" "$f" first
            check_services $((2 * n)) "ansible first N=$n forks=$f"
            if [ "$f" = "$(echo $ANSIBLE_FORKS | tr ' ' '\n' | tail -1)" ]; then
                ansible "$adir" "$n" "$f" rerun
            fi
            stop_fleet
        done
    done
done

for n in $SCALE; do
    dir=$OUT/scale$n
    start_fleet "$dir" "$n"
    promfleet "$dir" "$n" first 100
    check_services $((2 * n)) "promfleet first N=$n"
    promfleet "$dir" "$n" rerun 100
    stop_fleet
done

# MaxStartups: N hosts, an sshd that starts refusing at START unauthenticated connections.
if [ -n "$MAXSTARTUPS" ]; then
    IFS=: read -r n ms_start ms_rate ms_full <<< "$MAXSTARTUPS"
    # forks:retries — the default 3 attempts, then a bigger retry budget.
    for fr in 100:3 $n:3 100:10; do
        f=${fr%:*} r=${fr#*:}
        dir=$OUT/maxstartups-f$f-r$r
        start_fleet "$dir" "$n" --max-startups "$ms_start:$ms_rate:$ms_full"
        promfleet "$dir" "$n" "maxstartups-$ms_start:$ms_rate:$ms_full-retries$r" "$f" --retries "$r"
        check_services $((2 * n)) "promfleet MaxStartups forks=$f retries=$r"
        refused=$(grep -c 'drop connection' "$dir/limited-sshd/sshd.log" || true)
        unreachable=$(grep -c '^UNREACHABLE' "$dir"/promfleet-maxstartups-*.log || true)
        echo "{\"label\": \"MaxStartups $ms_start:$ms_rate:$ms_full N=$n forks=$f retries=$r\", \"refused_by_sshd\": $refused, \"hosts_unreachable\": $unreachable}" >> "$RESULTS"
        stop_fleet
    done
fi

echo "{\"label\": \"total benchmark runtime\", \"wall_s\": $(( $(date +%s) - BENCH_START ))}" >> "$RESULTS"
python3 "$REPO/benches/table.py" "$RESULTS"
