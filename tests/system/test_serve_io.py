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


def backup_server(dwscale_bin, start_server, tmp_path, size):
    """A daemon with [backup] on a new repository, and a source directory of one random file."""
    repo = tmp_path / "repo"
    r = run(dwscale_bin, "backup", "init", str(repo))
    assert r.returncode == 0, r.stderr
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(size))
    cfg = tmp_path / "dw.conf"
    cfg.write_text(f"[backup]\nrepo = {repo}\n")
    return start_server(["--config", str(cfg)]), src


def backup_job(server, src):
    """Queue a full backup of src through the daemon and wait (60 s at most) for its record."""
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
    return jobs[job_id]


def test_io_counts_a_backup(dwscale_bin, start_server, tmp_path):
    """Backup jobs run through the scheduler at Low priority: after one, the Low tier of the
    device holding the repository has completed operations and bytes."""
    server, src = backup_server(dwscale_bin, start_server, tmp_path, 2 << 20)

    def low(doc):
        d = [d for d in doc["devices"] if "backup_repo" in d.get("paths", [])][0]
        return d["tiers"]["low"]

    before = low(server.get_json("/v1/io"))
    job = backup_job(server, src)
    assert job["state"] == "done", job
    after = low(server.get_json("/v1/io"))
    assert after["completed"] > before["completed"]
    assert after["bytes"] >= before["bytes"] + (2 << 20)  # the source was read at least once


def test_io_config_reaches_the_manager(start_server, tmp_path):
    """[io] in the config file sets the manager's parameters: they show as its live limits (the
    same names, durations in the limit's unit) and in GET /v1/io."""
    cfg = tmp_path / "dw.conf"
    cfg.write_text("[io]\n"
                   "engine = psync\n"
                   "depth = 16\n"
                   "weight_low = 2\n"
                   "deadline_high = 20ms\n"
                   "low_cap = 2\n"
                   "high_linger = 1s\n"
                   "reprobe = 60s\n"
                   "max_queued = 2000\n"
                   "bp_warning = 0.4\n"
                   "bp_hysteresis = 0.05\n"
                   "quota_window = 10m\n"
                   "quota_bytes = 1GiB\n"
                   "quota_ops = 1000\n"
                   "quota_demote = yes\n")
    server = start_server(["--config", str(cfg)])
    limits = server.get_json("/v1/subsystems/io/limits")["limits"]
    got = {k: v["value"] for k, v in limits.items()}
    assert got["depth"] == 16
    assert got["weight_high"] == 16 and got["weight_normal"] == 4  # defaults stay
    assert got["weight_low"] == 2
    assert got["deadline_high_ms"] == 20
    assert got["low_cap"] == 2
    assert got["high_linger_ms"] == 1000
    assert got["reprobe_s"] == 60
    assert got["max_queued"] == 2000
    assert got["bp_warning"] == 0.4
    assert got["bp_hysteresis"] == 0.05
    assert got["quota_window_s"] == 600
    assert got["quota_bytes"] == 1 << 30
    assert got["quota_ops"] == 1000
    devs = [d for d in server.get_json("/v1/io")["devices"] if "data" in d.get("paths", [])]
    assert len(devs) == 1
    assert devs[0]["backend"] == "psync"
    assert devs[0]["depth"] == 16
    assert devs[0]["depth_why"] == "configured"


def test_io_config_absent_keeps_defaults(server):
    got = {k: v["value"] for k, v in server.get_json("/v1/subsystems/io/limits")["limits"].items()}
    assert got["reprobe_s"] == 300
    assert got["low_cap"] == 0
    assert got["quota_ops"] == 0


