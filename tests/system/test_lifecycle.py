# SPDX-License-Identifier: MIT
"""Start, stop and configuration of `dwscale serve`."""
import os
import signal
import socket
import stat
import subprocess

import pytest

from conftest import Server, free_port, run


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_data_dir_files_created_private_and_reused(dwscale_bin, tmp_path):
    data = str(tmp_path / "a" / "var")
    s = Server(dwscale_bin, data).start()
    token = s.admin_token()
    secret_path = os.path.join(data, "token.secret")
    with open(secret_path, "rb") as f:
        secret = f.read()
    assert s.stop() == 0
    assert mode(data) == 0o700
    assert mode(os.path.join(data, "admin.token")) == 0o600
    assert mode(secret_path) == 0o600
    assert len(token) >= 32
    log = s.log()
    assert "admin.token" in log and token not in log
    assert "event=listening" in log and f"127.0.0.1:{s.port}" in log

    s2 = Server(dwscale_bin, data).start()
    try:
        assert s2.admin_token() == token
        with open(secret_path, "rb") as f:
            assert f.read() == secret
        r = s2.request("PUT", "/v1/subsystems/cache/limits", body=b'{"max_entries": 7}',
                       headers={"Authorization": f"Bearer {token}"})
        assert r.status == 200, r.body
    finally:
        assert s2.stop() == 0


def test_admin_token_readable_by_others_is_refused(dwscale_bin, tmp_path):
    data = tmp_path / "var"
    data.mkdir(mode=0o700)
    tok = data / "admin.token"
    tok.write_text("0123456789abcdef0123456789abcdef\n")
    tok.chmod(0o644)
    p = run(dwscale_bin, "serve", "--listen", f"127.0.0.1:{free_port()}", "--data", str(data),
            timeout=30)
    assert p.returncode != 0
    assert "admin.token" in p.stderr and "chmod 600" in p.stderr


def test_sigint_exits_zero(dwscale_bin, tmp_path):
    s = Server(dwscale_bin, str(tmp_path / "var")).start()
    assert s.stop(signal.SIGINT) == 0
    assert "event=stopped" in s.log()


def test_in_flight_request_finishes_on_sigterm(dwscale_bin, tmp_path):
    # A request whose body is still arriving when SIGTERM comes is answered, then serve exits 0.
    s = Server(dwscale_bin, str(tmp_path / "var")).start()
    token = s.admin_token()
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
        body = b'{"max_entries": 1234}'
        c.sendall((f"PUT /v1/subsystems/cache/limits HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {token}\r\nConnection: close\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:5])
        # make sure the request has been seen before the signal
        import time
        deadline = time.monotonic() + 10
        seen = False
        while not seen and time.monotonic() < deadline:
            # this scrape and the PUT waiting for its body
            seen = "dwscale_http_requests_in_flight 2" in s.request("GET", "/metrics").body
            time.sleep(0.02)
        assert seen, "the PUT never showed as in flight"
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        c.sendall(body[5:])
        data = b""
        while True:
            got = c.recv(65536)
            if not got:
                break
            data += got
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert s.stop() == 0


@pytest.mark.parametrize("value", ["nonsense", "127.0.0.1", "127.0.0.1:99999", ":7070",
                                   "300.1.1.1:80", "[::1]7070", "127.0.0.1:http"])
def test_bad_listen_value(dwscale_bin, tmp_path, value):
    p = run(dwscale_bin, "serve", "--listen", value, "--data", str(tmp_path / "var"))
    assert p.returncode == 2
    assert f"invalid listen address '{value}'" in p.stderr
    assert "ADDR:PORT" in p.stderr


def test_port_in_use_is_a_clear_error(dwscale_bin, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        p = run(dwscale_bin, "serve", "--listen", f"127.0.0.1:{port}", "--data",
                str(tmp_path / "var"), timeout=30)
    assert p.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in p.stderr


def test_unknown_option(dwscale_bin):
    p = run(dwscale_bin, "serve", "--bogus")
    assert p.returncode == 2
    assert "--bogus" in p.stderr


def test_ipv6_listen_and_port_zero(dwscale_bin, tmp_path):
    import re
    import time
    try:
        with socket.socket(socket.AF_INET6) as s6:
            s6.bind(("::1", 0))
    except OSError as e:
        pytest.skip(f"no IPv6 loopback on this machine: {e}")
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([dwscale_bin, "serve", "--listen", "[::1]:0", "--data",
                                 str(tmp_path / "var")], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        m = None
        while not m and time.monotonic() < deadline and proc.poll() is None:
            m = re.search(r"event=listening addr=\[::1\]:(\d+)", log.read_text())
            time.sleep(0.05)
        assert m, log.read_text()
        port = int(m.group(1))
        assert port != 0
        p = run(dwscale_bin, "status", "--json", "--server", f"http://[::1]:{port}")
        assert p.returncode == 0, p.stderr
        assert "cache" in p.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_data_dir_from_environment(dwscale_bin, tmp_path):
    import time
    import urllib.request
    data = tmp_path / "envdata"
    port = free_port()
    env = dict(os.environ, DWSCALE_DATA=str(data))
    proc = subprocess.Popen([dwscale_bin, "serve", "--listen", f"127.0.0.1:{port}"],
                            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        assert (data / "admin.token").exists() and (data / "store.db").exists()
        assert not (tmp_path / "var").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_two_daemons_starting_together_share_the_token(dwscale_bin, tmp_path):
    # Both create the data directory files at the same moment; whichever links its token file
    # first wins and the other must use that one, or one daemon would refuse the file's token.
    import threading
    data = str(tmp_path / "var")
    for attempt in range(5):
        servers = [Server(dwscale_bin, data) for _ in range(2)]
        errors = []

        def start(s):
            try:
                s.start()
            except AssertionError as e:
                errors.append(str(e))

        threads = [threading.Thread(target=start, args=(s,)) for s in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            assert errors == []
            token = servers[0].admin_token()
            for s in servers:
                r = s.request("PUT", "/v1/subsystems/cache/limits",
                              body=b'{"max_entries": 321}',
                              headers={"Authorization": f"Bearer {token}"})
                assert r.status == 200, (r.status, r.body)
        finally:
            for s in servers:
                assert s.stop() == 0, s.log()
        import shutil
        shutil.rmtree(data)
