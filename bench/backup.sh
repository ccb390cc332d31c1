#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Backup benchmark: dwscale backup against restic and borg (Debian packages, both with
# compression) in the same run, on the same trees, on the same disk:
#   small  ~100k small files, ~500 MB (half random bytes, half text, so compression matters)
#   large  a few large files, ~1 GiB
# For each tool and tree: full backup, no-change incremental, restore into an empty directory;
# dwscale twice: through its I/O scheduler at Low priority (the default) and with
# --no-io-scheduler, to show what the scheduler costs, and a third time into an encrypted
# repository (AES-256-GCM) to show what encryption costs;
# median wall time of RUNS runs (each run on a fresh repository), peak RSS of the process.
# Ratios are dwscale / the faster peer for times and the smaller peer for RSS (lower is
# better), peer / dwscale for restore throughput (higher is better). Finally, four sources at
# once with the adaptive job limit against every fixed --jobs value.
#
# Caches are not dropped between steps (that needs root and affects every tool alike); all
# tools run with their defaults otherwise: restic always encrypts (repository v2, compression
# auto), borg runs with encryption none and zstd level 3 like dwscale, dwscale fsyncs.
#   bench/backup.sh                       full size, 3 runs
#   DW_BENCH_BACKUP_FILES=20000 DW_BENCH_BACKUP_SMALL_MB=100 DW_BENCH_BACKUP_LARGE_MB=256 \
#   DW_BENCH_BACKUP_RUNS=1 bench/backup.sh        a quick run
# Files live under $DW_BENCH_TMPDIR, else $TMPDIR, else /var/tmp, and are removed at the end;
# restored trees stay until every tool ran on a tree (see bench_tree), so the full-size run
# needs about 20 GB free there.
set -euo pipefail
top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
build=${DW_BENCH_BUILD:-$top/build-release}
. "$top/bench/build.bash"
dw_bench_build dwscale
for t in restic borg /usr/bin/time; do
	command -v "$t" >/dev/null || { echo "backup.sh: $t is not installed"; exit 1; }
done
base=${DW_BENCH_TMPDIR:-${TMPDIR:-/var/tmp}}
dir=$(mktemp -d "$base/dwscale-bench-backup.XXXXXX")
trap 'rm -rf "$dir"' EXIT
trap 'exit 130' INT TERM
echo "backup.sh: files in $dir; $(restic version | cut -d' ' -f1-2), $(borg --version)"

DW="$build/dwscale" DIR="$dir" /usr/bin/python3 - <<'EOF'
import os, random, shutil, statistics, subprocess, sys, time

DW, DIR = os.environ["DW"], os.environ["DIR"]
FILES = int(os.environ.get("DW_BENCH_BACKUP_FILES", 100000))
SMALL_MB = int(os.environ.get("DW_BENCH_BACKUP_SMALL_MB", 500))
LARGE_MB = int(os.environ.get("DW_BENCH_BACKUP_LARGE_MB", 1024))
RUNS = int(os.environ.get("DW_BENCH_BACKUP_RUNS", 3))
KEY = os.path.join(DIR, "backup.key")
subprocess.run([DW, "backup", "keygen", "-o", KEY], check=True, stderr=subprocess.DEVNULL)
ENV = dict(os.environ, RESTIC_PASSWORD="bench", BORG_PASSPHRASE="",
           BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes", BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")