@pytest.mark.parametrize("text,line,key,why", [
    ("bogus_key = 1\n", 2, "bogus_key", "unknown key"),
    ("depth = 8\nreprobe_s = 60\n", 3, "reprobe_s", "unknown key"),  # the limit's name, not the key
    ("engine = spdk\n", 2, "engine", "auto, io_uring or psync"),
    ("depth = 1025\n", 2, "depth", "1024"),
    ("weight_low = 0\n", 2, "weight_low", "between 1 and 1000"),
    ("deadline_normal = 0\n", 2, "deadline_normal", "between 1ms and 10m"),
    ("deadline_low = soon\n", 2, "deadline_low", "soon"),
    ("low_cap = 5000\n", 2, "low_cap", "1024"),
    ("high_linger = 11s\n", 2, "high_linger", "at most 10s"),
    ("reprobe = 2d\n", 2, "reprobe", "at most 1d"),
    ("max_queued = 0\n", 2, "max_queued", "between 1 and 1000000"),
    ("bp_shedding = 1.5\n", 2, "bp_shedding", "between 0.01 and 1"),
    ("bp_hysteresis = 0.6\n", 2, "bp_hysteresis", "between 0 and 0.5"),
    ("bp_warning = 0.8\n", 2, "bp_warning", "bp_critical"),
    ("bp_warning = 0.3\nbp_critical = 0.95\n", 3, "bp_critical", "bp_shedding"),
    ("bp_warning = 0.2\nbp_hysteresis = 0.2\n", 3, "bp_hysteresis", "bp_warning"),
    ("quota_window = 0\n", 2, "quota_window", "between 1s and 31d"),
    ("quota_bytes = 1 zillion\n", 2, "quota_bytes", "size"),
    ("quota_ops = -1\n", 2, "quota_ops", "-1"),
    ("quota_demote = maybe\n", 2, "quota_demote", "maybe"),
])
def test_io_config_errors(dwscale_bin, tmp_path, text, line, key, why):
    cfg = tmp_path / "dw.conf"
    cfg.write_text("[io]\n" + text)
    r = run(dwscale_bin, "serve", "--listen", "127.0.0.1:0", "--data", str(tmp_path / "d"),
            "--config", str(cfg), timeout=10)  # refused before it opens anything
    assert r.returncode == 2, r.stderr
    assert f"{cfg}:{line}: [io] {key}:" in r.stderr
    assert why in r.stderr


def test_io_quota_per_caller(dwscale_bin, start_server, tmp_path):
    """PUT /v1/io/quotas/CALLER sets one caller's quota live (admin token): backup I/O (caller
    "backup") over a 64 KiB quota is refused and the job fails saying so, with the use admitted
    no more than the quota plus one op; GET shows the use; bad requests get clear 4xx."""
    server, src = backup_server(dwscale_bin, start_server, tmp_path, 4 << 20)
    admin = {"Authorization": f"Bearer {server.admin_token()}"}
    quota = json.dumps({"bytes": 65536, "ops": 0}).encode()

    r = server.request("PUT", "/v1/io/quotas/backup", body=quota)
    assert r.status == 401
    r = server.request("PUT", "/v1/io/quotas/backup", body=quota, headers=admin)
    assert r.status == 200, r.body
    assert r.json() == {"caller": "backup", "bytes": 65536, "ops": 0}

    job = backup_job(server, src)
    assert job["state"] == "failed", job
    assert "quota" in json.dumps(job).lower(), job
    used = server.get_json("/v1/io/quotas/backup")
    assert used["caller"] == "backup"
    assert 0 < used["bytes_used"] <= 65536 + (1 << 20)  # quota + one op (reads of <= 1 MiB)

    # lifting it lets the next job through
    r = server.request("PUT", "/v1/io/quotas/backup",
                       body=json.dumps({"bytes": 0, "ops": 0}).encode(), headers=admin)
    assert r.status == 200, r.body

    for body, why in ((b'{"bytes": 1}', "both"), (b'{"bytes": -1, "ops": 0}', "whole number"),
                      (b'{"bytes": 1.5, "ops": 0}', "whole number"),
                      (b'{"bytes": 1, "ops": 0, "x": 1}', "x:"), (b'nope', "JSON")):
        r = server.request("PUT", "/v1/io/quotas/backup", body=body, headers=admin)
        assert r.status == 400 and why in r.json()["message"], (body, r.body)
    r = server.request("PUT", "/v1/io/quotas/no*such", body=quota, headers=admin)
    assert r.status == 400, r.body
    r = server.request("GET", "/v1/io/quotas/nobody")
    assert r.status == 404 and r.json()["error"] == "not_found", r.body
    r = server.request("DELETE", "/v1/io/quotas/backup", headers=admin)
    assert r.status == 405 and "PUT" in r.headers["Allow"]
