# SPDX-License-Identifier: MIT
"""`dwscale serve` GET /v1/io: the I/O manager's schedulers, one per device, with each tier's
counters; the device holding the data directory is always there, named as such."""
import re

import pytest


def test_io_shows_the_data_device(server):
    r = server.request("PUT", "/v1/objects/io-probe", body=b"x" * 4096,
                       headers={"Content-Type": "application/octet-stream"})
    assert r.status == 201, r.body
    doc = server.get_json("/v1/io")
    assert doc["state"] in ("normal", "warning", "critical", "shedding")
    devs = [d for d in doc["devices"] if "data" in d.get("paths", [])]
    assert len(devs) == 1, doc
    d = devs[0]
    assert d["name"]
    assert d["class"] in ("unknown", "hdd", "ssd", "nvme")
    assert d["backend"] in ("io_uring", "psync")
    assert 1 <= d["depth"] <= 1024
    assert d["depth_why"]
    assert d["state"] == "normal"
    if d["uring_errno"] == 0:
        assert d["uring"] == "available"
    else:
        assert d["backend"] == "psync"
    assert set(d["tiers"]) == {"high", "normal", "low"}
    for t in d["tiers"].values():
        for k in ("queued", "inflight", "completed", "errors", "bytes",
                  "latency_p50_seconds", "latency_p99_seconds", "longest_wait_seconds"):
            assert t[k] >= 0, (k, t)


def test_io_agrees_with_metrics(server):
    doc = server.get_json("/v1/io")
    text = server.request("GET", "/metrics").body
    for d in doc["devices"]:
        m = re.search(r'^dwscale_io_depth\{dev="%s"\} (\S+)$' % re.escape(d["name"]), text,
                      re.M)
        assert m, f"no dwscale_io_depth for {d['name']}"
        assert float(m.group(1)) == d["depth"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_io_other_methods(server, method):
    r = server.request(method, "/v1/io", body=b"{}")
    assert r.status == 405
    assert r.json()["error"] == "method_not_allowed"
    assert "GET" in r.headers["Allow"]