def chunk(rng, n):
    # half incompressible, half text
    half = n // 2
    text = (b"the quick brown fox jumps over the lazy dog %d\n" % rng.randint(0, 9)) * (n // 40 + 1)
    return rng.randbytes(half) + text[: n - half]

def gen_small(root):
    rng = random.Random(1)
    avg = SMALL_MB * 1_000_000 // FILES
    for i in range(FILES):
        d = os.path.join(root, "d%03d" % (i // 1000), "e%02d" % (i % 1000 // 100))
        if i % 100 == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%06d" % i), "wb") as f:
            f.write(chunk(rng, rng.randint(1, 2 * avg)))

def gen_large(root):
    rng = random.Random(2)
    os.makedirs(root)
    n = 4
    for i in range(n):
        with open(os.path.join(root, "big%d" % i), "wb") as f:
            left = LARGE_MB * 1024 * 1024 // n
            while left:
                k = min(left, 8 << 20)
                f.write(chunk(rng, k))
                left -= k

def timed(cmd, cwd=None):
    """(seconds, peak RSS KiB) of one command, after writing back what earlier steps left."""
    os.sync()
    t = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], cwd=cwd, env=ENV,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if t.returncode != 0:
        sys.exit("command failed: %s\n%s" % (" ".join(cmd), t.stderr[-2000:]))
    last = t.stderr.strip().splitlines()[-1].split()
    return float(last[0]), int(last[1])

class Tool:
    def __init__(self, name):
        self.name = name
    def plain(self):
        # dwscale goes through its I/O scheduler at Low priority by default (as in a node);
        # "dwscale-plain" measures what the scheduler costs, "dwscale-enc" what encryption does
        if self.name == "dwscale-enc":
            return ["--key-file", KEY]
        return ["--no-io-scheduler"] if self.name == "dwscale-plain" else []
    def init(self, repo):
        if self.name.startswith("dwscale"):
            cmd = [DW, "backup", "init", repo]
            if self.name == "dwscale-enc":
                cmd += ["--encrypt", "--key-file", KEY]
        elif self.name == "restic":
            cmd = ["restic", "init", "--repo", repo, "--repository-version", "2"]
        else:
            cmd = ["borg", "init", "-e", "none", repo]
        subprocess.run(cmd, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def backup(self, repo, src, n):
        if self.name.startswith("dwscale"):
            return timed([DW, "backup", "create", src, "--repo", repo] + self.plain())
        if self.name == "restic":
            return timed(["restic", "-r", repo, "backup", "--compression", "auto", "-q", src])
        return timed(["borg", "create", "--compression", "zstd,3", "%s::b%d" % (repo, n), src])
    def restore(self, repo, target, n):
        os.makedirs(target)
        if self.name.startswith("dwscale"):
            return timed([DW, "backup", "restore", "latest", "--repo", repo, "--target", target]
                         + self.plain())
        if self.name == "restic":
            return timed(["restic", "-r", repo, "restore", "latest", "--target", target, "-q"])
        return timed(["borg", "extract", "%s::b%d" % (repo, n)], cwd=target)

def du(path):
    return sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(path) for f in fs)

def bench_tree(label, src):
    size = du(src)
    print("\n== %s tree: %d MB in %s" % (label, size // 1_000_000, src), flush=True)
    res = {}
    # Restored trees are removed only after every tool ran: on ext4 without a journal (as here)
    # the inode allocator skips inodes freed in the last seconds (minutes, while their inode
    # table block is dirty), and creating 100k files just after deleting 100k cost the next
    # restore, whichever tool it was, several times its time in kernel.
    restored = []
    for name in ("dwscale", "dwscale-plain", "dwscale-enc", "restic", "borg"):
        tool = Tool(name)
        full, inc, rest, rss, stored = [], [], [], [], 0
        for r in range(RUNS):
            repo = os.path.join(DIR, "repo-%s-%s-%d" % (label, name, r))
            target = os.path.join(DIR, "restore-%s-%s-%d" % (label, name, r))
            tool.init(repo)
            t, m = tool.backup(repo, src, 1); full.append(t); rss.append(m)
            t, m = tool.backup(repo, src, 2); inc.append(t); rss.append(m)
            t, m = tool.restore(repo, target, 2); rest.append(t); rss.append(m)
            stored = du(repo)
            shutil.rmtree(repo); restored.append(target)
        res[name] = dict(full=statistics.median(full), inc=statistics.median(inc),
                         restore=statistics.median(rest), rss=max(rss), stored=stored)
        x = res[name]
        print("%-13s full %7.2f s  no-change incr %6.2f s  restore %7.2f s (%6.1f MB/s)  "
              "peak RSS %7.1f MiB  repo %7.1f MB" % (name, x["full"], x["inc"], x["restore"],
              size / x["restore"] / 1e6, x["rss"] / 1024, x["stored"] / 1e6), flush=True)
    d = res["dwscale"]
    best = lambda k: min(res["restic"][k], res["borg"][k])
    print("ratios (dwscale / faster peer; restore: peer time / dwscale time; RSS: / smaller peer):")
    print("  full %.2f   no-change incremental %.2f   restore throughput %.2f   peak RSS %.2f" % (
        d["full"] / best("full"), d["inc"] / best("inc"), best("restore") / d["restore"],
        d["rss"] / best("rss")))
    p = res["dwscale-plain"]
    print("  I/O scheduler cost (dwscale / dwscale --no-io-scheduler): full %.2f   restore %.2f" % (
        d["full"] / p["full"], d["restore"] / p["restore"]))
    e = res["dwscale-enc"]
    print("  encryption cost (encrypted repository / plain one): full %.2f   restore %.2f" % (
        e["full"] / d["full"], e["restore"] / d["restore"]))
    for target in restored:
        shutil.rmtree(target)
    return res

def bench_adaptive(src_root):
    # four sources at once: the adaptive limit against every fixed job count
    subs = sorted(os.path.join(src_root, s) for s in os.listdir(src_root))[:4]
    size = sum(du(s) for s in subs)
    print("\n== four sources at once (%d MB): jobs limit" % (size // 1_000_000), flush=True)
    times = {}
    for jobs in ("1", "2", "4", "adaptive"):
        ts = []
        for r in range(RUNS):
            repo = os.path.join(DIR, "repo-conc-%s-%d" % (jobs, r))
            Tool("dwscale").init(repo)
            cmd = [DW, "backup", "create", *subs, "--repo", repo]
            if jobs != "adaptive":
                cmd += ["--jobs", jobs]
            ts.append(timed(cmd)[0])
            shutil.rmtree(repo)
        times[jobs] = statistics.median(ts)
        print("  --jobs %-8s %6.2f s  %6.1f MB/s" % (jobs, times[jobs], size / times[jobs] / 1e6))
    best = min(v for k, v in times.items() if k != "adaptive")
    print("ratio adaptive throughput / best fixed: %.2f" % (best / times["adaptive"]))

t0 = time.time()
small, large = os.path.join(DIR, "small"), os.path.join(DIR, "large")
gen_small(small)
gen_large(large)
print("generated trees in %.0f s; %d runs each, median" % (time.time() - t0, RUNS), flush=True)
bench_tree("small", small)
bench_tree("large", large)
big_src = os.path.join(DIR, "conc")
os.makedirs(big_src)
# four sources of the same shape, long enough for a controller that moves once a second: each
# holds a quarter of the small tree's top-level directories and one of the large files
dirs, bigs = sorted(os.listdir(small)), sorted(os.listdir(large))
for i in range(4):
    s = os.path.join(big_src, "s%d" % i)
    os.makedirs(s)
    for d in dirs[i::4]:
        os.rename(os.path.join(small, d), os.path.join(s, d))
    for b in bigs[i::4]:
        os.rename(os.path.join(large, b), os.path.join(s, b))
bench_adaptive(big_src)
EOF
