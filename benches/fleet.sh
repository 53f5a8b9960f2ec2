#!/bin/bash
# promfleet vs Ansible vs bare OpenSSH on a loopback fleet (one machine, one run).
# Usage: benches/fleet.sh [--hosts "100 500"] [--ansible-hosts "100"] [--ansible-forks "5 50"]
#                         [--scale 1000] [--max-startups 300:10:30:20] [--forks 50] [--out DIR]
#                         [--reruns 3]
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
RERUNS=3
OUT=/tmp/promfleet-bench
while [ $# -gt 0 ]; do
    case $1 in
        --hosts) HOSTS=$2; shift 2 ;;
        --ansible-hosts) ANSIBLE_HOSTS=$2; shift 2 ;;
        --ansible-forks) ANSIBLE_FORKS=$2; shift 2 ;;
        --scale) SCALE=$2; shift 2 ;;
        --max-startups) MAXSTARTUPS=$2; shift 2 ;;
        --forks) FORKS=$2; shift 2 ;;
        --reruns) RERUNS=$2; shift 2 ;;
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

# PROMFLEET=/path/to/promfleet measures that binary (e.g. a build of another commit) instead
# of building this tree's.
if [ -n "${PROMFLEET:-}" ]; then
    PF=$PROMFLEET
else
    cargo build --release --bin promfleet >&2
    PF=$CARGO_TARGET_DIR/release/promfleet
fi
# BENCH_FLEET=/path/to/bench-fleet likewise (e.g. while another build holds the target dir).
if [ -n "${BENCH_FLEET:-}" ]; then
    BF=$BENCH_FLEET
else
    cargo build -p testkit --bin bench-fleet >&2
    BF=$CARGO_TARGET_DIR/debug/bench-fleet
fi
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
    # The fleet's inventory asks `node_exporter_host_mount: ro,rslave`, which needs `/` shared
    # or slave; on a machine whose `/` is private (another job may have made it so) preflight
    # rightly blocks every host. Ask `ro` then, what preflight itself would choose there.
    if [ "$(findmnt -no PROPAGATION / 2>/dev/null)" = private ]; then
        sed -i 's/node_exporter_host_mount: "ro,rslave"/node_exporter_host_mount: "ro"/' "$dir/promfleet.yml"
        echo "note: / is private here: the inventory asks node_exporter_host_mount: ro" | tee "$dir/NOTE" >&2
    fi
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

# What promfleet (russh 0.65) negotiates with this sshd: russh prefers mlkem768x25519-sha256,
# which OpenSSH 9.2 lacks, so curve25519-sha256; chacha20-poly1305 (an AEAD cipher, so no
# separate MAC: sshd logs "MAC: <implicit>"); no compression. The `negotiated` step below reads
# it from a DEBUG sshd's log on every run instead of trusting this comment.
RUSSH_KEX=curve25519-sha256
RUSSH_CIPHER=chacha20-poly1305@openssh.com
# ssh options of the like-for-like floor: promfleet's key exchange, cipher and compression.
LIKE_RUSSH="-o KexAlgorithms=$RUSSH_KEX -o Ciphers=$RUSSH_CIPHER -o Compression=no"

ssh_cmd() {
    echo "ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes \
        -o ConnectTimeout=10 -o LogLevel=ERROR -o UserKnownHostsFile=$FLEET_KNOWN_HOSTS \
        -i $FLEET_KEY -l $FLEET_USER"
}

# floor DIR N [like-russh]: one OpenSSH `ssh host true` per host, $FORKS at a time. OpenSSH
# 9.2 picks sntrup761x25519-sha512 by default; `like-russh` forces promfleet's algorithms.
floor() {
    local dir=$1 n=$2 like=${3:-} label="floor ssh true" opt=""
    if [ -n "$like" ]; then label="floor ssh true kex=$RUSSH_KEX"; opt=$LIKE_RUSSH; fi
    sshd_mark
    $M --label "$label N=$n P=$FORKS" --timeout 600 --log "$dir/floor.log" -- \
        sh -c "xargs -P $FORKS -I{} $(ssh_cmd) $opt -p $FLEET_PORT {} true < $dir/hosts.txt" || true
    sshd_count "$label N=$n" "$n"
}

