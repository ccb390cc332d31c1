# SPDX-License-Identifier: MIT
"""`dwscale serve` GET /v1/io: the I/O manager's schedulers, one per device, with each tier's
counters; the device holding the data directory is always there, named as such, and backup
jobs show in its Low tier."""
import json
import os
import re
import time

import pytest

from conftest import run


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


def test_io_counts_a_backup(dwscale_bin, start_server, tmp_path):
    """Backup jobs run through the scheduler at Low priority: after one, the Low tier of the
    device holding the repository has completed operations and bytes."""
    repo = tmp_path / "repo"
    r = run(dwscale_bin, "backup", "init", str(repo))
    assert r.returncode == 0, r.stderr
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(2 << 20))
    cfg = tmp_path / "dw.conf"
    cfg.write_text(f"[backup]\nrepo = {repo}\n")
    server = start_server(["--config", str(cfg)])

    def low(doc):
        d = [d for d in doc["devices"] if "backup_repo" in d.get("paths", [])][0]
        return d["tiers"]["low"]

    before = low(server.get_json("/v1/io"))
    r = server.request("POST", "/v1/backups",
                       body=json.dumps({"sources": [str(src)], "type": "full"}).encode(),
                       headers={"Authorization": f"Bearer {server.admin_token()}"})
    assert r.status == 202, r.body
    job_id = r.json()["jobs"][0]["id"]
    end = time.monotonic() + 60
    while time.monotonic() < end:
        jobs = {j["id"]: j for j in server.get_json("/v1/backups/jobs")["jobs"]}
        if jobs.get(job_id, {}).get("state") in ("done", "failed"):
            break
        time.sleep(0.1)
    assert jobs[job_id]["state"] == "done", jobs[job_id]
    after = low(server.get_json("/v1/io"))
    assert after["completed"] > before["completed"]
    assert after["bytes"] >= before["bytes"] + (2 << 20)  # the source was read at least once
