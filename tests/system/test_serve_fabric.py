# SPDX-License-Identifier: MIT
"""`dwscale serve` with a [fabric] section: the node joins over UDP on 127.0.0.x, registers as
subsystem "fabric", and answers GET /v1/fabric/nodes and /v1/fabric/events with the documents of
`dwscale fabric agent --http`; config mistakes name file:line and key."""
import json
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import run

H = "1s"


def free_udp_port(ip):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def free_tcp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=20, step=0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


@pytest.fixture
def key_file(dwscale_bin, tmp_path):
    path = tmp_path / "fabric.key"
    r = run(dwscale_bin, "fabric", "keygen", "-o", str(path))
    assert r.returncode == 0, r.stderr
    return str(path)


def fabric_conf(tmp_path, name, bind, key_file, join=None, extra=""):
    cfg = tmp_path / f"{name}.conf"
    text = f"[fabric]\nbind = {bind}\nkey_file = {key_file}\ninterval = {H}\nmissed = 3\n"
    if join:
        text += f"join = {join}\n"
    cfg.write_text(text + extra)
    return str(cfg)


def alive_addrs(server):
    doc = server.get_json("/v1/fabric/nodes")
    return {n["addr"] for n in doc["nodes"] if n["state"] == "alive"}


def test_two_serve_nodes_see_each_other(dwscale_bin, start_server, tmp_path, key_file):
    a_bind = f"127.0.0.2:{free_udp_port('127.0.0.2')}"
    b_bind = f"127.0.0.3:{free_udp_port('127.0.0.3')}"
    a = start_server(["--config", fabric_conf(tmp_path, "a", a_bind, key_file)],
                     data=str(tmp_path / "a"))
    b = start_server(["--config", fabric_conf(tmp_path, "b", b_bind, key_file, join=a_bind)],
                     data=str(tmp_path / "b"))
    both = {a_bind, b_bind}
    assert wait_until(lambda: alive_addrs(a) == both and alive_addrs(b) == both), \
        (a.get_json("/v1/fabric/nodes"), b.get_json("/v1/fabric/nodes"))
    doc = a.get_json("/v1/fabric/nodes")
    assert doc["cluster_size"] == 2
    assert doc["nodes"][0]["addr"] == a_bind  # self first
    # a learnt of b through b's join: an "added" event naming b
    events = a.get_json("/v1/fabric/events")
    added = [e for e in events if e["event"] == "added" and e["member"]["addr"] == b_bind]
    assert added, events
    assert added[0]["cluster_size"] == 2
    # the node is a subsystem like the others
    subs = {s["name"]: s for s in a.get_json("/v1/subsystems")["subsystems"]}
    assert "fabric" in subs
    assert "dwscale_fabric_" in a.request("GET", "/metrics").body


