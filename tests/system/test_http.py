# SPDX-License-Identifier: MIT
"""The HTTP surface of `dwscale serve`: health, metrics, subsystems, live limits, errors."""
import json
import os
import re
import shutil
import socket
import subprocess

import pytest

PROMTOOL = "/usr/bin/promtool"


def metric_value(text, name):
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def raw_exchange(server, request_bytes, chunks=()):
    """Send bytes on a fresh connection, then read one answer (up to its Content-Length)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(request_bytes)
        try:
            for c in chunks:
                s.sendall(c)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before the client is done
        data = b""
        while True:
            try:
                got = s.recv(65536)
            except ConnectionResetError:
                break
            if not got:
                break
            data += got
            head, sep, body = data.partition(b"\r\n\r\n")
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if sep and m and len(body) >= int(m.group(1)):
                break
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head else 0
    return status, head.decode(errors="replace"), body


def test_healthz(server):
    r = server.request("GET", "/healthz")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"status": "ok"}


def test_metrics_exposition(server):
    r = server.request("GET", "/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE dwscale_cache_entries gauge" in r.body
    assert "# TYPE dwscale_cache_hits_total counter" in r.body
    assert metric_value(r.body, "dwscale_cache_capacity_entries") == 10000
    for line in r.body.splitlines():
        if line.startswith("# TYPE") and line.endswith(" counter"):
            assert line.split()[2].endswith("_total"), line


@pytest.mark.skipif(not os.access(PROMTOOL, os.X_OK),
                    reason=f"{PROMTOOL} is not installed (Debian package 'prometheus')")
def test_metrics_pass_promtool(server):
    body = server.request("GET", "/metrics").body
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, f"promtool: {p.stdout}{p.stderr}\n---\n{body}"


def test_subsystems_lists_cache(server):
    doc = server.get_json("/v1/subsystems")
    names = [s["name"] for s in doc["subsystems"]]
    assert "cache" in names
    cache = next(s for s in doc["subsystems"] if s["name"] == "cache")
    assert cache["state"] == "normal"
    metrics = {m["name"]: m for m in cache["metrics"]}
    assert metrics["entries"]["value"] == 0
    assert metrics["hits_total"]["kind"] == "counter"
    assert cache["limits"]["max_entries"]["value"] == 10000
    assert cache["limits"]["max_entries"]["min"] <= cache["limits"]["max_entries"]["max"]
    one = server.get_json("/v1/subsystems/cache")
    assert one["name"] == "cache" and "limits" in one and "metrics" in one


def put_limits(server, body, token=None, name="cache", raw=False):
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if raw else json.dumps(body).encode()
    return server.request("PUT", f"/v1/subsystems/{name}/limits", body=data, headers=headers)


def cache_limit(server, name):
    return server.get_json("/v1/subsystems/cache")["limits"][name]["value"]


def test_reconfigure_needs_token(server):
    r = put_limits(server, {"max_entries": 5000})
    assert r.status == 401
    assert r.json()["error"] == "unauthorized"
    r = put_limits(server, {"max_entries": 5000}, token="0" * 64)
    assert r.status == 401
    assert r.json()["error"] == "unauthorized"
    r = put_limits(server, {"max_entries": 5000}, token=server.admin_token()[:-1])
    assert r.status == 401
    assert cache_limit(server, "max_entries") == 10000
    assert server.admin_token() not in server.log()


def test_reconfigure_invalid_value_keeps_old(server):
    tok = server.admin_token()
    r = put_limits(server, {"max_entries": -5}, token=tok)
    assert r.status == 400
    err = r.json()
    assert err["error"] == "invalid_limit"
    assert "max_entries" in err["message"]
    # one bad value refuses the whole request: the good one is not applied either
    r = put_limits(server, {"max_bytes": 1 << 20, "max_entries": 1.5}, token=tok)
    assert r.status == 400
    assert cache_limit(server, "max_entries") == 10000
    assert cache_limit(server, "max_bytes") == 64 << 20


@pytest.mark.parametrize("body,why", [
    (b"", "needs"),
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "object"),
    (b'{"max_entries": "many"}', None),
    (b'{"max_entries": true}', "number or a string"),
    (b'{"max_entries": 1} trailing', "after"),
    (b'{}', "no limits"),
    (b'{"no_such_limit": 1}', "no limit named no_such_limit"),
])
def test_reconfigure_bad_documents(server, body, why):
    r = put_limits(server, body, token=server.admin_token(), raw=True)
    assert r.status == 400, r.body
    err = r.json()
    assert err["error"] in ("bad_request", "invalid_limit")
    if why:
        assert why in err["message"]
    assert cache_limit(server, "max_entries") == 10000


def test_reconfigure_unknown_subsystem(server):
    r = put_limits(server, {"max_entries": 5}, token=server.admin_token(), name="nosuch")
    assert r.status == 404
    assert r.json()["error"] == "not_found"


def test_reconfigure_applies_live(server):
    r = put_limits(server, {"max_entries": 5000, "ttl_seconds": 30}, token=server.admin_token())
    assert r.status == 200, r.body
    assert r.json()["limits"]["max_entries"]["value"] == 5000
    assert cache_limit(server, "max_entries") == 5000
    assert cache_limit(server, "ttl_seconds") == 30
    metrics = server.request("GET", "/metrics").body
    assert metric_value(metrics, "dwscale_cache_capacity_entries") == 5000
    assert "event=limits_changed" in server.log()
    r = server.request("GET", "/v1/subsystems/cache/limits")
    assert r.status == 200 and r.json()["limits"]["max_entries"]["value"] == 5000


def test_body_too_large_by_content_length(server):
    # Only the headers are sent: the answer must come without the body being read.
    req = (f"PUT /v1/subsystems/cache/limits HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           f"Authorization: Bearer {server.admin_token()}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {64 << 20}\r\n\r\n").encode()
    status, head, body = raw_exchange(server, req)
    assert status == 413, head
    assert json.loads(body)["error"] == "too_large"
    assert cache_limit(server, "max_entries") == 10000


def test_body_too_large_chunked(server):
    req = (f"PUT /v1/subsystems/cache/limits HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           f"Authorization: Bearer {server.admin_token()}\r\n"
           f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    piece = b" " * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * 20 + [b"0\r\n\r\n"]
    status, head, body = raw_exchange(server, req, chunks)
    assert status == 413, head
    assert json.loads(body)["error"] == "too_large"
    metrics = server.request("GET", "/metrics").body
    assert metric_value(metrics, "dwscale_http_bodies_refused_total") >= 1


def test_small_chunked_body_is_accepted(server):
    body = json.dumps({"max_entries": 4321}).encode()
    req = (f"PUT /v1/subsystems/cache/limits HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           f"Authorization: Bearer {server.admin_token()}\r\nConnection: close\r\n"
           f"Transfer-Encoding: chunked\r\n\r\n").encode()
    chunks = [b"%x\r\n%s\r\n" % (len(body[:5]), body[:5]),
              b"%x\r\n%s\r\n" % (len(body[5:]), body[5:]), b"0\r\n\r\n"]
    status, head, _ = raw_exchange(server, req, chunks)
    assert status == 200, head
    assert cache_limit(server, "max_entries") == 4321


def test_unknown_path_404(server):
    for path in ("/nope", "/v1/subsystems/nosuch", "/v1/subsystems/cache/nope",
                 "/v1/subsystems/BAD-name"):
        r = server.request("GET", path)
        assert r.status == 404, path
        err = r.json()
        assert err["error"] == "not_found" and err["message"]


def test_wrong_method_405(server):
    r = server.request("POST", "/healthz", body=b"{}")
    assert r.status == 405
    assert r.json()["error"] == "method_not_allowed"
    assert "GET" in r.headers["Allow"]
    r = server.request("DELETE", "/v1/subsystems/cache/limits")
    assert r.status == 405
    assert "PUT" in r.headers["Allow"]


def test_concurrent_scrapes_and_reconfigures(server):
    # Readers and writers at once, over several connections: every answer is whole and right,
    # and the last value written is the one that stays.
    import threading
    token = server.admin_token()
    errors = []

    def reader():
        for _ in range(40):
            r = server.request("GET", "/metrics")
            if r.status != 200 or "dwscale_cache_capacity_entries" not in r.body:
                errors.append(("metrics", r.status))
            r = server.request("GET", "/v1/subsystems")
            if r.status != 200 or not r.json()["subsystems"]:
                errors.append(("subsystems", r.status))

    def writer(k):
        for i in range(40):
            r = put_limits(server, {"max_entries": 1000 + k * 100 + i}, token=token)
            if r.status != 200:
                errors.append(("put", r.status, r.body))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    threads += [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    put_limits(server, {"max_entries": 777}, token=token)
    assert cache_limit(server, "max_entries") == 777
    m = server.request("GET", "/metrics").body
    assert metric_value(m, "dwscale_cache_capacity_entries") == 777
    assert metric_value(m, 'dwscale_http_requests_total{code="2xx"}') >= 400
