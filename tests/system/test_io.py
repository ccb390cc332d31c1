# SPDX-License-Identifier: MIT
"""`dwscale io probe` and `dwscale io bench` run as a user would: output, JSON, errors."""
import json
import os

import pytest
from conftest import run


def test_probe_text_and_json(dwscale_bin, tmp_path):
    p = run(dwscale_bin, "io", "probe", str(tmp_path))
    assert p.returncode == 0, p.stderr
    for word in ("device", "class", "depth", "io_uring", "O_DIRECT"):
        assert word in p.stdout
    j = json.loads(run(dwscale_bin, "io", "probe", str(tmp_path), "--json").stdout)
    assert j["path"] == str(tmp_path)
    assert j["class"] in ("unknown", "hdd", "ssd", "nvme")
    assert j["depth"] == {"nvme": 128, "ssd": 32, "hdd": 8, "unknown": 32}[j["class"]]
    assert j["depth_why"] == "class " + j["class"]
    if j["io_uring"]["available"]:
        assert j["backend"] == "io_uring" and j["io_uring"]["errno"] is None
    else:
        assert j["backend"] == "psync" and j["io_uring"]["errno"].startswith("E")
    if j["direct"]["available"]:
        assert j["direct"]["off_align"] >= 512


def test_probe_errors(dwscale_bin, tmp_path):
    p = run(dwscale_bin, "io", "probe", str(tmp_path / "missing"))
    assert p.returncode == 3
    assert "No such file" in p.stderr
    assert run(dwscale_bin, "io", "probe").returncode == 2
    assert run(dwscale_bin, "io", "frob").returncode == 2
    assert run(dwscale_bin, "io").returncode == 2
    h = run(dwscale_bin, "io", "--help")
    assert h.returncode == 0 and "--mix SPEC" in h.stdout


def test_bench_single_job_json(dwscale_bin, tmp_path):
    f = tmp_path / "bench.dat"
    p = run(dwscale_bin, "io", "bench", str(f), "--size", "8M", "--seconds", "1",
            "--rw", "randwrite", "--bs", "4k", "--depth", "4", "--engine", "psync", "--json")
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    assert j["backend"] == "psync" and j["depth"] == 4
    assert os.path.getsize(f) == 8 << 20
    (job,) = j["jobs"]
    assert job["tier"] == "normal" and job["rw"] == "randwrite" and job["iodepth"] == 4
    assert job["ops"] > 0 and job["iops"] > 0
    assert job["lat_p50_us"] <= job["lat_p99_us"] <= job["lat_p999_us"]
    assert "error" not in job


def test_bench_mix_runs_every_tier(dwscale_bin, tmp_path):
    f = tmp_path / "mix.dat"
    p = run(dwscale_bin, "io", "bench", str(f), "--size", "16M", "--seconds", "1", "--mix",
            "high:randread:4k:1,normal:randwrite:8k:2,low:read:64k:4", "--json")
    assert p.returncode == 0, p.stderr
    jobs = json.loads(p.stdout)["jobs"]
    assert [x["tier"] for x in jobs] == ["high", "normal", "low"]
    assert [x["bs"] for x in jobs] == [4096, 8192, 65536]
    for x in jobs:
        assert x["ops"] > 0, x
    # text output has one row per job
    t = run(dwscale_bin, "io", "bench", str(f), "--size", "16M", "--seconds", "1", "--mix",
            "high:randread:4k:1,low:read:64k:2")
    assert t.returncode == 0, t.stderr
    assert "p99.9 us" in t.stdout
    assert len([ln for ln in t.stdout.splitlines() if ln.startswith(("high", "low"))]) == 2


def test_bench_bad_arguments(dwscale_bin, tmp_path):
    f = str(tmp_path / "x.dat")
    for args in (["--mix", "urgent:randread:4k:1"], ["--mix", "high:randread:4k"],
                 ["--rw", "trim"], ["--bs", "0"], ["--depth", "5000"], ["--engine", "aio"],
                 ["--size", "1k", "--bs", "4k"], ["--set", "nope=1"], ["--set", "depth=x"],
                 ["--set", "weight_low=0"]):
        p = run(dwscale_bin, "io", "bench", f, *args)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.strip(), args
    # nothing was created for a refused command line
    assert not os.path.exists(f)
    p = run(dwscale_bin, "io", "bench", str(tmp_path / "no" / "dir.dat"), "--seconds", "1")
    assert p.returncode == 3