# floor_work DIR N: the work of any first deploy on this rig, done by hand: per host, one ssh
# with promfleet's algorithms that writes the compose file promfleet rendered for that host
# and runs the compose command's `up -d` (no checks, no atomic write, no /metrics check, no
# Consul). It runs after promfleet's runs, on hosts reset first (compose down, deploy dir
# removed: not timed), so it starts from what promfleet's first run started from. Its ratio
# to the curve25519 floor is what the rig's own work costs; promfleet's first run over it is
# promfleet's overhead (table.py prints both).
floor_work() {
    local dir=$1 n=$2 label="work floor ssh write+up kex=$RUSSH_KEX"
    python3 - "$dir/promfleet.yml" > "$dir/work.txt" <<'PY'
import re, sys
for line in open(sys.argv[1]):
    m = re.search(r"ip: ([0-9.]+), vars: \{ deploy_dir: ([^,]+),", line)
    if m:
        print(m.group(1), m.group(2))
PY
    mkdir -p "$dir/work"
    local ssh; ssh="$(ssh_cmd) $LIKE_RUSSH -p $FLEET_PORT"
    while read -r ip d; do
        cp "$d/docker-compose.yml" "$dir/work/$ip.yml"
        $ssh "$ip" "cd '$d' && '$dir/compose' -f docker-compose.yml down >/dev/null 2>&1; rm -rf '$d'" < /dev/null || true
    done < "$dir/work.txt"
    cat > "$dir/work-one.sh" <<SH
#!/bin/sh
# work-one IP DIR: write the host's compose file and bring it up, in one ssh.
exec $ssh "\$1" "mkdir -p '\$2' && cat > '\$2/docker-compose.yml' && cd '\$2' && '$dir/compose' -f docker-compose.yml up -d" < "$dir/work/\$1.yml"
SH
    chmod +x "$dir/work-one.sh"
    sshd_mark
    $M --label "$label N=$n P=$FORKS" --timeout 600 --log "$dir/floor-work.log" -- \
        sh -c "xargs -P $FORKS -L1 $dir/work-one.sh < $dir/work.txt" || true
    sshd_count "$label N=$n" "$n"
    # The stand-in prints one "Creating … done" per service it started: two per host.
    local up; up=$(grep -c 'Creating .* done' "$dir/floor-work.log" || true)
    if [ "$up" != $((2 * n)) ]; then
        echo "{\"label\": \"$label check\", \"error\": \"$up services started, want $((2 * n))\"}" >> "$RESULTS"
    fi
}

# SSH connections and session channels per host of one run, from the shared sshd's VERBOSE log
# (one "Accepted publickey" per authenticated connection, one "Starting session:" per exec or
# subsystem channel): sshd_mark before the run, sshd_count LABEL N after it.
SSHD_MARK=0
sshd_mark() { SSHD_MARK=$(wc -l < "$FLEET_ROOT/.sshd/shared/sshd.log"); }
sshd_count() {
    local label=$1 n=$2 conns chans
    conns=$(tail -n +$((SSHD_MARK + 1)) "$FLEET_ROOT/.sshd/shared/sshd.log" | grep -c 'Accepted publickey' || true)
    chans=$(tail -n +$((SSHD_MARK + 1)) "$FLEET_ROOT/.sshd/shared/sshd.log" | grep -c 'Starting session:' || true)
    # Runs against another sshd (MaxStartups) leave the shared one's log alone.
    [ "$conns" -gt 0 ] || return 0
    echo "{\"label\": \"ssh per host: $label\", \"connections\": $conns, \"channels\": $chans, \"hosts\": $n, \"connections_per_host\": $(python3 -c "print(round($conns/$n, 2))"), \"channels_per_host\": $(python3 -c "print(round($chans/$n, 2))")}" >> "$RESULTS"
}

