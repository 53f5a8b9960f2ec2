#!/usr/bin/env python3
"""Markdown table (with ratios) from benches/fleet.sh's results.jsonl."""
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
