#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fabric benchmark: `dwscale fabric agent` beside serf (Debian's serf agent, HashiCorp memberlist
# underneath), the same N agents as real processes on loopback, in the same run.
#
#   detection   kill -9 one agent; the time from the kill until each survivor reports the node
#               gone (dwscale: a "removed" event; serf: EventMemberFailed in its log), as the
#               median and max over every (survivor, kill) pair of several kills, and how many
#               survivors never reported it
#   traffic     datagrams (and their UDP payload bytes) each agent sends per interval over a quiet
#               window once the cluster has converged; serf's TCP push/pull state sync is counted
#               apart (payload bytes per node per second), dwscale has none
#   memory      peak RSS (VmHWM) per agent, the median over the agents
#
# Settings, and why:
#   interval    serf's failure detector probes one random member every ProbeInterval = 1 s in
#               every profile, and Debian's serf (0.8.x) sets timing only by profile (it refuses
#               profile_path), so dwscale runs with --interval 1s. dwscale keeps its default
#               --missed 3 (removal at K*H = 3 s, no sooner). serf runs its default profile, lan
#               (probe timeout 500 ms, suspicion timeout 4*log10(N) probe intervals, shrinking
#               as other members confirm the suspicion); what a user of either gets by default.
#   topology    dwscale Mesh (its default, every node heartbeats every node: N-1 datagrams per
#               node per interval) and Star (leaves heartbeat the hub, which answers: about 2
#               per node per interval on average). serf has one shape (random probing + gossip).
#   counting    no netem or iptables here, and the kernel's UDP counters are per network
#               namespace, not per process, so packets are counted on the loopback device
#               itself: a packet socket (AF_PACKET, needs root) sees every outgoing IPv4 packet
#               once, and each agent has its own address (127.77.R.I), so the source address
#               names the agent. The same count is used for both; anything else on lo is ignored.
# N = 20 and 50; three kills each (two and N = 20 only with --quick). About 8 minutes in all.
# Run by bench/run.sh (make bench).
#   bench/fabric.sh [--quick]
set -euo pipefail
top=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
build=${DW_BENCH_BUILD:-$top/build-release}
. "$top/bench/build.bash"
dw_bench_build dwscale
if ! command -v serf >/dev/null; then
	echo "serf not found: install it (scripts/install-deps.sh --bench)" >&2
	exit 1
fi
if [ "$(id -u)" != 0 ]; then
	echo "bench/fabric.sh counts packets with a packet socket on lo, which needs root" >&2
	exit 1
fi
exec /usr/bin/python3 - "$build/dwscale" "$@" <<'PY'
import atexit, json, os, random, shutil, socket, statistics, struct, subprocess, sys, tempfile
import threading, time

dwscale = sys.argv[1]
quick = "--quick" in sys.argv[2:]
SIZES = [20] if quick else [20, 50]
if os.environ.get("DW_BENCH_FABRIC_SIZES"):  # e.g. "50": only these cluster sizes
    SIZES = [int(x) for x in os.environ["DW_BENCH_FABRIC_SIZES"].split(",")]
KILLS = 2 if quick else 3
WINDOW = 8.0 if quick else 10.0  # dwscale's quiet window for the traffic count, seconds
# serf syncs its full state over TCP with one random member every 30 s (push/pull, lan profile;
# 60 s past 32 nodes), the first within one cycle of the start: its window starts after that and
# lasts a whole cycle, so each node's sync is counted once


def serf_cycle(n):
    return 30.0 if n <= 32 else 60.0

H, K = 1.0, 3
CONVERGE_TIMEOUT = 60.0
DETECT_TIMEOUT = 30.0  # serf's suspicion timeout alone is 4*log10(50)*1 s = 6.8 s
tmp = tempfile.mkdtemp(prefix="dw-bench-fabric-")
atexit.register(shutil.rmtree, tmp, True)
subnet = [random.randrange(1, 200)]  # 127.77.<subnet>.<agent>: a fresh /24 per cluster


class Agent:
    """One agent process; a thread timestamps each line of its stdout as it arrives."""

    def __init__(self, idx, ip, cmd, parse):
        self.idx, self.ip, self.parse = idx, ip, parse
        self.lines = []  # (monotonic time, parsed event)
        self.lock = threading.Lock()
        self.up = threading.Event()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            now = time.monotonic()
            if "Serf agent running" in line:
                self.up.set()
            ev = self.parse(line)
            if ev:
                with self.lock:
                    self.lines.append((now, ev))

    def events(self):
        with self.lock:
            return list(self.lines)

    def first(self, kind, name, after):
        for t, (k, n) in self.events():
            if k == kind and n == name and t >= after:
                return t
        return None

    def members(self):
        live = set()
        for _, (k, n) in self.events():
            if k == "join":
                live.add(n)
            elif k == "gone":
                live.discard(n)
        return live

    def hwm_kib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def parse_dw(line):
    try:
        e = json.loads(line)
    except ValueError:
        return None
    if "member" not in e:
        return None
    name = int(e["member"]["id"], 16)
    if e.get("event") == "added":
        return ("join", name)
    if e.get("event") == "removed":
        return ("gone", name)
    return None


