# SPDX-License-Identifier: MIT
"""`dwscale object` and `dwscale db health` as a user runs them, on the embedded SQLite store."""
import hashlib
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import run


def obj(dwscale_bin, data, *args, **kw):
    return run(dwscale_bin, "object", *args, "--data", str(data), **kw)


def test_put_get_round_trip_large(dwscale_bin, tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(5 * 1024 * 1024 + 123))
    r = obj(dwscale_bin, tmp_path / "d", "put", "dir/big.bin", str(src), "--json",
            "--content-type", "application/x-test")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["size"] == src.stat().st_size
    assert info["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert info["content_type"] == "application/x-test"
    out = tmp_path / "out.bin"
    r = obj(dwscale_bin, tmp_path / "d", "get", "dir/big.bin", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == src.read_bytes()
    # no temporary file is left beside the output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "in.bin", "out.bin"]


def test_put_from_stdin_and_get_to_stdout(dwscale_bin, tmp_path):
    data = b"line one\nline two\n" * 1000
    r = subprocess.run([dwscale_bin, "object", "put", "s/k", "-", "--data", str(tmp_path)],
                       input=data, capture_output=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([dwscale_bin, "object", "get", "s/k", "--data", str(tmp_path)],
                       capture_output=True)
    assert r.returncode == 0
    assert r.stdout == data


def test_missing_key_exit_3_and_no_output_file(dwscale_bin, tmp_path):
    out = tmp_path / "never"
    r = obj(dwscale_bin, tmp_path / "d", "get", "nope", "-o", str(out))
    assert r.returncode == 3
    assert "no such key" in r.stderr
    assert not out.exists()
    r = obj(dwscale_bin, tmp_path / "d", "rm", "nope")
    assert r.returncode == 3


def test_bad_key_and_bad_token_are_usage_errors(dwscale_bin, tmp_path):
    r = obj(dwscale_bin, tmp_path / "d", "put", "", "/dev/null")
    assert r.returncode == 2
    assert "invalid key" in r.stderr
    r = obj(dwscale_bin, tmp_path / "d", "ls", "--page-token", "AAAAnotatoken")
    assert r.returncode == 2
    assert "token" in r.stderr
    r = obj(dwscale_bin, tmp_path / "d", "ls", "--limit", "0")
    assert r.returncode == 2
    r = obj(dwscale_bin, tmp_path / "d", "frobnicate")
    assert r.returncode == 2


def test_missing_input_file(dwscale_bin, tmp_path):
    r = obj(dwscale_bin, tmp_path / "d", "put", "k", str(tmp_path / "absent"))
    assert r.returncode != 0
    assert "absent" in r.stderr
    r = obj(dwscale_bin, tmp_path / "d", "ls", "--json")
    assert json.loads(r.stdout)["total"] == 0


def test_paging_with_tokens_across_invocations(dwscale_bin, tmp_path):
    d = tmp_path / "d"
    for i in range(25):
        r = subprocess.run([dwscale_bin, "object", "put", f"p/{i:02d}", "-", "--data", str(d)],
                           input=b"x", capture_output=True)
        assert r.returncode == 0
    keys, token = [], None
    while True:
        args = ["ls", "--prefix", "p/", "--limit", "10", "--json"]
        if token:
            args += ["--page-token", token]
        r = obj(dwscale_bin, d, *args)
        assert r.returncode == 0, r.stderr
        page = json.loads(r.stdout)
        assert page["total"] == 25
        keys += [it["key"] for it in page["items"]]
        token = page["next_page_token"]
        if not token:
            break
    assert keys == [f"p/{i:02d}" for i in range(25)]
    # a token is bound to its listing: another prefix refuses it
    r = obj(dwscale_bin, d, "ls", "--prefix", "p/", "--limit", "10", "--json")
    tok = json.loads(r.stdout)["next_page_token"]
    r = obj(dwscale_bin, d, "ls", "--prefix", "q/", "--page-token", tok)
    assert r.returncode == 2
    # --all streams every object as JSON lines
    r = obj(dwscale_bin, d, "ls", "--all", "--json")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["key"] for x in lines] == [f"p/{i:02d}" for i in range(25)]


def test_rm_then_stat(dwscale_bin, tmp_path):
    d = tmp_path / "d"
    assert obj(dwscale_bin, d, "put", "k", "/etc/hostname").returncode == 0
    r = obj(dwscale_bin, d, "stat", "k")
    assert json.loads(r.stdout)["key"] == "k"
    assert obj(dwscale_bin, d, "rm", "k").returncode == 0
    assert obj(dwscale_bin, d, "stat", "k").returncode == 3


def test_put_killed_leaves_nothing(dwscale_bin, tmp_path):
    d = tmp_path / "d"
    # a put from a pipe that never ends, killed with SIGKILL mid-stream
    p = subprocess.Popen([dwscale_bin, "object", "put", "crash/k", "-", "--data", str(d)],
                         stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    chunk = os.urandom(1 << 20)
    for _ in range(20):
        p.stdin.write(chunk)
    p.stdin.flush()
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    try:
        p.stdin.close()
    except BrokenPipeError:
        pass
    assert obj(dwscale_bin, d, "stat", "crash/k").returncode == 3
    r = obj(dwscale_bin, d, "ls", "--json")
    assert json.loads(r.stdout)["total"] == 0
    # the store is consistent: a new put of the same key works and reads back
    assert obj(dwscale_bin, d, "put", "crash/k", "/etc/hostname").returncode == 0
    r = obj(dwscale_bin, d, "get", "crash/k")
    assert r.stdout == open("/etc/hostname").read()


def test_db_health(dwscale_bin, tmp_path):
    r = run(dwscale_bin, "db", "health", "--json", "--data", str(tmp_path))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is True
    assert doc["strategies"][0]["name"] == "main"
    assert doc["strategies"][0]["kind"] == "sqlite"
    r = run(dwscale_bin, "db", "health", "--timeout", "-1", "--data", str(tmp_path))
    assert r.returncode == 2


def test_unreachable_backend_names_strategy_and_host(dwscale_bin, tmp_path):
    r = obj(dwscale_bin, tmp_path / "d", "ls", "--db",
            "postgresql://dw@127.0.0.1:1/dw?connect_timeout=5")
    assert r.returncode == 4, r.stderr
    assert "strategy main" in r.stderr
    assert "127.0.0.1" in r.stderr


@pytest.mark.skipif(not os.environ.get("DW_TEST_PG_URI"),
                    reason="needs the PostgreSQL server that make test starts (DW_TEST_PG_URI)")
def test_round_trip_on_postgresql(dwscale_bin, tmp_path):
    uri = os.environ["DW_TEST_PG_URI"]
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(700 * 1024))
    key = f"sys/{os.getpid()}/obj"
    r = obj(dwscale_bin, tmp_path / "d", "put", key, str(src), "--db", uri)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([dwscale_bin, "object", "get", key, "--db", uri, "--data",
                        str(tmp_path / "d")], capture_output=True)
    assert r.returncode == 0
    assert r.stdout == src.read_bytes()
    assert obj(dwscale_bin, tmp_path / "d", "rm", key, "--db", uri).returncode == 0


def test_damaged_row_fails_the_get_and_keeps_the_old_file(dwscale_bin, tmp_path):
    """A byte flipped on disk inside a chunk row: the get fails naming the row, and -o FILE
    leaves the file that was there untouched (the output is renamed into place only whole)."""
    import sqlite3
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(3 * 256 * 1024 + 10))
    d = tmp_path / "d"
    assert obj(dwscale_bin, d, "put", "k", str(src)).returncode == 0
    db = sqlite3.connect(d / "objects.db")
    (oid,) = db.execute("SELECT oid FROM objects WHERE key = CAST('k' AS BLOB)").fetchone()
    rowid = oid << 24 | 2
    (data,) = db.execute("SELECT data FROM chunks WHERE id = ?", (rowid,)).fetchone()
    bad = bytearray(data)
    bad[8 + 5] ^= 0x40
    db.execute("UPDATE chunks SET data = ? WHERE id = ?", (bytes(bad), rowid))
    db.commit()
    db.close()
    out = tmp_path / "out.bin"
    out.write_bytes(b"previous content")
    r = obj(dwscale_bin, d, "get", "k", "-o", str(out))
    assert r.returncode == 1
    assert "row 2 of the object is damaged" in r.stderr
    assert out.read_bytes() == b"previous content"


def test_get_to_a_fifo_writes_in_place(dwscale_bin, tmp_path):
    """-o onto something that is not a regular file (a FIFO here, /dev/null in use) is written
    in place: a temporary file renamed over it would replace the node with a regular file."""
    data = os.urandom(300 * 1024)
    src = tmp_path / "in.bin"
    src.write_bytes(data)
    assert obj(dwscale_bin, tmp_path / "d", "put", "k", str(src)).returncode == 0
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []

    def drain():
        with open(fifo, "rb") as f:
            got.append(f.read())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    r = obj(dwscale_bin, tmp_path / "d", "get", "k", "-o", str(fifo), timeout=60)
    if not got:  # nothing opened the FIFO for writing: unblock the reader to fail cleanly
        reader.join(timeout=1)
        if reader.is_alive() and stat_is_fifo(fifo):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    reader.join(timeout=10)
    assert r.returncode == 0, r.stderr
    assert stat_is_fifo(fifo), "the FIFO was replaced by a regular file"
    assert got == [data]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["d", "in.bin", "pipe"]


def stat_is_fifo(path):
    import stat
    return stat.S_ISFIFO(os.stat(path).st_mode)


def test_get_through_a_symlink_replaces_the_target(dwscale_bin, tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(b"new content")
    assert obj(dwscale_bin, tmp_path / "d", "put", "k", str(src)).returncode == 0
    target = tmp_path / "real.bin"
    target.write_bytes(b"old")
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    r = obj(dwscale_bin, tmp_path / "d", "get", "k", "-o", str(link))
    assert r.returncode == 0, r.stderr
    assert link.is_symlink()
    assert target.read_bytes() == b"new content"
