# SPDX-License-Identifier: MIT
"""The dwscale command: version, help, dispatch errors and `dwscale status`."""
import json

from conftest import free_port, run


def test_version(dwscale_bin):
    p = run(dwscale_bin, "--version")
    assert p.returncode == 0
    assert p.stdout.startswith("dwscale ")
    assert p.stdout.split()[1][0].isdigit()


def test_help_lists_commands_and_exit_codes(dwscale_bin):
    p = run(dwscale_bin, "help")
    assert p.returncode == 0
    for word in ("serve", "status", "help", "Exit codes", "unreachable"):
        assert word in p.stdout
    assert run(dwscale_bin, "--help").stdout == p.stdout


def test_help_for_one_command(dwscale_bin):
    p = run(dwscale_bin, "help", "status")
    assert p.returncode == 0
    assert "--server URL" in p.stdout
    q = run(dwscale_bin, "status", "--help")
    assert q.returncode == 0 and q.stdout == p.stdout
    assert "--listen ADDR:PORT" in run(dwscale_bin, "serve", "--help").stdout
    r = run(dwscale_bin, "help", "nosuch")
    assert r.returncode == 2 and "unknown command 'nosuch'" in r.stderr


def test_unknown_command(dwscale_bin):
    p = run(dwscale_bin, "stauts")
    assert p.returncode == 2
    assert "unknown command 'stauts'" in p.stderr
    assert "dwscale status" in p.stderr  # the hint
    assert run(dwscale_bin).returncode == 2


def test_status_table(dwscale_bin, server):
    p = run(dwscale_bin, "status", "--server", server.url)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:2] == ["SUBSYSTEM", "STATE"]
    row = next(l for l in lines if l.startswith("cache"))
    assert "normal" in row and "max_entries=10000" in row
    assert "hits_total=0" in p.stdout


def test_status_json(dwscale_bin, server):
    p = run(dwscale_bin, "status", "--json", "--server", server.url + "/")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc == server.get_json("/v1/subsystems") or \
        [s["name"] for s in doc["subsystems"]] == ["cache"]


def test_status_env_server(dwscale_bin, server):
    import os
    env = dict(os.environ, DWSCALE_SERVER=server.url)
    p = run(dwscale_bin, "status", env=env)
    assert p.returncode == 0 and "cache" in p.stdout


def test_status_unreachable(dwscale_bin):
    port = free_port()  # bound and released: nothing listens there
    p = run(dwscale_bin, "status", "--server", f"http://127.0.0.1:{port}")
    assert p.returncode == 4
    assert f"cannot reach http://127.0.0.1:{port}: connection refused" in p.stderr


def test_status_bad_url(dwscale_bin):
    p = run(dwscale_bin, "status", "--server", "ftp://x")
    assert p.returncode == 2
    assert "invalid server URL" in p.stderr
    p = run(dwscale_bin, "status", "extra")
    assert p.returncode == 2


class FakeServer:
    """A one-shot TCP server that answers every connection with fixed bytes."""

    def __init__(self, answer):
        import socket
        import threading
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    got = conn.recv(4096)
                    if not got:
                        break
                    data += got
                self.requests.append(data)
                conn.sendall(self.answer)

    def close(self):
        self.sock.close()


SUBSYSTEMS = (b'{"subsystems":[{"name":"fake","state":"warning","metrics":[{"name":"depth",'
              b'"value":3,"kind":"gauge"}],"limits":{"depth_max":{"value":8}}}]}')


def test_status_reads_chunked_answer(dwscale_bin):
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p)
                      for p in (SUBSYSTEMS[:10], SUBSYSTEMS[10:])) + b"0\r\n\r\n"
    fake = FakeServer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                      b"Content-Type: application/json\r\n\r\n" + chunks)
    try:
        p = run(dwscale_bin, "status", "--server", fake.url)
        assert p.returncode == 0, p.stderr
        row = next(l for l in p.stdout.splitlines() if l.startswith("fake"))
        assert "warning" in row and "depth_max=8" in row
        assert "depth=3" in p.stdout
        assert fake.requests[0].startswith(b"GET /v1/subsystems HTTP/1.1\r\n")
        p = run(dwscale_bin, "status", "--json", "--server", fake.url)
        assert json.loads(p.stdout) == json.loads(SUBSYSTEMS)
    finally:
        fake.close()


def test_status_server_error_and_garbage(dwscale_bin):
    body = b'{"error":"internal","message":"disk on fire"}'
    fake = FakeServer(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n%s"
                      % (len(body), body))
    try:
        p = run(dwscale_bin, "status", "--server", fake.url)
        assert p.returncode == 4
        assert "500" in p.stderr and "disk on fire" in p.stderr
    finally:
        fake.close()
    fake = FakeServer(b"SSH-2.0-OpenSSH_9.2\r\n")
    try:
        p = run(dwscale_bin, "status", "--server", fake.url)
        assert p.returncode == 4
        assert "did not answer with HTTP" in p.stderr
    finally:
        fake.close()
    # a body cut short of its Content-Length is an error, not a half document
    fake = FakeServer(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + SUBSYSTEMS[:40])
    try:
        p = run(dwscale_bin, "status", "--server", fake.url)
        assert p.returncode == 4
    finally:
        fake.close()