def parse_serf(line):
    for key, kind in (("EventMemberJoin: ", "join"), ("EventMemberFailed: ", "gone"),
                      ("EventMemberLeave: ", "gone")):
        i = line.find(key)
        if i >= 0:
            return (kind, line[i + len(key):].split()[0])
    return None


def free_port(ip):
    for _ in range(100):
        p = random.randrange(30000, 60000)
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind((ip, p))
                    if kind == socket.SOCK_STREAM:
                        with socket.socket(socket.AF_INET, kind) as s2:
                            s2.bind((ip, p + 1))
            return p
        except OSError:
            continue
    sys.exit("no free port")


def start_dwscale(n, topology):
    subnet[0] = subnet[0] % 250 + 1
    ips = [f"127.77.{subnet[0]}.{i + 1}" for i in range(n)]
    port = free_port(ips[0])
    key = os.path.join(tmp, "fabric.key")
    if not os.path.exists(key):
        subprocess.run([dwscale, "fabric", "keygen", "-o", key], check=True,
                       stderr=subprocess.DEVNULL)
    agents = []
    for i, ip in enumerate(ips):
        cmd = [dwscale, "fabric", "agent", "--bind", f"{ip}:{port}", "--key-file", key,
               "--interval", f"{H}s", "--missed", str(K), "--node-id", str(1000 + i),
               "--topology", topology]
        if i:
            cmd += ["--join", f"{ips[0]}:{port}"]
        agents.append(Agent(i, ip, cmd, parse_dw))
        if i == 0:
            time.sleep(0.3)
    names = [1000 + i for i in range(n)]
    # a dwscale agent reports the others, not itself
    want = [set(names) - {names[i]} for i in range(n)]
    return agents, names, want, port


def start_serf(n):
    subnet[0] = subnet[0] % 250 + 1
    ips = [f"127.77.{subnet[0]}.{i + 1}" for i in range(n)]
    port = free_port(ips[0])
    agents = []
    for i, ip in enumerate(ips):
        cmd = ["serf", "agent", f"-bind={ip}:{port}", f"-rpc-addr={ip}:{port + 1}",
               f"-node=n{i}", "-log-level=info"]
        if i:
            cmd += [f"-join={ips[0]}:{port}"]
        a = Agent(i, ip, cmd, parse_serf)
        agents.append(a)
        if i == 0 and not a.up.wait(20):
            sys.exit("serf agent did not start")
    names = [f"n{i}" for i in range(n)]
    want = [set(names) for _ in range(n)]  # serf reports its own join too
    return agents, names, want, port


def wait_until(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def count_traffic(ips, port, seconds):
    """Outgoing IPv4 packets from the agents' addresses on lo, over `seconds`."""
    addrs = {socket.inet_aton(ip) for ip in ips}
    # ETH_P_ALL: only taps on every protocol see outgoing packets (PACKET_OUTGOING); SOCK_DGRAM:
    # the kernel strips the link header, so data starts at the IPv4 header
    s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0003))
    s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE: past rmem_max (root)
    s.bind(("lo", 0))
    s.settimeout(0.2)
    udp_pkts = udp_bytes = tcp_bytes = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            data, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        if addr[1] != 0x0800 or addr[2] != socket.PACKET_OUTGOING or len(data) < 40:
            continue
        ihl = (data[0] & 0x0F) * 4
        proto = data[9]
        total = struct.unpack("!H", data[2:4])[0]
        sport, dport = struct.unpack("!HH", data[ihl:ihl + 4])
        src, dst = data[12:16] in addrs, data[16:20] in addrs
        if proto == 17 and src and sport == port:
            udp_pkts += 1
            udp_bytes += total - ihl - 8
        elif proto == 6 and ((src and sport == port) or (dst and dport == port)):
            # serf dials push/pull without binding, so the dialer's side is 127.0.0.1
            tcp_bytes += total - ihl - ((data[ihl + 12] >> 4) * 4)
    # PACKET_STATISTICS: packets the socket had to drop (then the count is low)
    st = s.getsockopt(263, 6, 8)
    s.close()
    return udp_pkts, udp_bytes, tcp_bytes, struct.unpack("II", st)[1]


