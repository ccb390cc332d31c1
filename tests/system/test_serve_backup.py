# SPDX-License-Identifier: MIT
"""`dwscale serve` with [backup] repo: the backup manager runs and shows in /v1/subsystems and
/metrics; a path that is not a repository stops the start with a clear error; backups are queued
with POST /v1/backups (admin token), followed in /v1/backups/jobs and listed in /v1/backups."""
import json
import os
import subprocess
import time

import pytest

from conftest import run


def test_backup_manager_registered(dwscale_bin, start_server, tmp_path):
    repo = tmp_path / "repo"
    r = run(dwscale_bin, "backup", "init", str(repo))
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "dw.conf"
    cfg.write_text(f"[backup]\nrepo = {repo}\n")
    server = start_server(["--config", str(cfg)])
    subs = {s["name"]: s for s in server.get_json("/v1/subsystems")["subsystems"]}
    assert "backup" in subs
    assert "keep_last" in subs["backup"]["limits"]
    assert "dwscale_backup_jobs_running" in server.request("GET", "/metrics").body


def test_backup_repo_that_is_not_one(dwscale_bin, tmp_path):
    cfg = tmp_path / "dw.conf"
    cfg.write_text(f"[backup]\nrepo = {tmp_path}/missing\n")
    r = subprocess.run([dwscale_bin, "serve", "--listen", "127.0.0.1:0", "--data",
                        str(tmp_path / "d"), "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "not a backup repository" in r.stderr


# ---- POST /v1/backups, GET /v1/backups, GET /v1/backups/jobs --------------------------------


def backup_server(dwscale_bin, start_server, tmp_path):
    repo = tmp_path / "repo"
    r = run(dwscale_bin, "backup", "init", str(repo))
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "dw.conf"
    cfg.write_text(f"[backup]\nrepo = {repo}\n")
    return start_server(["--config", str(cfg)])


def make_source(tmp_path, name="src"):
    src = tmp_path / name
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("hello\n")
    (src / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    return src


def post(server, body, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return server.request("POST", "/v1/backups", body=data, headers=headers)


def wait_job(server, job_id, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        jobs = {j["id"]: j for j in server.get_json("/v1/backups/jobs")["jobs"]}
        if job_id in jobs and jobs[job_id]["state"] in ("done", "failed"):
            return jobs[job_id]
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {jobs.get(job_id)}")


def test_post_backup_needs_token(dwscale_bin, start_server, tmp_path):
    server = backup_server(dwscale_bin, start_server, tmp_path)
    src = make_source(tmp_path)
    r = post(server, {"sources": [str(src)]})
    assert r.status == 401
    assert r.json()["error"] == "unauthorized"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = post(server, {"sources": [str(src)]}, token="not-the-token")
    assert r.status == 401
    assert server.get_json("/v1/backups/jobs")["jobs"] == []
    assert server.get_json("/v1/backups")["backups"] == []


def test_post_backup_runs_and_is_listed(dwscale_bin, start_server, tmp_path):
    server = backup_server(dwscale_bin, start_server, tmp_path)
    src = make_source(tmp_path)
    token = server.admin_token()
    r = post(server, {"sources": [str(src)], "type": "full"}, token)
    assert r.status == 202, r.body
    doc = r.json()
    assert doc["refused"] == []
    assert len(doc["jobs"]) == 1
    full_id = doc["jobs"][0]["id"]
    assert doc["jobs"][0]["source"] == str(src)
    job = wait_job(server, full_id)
    assert job["state"] == "done", job
    assert job["error"] is None
    assert job["files"] == 2
    assert job["bytes_read"] == 300_006

    # an incremental of the same source extends the chain
    (src / "a.txt").write_text("changed\n")
    r = post(server, {"sources": [str(src)], "type": "incremental"}, token)
    assert r.status == 202, r.body
    inc_id = r.json()["jobs"][0]["id"]
    assert wait_job(server, inc_id)["state"] == "done"

    listing = server.get_json("/v1/backups")
    by_id = {b["id"]: b for b in listing["backups"]}
    assert set(by_id) == {full_id, inc_id}
    assert by_id[full_id]["type"] == "full" and by_id[full_id]["parent"] is None
    assert by_id[inc_id]["type"] == "incremental"
    assert by_id[inc_id]["parent"] == full_id
    assert by_id[inc_id]["chain"] == full_id
    assert by_id[full_id]["bytes_total"] == 300_006
    assert listing["chains"] == [{
        "chain": full_id, "source": str(src), "backups": 2,
        "repo_bytes": by_id[full_id]["repo_bytes"] + by_id[inc_id]["repo_bytes"],
        "newest": inc_id, "newest_created": by_id[inc_id]["created"]}]

    # the same list as `dwscale backup list --json`
    r = run(dwscale_bin, "backup", "list", "--repo", listing["repo"], "--json")
    assert r.returncode == 0, r.stderr
    cli = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert [b["id"] for b in cli] == [b["id"] for b in listing["backups"]]
    assert cli == listing["backups"]


def test_post_backup_several_sources(dwscale_bin, start_server, tmp_path):
    server = backup_server(dwscale_bin, start_server, tmp_path)
    a, b = make_source(tmp_path, "a"), make_source(tmp_path, "b")
    r = post(server, {"sources": [str(a), str(b)]}, server.admin_token())
    assert r.status == 202, r.body
    jobs = r.json()["jobs"]
    assert [j["source"] for j in jobs] == [str(a), str(b)]
    for j in jobs:
        assert wait_job(server, j["id"])["state"] == "done"
    sources = sorted(c["source"] for c in server.get_json("/v1/backups")["chains"])
    assert sources == [str(a), str(b)]


@pytest.mark.parametrize("body,why", [
    (b"", "needs a JSON object"),
    (b"{not json", "not valid JSON"),
    (b'["/x"]', "must be a JSON object"),
    (b'{"sources": []}', "sources is empty"),
    (b'{"sources": "/x"}', "must be an array"),
    (b'{"sources": ["relative"]}', "not an absolute path"),
    (b'{"sources": ["/a", "/a"]}', "listed twice"),
    (b'{"sources": ["/a"], "type": "weekly"}', "type must be"),
    (b'{"sources": ["/a"], "when": "now"}', "unknown member"),
])
def test_post_backup_bad_bodies(dwscale_bin, start_server, tmp_path, body, why):
    server = backup_server(dwscale_bin, start_server, tmp_path)
    r = post(server, body, server.admin_token())
    assert r.status == 400, r.body
    assert r.json()["error"] == "bad_request"
    assert why in r.json()["message"]
    assert server.get_json("/v1/backups/jobs")["jobs"] == []


def test_post_backup_bad_sources_queue_nothing(dwscale_bin, start_server, tmp_path):
    server = backup_server(dwscale_bin, start_server, tmp_path)
    good = make_source(tmp_path)
    token = server.admin_token()
    r = post(server, {"sources": [str(good), str(tmp_path / "missing")]}, token)
    assert r.status == 400
    assert r.json()["error"] == "bad_source"
    assert "missing" in r.json()["message"]
    r = post(server, {"sources": [str(good / "a.txt")]}, token)
    assert r.status == 400
    assert "not a directory" in r.json()["message"]
    # the good source of the first request was not queued either
    assert server.get_json("/v1/backups/jobs")["jobs"] == []


def test_backup_routes_without_backup(server):
    for path in ("/v1/backups", "/v1/backups/jobs"):
        r = server.request("GET", path)
        assert r.status == 404
        assert r.json()["error"] == "not_configured"
        assert "[backup] repo" in r.json()["message"]
    r = post(server, {"sources": ["/tmp"]}, server.admin_token())
    assert r.status == 404
    assert r.json()["error"] == "not_configured"
    # the token is checked first: nothing is said to a caller without it
    assert post(server, {"sources": ["/tmp"]}).status == 401
    r = server.request("DELETE", "/v1/backups")
    assert r.status == 405
