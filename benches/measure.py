#!/usr/bin/env python3
"""Run one command under measurement and append one JSON line to a results file.

Measures: wall time; CPU (user+sys) of the whole process tree (getrusage of waited-for
children, which includes every descendant its parent reaped: Ansible's forks, ssh, python
modules); CPU of the whole machine (/proc/stat, so the remote side - sshd, shells, the
compose stand-in - is counted too); peak RSS of the largest single process (ru_maxrss) and
peak summed RSS of the tree (sampled from /proc every 250 ms).

Usage: measure.py --label L --results FILE --timeout S -- CMD ARGS...
"""
import argparse, json, os, resource, signal, subprocess, sys, threading, time

def machine_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / hz

def tree_rss_kib(root):
    parent = {}
    rss = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            fields = s[s.rindex(")") + 2:].split()
            parent[int(d)] = int(fields[1])
            rss[int(d)] = int(fields[21]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
        except (OSError, ValueError):
            pass
    keep = {root}
    changed = True
    while changed:
        changed = False
        for p, pp in parent.items():
            if pp in keep and p not in keep:
                keep.add(p)
                changed = True
    return sum(rss.get(p, 0) for p in keep)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--log")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    log = open(a.log, "wb") if a.log else subprocess.DEVNULL
    load0 = os.getloadavg()[0]
    busy0 = machine_busy()
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    peak = [0]
    stop = threading.Event()
    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss_kib(p.pid))
            stop.wait(0.25)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    timed_out = False
    try:
        rc = p.wait(timeout=a.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(p.pid, signal.SIGKILL)
        rc = p.wait()
    wall = time.monotonic() - t0
    stop.set()
    th.join()
    busy = machine_busy() - busy0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    rec = {
        "label": a.label, "rc": rc, "timed_out": timed_out,
        "wall_s": round(wall, 2),
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
        "machine_cpu_s": round(busy, 2),
        "max_rss_mib": round(ru.ru_maxrss / 1024, 1),
        "tree_rss_mib": round(peak[0] / 1024, 1),
        # Other work on the machine skews every number: record the load around the run.
        "load1_before": load0,
        "load1_after": os.getloadavg()[0],
    }
    with open(a.results, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec), file=sys.stderr)
    sys.exit(0 if rc == 0 and not timed_out else 1)

main()
