# SPDX-License-Identifier: MIT
"""`dwscale serve` with [backup] repo: the backup manager runs and shows in /v1/subsystems and
/metrics; a path that is not a repository stops the start with a clear error."""
import subprocess

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