def test_serve_and_agent_agree(dwscale_bin, start_server, tmp_path, key_file):
    s_bind = f"127.0.0.4:{free_udp_port('127.0.0.4')}"
    g_bind = f"127.0.0.5:{free_udp_port('127.0.0.5')}"
    http = f"127.0.0.1:{free_tcp_port()}"
    srv = start_server(["--config", fabric_conf(tmp_path, "s", s_bind, key_file)])
    agent = subprocess.Popen(
        [dwscale_bin, "fabric", "agent", "--bind", g_bind, "--key-file", key_file,
         "--interval", H, "--missed", "3", "--join", s_bind, "--http", http],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def agent_view():
            try:
                with urllib.request.urlopen(f"http://{http}/v1/fabric/nodes", timeout=2) as r:
                    return json.loads(r.read())
            except OSError:
                return None
        both = {s_bind, g_bind}
        assert wait_until(lambda: alive_addrs(srv) == both and agent_view() is not None and
                          {n["addr"] for n in agent_view()["nodes"]} == both)
        mine, theirs = srv.get_json("/v1/fabric/nodes"), agent_view()
        assert set(mine) == set(theirs)
        assert set(mine["nodes"][0]) == set(theirs["nodes"][0])
        assert mine["topology"] == theirs["topology"]
        with urllib.request.urlopen(f"http://{http}/v1/fabric/events", timeout=2) as r:
            agent_events = json.loads(r.read())
        srv_events = srv.get_json("/v1/fabric/events")
        assert any(e["event"] == "added" and e["member"]["addr"] == s_bind
                   for e in agent_events)
        assert any(e["event"] == "added" and e["member"]["addr"] == g_bind
                   for e in srv_events)
        assert set(srv_events[0]) == set(agent_events[0])
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def test_node_id_kept_across_restarts(dwscale_bin, start_server, tmp_path, key_file):
    bind = f"127.0.0.6:{free_udp_port('127.0.0.6')}"
    cfg = fabric_conf(tmp_path, "r", bind, key_file)
    first = start_server(["--config", cfg])
    me = first.get_json("/v1/fabric/nodes")["nodes"][0]
    assert first.stop() == 0
    second = start_server(["--config", cfg])
    again = second.get_json("/v1/fabric/nodes")["nodes"][0]
    assert again["id"] == me["id"]
    assert again["generation"] > me["generation"]


def test_configured_node_id(dwscale_bin, start_server, tmp_path, key_file):
    bind = f"127.0.0.7:{free_udp_port('127.0.0.7')}"
    srv = start_server(["--config", fabric_conf(tmp_path, "n", bind, key_file,
                                                extra="node_id = 0x2a\n")])
    assert srv.get_json("/v1/fabric/nodes")["nodes"][0]["id"] == "%016x" % 42


def test_fabric_routes_without_fabric(server):
    for path in ("/v1/fabric/nodes", "/v1/fabric/events"):
        r = server.request("GET", path)
        assert r.status == 404
        assert r.json()["error"] == "not_configured"
        assert "[fabric]" in r.json()["message"]
    assert server.request("POST", "/v1/fabric/nodes", body=b"{}").status == 405


@pytest.mark.parametrize("text,line,key,why", [
    ("bind = 127.0.0.2:7946\n", 1, "key_file", "is required"),
    ("key_file = KEY\n", 1, "bind", "is required"),
    ("bind = 127.0.0.2\nkey_file = KEY\n", 2, "bind", "A.B.C.D:PORT"),
    ("bind = 127.0.0.2:7946\nkey_file = KEY\ntopology = ring\n", 4, "topology", "star"),
    ("bind = 127.0.0.2:7946\nkey_file = KEY\nmissed = 0\n", 4, "missed", "between 1 and 100"),
    ("bind = 127.0.0.2:7946\nkey_file = KEY\ninterval = soon\n", 4, "interval", "duration"),
    ("bind = 127.0.0.2:7946\nkey_file = KEY\njoin = 127.0.0.1:1, nowhere\n", 4, "join",
     "nowhere"),
    ("bind = 127.0.0.2:7946\nkey_file = KEY\nnode_id = 0\n", 4, "node_id", "non-zero"),
    ("bind = 127.0.0.2:7946\nkey_file = KEY\nhttp = 127.0.0.1:1\n", 4, "http", "unknown key"),
    ("bind = 127.0.0.2:7946\nkey_file = /nonexistent/key\n", 3, "key_file", "nonexistent"),
])
def test_fabric_config_errors(dwscale_bin, tmp_path, key_file, text, line, key, why):
    cfg = tmp_path / "dw.conf"
    cfg.write_text("[fabric]\n" + text.replace("KEY", key_file))
    r = subprocess.run([dwscale_bin, "serve", "--listen", "127.0.0.1:0", "--data",
                        str(tmp_path / "d"), "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    if key in ("bind", "key_file") and why == "is required":
        assert f"[fabric] {key}: {why}" in r.stderr
    else:
        assert f"{cfg}:{line}: [fabric] {key}:" in r.stderr
    assert why in r.stderr
