# SPDX-License-Identifier: MIT
"""Fixtures for the system tests: they run the built `dwscale` binary as a user would.

The binary is $DWSCALE_BIN, or build/dwscale under the repository root. `server` starts
`dwscale serve` on a free loopback port with a fresh data directory, waits for /healthz, and at
the end of the test stops it with SIGTERM and checks that it exited 0.
"""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def dwscale_path():
    path = os.environ.get("DWSCALE_BIN") or os.path.join(REPO, "build", "dwscale")
    if not os.path.isabs(path):
        path = os.path.join(REPO, path)
    return path


@pytest.fixture(scope="session")
def dwscale_bin():
    path = dwscale_path()
    if not os.access(path, os.X_OK):
        pytest.fail(f"dwscale binary not found at {path}: build it, or set DWSCALE_BIN")
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(dwscale_bin, *args, timeout=60, env=None):
    """Run the command, return CompletedProcess with text stdout/stderr."""
    return subprocess.run([dwscale_bin, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)


class Server:
    """One `dwscale serve` process."""

    def __init__(self, dwscale_bin, data_dir, extra_args=()):
        self.bin = dwscale_bin
        self.data = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = None
        self._log = None

    def start(self):
        # the log sits next to the data directory, so it goes away with the test's tmp dir
        parent = os.path.dirname(os.path.abspath(self.data))
        os.makedirs(parent, exist_ok=True)
        self._log = tempfile.NamedTemporaryFile(prefix="serve-", suffix=".log", dir=parent,
                                                delete=False)
        self.log_path = self._log.name
        self.proc = subprocess.Popen(
            [self.bin, "serve", "--listen", f"127.0.0.1:{self.port}", "--data", self.data,
             *self.extra_args],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"dwscale serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                # the listening line is written just after the socket starts answering
                if self.request("GET", "/healthz", timeout=2).status == 200 and \
                        "event=listening" in self.log():
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.proc.kill()
        raise AssertionError(f"dwscale serve did not answer /healthz in {START_TIMEOUT}s:\n"
                             f"{self.log()}")

    def stop(self, sig=signal.SIGTERM):
        """Send sig and return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"dwscale serve did not stop on {sig!r}:\n{self.log()}")
        self._log.close()
        return rc

    def log(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def admin_token(self):
        with open(os.path.join(self.data, "admin.token")) as f:
            return f.read().strip()

    def request(self, method, path, body=None, headers=None, timeout=10):
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Response(r.status, r.headers, r.read().decode())
        except urllib.error.HTTPError as e:
            return Response(e.code, e.headers, e.read().decode())

    def get_json(self, path):
        r = self.request("GET", path)
        assert r.status == 200, r.body
        return r.json()


@pytest.fixture
def data_dir(tmp_path):
    return str(tmp_path / "var")


@pytest.fixture
def start_server(dwscale_bin, data_dir):
    """Factory: start_server(extra_args=(), data=None) -> running Server; all are stopped with
    SIGTERM at the end of the test and must exit 0."""
    started = []

    def start(extra_args=(), data=None):
        s = Server(dwscale_bin, data or data_dir, extra_args)
        started.append(s)
        return s.start()

    yield start
    for s in started:
        if s.proc is not None and s.proc.poll() is None:
            rc = s.stop()
            assert rc == 0, f"dwscale serve exited {rc} on SIGTERM:\n{s.log()}"


@pytest.fixture
def server(start_server):
    return start_server()