def test_bench_never_changes_existing_data(dwscale_bin, tmp_path):
    f = tmp_path / "user.dat"
    data = os.urandom(1536 << 10)  # 1.5 MiB: not a whole number of the 1 MiB layout chunks
    f.write_bytes(data)
    # reads never grow an existing file: one smaller than --size is refused, untouched
    p = run(dwscale_bin, "io", "bench", str(f), "--rw", "randread", "--size", "4M",
            "--seconds", "1")
    assert p.returncode == 2, p.stderr
    assert "smaller than --size" in p.stderr and "new FILE" in p.stderr
    assert f.read_bytes() == data
    # ... and one that holds --size is read as it is
    for args in (["--rw", "read"], ["--mix", "high:randread:4k:1,low:read:64k:2"]):
        p = run(dwscale_bin, "io", "bench", str(f), "--size", "1M", "--seconds", "1", *args)
        assert p.returncode == 0, (args, p.stderr)
        assert f.read_bytes() == data, args
    # writes overwrite by nature: refused on an existing file without --overwrite
    for args in (["--rw", "randwrite"], ["--rw", "write"],
                 ["--mix", "high:randread:4k:1,low:write:64k:1"]):
        p = run(dwscale_bin, "io", "bench", str(f), "--size", "1M", "--seconds", "1", *args)
        assert p.returncode == 2, (args, p.stderr)
        assert "--overwrite" in p.stderr, args
        assert f.read_bytes() == data, args
    p = run(dwscale_bin, "io", "bench", str(f), "--size", "2M", "--seconds", "1",
            "--rw", "write", "--overwrite")
    assert p.returncode == 0, p.stderr
    assert os.path.getsize(f) == 2 << 20
    h = run(dwscale_bin, "io", "--help")
    assert "--overwrite" in h.stdout


def test_bench_counts_are_plain_numbers(dwscale_bin, tmp_path):
    # a missing directory makes an accepted command line fail at once (exit 3), not run 1024 s
    f = str(tmp_path / "no" / "x.dat")
    for opt, args in (("--seconds", ["--seconds", "1k"]), ("--depth", ["--depth", "1k"]),
                      ("--seconds", ["--seconds", "-1"]), ("--depth", ["--depth", "0"]),
                      ("--mix", ["--mix", "high:randread:4k:1k"])):
        p = run(dwscale_bin, "io", "bench", f, *args)
        assert p.returncode == 2, (args, p.stderr)
        assert opt in p.stderr, (args, p.stderr)
    p = run(dwscale_bin, "io", "probe", f, "--calibrate", "--step-ms", "1k")
    assert p.returncode == 2, p.stderr
    assert "--step-ms" in p.stderr


def test_bench_mix_refuses_empty_jobs(dwscale_bin, tmp_path):
    f = str(tmp_path / "no" / "x.dat")
    for spec in ("high:randread:4k:1,", ",high:randread:4k:1", "high:randread:4k:1,,low:read:4k:1",
                 ",", "high::randread:4k:1", "high:randread:4k:1:"):
        p = run(dwscale_bin, "io", "bench", f, "--mix", spec)
        assert p.returncode == 2, (spec, p.stderr)
        assert "--mix" in p.stderr, (spec, p.stderr)


def test_bench_mix_refuses_rw_and_bs(dwscale_bin, tmp_path):
    f = str(tmp_path / "no" / "x.dat")
    for args in (["--rw", "randwrite"], ["--bs", "64k"], ["--rw", "read", "--bs", "8k"]):
        p = run(dwscale_bin, "io", "bench", f, "--mix", "high:randread:4k:1", *args)
        assert p.returncode == 2, (args, p.stderr)
        assert "--mix" in p.stderr and args[0] in p.stderr, (args, p.stderr)


