# SPDX-License-Identifier: MIT
"""dwscale backup, run as a user would: round trips compared file by file (content hash, mode,
owner, mtime in ns, symlink targets, hard-link groups), kill -9 at random points of create,
prune and restore followed by a plain rerun or `recover`, a killed create of a ~300 MB tree
resumed from its last checkpoint (re-reading at most one checkpoint's worth, measured from
outside the killed process), exact --dry-run bytes, and errors that change nothing.
"""
import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import time

import pytest

from conftest import run

BLOCK = "64K"  # small blocks: files of a few blocks stay cheap


def make_tree(root, rng, files=60, big=3):
    os.makedirs(root, exist_ok=True)
    dirs = [root]
    for i in range(8):
        d = os.path.join(rng.choice(dirs), f"dir{i}")
        os.makedirs(d, exist_ok=True)
        dirs.append(d)
    for i in range(files):
        p = os.path.join(rng.choice(dirs), f"f{i:03d}")
        with open(p, "wb") as f:
            f.write(rng.randbytes(rng.randint(0, 20000)))
        os.chmod(p, rng.choice([0o644, 0o600, 0o755, 0o444]))
        ns = rng.randint(1_000_000_000, 1_700_000_000) * 10**9 + rng.randint(0, 10**9 - 1)
        os.utime(p, ns=(ns, ns))
    for i in range(big):
        p = os.path.join(root, f"big{i}")
        with open(p, "wb") as f:
            f.write(rng.randbytes(rng.randint(200_000, 600_000)))
    os.symlink("f000-missing", os.path.join(root, "dangling"))
    os.symlink("big0", os.path.join(root, "to-big0"))
    if big:
        os.link(os.path.join(root, "big0"), os.path.join(dirs[-1], "big0-hardlink"))
    os.mkfifo(os.path.join(root, "fifo"))


def snapshot(root):
    """Every entry below root: (kind, mode, uid, gid, mtime_ns, size, sha256/target, link)."""
    out, inodes = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            extra, link = "", ""
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    extra = hashlib.sha256(f.read()).hexdigest()
                if st.st_nlink > 1:
                    link = inodes.setdefault((st.st_dev, st.st_ino), rel)
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                        st.st_gid, st.st_mtime_ns,
                        st.st_size if stat.S_ISREG(st.st_mode) else 0, extra, link)
    return out


def assert_same(want, got):
    assert want.keys() == got.keys(), (sorted(set(want) ^ set(got)))[:5]
    for k in want:
        assert want[k] == got[k], (k, want[k], got[k])


def mutate(root, rng):
    files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
             if f.startswith("f") or f.startswith("big")]
    files = [f for f in files if not os.path.islink(f) and os.path.isfile(f)]
    for p in rng.sample(files, 5):
        with open(p, "r+b") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(rng.randint(0, max(size - 1, 0)))
            f.write(b"changed")
    with open(os.path.join(root, f"new{rng.randint(0, 10**9)}"), "wb") as f:
        f.write(rng.randbytes(5000))


@pytest.fixture
def env(tmp_path, dwscale_bin):
    repo = str(tmp_path / "repo")
    r = run(dwscale_bin, "backup", "init", repo, "--block-size", BLOCK)
    assert r.returncode == 0, r.stderr
    return dwscale_bin, repo, tmp_path


def create(b, repo, *src, extra=()):
    r = run(b, "backup", "create", *src, "--repo", repo, "--json", *extra, timeout=300)
    assert r.returncode == 0, r.stderr
    done = [json.loads(x) for x in r.stdout.splitlines() if '"done"' in x]
    assert len(done) == len(src)
    return done


def listing(b, repo):
    r = run(b, "backup", "list", "--repo", repo, "--json")
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()]


def restore_check(b, repo, bid, target, want):
    r = run(b, "backup", "restore", bid, "--repo", repo, "--target", str(target), timeout=300)
    assert r.returncode == 0, r.stderr
    assert_same(want, snapshot(str(target)))