# negotiated DIR: the algorithms promfleet and both floors' ssh actually negotiate, read from a
# second sshd (a copy of the fleet's, LogLevel DEBUG1, own port) that logs "kex: algorithm:",
# "kex: host key algorithm:" and "kex: client->server cipher: … MAC: … compression: …".
negotiated() {
    local dir=$1 d=$1/debug-sshd port host pid
    mkdir -p "$d"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0", 0)); print(s.getsockname()[1])')
    sed -e "s/^ListenAddress .*/ListenAddress 0.0.0.0:$port/" -e "s/^LogLevel .*/LogLevel DEBUG1/" \
        -e "s|^PidFile .*|PidFile $d/sshd.pid|" "$FLEET_ROOT/.sshd/shared/sshd_config" > "$d/sshd_config"
    sed "s/]:$FLEET_PORT /]:$port /" "$FLEET_KNOWN_HOSTS" > "$d/known_hosts"
    sed "s/port: $FLEET_PORT, /port: $port, /" "$dir/promfleet.yml" > "$d/promfleet.yml"
    host=$(grep -o 'name: [^,}]*' "$d/promfleet.yml" | head -1 | cut -d' ' -f2)
    /usr/sbin/sshd -D -f "$d/sshd_config" -E "$d/sshd.log" &
    pid=$!
    for _ in $(seq 50); do [ -s "$d/sshd.pid" ] && break; sleep 0.1; done
    local ip
    ip=$(head -1 "$dir/hosts.txt")
    for who in promfleet floor-default floor-like-russh; do
        : > "$d/sshd.log"
        case $who in
            promfleet) timeout 60 "$PF" exec -i "$d/promfleet.yml" -l "$host" --known-hosts "$d/known_hosts" \
                           --state-dir "$d/state" --no-agent -- true >/dev/null 2>&1 || true ;;
            floor-default) timeout 60 $(ssh_cmd | sed "s|$FLEET_KNOWN_HOSTS|$d/known_hosts|") -p "$port" "$ip" true || true ;;
            floor-like-russh) timeout 60 $(ssh_cmd | sed "s|$FLEET_KNOWN_HOSTS|$d/known_hosts|") $LIKE_RUSSH -p "$port" "$ip" true || true ;;
        esac
        sleep 0.3
        python3 - "$d/sshd.log" "$who" >> "$RESULTS" <<'PY'
import json, re, sys
log = open(sys.argv[1], errors="replace").read()
def grab(pat):
    m = re.search(pat, log)
    return m.group(1) if m else None
print(json.dumps({"label": f"negotiated: {sys.argv[2]}",
    "kex": grab(r"kex: algorithm: (\S+)"),
    "host_key": grab(r"kex: host key algorithm: (\S+)"),
    "cipher": grab(r"kex: client->server cipher: (\S+)"),
    "mac": grab(r"kex: client->server cipher: \S+ MAC: (\S+)"),
    "compression": grab(r"kex: client->server cipher: .* compression: (\S+)")}))
PY
    done
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

promfleet() {
    local dir=$1 n=$2 label=$3 forks=$4; shift 4
    sshd_mark
    $M --label "promfleet $label N=$n forks=$forks" --timeout 900 --log "$dir/promfleet-$label.log" -- \
        "$PF" exporters --playbook "$REPO/playbooks/exporters.yml" -i "$dir/promfleet.yml" \
        --known-hosts "$FLEET_KNOWN_HOSTS" --state-dir "$dir/state" --no-agent \
        --forks "$forks" -q "$@" || true
    sshd_count "promfleet $label N=$n" "$n"
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

# Per N: the curve25519 floor right before the first run and right after each re-run, so each
# promfleet run has a floor measured next to it under about the same load (table.py divides
# by the mean of the floors either side of it: the load on this shared machine drifts
# several-fold within minutes).
for n in $HOSTS; do
    dir=$OUT/n$n
    start_fleet "$dir" "$n"
    floor "$dir" "$n"
    floor "$dir" "$n" like-russh
    promfleet "$dir" "$n" first "$FORKS"
    check_services $((2 * n)) "promfleet first N=$n"
    for _ in $(seq "$RERUNS"); do
        promfleet "$dir" "$n" rerun "$FORKS"
        floor "$dir" "$n" like-russh
    done
    floor_work "$dir" "$n"
    floor "$dir" "$n" like-russh
    if [ "$n" = "$(echo $HOSTS | cut -d' ' -f1)" ]; then negotiated "$dir"; fi
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