def run_cluster(system, label, n, starter):
    t0 = time.monotonic()
    agents, names, want, port = starter()
    try:
        if not wait_until(lambda: all(a.members() >= w for a, w in zip(agents, want)),
                          CONVERGE_TIMEOUT):
            short = [(a.idx, len(w - a.members())) for a, w in zip(agents, want)
                     if not a.members() >= w]
            dead = [a.idx for a in agents if a.proc.poll() is not None]
            print(f"  {label} N={n}: did not converge in {CONVERGE_TIMEOUT:.0f} s: "
                  f"{len(short)} agents miss members (agent, missing: {short[:8]}), "
                  f"{len(dead)} exited {dead[:8]}")
            return None
        conv = time.monotonic() - t0
        time.sleep(3 * H)  # joins settle (member pages, serf's join gossip)
        window = WINDOW
        if system == "serf" and not quick:
            window = serf_cycle(n)
            time.sleep(max(0.0, t0 + serf_cycle(n) - time.monotonic()))
        pk, by, tcp, drops = count_traffic([a.ip for a in agents], port, window)
        rss = statistics.median(a.hwm_kib() for a in agents) / 1024
        victims = [n - 1, n // 2, 3][:KILLS]  # never agent 0: the seed, and the Star hub
        delays, missed = [], 0
        for v in victims:
            victim = agents[v]
            survivors = [a for a in agents if a.proc.poll() is None and a is not victim]
            t_kill = time.monotonic()
            victim.kill()
            wait_until(lambda: all(a.first("gone", names[v], t_kill) for a in survivors),
                       DETECT_TIMEOUT)
            for a in survivors:
                t = a.first("gone", names[v], t_kill)
                if t is None:
                    missed += 1
                else:
                    delays.append(t - t_kill)
            time.sleep(2 * H)
        r = {
            "system": system, "label": label, "n": n, "converge_s": conv,
            "msgs": pk / n / (window / H), "bytes": by / n / (window / H),
            "tcp": tcp / n / window, "drops": drops,
            "det_p50": statistics.median(delays) if delays else float("nan"),
            "det_max": max(delays) if delays else float("nan"),
            "pairs": len(delays), "missed": missed, "rss_mib": rss,
        }
        print(f"  {label} N={n}: converged in {conv:.1f} s, {r['msgs']:.2f} msgs/node/H, "
              f"detection p50 {r['det_p50']:.2f} s max {r['det_max']:.2f} s", flush=True)
        return r
    finally:
        for a in agents:
            a.kill()


print(f"fabric: {' and '.join(map(str, SIZES))} agents on loopback, H = {H:g} s, K = {K} "
      f"(dwscale); serf profile lan; {KILLS} kills per cluster; traffic over {WINDOW:g} s "
      f"(serf: one push/pull cycle)", flush=True)
serf_version = subprocess.run(["serf", "version"], capture_output=True, text=True).stdout
loadavg = lambda: " ".join(open("/proc/loadavg").read().split()[:3])
print(f"serf {serf_version.splitlines()[0]}   load average before: {loadavg()}", flush=True)
rows = []
for n in SIZES:
    for system, label, starter in (
            ("serf", "serf lan", lambda n=n: start_serf(n)),
            ("dwscale", "dwscale mesh", lambda n=n: start_dwscale(n, "mesh")),
            ("dwscale", "dwscale star", lambda n=n: start_dwscale(n, "star"))):
        r = run_cluster(system, label, n, starter)
        if r is None:  # a cluster that never formed says nothing of detection: once more
            print(f"  {label} N={n}: starting it again", flush=True)
            r = run_cluster(system, label, n, starter)
        if r:
            rows.append(r)
print()
print(f"{'cluster':<14}{'N':>4}  {'msgs/node/H':>11}  {'bytes/node/H':>12}  {'tcp B/node/s':>12}"
      f"  {'detect p50':>10}  {'max':>6}  {'pairs':>6}  {'missed':>6}  {'RSS MiB':>7}")
for r in rows:
    print(f"{r['label']:<14}{r['n']:>4}  {r['msgs']:>11.2f}  {r['bytes']:>12.0f}  {r['tcp']:>12.0f}"
          f"  {r['det_p50']:>9.2f}s  {r['det_max']:>5.2f}s  {r['pairs']:>6}  {r['missed']:>6}"
          f"  {r['rss_mib']:>7.1f}")
print()
print("ratios dwscale/serf at the same N (below 1: dwscale lower; bytes count serf's TCP too)")
print(f"{'cluster':<14}{'N':>4}  {'msgs':>7}  {'bytes':>7}  {'detect p50':>10}  {'detect max':>10}"
      f"  {'RSS':>6}")
for r in rows:
    if r["system"] != "dwscale":
        continue
    s = next((x for x in rows if x["system"] == "serf" and x["n"] == r["n"]), None)
    if not s:
        continue
    ratio = lambda a, b: a / b if b else float("nan")
    all_bytes = lambda x: x["bytes"] / H + x["tcp"]  # per node per second, UDP and TCP
    print(f"{r['label']:<14}{r['n']:>4}  {ratio(r['msgs'], s['msgs']):>7.2f}"
          f"  {ratio(all_bytes(r), all_bytes(s)):>7.2f}"
          f"  {ratio(r['det_p50'], s['det_p50']):>10.2f}"
          f"  {ratio(r['det_max'], s['det_max']):>10.2f}"
          f"  {ratio(r['rss_mib'], s['rss_mib']):>6.2f}")
if any(r["drops"] for r in rows):
    print("note: the packet socket dropped packets in some windows; those counts are low")
print(f"load average after: {loadavg()}")
print("dwscale removes a node at K*H = 3 s of silence and not before (its bound is "
      "[K*H, K*H + H/2] from the last heartbeat, which precedes the kill by up to H)")
PY
