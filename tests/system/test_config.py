# SPDX-License-Identifier: MIT
"""Configuration file handling of `dwscale serve`."""
import os
import signal
import socket
import subprocess
import time

from conftest import run


def test_config_unknown_key_fails_with_location(dwscale_bin, tmp_path):
    cfg = tmp_path / "dwscale.ini"
    cfg.write_text("[server]\nlisten = 127.0.0.1:1\n\n[cache]\nmax_entries = 100\nmax_entrys = 5\n")
    p = run(dwscale_bin, "serve", "--config", str(cfg), "--data", str(tmp_path / "var"),
            timeout=30)
    assert p.returncode == 2, p.stderr
    assert f"{cfg}:6" in p.stderr and "max_entrys" in p.stderr


def test_config_applies_and_flags_override(start_server, tmp_path):
    cfg = tmp_path / "dwscale.ini"
    cfg.write_text("[server]\nlisten = 127.0.0.1:1\nmax_body = 1KiB\n\n"
                   "[log]\nlevel = info\n\n[cache]\nmax_entries = 123\nttl = 5s\n")
    s = start_server(["--config", str(cfg)])  # --listen and --data from the fixture win
    cache = s.get_json("/v1/subsystems/cache")
    assert cache["limits"]["max_entries"]["value"] == 123
    assert cache["limits"]["ttl_seconds"]["value"] == 5
    # max_body = 1KiB: a body of 1000 bytes passes, 1025 bytes is refused from its length
    body = b" " * 976 + b'{"max_entries": 124}'
    assert len(body) < 1024
    r = s.request("PUT", "/v1/subsystems/cache/limits", body=body,
                  headers={"Authorization": f"Bearer {s.admin_token()}"})
    assert r.status == 200, r.body
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        c.sendall(b"PUT /v1/subsystems/cache/limits HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 1025\r\n\r\n")
        assert c.recv(4096).startswith(b"HTTP/1.1 413")


def test_config_bad_value_and_missing_file(dwscale_bin, tmp_path):
    cfg = tmp_path / "dwscale.ini"
    cfg.write_text("[cache]\nmax_bytes = lots\n")
    p = run(dwscale_bin, "serve", "--config", str(cfg), "--data", str(tmp_path / "var"))
    assert p.returncode == 2
    assert f"{cfg}:2:" in p.stderr and "max_bytes" in p.stderr
    cfg.write_text("[server]\nmax_body = 1\n")
    p = run(dwscale_bin, "serve", "--config", str(cfg), "--data", str(tmp_path / "var"))
    assert p.returncode == 2 and "max_body" in p.stderr
    cfg.write_text("[log]\nlevel = loud\n")
    p = run(dwscale_bin, "serve", "--config", str(cfg), "--data", str(tmp_path / "var"))
    assert p.returncode == 2 and "level" in p.stderr
    p = run(dwscale_bin, "serve", "--config", str(tmp_path / "missing.ini"))
    assert p.returncode == 2 and "missing.ini" in p.stderr


def test_config_sets_listen_and_data(dwscale_bin, tmp_path):
    import urllib.request
    from conftest import free_port
    port = free_port()
    data = tmp_path / "from-config"
    cfg = tmp_path / "dwscale.ini"
    cfg.write_text(f"[server]\nlisten = 127.0.0.1:{port}\ndata = {data}\n")
    proc = subprocess.Popen([dwscale_bin, "serve", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert (data / "admin.token").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_config_admin_token_file(start_server, tmp_path):
    tok = tmp_path / "secrets" / "admin.tok"
    tok.parent.mkdir(mode=0o700)
    cfg = tmp_path / "dwscale.ini"
    cfg.write_text(f"[server]\nadmin_token_file = {tok}\n")
    s = start_server(["--config", str(cfg)])
    assert tok.exists() and not os.path.exists(os.path.join(s.data, "admin.token"))
    assert os.stat(tok).st_mode & 0o777 == 0o600
    token = tok.read_text().strip()
    r = s.request("PUT", "/v1/subsystems/cache/limits", body=b'{"max_entries": 99}',
                  headers={"Authorization": f"Bearer {token}"})
    assert r.status == 200, r.body
    assert str(tok) in s.log()
