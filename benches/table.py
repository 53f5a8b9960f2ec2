#!/usr/bin/env python3
"""Markdown table (with ratios) from benches/fleet.sh's results.jsonl, then the issue-14 summary:
both floors, promfleet's ratios to the like-for-like (curve25519) floor, peak RSS at the largest
N, SSH connections and channels per host, and the negotiated algorithms."""
import json, re, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]

def n_of(r):
    m = re.search(r"N=(\d+)", r["label"])
    return int(m.group(1)) if m else None

floor, floor_c, best_ansible = {}, {}, {}
for r in rows:
    if "wall_s" not in r or n_of(r) is None:
        continue
    n = n_of(r)
    if r["label"].startswith("floor ssh true kex="):
        floor_c[n] = min(floor_c.get(n, 1e9), r["wall_s"])
    elif r["label"].startswith("floor"):
        floor[n] = min(floor.get(n, 1e9), r["wall_s"])
    if r["label"].startswith("ansible first"):
        best_ansible[n] = min(best_ansible.get(n, 1e9), r["wall_s"])

print("| run | rc | wall s | CPU s (tree) | CPU s (machine) | max RSS MiB | tree RSS MiB | ×floor | ×floor (curve25519) | ×best Ansible |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if "wall_s" not in r or "rc" not in r:
        continue
    n = n_of(r)
    fl = r["label"].startswith("floor")
    vs_floor = f"{r['wall_s'] / floor[n]:.2f}" if n in floor and not fl else ""
    vs_floor_c = f"{r['wall_s'] / floor_c[n]:.2f}" if n in floor_c and not fl else ""
    vs_ans = ""
    if r["label"].startswith("promfleet") and n in best_ansible:
        vs_ans = f"1/{best_ansible[n] / r['wall_s']:.1f}"
    rc = "timeout" if r.get("timed_out") else r["rc"]
    print(f"| {r['label']} | {rc} | {r['wall_s']} | {r['cpu_s']} | {r['machine_cpu_s']} | {r['max_rss_mib']} | {r['tree_rss_mib']} | {vs_floor} | {vs_floor_c} | {vs_ans} |")
print()
for r in rows:
    if "rc" not in r:
        print("- " + ", ".join(f"{k}: {v}" for k, v in r.items()))

def rec(prefix, n=None):
    for r in rows:
        if r["label"].startswith(prefix) and (n is None or n_of(r) == n) and "rc" in r:
            return r
    return None

def extra(prefix):
    return [r for r in rows if r["label"].startswith(prefix) and "rc" not in r]

print()
print("## Summary (issue 14 targets)")
print()
for n in sorted(floor_c):
    d, c = floor.get(n), floor_c[n]
    print(f"N={n}: floor, OpenSSH default (sntrup761x25519): {d} s; floor, promfleet's algorithms (curve25519): {c} s"
          + (f" ({d / c:.1f}x faster)" if d else ""))
    for run, target in (("first", 1.5), ("rerun", 1.2)):
        r = rec(f"promfleet {run} N={n} ")
        if r:
            ratio = r["wall_s"] / c
            verdict = "met" if ratio <= target else "NOT met"
            vs_d = f", {r['wall_s'] / d:.2f}x the default floor" if d else ""
            print(f"  promfleet {run}: {r['wall_s']} s = {ratio:.2f}x the curve25519 floor (target <= {target}x: {verdict}){vs_d}")
scale = [r for r in rows if r["label"].startswith("promfleet") and "rc" in r and n_of(r) and n_of(r) >= 1000]
for r in scale:
    verdict = "met" if r["max_rss_mib"] < 100 else "NOT met"
    print(f"{r['label']}: peak RSS {r['max_rss_mib']} MiB (target < 100 MiB: {verdict}), wall {r['wall_s']} s")
print()
print("SSH per host (shared sshd's log: authenticated connections / session channels):")
for r in extra("ssh per host: "):
    print(f"  {r['label'][len('ssh per host: '):]}: {r['connections_per_host']} connections, {r['channels_per_host']} channels")
print()
print("Negotiated (DEBUG1 sshd log):")
for r in extra("negotiated: "):
    print(f"  {r['label'][len('negotiated: '):]}: kex {r['kex']}, host key {r['host_key']}, cipher {r['cipher']}, MAC {r['mac']}, compression {r['compression']}")
