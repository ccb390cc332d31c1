#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# I/O scheduler benchmark: `dwscale io bench` against fio on the same file, in the same run,
# O_DIRECT on a file on the real disk, the median of several alternating runs, ratios printed.
#   overhead     4k randread IOPS vs fio io_uring at depth 1 and 32 (goal >= 0.95), and with
#                io_uring off vs fio psync at numjobs = depth (goal >= 0.95)
#   isolation    High 4k QD1 randread against a Low 128k read flood at depth 32: High p99 vs High
#                alone (goal <= 3x), Low MiB/s vs Low alone (goal >= 0.6x); the same mix through
#                fio with kernel ioprio for comparison, and the frontier low_cap 1..16 sets
#                on this disk (High p99 and Low MiB/s against Low alone at that queue depth)
#   starvation   High saturating (QD 64 over depth 32) with a Low reader: longest Low wait
#                (goal <= 1 s)
# Peak RSS of dwscale is printed for each case. Run by bench/run.sh (make bench).
#   bench/io.sh [--quick]      env: DW_BENCH_IO_DIR (default bench/out/io-data), DW_BENCH_IO_SIZE
set -euo pipefail
top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
build=${DW_BENCH_BUILD:-$top/build-release}
. "$top/bench/build.bash"
dw_bench_build dwscale
if ! command -v fio >/dev/null; then
	echo "fio not found: install it (scripts/install-deps.sh --bench)" >&2
	exit 1
fi
dir=${DW_BENCH_IO_DIR:-$top/bench/out/io-data}
mkdir -p "$dir"
exec /usr/bin/python3 - "$build/dwscale" "$dir" "${DW_BENCH_IO_SIZE:-1G}" "$@" <<'PY'
import json, os, statistics, subprocess, sys

dwscale, data_dir, size = sys.argv[1], sys.argv[2], sys.argv[3]
quick = "--quick" in sys.argv[4:]
SECS = 2 if quick else 5
REPEATS = 1 if quick else 5
path = os.path.join(data_dir, "bench.dat")