def test_missing_option_value_is_reported_once(dwscale_bin, tmp_path):
    f = str(tmp_path / "x.dat")
    for args in (["bench", f, "--seconds"], ["bench", f, "--mix"], ["probe", f, "--step-ms"]):
        p = run(dwscale_bin, "io", *args)
        assert p.returncode == 2, (args, p.stderr)
        assert f"{args[-1]} needs a value" in p.stderr, (args, p.stderr)
        assert "unknown option" not in p.stderr and "requires an argument" not in p.stderr
    p = run(dwscale_bin, "io", "bench", f, "--frob")
    assert p.returncode == 2 and "unknown option --frob" in p.stderr, p.stderr
    assert not os.path.exists(f)


def test_bench_direct_checks_the_alignment_first(dwscale_bin, tmp_path):
    j = json.loads(run(dwscale_bin, "io", "probe", str(tmp_path), "--json").stdout)
    if not j["direct"]["available"]:
        pytest.skip(f"O_DIRECT is not available under {tmp_path}")
    align = max(j["direct"]["mem_align"], j["direct"]["off_align"])
    f = tmp_path / "d.dat"
    for args in (["--bs", "1000"], ["--mix", f"high:randread:{align}:1,low:read:1000:1"]):
        p = run(dwscale_bin, "io", "bench", str(f), "--direct", "--size", "4M", "--seconds", "2",
                *args)
        assert p.returncode == 2, (args, p.stderr)
        assert "O_DIRECT" in p.stderr and f"multiple of {align}" in p.stderr, (args, p.stderr)
        assert not f.exists(), args  # refused before anything was laid out
    p = run(dwscale_bin, "io", "bench", str(f), "--direct", "--size", "4M", "--seconds", "1",
            "--bs", str(align * 2), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["direct"] is True


def test_probe_calibrate_stores_the_depth(dwscale_bin, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    store = "sqlite:" + str(tmp_path / "store.db")
    p = run(dwscale_bin, "io", "probe", str(data), "--calibrate", "--step-ms", "50",
            "--size", "8M", "--store", store, "--json", timeout=120)
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    depths = [s["depth"] for s in j["steps"]]
    assert depths == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert j["depth"] in depths and j["stored"] is True
    best = max(s["iops"] for s in j["steps"])
    chosen = next(s for s in j["steps"] if s["depth"] == j["depth"])
    assert chosen["iops"] >= 0.9 * best
    assert all(s["iops"] < 0.9 * best for s in j["steps"] if s["depth"] < j["depth"])
    assert os.listdir(data) == []  # the scratch file is gone
    # a plain probe with the same store reports it
    q = json.loads(run(dwscale_bin, "io", "probe", str(data), "--store", store, "--json").stdout)
    assert q["depth"] == j["depth"] and q["depth_why"] == "calibrated"
    # without a store nothing is kept, and the class depth stays
    r = run(dwscale_bin, "io", "probe", str(data), "--calibrate", "--step-ms", "20",
            "--size", "4M")
    assert r.returncode == 0, r.stderr
    assert "not stored" in r.stdout


def test_serve_exposes_io_limits(server):
    doc = server.get_json("/v1/subsystems/io")
    assert doc["name"] == "io" and doc["state"] == "normal"
    lim = doc["limits"]
    assert lim["weight_high"]["value"] == 16 and lim["weight_low"]["value"] == 1
    assert lim["reprobe_s"]["value"] == 300 and lim["quota_window_s"]["value"] == 3600
    headers = {"Content-Type": "application/json",
               "Authorization": f"Bearer {server.admin_token()}"}
    r = server.request("PUT", "/v1/subsystems/io/limits",
                       body=json.dumps({"depth": 16, "deadline_low_ms": 200}).encode(),
                       headers=headers)
    assert r.status == 200, r.body
    lim = server.get_json("/v1/subsystems/io")["limits"]
    assert lim["depth"]["value"] == 16 and lim["deadline_low_ms"]["value"] == 200
    # thresholds out of order are refused as a whole, nothing applied
    r = server.request("PUT", "/v1/subsystems/io/limits",
                       body=json.dumps({"depth": 4, "bp_warning": 0.95}).encode(),
                       headers=headers)
    assert r.status == 400
    assert server.get_json("/v1/subsystems/io")["limits"]["depth"]["value"] == 16
