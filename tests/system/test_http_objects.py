# SPDX-License-Identifier: MIT
"""Objects over HTTP (`dwscale serve`): streamed PUT/GET, Range, listing with tokens, errors,
aborted uploads, and health checks, including a PostgreSQL server stopped with SIGSTOP."""
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

import pytest

from conftest import REPO


def conn(server):
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)


def put(server, key, data, ctype=None):
    c = conn(server)
    headers = {"Content-Type": ctype} if ctype else {}
    c.request("PUT", "/v1/objects/" + urllib.parse.quote(key), body=data, headers=headers)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def get(server, key, headers=None):
    c = conn(server)
    c.request("GET", "/v1/objects/" + urllib.parse.quote(key), headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


def test_put_get_streamed_round_trip(server):
    data = os.urandom(9 * 1024 * 1024 + 7)
    status, body = put(server, "dir/big object.bin", data, "application/x-test")
    assert status == 201, body
    info = json.loads(body)
    assert info["size"] == len(data)
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    r, got = get(server, "dir/big object.bin")
    assert r.status == 200
    assert got == data
    assert r.getheader("Content-Length") == str(len(data))
    assert r.getheader("ETag") == '"%s"' % hashlib.sha256(data).hexdigest()
    assert r.getheader("Content-Type") == "application/x-test"


def test_single_range(server):
    data = bytes(range(256)) * 4096  # 1 MiB, crosses row boundaries
    assert put(server, "r", data)[0] == 201
    for rng, lo, hi in (("bytes=1000-1999", 1000, 1999), ("bytes=262140-262150", 262140, 262150),
                        ("bytes=-10", len(data) - 10, len(data) - 1),
                        ("bytes=1048000-", 1048000, len(data) - 1)):
        r, got = get(server, "r", {"Range": rng})
        assert r.status == 206, rng
        assert got == data[lo:hi + 1], rng
        assert r.getheader("Content-Range") == f"bytes {lo}-{hi}/{len(data)}"
    r, _ = get(server, "r", {"Range": f"bytes={len(data)}-"})
    assert r.status == 416
    assert r.getheader("Content-Range") == f"bytes */{len(data)}"


def test_errors(server):
    r, body = get(server, "nope")
    assert r.status == 404
    assert json.loads(body)["error"] == "not_found"
    resp = server.request("GET", "/v1/objects?page_token=garbage")
    assert resp.status == 400
    assert resp.json()["error"] == "bad_token"
    resp = server.request("GET", "/v1/objects?limit=0")
    assert resp.status == 400
    resp = server.request("POST", "/v1/objects/x", body=b"x")
    assert resp.status == 405
    # a key that is not UTF-8
    c = conn(server)
    c.request("PUT", "/v1/objects/%FF%FE", body=b"x")
    r = c.getresponse()
    assert r.status == 400
    r.read()
    c.close()
    assert server.get_json("/v1/objects")["total"] == 0


def test_delete(server):
    assert put(server, "d", b"abc")[0] == 201
    assert server.request("DELETE", "/v1/objects/d").status == 204
    assert server.request("DELETE", "/v1/objects/d").status == 404
    assert get(server, "d")[0].status == 404


def test_listing_pages_with_tokens(server):
    for i in range(23):
        assert put(server, f"p/{i:02d}", b"v")[0] == 201
    put(server, "q/other", b"v")
    keys, token = [], None
    while True:
        path = "/v1/objects?prefix=p/&limit=5" + (f"&page_token={token}" if token else "")
        page = server.get_json(path)
        assert page["total"] == 23
        keys += [it["key"] for it in page["items"]]
        token = page["next_page_token"]
        if not token:
            break
    assert keys == [f"p/{i:02d}" for i in range(23)]
    # a token of one listing is refused by another
    tok = server.get_json("/v1/objects?prefix=p/&limit=5")["next_page_token"]
    resp = server.request("GET", f"/v1/objects?prefix=q/&page_token={tok}")
    assert resp.status == 400


def test_aborted_upload_publishes_nothing(server):
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"PUT /v1/objects/half HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
    s.sendall(os.urandom(3 * 1024 * 1024))
    time.sleep(0.2)
    s.close()
    time.sleep(0.5)
    assert get(server, "half")[0].status == 404
    assert server.get_json("/v1/objects")["total"] == 0
    # the node still works
    assert put(server, "half", b"whole")[0] == 201
    assert get(server, "half")[1] == b"whole"


def test_db_metrics_and_limits(server):
    assert put(server, "m/1", b"12345")[0] == 201
    text = server.request("GET", "/metrics").body
    assert 'dwscale_db_objects{strategy="main",kind="sqlite"} 1' in text
    subs = {s["name"]: s for s in server.get_json("/v1/subsystems")["subsystems"]}
    assert "chunk_size" in subs["db"]["limits"]
    token = server.admin_token()
    resp = server.request("PUT", "/v1/subsystems/db/limits",
                          body=json.dumps({"chunk_size": 131072}).encode(),
                          headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, resp.body
    subs = {s["name"]: s for s in server.get_json("/v1/subsystems")["subsystems"]}
    assert subs["db"]["limits"]["chunk_size"]["value"] == 131072


def test_health_sqlite(server):
    doc = server.get_json("/v1/db/health")
    assert doc["ok"] is True
    assert doc["strategies"][0]["kind"] == "sqlite"


def _postmaster_pid(pgdir):
    with open(os.path.join(pgdir, "data", "postmaster.pid")) as f:
        return int(f.readline())


def _children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def test_health_reports_a_stopped_postgresql_at_the_deadline(start_server, tmp_path):
    base = tempfile.mkdtemp(prefix="dwscale-pg-", dir="/var/tmp")
    os.chmod(base, 0o755)
    pgdir = os.path.join(base, "pg")
    pg = os.path.join(REPO, "scripts", "pg.sh")
    uri = subprocess.run([pg, "start", pgdir], capture_output=True, text=True, check=True)
    uri = uri.stdout.strip().splitlines()[-1]
    stopped = []
    try:
        cfg = tmp_path / "dw.conf"
        cfg.write_text(f"[db]\nstrategies = main=sqlite:{tmp_path}/o.db, pg={uri}\n")
        server = start_server(["--config", str(cfg)])
        doc = server.get_json("/v1/db/health")
        assert [s["ok"] for s in doc["strategies"]] == [True, True]
        pids = [_postmaster_pid(pgdir)]
        pids += _children(pids[0])
        for p in pids:
            os.kill(p, signal.SIGSTOP)
            stopped.append(p)
        for attempt in (1, 2):
            t0 = time.monotonic()
            resp = server.request("GET", "/v1/db/health?timeout_ms=500", timeout=30)
            elapsed = time.monotonic() - t0
            assert resp.status == 503
            doc = resp.json()
            by = {s["name"]: s for s in doc["strategies"]}
            assert by["main"]["ok"] is True
            assert by["pg"]["status"] == "DW_ETIMEDOUT"
            assert by["pg"]["consecutive_failures"] == attempt
            assert elapsed < 25  # returned at its deadline, not when the server woke up
        for p in stopped:
            os.kill(p, signal.SIGCONT)
        stopped = []
        time.sleep(0.5)
        deadline = time.monotonic() + 30
        while True:
            doc = server.request("GET", "/v1/db/health?timeout_ms=5000", timeout=30).json()
            if doc["ok"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        by = {s["name"]: s for s in doc["strategies"]}
        assert by["pg"]["ok"] is True
        assert by["pg"]["consecutive_failures"] == 0
    finally:
        for p in stopped:
            os.kill(p, signal.SIGCONT)
        subprocess.run([pg, "stop", pgdir], capture_output=True)
        subprocess.run(["rm", "-rf", base])