def test_round_trip_full_and_incremental(env):
    b, repo, tmp = env
    rng = random.Random(1)
    src = str(tmp / "src")
    make_tree(src, rng)
    s1 = snapshot(src)
    full = create(b, repo, src)[0]
    assert full["type"] == "full" and full["parent"] is None
    for key in ("id", "files", "bytes_read", "bytes_stored", "seconds"):
        assert key in full
    mutate(src, rng)
    s2 = snapshot(src)
    inc = create(b, repo, src)[0]
    assert inc["type"] == "incremental" and inc["parent"] == full["id"]
    assert inc["bytes_stored"] < full["bytes_stored"]
    assert inc["files_changed"] == 6  # 5 touched + 1 new
    none = create(b, repo, src)[0]
    assert none["bytes_read"] == 0 and none["blocks_new"] == 0

    restore_check(b, repo, full["id"], tmp / "r1", s1)
    restore_check(b, repo, inc["id"], tmp / "r2", s2)
    restore_check(b, repo, "latest", tmp / "r3", s2)
    r = run(b, "backup", "check", "--repo", repo, "--read-data", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["errors"] == 0
    chains = {x["chain"] for x in listing(b, repo)}
    assert chains == {full["id"]}


def test_errors_change_nothing(env):
    b, repo, tmp = env
    src = str(tmp / "src")
    make_tree(src, random.Random(2), files=5, big=0)
    bid = create(b, repo, src)[0]["id"]
    target = tmp / "busy"
    target.mkdir()
    (target / "keep").write_bytes(b"precious")
    r = run(b, "backup", "restore", bid, "--repo", repo, "--target", str(target))
    assert r.returncode == 1 and "not empty" in r.stderr
    assert (target / "keep").read_bytes() == b"precious"
    assert sorted(os.listdir(target)) == ["keep"]
    r = run(b, "backup", "restore", "no-such-id", "--repo", repo, "--target", str(tmp / "x"))
    assert r.returncode == 3
    r = run(b, "backup", "list", "--repo", str(tmp / "not-a-repo"))
    assert r.returncode == 3
    r = run(b, "backup", "create", src)
    assert r.returncode == 2 and "--repo" in r.stderr
    r = run(b, "backup", "create", str(tmp / "missing"), "--repo", repo)
    assert r.returncode == 3
    r = run(b, "backup", "init", repo)
    assert r.returncode == 1 and "not empty" in r.stderr
    r = run(b, "backup", "prune", "--repo", repo, "--max-size", "lots")
    assert r.returncode == 2
    assert len(listing(b, repo)) == 1


def test_several_sources_at_once(env):
    b, repo, tmp = env
    rng = random.Random(3)
    srcs = [str(tmp / f"src{i}") for i in range(3)]
    snaps = []
    for s in srcs:
        make_tree(s, rng, files=20, big=1)
        snaps.append(snapshot(s))
    done = create(b, repo, *srcs)
    ids = {d["source"]: d["id"] for d in done}
    for i, s in enumerate(srcs):
        restore_check(b, repo, ids[s], tmp / f"out{i}", snaps[i])


def test_concurrent_jobs_over_many_directories(env):
    """Four sources with many directories backed up as concurrent jobs, through the scheduler
    and with plain I/O: every job succeeds and restores byte-identical. (A directory
    descriptor closed twice once let one job's walk close a descriptor another job had just
    opened: "Bad file descriptor", or a read of the wrong file.)"""
    b, repo, tmp = env
    rng = random.Random(7)
    srcs = [str(tmp / f"many{i}") for i in range(4)]
    snaps = []
    for n, s in enumerate(srcs):
        for d in range(30 if n < 3 else 0):
            os.makedirs(os.path.join(s, f"d{d:02d}"))
            for k in range(60):
                with open(os.path.join(s, f"d{d:02d}", f"f{k}"), "wb") as f:
                    f.write(rng.randbytes(rng.randint(100, 3000)))
        if n == 3:  # large files keep the other jobs' reads waiting in the scheduler
            os.makedirs(s)
            for k in range(3):
                with open(os.path.join(s, f"big{k}"), "wb") as f:
                    f.write(os.urandom(24 << 20))
        snaps.append(snapshot(s))
    for extra in ((), ("--no-io-scheduler",)):
        for _ in range(3):
            done = create(b, repo, *srcs, extra=("--jobs", "4", *extra))
            assert all(d["type"] in ("full", "incremental") for d in done)
    ids = {d["source"]: d["id"] for d in done}
    for i, s in enumerate(srcs):
        restore_check(b, repo, ids[s], tmp / f"outm{i}", snaps[i])


def test_plain_io_and_scheduler_give_the_same_backup(env):
    """The default goes through the I/O scheduler; --no-io-scheduler uses plain I/O; both
    store the same tree and restore it byte-identical either way."""
    b, repo, tmp = env
    src = str(tmp / "src")
    make_tree(src, random.Random(7), files=40, big=2)
    want = snapshot(src)
    a = create(b, repo, src, extra=("--full", "--no-io-scheduler"))[0]
    c = create(b, repo, src, extra=("--full",))[0]
    for k in ("files", "bytes_read", "bytes_total", "blocks_new"):
        assert a[k] == c[k], k
    assert a["resumed"] is False and c["resumed"] is False
    r = run(b, "backup", "restore", a["id"], "--repo", repo, "--target", str(tmp / "o1"),
            "--no-io-scheduler")
    assert r.returncode == 0, r.stderr
    assert_same(want, snapshot(str(tmp / "o1")))
    restore_check(b, repo, c["id"], tmp / "o2", want)


def du(path):
    total = 0
    for sub in ("backups", "packs"):
        for d, _, fs in os.walk(os.path.join(path, sub)):
            total += sum(os.lstat(os.path.join(d, f)).st_size for f in fs)
    return total


def test_prune_dry_run_is_exact(env):
    b, repo, tmp = env
    rng = random.Random(4)
    src = str(tmp / "src")
    make_tree(src, rng, files=10, big=1)
    for i in range(4):
        create(b, repo, src, extra=("--full",) if i % 2 == 0 else ())
        mutate(src, rng)
    before = du(repo)
    r = run(b, "backup", "prune", "--repo", repo, "--keep-last", "1", "--dry-run", "--json")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    dry = lines[-1]
    assert dry["chains"] == 1 and dry["backups"] == 2
    assert [x["reasons"] for x in lines[:-1]] == ["keep-last"]
    assert du(repo) == before
    r = run(b, "backup", "prune", "--repo", repo, "--keep-last", "1", "--json")
    real = json.loads(r.stdout.splitlines()[-1])
    assert real["bytes_freed"] == dry["bytes_freed"] == before - du(repo)
    assert len(listing(b, repo)) == 2


def kill_at_random(cmd, rng, max_delay):
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(rng.uniform(0, max_delay))
    p.send_signal(signal.SIGKILL)
    p.wait()
    return p.returncode


def test_kill9_create_prune_restore(env):
    """Kill -9 at random points; afterwards a plain rerun or recover works with no manual step,
    check is clean, and every completed backup restores byte-identical."""
    b, repo, tmp = env
    rng = random.Random(5)
    src = str(tmp / "src")
    make_tree(src, rng, files=300, big=8)
    done = {}  # id -> snapshot of the source when it was backed up

    # how long an undisturbed create takes, to aim the kills inside it
    t0 = time.monotonic()
    first = create(b, repo, src)[0]
    span = max(time.monotonic() - t0, 0.05)
    done[first["id"]] = snapshot(src)

    for i in range(10):
        mutate(src, rng)
        kind = rng.choice(["full", "incremental"])
        kill_at_random([b, "backup", "create", src, "--repo", repo, f"--{kind}"], rng,
                       span * 1.2)
        for x in listing(b, repo):
            done.setdefault(x["id"], snapshot(src))  # finished before the kill
        if i % 2:
            r = run(b, "backup", "recover", "--repo", repo, "--json")
            assert r.returncode == 0, r.stderr
            for x in listing(b, repo):
                done.setdefault(x["id"], snapshot(src))  # resumed by recover
        d = create(b, repo, src)[0]  # a plain rerun
        done[d["id"]] = snapshot(src)

    # prune, killed part-way, then recover
    for i in range(4):
        kill_at_random([b, "backup", "prune", "--repo", repo, "--keep-last", "3"], rng, 0.05)
        run(b, "backup", "recover", "--repo", repo)
    # restore, killed part-way: the next restore into a fresh target works
    kill_at_random([b, "backup", "restore", "latest", "--repo", repo, "--target",
                    str(tmp / "killed-restore")], rng, span)

    r = run(b, "backup", "check", "--repo", repo, "--read-data", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout.splitlines()[-1])
    assert report["errors"] == 0 and report["incomplete"] == 0
    remaining = listing(b, repo)
    assert remaining
    for n, x in enumerate(remaining):
        restore_check(b, repo, x["id"], tmp / f"out{n}", done[x["id"]])


CKPT = 16 << 20
BIG_FILES = 300  # of 1 MiB: ~300 MB


def read_rchar(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise RuntimeError("no rchar")


def kill_at_checkpoint(cmd, env, after):
    """Run cmd (--json), SIGKILL it once `after` checkpoint events were printed. Returns the
    bytes the process had read in all (an upper bound of the source bytes it read: taken while
    it is stopped, just before the kill) and the checkpoint events it printed."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    seen = []
    try:
        for line in p.stdout:
            ev = json.loads(line)
            if ev.get("event") == "checkpoint":
                seen.append(ev)
                if len(seen) >= after:
                    break
        assert len(seen) >= after, "the create finished before it was killed"
        p.send_signal(signal.SIGSTOP)
        rchar = read_rchar(p.pid)
        p.send_signal(signal.SIGKILL)
    finally:
        if p.poll() is None:
            p.kill()
        rest = p.stdout.read()
        p.wait()
    seen += [json.loads(x) for x in rest.splitlines() if b'"checkpoint"' in x]
    assert p.returncode == -signal.SIGKILL
    return rchar, seen


def test_kill9_resumes_from_checkpoint(tmp_path, dwscale_bin):
    """A create killed by SIGKILL is resumed by the next run (or by recover): the rerun keeps
    what the last checkpoint covered, so the bytes read twice are at most one checkpoint's worth
    plus what was in flight; the result restores byte-identical and check stays clean."""
    if not os.path.exists(f"/proc/{os.getpid()}/io"):
        pytest.skip("no /proc/<pid>/io on this kernel: the bytes a killed process read "
                    "cannot be measured")
    b = dwscale_bin
    repo = str(tmp_path / "repo")
    assert run(b, "backup", "init", repo).returncode == 0  # 1 MiB blocks
    src = tmp_path / "src"
    rng = random.Random(6)
    for i in range(BIG_FILES):
        d = src / f"d{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:04d}").write_bytes(rng.randbytes(1 << 20))
    os.link(src / "d0" / "f0000", src / "d6" / "zz-link")  # a hard link across checkpoints
    want = snapshot(str(src))
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(src) for f in fs)
    total -= 1 << 20  # the hard link is stored once
    env = dict(os.environ, DWSCALE_BACKUP_CHECKPOINT=str(CKPT))
    # in flight besides the last checkpoint's worth: the reader runs at most 3 x cores + 2
    # blocks ahead of what is committed, and a checkpoint waits for the file being read
    slack = (3 * os.cpu_count() + 2) * (1 << 20) + (1 << 20) + (1 << 20)

    # plain I/O: reads through io_uring are not counted in /proc/<pid>/io, so the bound below
    # is measured with read(2) calls
    cmd = [b, "backup", "create", str(src), "--repo", repo, "--json", "--no-io-scheduler"]
    rchar, seen = kill_at_checkpoint(cmd, env, after=4)
    assert rchar >= seen[-1]["bytes_read"]  # the measure sees the reads
    assert listing(b, repo) == []  # nothing visible
    r = run(b, "backup", "check", "--repo", repo, "--json")
    rep = json.loads(r.stdout.splitlines()[-1])
    assert r.returncode == 0 and rep["errors"] == 0 and rep["incomplete"] == 1

    r = subprocess.run(cmd, capture_output=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    done = [json.loads(x) for x in r.stdout.splitlines() if b'"done"' in x][0]
    assert done["resumed"] is True and done["id"] == seen[-1]["id"]
    assert done["resumed_bytes"] >= seen[-1]["bytes_read"]  # the newest checkpoint, at least
    assert done["bytes_read"] == total
    assert done["run_bytes_read"] == total - done["resumed_bytes"]
    # read twice: what the killed run read after the checkpoint the rerun started from
    assert rchar - done["resumed_bytes"] <= CKPT + slack, (rchar, done)
    r = run(b, "backup", "check", "--repo", repo, "--read-data", "--json")
    rep = json.loads(r.stdout.splitlines()[-1])
    assert r.returncode == 0 and rep["errors"] == 0 and rep["incomplete"] == 0
    restore_check(b, repo, done["id"], tmp_path / "out1", want)

    # an incremental killed part-way, finished by `recover`
    for i in range(0, BIG_FILES, 3):
        (src / f"d{i % 7}" / f"f{i:04d}").write_bytes(rng.randbytes(1 << 20))
    want2 = snapshot(str(src))
    rchar, seen = kill_at_checkpoint(cmd, env, after=2)
    assert rchar >= seen[-1]["bytes_read"]
    r = subprocess.run([b, "backup", "recover", "--repo", repo, "--json"], capture_output=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    events = [json.loads(x) for x in r.stdout.splitlines()]
    resumed = [e for e in events if e["event"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["id"] == seen[-1]["id"]
    assert resumed[0]["resumed_bytes"] >= seen[-1]["bytes_read"]
    assert rchar - resumed[0]["resumed_bytes"] <= CKPT + slack, (rchar, resumed)
    assert events[-1]["resumed"] == 1 and events[-1]["cleaned"] == 0
    inc = listing(b, repo)[-1]
    assert inc["id"] == seen[-1]["id"] and inc["type"] == "incremental"
    r = run(b, "backup", "check", "--repo", repo, "--read-data", "--json")
    rep = json.loads(r.stdout.splitlines()[-1])
    assert r.returncode == 0 and rep["errors"] == 0 and rep["incomplete"] == 0
    restore_check(b, repo, inc["id"], tmp_path / "out2", want2)


def test_encrypted_repository(tmp_path, dwscale_bin):
    """keygen writes a 0600 key and never replaces one; an encrypted repository needs its key
    for every command (flag or environment), refuses a missing or wrong key with a clear error
    before reading anything, keeps names and data out of the clear, restores byte-identical,
    and reports tampering instead of restoring garbage."""
    b = dwscale_bin
    key, other = str(tmp_path / "key"), str(tmp_path / "other")
    r = run(b, "backup", "keygen", "-o", key)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert len(open(key).read().strip()) == 64
    r = run(b, "backup", "keygen", "-o", key)
    assert r.returncode == 1 and "never replaced" in r.stderr
    assert run(b, "backup", "keygen", "-o", other).returncode == 0
    repo = str(tmp_path / "repo")
    r = run(b, "backup", "init", repo, "--encrypt")
    assert r.returncode == 2 and "--key-file" in r.stderr
    r = run(b, "backup", "init", repo, "--encrypt", "--key-file", key, "--block-size", BLOCK)
    assert r.returncode == 0 and "encrypted" in r.stdout, r.stderr

    src = str(tmp_path / "src")
    make_tree(src, random.Random(8), files=30, big=2)
    with open(os.path.join(src, "secret-name-5d1e"), "wb") as f:
        f.write(b"secret words " * 1000)
    want = snapshot(src)
    done = create(b, repo, src, extra=("--key-file", key))[0]
    env = dict(os.environ, DWSCALE_BACKUP_KEY_FILE=key)

    r = run(b, "backup", "list", "--repo", repo)
    assert r.returncode == 1 and "encrypted" in r.stderr and "--key-file" in r.stderr
    r = run(b, "backup", "list", "--repo", repo, "--key-file", other)
    assert r.returncode == 1 and "not the key" in r.stderr
    r = subprocess.run([b, "backup", "list", "--repo", repo, "--json"], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0 and json.loads(r.stdout.splitlines()[0])["id"] == done["id"]

    blob = b"".join(open(os.path.join(d, f), "rb").read()
                    for d, _, fs in os.walk(repo) for f in fs)
    assert b"secret-name-5d1e" not in blob and b"secret words" not in blob

    target = tmp_path / "out"
    r = subprocess.run([b, "backup", "restore", done["id"], "--repo", repo, "--target",
                        str(target)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert_same(want, snapshot(str(target)))
    r = run(b, "backup", "check", "--repo", repo, "--read-data", "--json", "--key-file", key)
    assert r.returncode == 0 and json.loads(r.stdout.splitlines()[-1])["errors"] == 0

    pack = os.path.join(repo, "packs", done["id"], "00000000.pack")
    with open(pack, "r+b") as f:
        f.seek(200)
        c = f.read(1)
        f.seek(200)
        f.write(bytes([c[0] ^ 1]))
    r = run(b, "backup", "check", "--repo", repo, "--read-data", "--json", "--key-file", key)
    assert r.returncode == 1 and json.loads(r.stdout.splitlines()[-1])["errors"] > 0
    r = run(b, "backup", "restore", done["id"], "--repo", repo, "--target",
            str(tmp_path / "out2"), "--key-file", key)
    assert r.returncode != 0 and "corrupt" in r.stderr.lower()