def run(cmd):
    """Run cmd; return its stdout and its own peak RSS in KiB (wait4 on that child)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.stdout.read(), p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{err}")
    return out, ru.ru_maxrss


def dw(*args):
    out, rss = run([dwscale, "io", "bench", path, "--size", size, "--seconds", str(SECS),
                    "--direct", "--json", *args])
    return json.loads(out), rss


def fio(*jobs, numjobs=1):
    cmd = ["fio", "--output-format=json", "--direct=1", "--time_based", f"--runtime={SECS}",
           f"--filename={path}", f"--size={size}", "--group_reporting=0"]
    for j in jobs:
        cmd += [f"--name={j['name']}", f"--rw={j['rw']}", f"--bs={j['bs']}",
                f"--ioengine={j['engine']}", f"--iodepth={j.get('qd', 1)}",
                f"--numjobs={j.get('numjobs', 1)}"]
        if j.get("numjobs", 1) > 1:
            cmd += ["--group_reporting"]
        for k in ("prioclass", "prio"):
            if k in j:
                cmd += [f"--{k}={j[k]}"]
    out, _ = run(cmd)
    res = {}
    for job in json.loads(out)["jobs"]:
        r = job["read"]
        pct = r["clat_ns"].get("percentile", {})
        e = res.setdefault(job["jobname"], {"iops": 0, "mib_s": 0, "p99_us": 0})
        e["iops"] += r["iops"]
        e["mib_s"] += r["bw_bytes"] / 1048576
        e["p99_us"] = max(e["p99_us"], pct.get("99.000000", 0) / 1000)
    return res


def med(xs):
    return statistics.median(xs)


def job(j, tier):
    return next(x for x in j["jobs"] if x["tier"] == tier)


# Lay the file out once (fio and dwscale then read the same blocks).
dw("--rw", "randread", "--depth", "1", "--seconds", "1")
print(f"file {path} size {size}, {SECS} s per run, median of {REPEATS}, O_DIRECT, "
      f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
peak = {}
fails = []


def check(name, ok):
    if not ok:
        fails.append(name)
    return "ok" if ok else "MISSED"


print("\n-- overhead: 4k randread IOPS")
print(f"{'case':34} {'dwscale':>10} {'fio':>10} {'ratio':>7}  goal")
for label, dargs, fjob in [
    ("io_uring depth 1", ["--engine", "io_uring", "--depth", "1"],
     {"name": "f", "rw": "randread", "bs": "4k", "engine": "io_uring", "qd": 1}),
    ("io_uring depth 32", ["--engine", "io_uring", "--depth", "32"],
     {"name": "f", "rw": "randread", "bs": "4k", "engine": "io_uring", "qd": 32}),
    ("psync depth 1 vs numjobs 1", ["--engine", "psync", "--depth", "1"],
     {"name": "f", "rw": "randread", "bs": "4k", "engine": "psync", "numjobs": 1}),
    ("psync depth 32 vs numjobs 32", ["--engine", "psync", "--depth", "32"],
     {"name": "f", "rw": "randread", "bs": "4k", "engine": "psync", "numjobs": 32}),
]:
    d, f = [], []
    for i in range(REPEATS):
        # alternate who goes first, so drift in the disk's speed hits both alike
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for who in order:
            if who == 0:
                j, rss = dw("--rw", "randread", "--bs", "4k", *dargs)
                d.append(j["jobs"][0]["iops"])
                peak[label] = max(peak.get(label, 0), rss)
            else:
                f.append(fio(fjob)["f"]["iops"])
    r = med(d) / med(f)
    print(f"{label:34} {med(d):10.0f} {med(f):10.0f} {r:7.3f}  >= 0.95 {check(label, r >= 0.95)}")

print("\n-- isolation: High 4k QD1 randread vs Low 128k read flood offered at depth 32")
hp, lo, mix_h, mix_l, fio_h, fio_l, fio_mix_h, fio_mix_l = [], [], [], [], [], [], [], []
for i in range(REPEATS):
    # Each round measures alone and mixed back to back, the mixed run first in every other
    # round, so that each round's ratios compare the disk with itself: this virtual disk's
    # speed drifts from one minute to the next by more than the goals' margins.
    def alone():
        j, rss = dw("--depth", "32", "--mix", "high:randread:4k:1")
        hp.append(job(j, "high")["lat_p99_us"])
        j, rss2 = dw("--depth", "32", "--mix", "low:read:128k:32")
        lo.append(job(j, "low")["mib_s"])
        return max(rss, rss2)

    def mixed():
        j, rss3 = dw("--depth", "32", "--mix", "high:randread:4k:1,low:read:128k:32")
        mix_h.append(job(j, "high")["lat_p99_us"])
        mix_l.append(job(j, "low")["mib_s"])
        return rss3

    if i % 2 == 0:
        peak["isolation"] = max(alone(), mixed())
    else:
        peak["isolation"] = max(mixed(), alone())
    fh = {"name": "high", "rw": "randread", "bs": "4k", "engine": "io_uring", "qd": 1,
          "prioclass": 1, "prio": 0}
    fl = {"name": "low", "rw": "read", "bs": "128k", "engine": "io_uring", "qd": 32,
          "prioclass": 3, "prio": 7}
    fio_h.append(fio(fh)["high"]["p99_us"])
    fio_l.append(fio(fl)["low"]["mib_s"])
    m = fio(fh, fl)
    fio_mix_h.append(m["high"]["p99_us"])
    fio_mix_l.append(m["low"]["mib_s"])
# the median of each round's own ratio (see above); the ratio of medians is printed too
rh = med([m / a for m, a in zip(mix_h, hp)])
rl = med([m / a for m, a in zip(mix_l, lo)])
print(f"{'':24} {'High p99 us':>12} {'Low MiB/s':>10}")
print(f"{'dwscale alone':24} {med(hp):12.0f} {med(lo):10.1f}")
print(f"{'dwscale mixed':24} {med(mix_h):12.0f} {med(mix_l):10.1f}")
print(f"{'fio alone':24} {med(fio_h):12.0f} {med(fio_l):10.1f}")
print(f"{'fio mixed (ioprio)':24} {med(fio_mix_h):12.0f} {med(fio_mix_l):10.1f}")
print("dwscale per round, High p99 mixed/alone: "
      + " ".join(f"{m / a:.2f}" for m, a in zip(mix_h, hp))
      + "; Low MiB/s mixed/alone: " + " ".join(f"{m / a:.2f}" for m, a in zip(mix_l, lo)))
print(f"dwscale High p99 mixed/alone {rh:.3f}, median of the rounds' ratios "
      f"(ratio of the medians {med(mix_h) / med(hp):.2f}) (goal <= 3) "
      f"{check('isolation high', rh <= 3)}")
print(f"dwscale Low MiB/s mixed/alone {rl:.3f}, median of the rounds' ratios "
      f"(ratio of the medians {med(mix_l) / med(lo):.2f}) (goal >= 0.6) "
      f"{check('isolation low', rl >= 0.6)}")
print(f"fio     High p99 mixed/alone {med(fio_mix_h) / med(fio_h):.2f}, "
      f"Low MiB/s mixed/alone {med(fio_mix_l) / med(fio_l):.2f}")

# The trade-off the disk itself sets: with Low capped at c ops in flight while High is active,
# High waits behind at most c Low reads inside the device, and Low cannot do better than it does
# alone at queue depth c. Printed so that a missed isolation goal can be read against it.
print("\n-- isolation frontier: Low capped at c in flight while High is active (low_cap)")
print(f"{'low_cap':>8} {'High p99 mixed/alone':>21} {'Low mixed/alone':>16} {'Low alone at QD c':>18}")
for cap in (1, 2, 4, 8, 16):
    hh, ll, la = [], [], []
    for i in range(max(1, REPEATS // 2)):
        j, _ = dw("--depth", "32", "--set", f"low_cap={cap}", "--mix",
                  "high:randread:4k:1,low:read:128k:32")
        hh.append(job(j, "high")["lat_p99_us"])
        ll.append(job(j, "low")["mib_s"])
        j, _ = dw("--depth", str(cap), "--mix", f"low:read:128k:{cap}")
        la.append(job(j, "low")["mib_s"])
    print(f"{cap:8d} {med(hh) / med(hp):21.2f} {med(ll) / med(lo):16.2f} "
          f"{med(la) / med(lo):18.2f}")

print("\n-- starvation: High saturating (4k QD 64 over depth 32), Low 128k QD 4")
waits = []
for i in range(REPEATS):
    j, rss = dw("--depth", "32", "--mix", "high:randread:4k:64,low:read:128k:4")
    waits.append(job(j, "low")["longest_wait_us"] / 1e6)
    peak["starvation"] = rss
    hi_iops = job(j, "high")["iops"]
    lo_iops = job(j, "low")["iops"]
w = max(waits)
print(f"longest Low wait {w:.3f} s (worst of {REPEATS}; goal <= 1 s) {check('starvation', w <= 1.0)}"
      f"; last run High {hi_iops:.0f} IOPS, Low {lo_iops:.0f} IOPS")

print("\npeak RSS (KiB): " + ", ".join(f"{k} {v}" for k, v in peak.items()))
print(f"load average at the end {os.getloadavg()[0]:.2f}: figures from a loaded machine "
      "say more about the machine than about dwscale")
print("goals missed: " + (", ".join(fails) if fails else "none"))
PY
