#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fabric simulator goals (issue: 10,000 nodes for a simulated hour within 10 minutes and 2 GiB;
# no false removal at 10 % loss over 24 simulated hours, Mesh at 500 and Federated at 10,000, and
# Star at its maximum of 1,000). Each run is `dwscale fabric sim ... --json` with seed 1; the
# 24 h runs go two at a time (one per core) and take about an hour on a quiet 2-core
# machine, which is why this is its own script: `bench/run.sh fabric_sim`, or `--quick` for
# one-hour versions of the long runs. --mode recommend keeps Mesh and Star in the topology under
# test (in auto they switch at 400 and 800 nodes). Run by bench/run.sh (make bench).
#   bench/fabric_sim.sh [--quick]
set -euo pipefail
top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
build=${DW_BENCH_BUILD:-$top/build-release}
. "$top/bench/build.bash"
dw_bench_build dwscale
exec /usr/bin/python3 - "$build/dwscale" "$@" <<'PY'
import json, subprocess, sys, time

dwscale = sys.argv[1]
quick = "--quick" in sys.argv[2:]
LONG = 3600 if quick else 86400


def sim(args):
    cmd = ["/usr/bin/time", "-f", "%M", dwscale, "fabric", "sim", "--loss", "0.1", "--seed", "1",
           "--json", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(p):
    out, err = p.communicate()
    if p.returncode != 0:
        sys.exit(f"fabric sim failed ({p.returncode}): {err}")
    j = json.loads(out)
    j["rss_mib"] = int(err.strip().splitlines()[-1]) / 1024
    return j


failed = []


def report(name, j, limit_s=None, limit_mib=None):
    ok = j["false_removals"] == 0 and j["views_agree"] and \
        j["final_size_min"] == j["final_size_max"] == j["nodes"]
    if limit_s is not None:
        ok = ok and j["wall_s"] <= limit_s and j["rss_mib"] <= limit_mib
    if not ok:
        failed.append(name)
    print(f"{name:<34} {j['seconds'] / 3600:5.0f} h  false removals {j['false_removals']}  "
          f"views agree {'yes' if j['views_agree'] else 'NO'} ({j['final_size_min']}.."
          f"{j['final_size_max']})  {j['wall_s']:7.1f} s  {j['rss_mib']:6.0f} MiB  "
          f"{'ok' if ok else 'MISSED'}", flush=True)


print("fabric sim, 10 % loss on every link, seed 1" + (" (--quick: 1 h runs)" if quick else ""))
report("federated 10000 (goal 600 s, 2 GiB)",
       result(sim(["--nodes", "10000", "--topology", "federated", "--seconds", "3600"])),
       600, 2048)
runs = [("mesh 500", ["--nodes", "500", "--topology", "mesh", "--mode", "recommend"]),
        ("star 1000", ["--nodes", "1000", "--topology", "star", "--mode", "recommend"]),
        ("federated 10000", ["--nodes", "10000", "--topology", "federated"])]
procs = []
for i, (name, args) in enumerate(runs):
    procs.append((name, sim([*args, "--seconds", str(LONG)])))
    if len(procs) == 2 or i == len(runs) - 1:  # two at a time, one per core
        for n, p in procs:
            report(n, result(p))
        procs = []
print("goals missed: " + ", ".join(failed) if failed else "goals met")
sys.exit(1 if failed else 0)
PY
