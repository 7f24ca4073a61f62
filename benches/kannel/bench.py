#!/usr/bin/env python3
"""smsgate and Kannel 1.4.5 side by side on loopback (issue 15, item 4).

Called by benches/kannel/run.sh, which installs Kannel and oha and builds
smsgate first; run that, not this. Standard library only.

Every process runs on 127.0.0.1 with its state in a fresh temporary
directory. Workloads A (single sends), B (one batch) and the fixed-rate
latency run alternate between smsgate, Kannel with its spool store and
Kannel with no store, three rounds (one with --quick, on smaller
numbers); the medians of the rounds and the ratios smsgate/Kannel are
printed, then smsgate's own figures (pacing, DNCR import, memory, READY).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "bench-operator-token-0123456789abcdef"
# Kannel's smsbox sends everything from this number when the request names
# none; smsgate's messages have no sender field either.
KANNEL_USER = "bench"
KANNEL_PASS = "bench-pass"
TEXT = "Hola Mundo, su cita es mañana"
NUMBER = "099123456"


def log(msg):
    print(msg, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, within=20.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {within} s")


def http(url, data=None, headers=None, method=None, timeout=600):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def proc_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def load():
    return "%.2f %.2f %.2f" % os.getloadavg()


def stop(proc, within=10.0):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(within)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------- oha


class Oha:
    def __init__(self, binary):
        self.binary = binary

    def run(self, url, *, n=None, duration=None, rate=None, conns=16, post=None):
        """Runs oha; its JSON summary plus how many answers were 202."""
        cmd = [self.binary, "--no-tui", "--output-format", "json", "-c", str(conns)]
        if n is not None:
            cmd += ["-n", str(n)]
        if duration is not None:
            cmd += ["-z", duration]
        if rate is not None:
            # Open loop: requests are due at a fixed rate and each latency
            # counts from when it was due, so a stall is not hidden by the
            # requests it held back (coordinated omission).
            cmd += ["-q", str(rate), "--latency-correction"]
        if post is not None:
            cmd += [
                "-m", "POST",
                "-H", f"Authorization: Bearer {TOKEN}",
                "-H", "Content-Type: application/json",
                "-d", post,
            ]
        cmd.append(url)
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"oha failed: {out.stderr[-2000:]}")
        j = json.loads(out.stdout)
        codes = j.get("statusCodeDistribution", {})
        j["_accepted"] = int(codes.get("202", 0))
        j["_total"] = sum(int(v) for v in codes.values())
        j["_errors"] = j.get("errorDistribution", {})
        return j


def percentile_ms(j, p):
    lp = j.get("latencyPercentiles", {})
    v = lp.get(p)
    return None if v is None else v * 1000.0


# ----------------------------------------------------------------- smsgate


def smsgate_config(state, port, body):
    return f"""
[daemon]
state_dir = "{state}"
log_level = "warn"
drain_timeout_s = 5

[api]
listen = "127.0.0.1:{port}"
max_upload_bytes = 1073741824

[[api.tokens]]
name = "bench"
token = "{TOKEN}"
role = "operator"
{body}
"""


# The setup: a zero-latency simulated gateway with 64 ports, one
# dialer with no pacing. The sim is in process, so "handed to the
# gateway" is the sim taking the message: SENT committed (every state
# change is committed with synchronous=FULL before the next step).
SIM64 = """
[[gateway]]
name = "sim1"
kind = "sim"
ports = 64
latency_ms = 0

[[dialer]]
name = "campsms"
provider = "sim1"
interval_ms = 0
"""


class Smsgate:
    def __init__(self, binary, workdir, body=SIM64, name="smsgate"):
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix=name + "-", dir=workdir)
        self.state = os.path.join(self.dir, "state")
        self.port = free_port()
        self.config = os.path.join(self.dir, "smsgate.toml")
        with open(self.config, "w") as f:
            f.write(smsgate_config(self.state, self.port, body))
        self.proc = None
        self.stderr = open(os.path.join(self.dir, "stderr.log"), "ab")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self):
        """Starts the daemon; seconds from spawn to READY=1 on its notify socket."""
        sock_path = os.path.join(self.dir, "notify.sock")
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(sock_path)
        sock.settimeout(0.2)
        env = dict(os.environ, NOTIFY_SOCKET=sock_path)
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [self.binary, "run", "--config", self.config],
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            env=env,
        )
        deadline = t0 + 60
        try:
            while time.monotonic() < deadline:
                try:
                    msg = sock.recv(4096).decode(errors="replace")
                except socket.timeout:
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"smsgate exited; see {self.stderr.name}")
                    continue
                if "READY=1" in msg:
                    return time.monotonic() - t0
            raise RuntimeError("no READY=1 within 60 s")
        finally:
            sock.close()

    def stop(self):
        stop(self.proc, 30)

    def metric(self, name, **labels):
        _, body = http(self.url("/metrics"), timeout=30)
        total = 0.0
        for line in body.decode().splitlines():
            if not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            if head.split("{")[0] != name:
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return int(total)

    def handed(self):
        """Messages the dialer saw SENT: accepted by the gateway and committed."""
        return self.metric("smsgate_dialer_messages_total", dialer="campsms", state="sent")

    def single_url(self):
        return self.url("/api/v1/messages")

    def single_body(self):
        return json.dumps({"dialer": "campsms", "to": NUMBER, "text": TEXT})

    def upload(self, route, name, path):
        with open(path, "rb") as f:
            data = f.read()
        status, body = http(
            self.url(f"{route}?filename={name}"),
            data=data,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/csv"},
            method="POST",
        )
        if status != 201:
            raise RuntimeError(f"upload {name}: {status} {body[:500]!r}")
        return json.loads(body)

    def rss_kib(self):
        return proc_kib(self.proc.pid, "VmRSS")

    def hwm_kib(self):
        return proc_kib(self.proc.pid, "VmHWM")

    def cleanup(self):
        self.stop()
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------ Kannel


def kannel_config(d, admin, box, fake, send, store):
    store_lines = (
        f'store-type = spool\nstore-location = "{d}/spool"\n' if store else ""
    )
    return f"""
group = core
admin-port = {admin}
admin-password = bench-admin
status-password = bench-admin
admin-allow-ip = "127.0.0.1"
smsbox-port = {box}
box-allow-ip = "127.0.0.1"
log-file = "{d}/bearerbox.log"
log-level = 3
{store_lines}
group = smsc
smsc = fake
smsc-id = fake
host = 127.0.0.1
port = {fake}
connect-allow-ip = "127.0.0.1"

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {box}
sendsms-port = {send}
global-sender = 59829001000
log-file = "{d}/smsbox.log"
log-level = 3

group = sendsms-user
username = {KANNEL_USER}
password = {KANNEL_PASS}

group = sms-service
keyword = default
text = "ok"
"""


class Kannel:
    """bearerbox + smsbox, with fakesmsc as the SMSC (see README.md)."""

    def __init__(self, workdir, store):
        self.store = store
        self.dir = tempfile.mkdtemp(prefix="kannel-", dir=workdir)
        os.makedirs(os.path.join(self.dir, "spool"))
        self.admin, self.box, self.fake, self.send = (free_port() for _ in range(4))
        self.conf = os.path.join(self.dir, "kannel.conf")
        with open(self.conf, "w") as f:
            f.write(kannel_config(self.dir, self.admin, self.box, self.fake, self.send, store))
        self.procs = []

    def _spawn(self, cmd):
        out = open(os.path.join(self.dir, os.path.basename(cmd[0]) + ".out"), "ab")
        p = subprocess.Popen(cmd, stdout=out, stderr=out, cwd=self.dir)
        self.procs.append(p)
        return p

    def start(self):
        self._spawn(["/usr/sbin/bearerbox", "-v", "3", self.conf])
        wait_port(self.admin)
        # fakesmsc connects to the bearerbox and prints what it is sent;
        # -m 0: it sends nothing itself. Its output goes to a file.
        self._spawn(
            ["/usr/lib/kannel/test/fakesmsc", "-H", "127.0.0.1", "-r", str(self.fake),
             "-m", "0", "-v", "3", "1 2 text x"]
        )
        self._spawn(["/usr/sbin/smsbox", "-v", "3", self.conf])
        wait_port(self.send)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            s = self.status()
            fake = [line for line in s.splitlines() if "FAKE:" in line]
            if "smsbox:" in s and fake and "(online" in fake[0]:
                return
            time.sleep(0.1)
        raise RuntimeError("Kannel did not come up: " + self.status()[-500:])

    def status(self):
        try:
            _, body = http(
                f"http://127.0.0.1:{self.admin}/status.txt?password=bench-admin", timeout=10
            )
            return body.decode(errors="replace")
        except OSError:
            return ""

    def handed(self):
        """The bearerbox's count of messages written to the SMSC connection."""
        for line in self.status().splitlines():
            if line.startswith("SMS: received"):
                # SMS: received 0 (0 queued), sent 20000 (0 queued), store size 0
                return int(line.split("sent ")[1].split()[0])
        raise RuntimeError("no SMS line in Kannel's status")

    def single_url(self, to=NUMBER):
        q = urllib.parse.urlencode(
            {"username": KANNEL_USER, "password": KANNEL_PASS, "to": to, "text": TEXT}
        )
        return f"http://127.0.0.1:{self.send}/cgi-bin/sendsms?{q}"

    def cleanup(self):
        for p in reversed(self.procs):
            stop(p, 10)
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------- workloads


def wait_handed(target, sys_, within=600.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        n = sys_.handed()
        if n >= target:
            return n
        time.sleep(0.01)
    raise RuntimeError(f"only {sys_.handed()} of {target} handed over within {within} s")


def workload_a(sys_, oha, n, conns=16):
    base = sys_.handed()
    t0 = time.monotonic()
    if isinstance(sys_, Smsgate):
        j = oha.run(sys_.single_url(), n=n, conns=conns, post=sys_.single_body())
    else:
        j = oha.run(sys_.single_url(), n=n, conns=conns)
    t_answers = time.monotonic() - t0
    if j["_accepted"] != n:
        raise RuntimeError(f"A: {j['_accepted']} of {n} accepted; codes {j.get('statusCodeDistribution')}, errors {j['_errors']}")
    wait_handed(base + n, sys_)
    secs = time.monotonic() - t0
    return {"rate": n / secs, "secs": secs, "answers_secs": t_answers,
            "p99_ms": percentile_ms(j, "p99")}


def csv_messages(path, n):
    """n messages for dialer campsms, distinct valid mobile numbers."""
    if os.path.exists(path):
        return path
    with open(path + ".tmp", "w", newline="") as f:
        chunk = []
        for i in range(n):
            chunk.append(f"campsms;09{1000000 + (i * 7919) % 8999999:07d};{TEXT} {i};9999;\r\n")
            if len(chunk) == 10000:
                f.write("".join(chunk))
                chunk = []
        f.write("".join(chunk))
    os.replace(path + ".tmp", path)
    return path


def workload_b_smsgate(sg, n, csv_path, tag):
    base = sg.handed()
    t0 = time.monotonic()
    summary = sg.upload("/api/v1/imports", f"BENCHB-{tag}.csv", csv_path)
    t_import = time.monotonic() - t0
    queued = int(summary.get("queued", n))
    if queued != n:
        raise RuntimeError(f"B: {queued} of {n} queued: {summary}")
    wait_handed(base + n, sg)
    secs = time.monotonic() - t0
    return {"rate": n / secs, "secs": secs, "import_secs": t_import}


def workload_b_kannel(k, oha, n, per_request=100, conns=16):
    # Kannel has no upload of a file: its sendsms takes up to many
    # recipients in one request ("to" separated by spaces), each becoming
    # its own message. n / per_request such requests over 16 connections.
    to = " ".join(f"09{1000000 + i * 7919:07d}" for i in range(per_request))
    base = k.handed()
    t0 = time.monotonic()
    j = oha.run(k.single_url(to), n=n // per_request, conns=conns)
    if j["_accepted"] != n // per_request:
        raise RuntimeError(f"B: {j['_accepted']} requests accepted; {j.get('statusCodeDistribution')} {j['_errors']}")
    wait_handed(base + n, k)
    secs = time.monotonic() - t0
    return {"rate": n / secs, "secs": secs}


def latency(sys_, oha, rate, duration):
    if isinstance(sys_, Smsgate):
        j = oha.run(sys_.single_url(), duration=duration, rate=rate, conns=32, post=sys_.single_body())
    else:
        j = oha.run(sys_.single_url(), duration=duration, rate=rate, conns=32)
    if j["_accepted"] != j["_total"] or j["_total"] == 0:
        raise RuntimeError(f"latency: {j['_accepted']} of {j['_total']} accepted; {j['_errors']}")
    return {
        "p50_ms": percentile_ms(j, "p50"),
        "p99_ms": percentile_ms(j, "p99"),
        "max_ms": j["summary"]["slowest"] * 1000.0,
        "requests": j["_total"],
        "rps": j["summary"]["requestsPerSec"],
    }


# ------------------------------------------------------ smsgate's own figures


class Sink(BaseHTTPRequestHandler):
    """The pacing run's provider: records when each channel's request came."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, the second
    # waits for the client's delayed ACK (40 ms), which the daemon's pacing
    # would then count as the gateway's time.
    disable_nagle_algorithm = True
    seen = []
    lock = threading.Lock()

    def do_GET(self):
        now = time.monotonic()
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        with Sink.lock:
            Sink.seen.append((int(q["port"][0]), int(q["id"][0]), now))
        body = b"OK"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class SinkServer(ThreadingHTTPServer):
    """The sink's listening socket. Python's default backlog is 5: the 32
    channels' connections, opened at the same instant, overflowed it, and
    the kernel dropped the handshake's last ACK, so each overflowing
    request came again after TCP's 200 ms minimum retransmission time.
    That was the 200 ms "late" sends of the first runs: the sink's, not
    smsgate's."""

    request_queue_size = 256


def pacing(binary, workdir, per_channel, channels=32, interval_ms=1000):
    server = SinkServer(("127.0.0.1", 0), Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Sink.seen = []
    port = server.server_address[1]
    body = f"""
[[gateway]]
name = "pace"
kind = "http"
ports = {channels}
method = "GET"
url = "http://127.0.0.1:{port}/send?port={{port}}&id={{message_id}}&to={{number}}"

[[dialer]]
name = "campsms"
provider = "pace"
interval_ms = {interval_ms}
"""
    sg = Smsgate(binary, workdir, body, "pacing")
    try:
        sg.start()
        n = per_channel * channels
        path = os.path.join(sg.dir, "pace.csv")
        csv_messages(path, n)
        sg.upload("/api/v1/imports", "PACE.csv", path)
        deadline = time.monotonic() + per_channel * interval_ms / 1000 * 2 + 30
        while len(Sink.seen) < n and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sg.cleanup()
        server.shutdown()
    by_port = {}
    for p, _, t in Sink.seen:
        by_port.setdefault(p, []).append(t)
    gaps = []
    for ts in by_port.values():
        ts.sort()
        gaps += [(b - a) * 1000.0 for a, b in zip(ts, ts[1:])]
    late = sorted(g - interval_ms for g in gaps)
    early = sum(1 for g in gaps if g < interval_ms)
    return {
        "messages": len(Sink.seen),
        "channels": len(by_port),
        "gaps": len(gaps),
        "early": early,
        "min_gap_ms": min(gaps) if gaps else None,
        "late_p50_ms": pct(late, 50),
        "late_p99_ms": pct(late, 99),
        "late_max_ms": late[-1] if late else None,
    }


def pct(sorted_values, p):
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, int(round(p / 100.0 * (len(sorted_values) - 1))))
    return sorted_values[k]


def dncr_csv(path, n):
    """n distinct numbers, "phone;dialer;" with no dialer (every dialer)."""
    if os.path.exists(path):
        return path
    with open(path + ".tmp", "w") as f:
        chunk = []
        for i in range(n):
            if i < 8_999_999:
                chunk.append(f"09{1000000 + i:07d};;\n")
            else:
                # Montevideo landlines once the mobiles run out.
                chunk.append(f"2{i - 8_999_999:07d};;\n")
            if len(chunk) == 100000:
                f.write("".join(chunk))
                chunk = []
        f.write("".join(chunk))
    os.replace(path + ".tmp", path)
    return path


def dncr_import(binary, workdir, n, cache, root):
    path = dncr_csv(os.path.join(cache, f"dncr-{n}.csv"), n)
    sg = Smsgate(binary, workdir, SIM64, "dncr")
    try:
        sg.start()
        rss0 = sg.rss_kib()
        stop_flag = threading.Event()
        peak = [0]

        def sample():
            while not stop_flag.is_set():
                peak[0] = max(peak[0], sg.rss_kib())
                time.sleep(0.05)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        t0 = time.monotonic()
        summary = sg.upload("/api/v1/dncr", "DNCR10M.csv", path)
        secs = time.monotonic() - t0
        stop_flag.set()
        th.join()
        # The look-up as the API serves it (the send path's own look-up is
        # the same indexed query inside the claim; see README.md).
        times = []
        for i in range(500):
            phone = f"09{1000000 + (i * 7919) % 8999999:07d}"
            t = time.perf_counter()
            status, _ = http(sg.url(f"/api/v1/dncr?phone={phone}"), headers={"Authorization": f"Bearer {TOKEN}"})
            times.append((time.perf_counter() - t) * 1000.0)
            if status != 200:
                raise RuntimeError(f"DNCR look-up: {status}")
        times.sort()
        sg.stop()
        # The send path's own look-up, on the state just filled (the
        # daemon stopped): benches/dncr_lookup.rs.
        out = subprocess.run(
            ["cargo", "bench", "--locked", "--quiet", "--bench", "dncr_lookup", "--", sg.state],
            cwd=root, capture_output=True, text=True, check=False,
        )
        lookup = {}
        for line in out.stdout.splitlines():
            if line.startswith("dncr_lookup "):
                what = line.split(":")[0].removeprefix("dncr_lookup ")
                fields = line.split(", ")
                lookup[what] = {f.split()[0]: float(f.split()[1]) for f in fields[1:]}
        if not lookup:
            raise RuntimeError(f"dncr_lookup printed nothing: {out.stderr[-2000:]}")
        return {
            "lookup_us": lookup,
            "entries": summary.get("entries", n),
            "secs": secs,
            "peak_rss_mib": max(peak[0], sg.hwm_kib()) / 1024.0,
            "rss_before_mib": rss0 / 1024.0,
            "lookup_api_p50_ms": pct(times, 50),
            "lookup_api_p99_ms": pct(times, 99),
        }
    finally:
        sg.cleanup()


def queued_million(binary, workdir, n, cache):
    """RSS idle, RSS with n queued, and READY with n queued (after a restart)."""
    body = SIM64.replace("interval_ms = 0", "interval_ms = 0\nenabled = false")
    sg = Smsgate(binary, workdir, body, "queued")
    try:
        ready_empty = sg.start()
        time.sleep(5)
        idle = sg.rss_kib()
        path = csv_messages(os.path.join(cache, f"messages-{n}.csv"), n)
        t0 = time.monotonic()
        summary = sg.upload("/api/v1/imports", "QUEUED.csv", path)
        import_secs = time.monotonic() - t0
        time.sleep(3)
        rss_after_import = sg.rss_kib()
        hwm_import = sg.hwm_kib()
        sg.stop()
        readies = [sg.start()]
        time.sleep(3)
        rss_restarted = sg.rss_kib()
        sg.stop()
        readies.append(sg.start())
        sg.stop()
        return {
            "ready_empty_ms": ready_empty * 1000,
            "idle_rss_mib": idle / 1024,
            "queued": summary.get("queued"),
            "import_secs": import_secs,
            "rss_after_import_mib": rss_after_import / 1024,
            "peak_rss_import_mib": hwm_import / 1024,
            "rss_restarted_mib": rss_restarted / 1024,
            "ready_queued_ms": [r * 1000 for r in readies],
        }
    finally:
        sg.cleanup()


# -------------------------------------------------------------------- main


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smsgate", required=True)
    ap.add_argument("--oha", required=True)
    ap.add_argument("--root", required=True, help="the smsgate checkout (for cargo bench)")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--skip-extras", action="store_true", help="only A, B and latency")
    ap.add_argument("--only-extras", action="store_true")
    ap.add_argument("--json", help="write every figure here")
    a = ap.parse_args()

    q = a.quick
    n_a = 2_000 if q else 20_000
    n_b = 10_000 if q else 100_000
    lat_dur = "3s" if q else "10s"
    rounds = a.rounds or (1 if q else 3)
    oha = Oha(a.oha)
    cache = os.path.join(a.workdir, "cache")
    os.makedirs(cache, exist_ok=True)
    csv_b = csv_messages(os.path.join(cache, f"messages-{n_b}.csv"), n_b)
    log(f"# smsgate and Kannel 1.4.5 side by side; {os.cpu_count()} cores; load {load()}")
    log(f"# A: {n_a} single sends over 16 connections; B: {n_b} in one batch; "
        f"latency: 2000 req/s for {lat_dur}; {rounds} round(s)")

    results = {"A": {}, "B": {}, "lat": {}, "load": []}
    systems = [
        ("smsgate", lambda: Smsgate(a.smsgate, a.workdir)),
        ("kannel-spool", lambda: Kannel(a.workdir, store=True)),
        ("kannel-nostore", lambda: Kannel(a.workdir, store=False)),
    ]
    if not a.only_extras:
        for r in range(rounds):
            log(f"## round {r + 1}, load {load()}")
            results["load"].append(load())
            for name, make in systems:
                s = make()
                try:
                    s.start()
                    ra = workload_a(s, oha, n_a)
                    log(f"{name:15} A {ra['rate']:9.0f} msg/s  ({n_a} in {ra['secs']:.2f} s; "
                        f"last 202 at {ra['answers_secs']:.2f} s)")
                    results["A"].setdefault(name, []).append(ra)
                    if isinstance(s, Smsgate):
                        rb = workload_b_smsgate(s, n_b, csv_b, f"{r}")
                        extra = f"; upload answered at {rb['import_secs']:.2f} s"
                    else:
                        rb = workload_b_kannel(s, oha, n_b)
                        extra = "; sendsms, 100 recipients a request"
                    log(f"{name:15} B {rb['rate']:9.0f} msg/s  ({n_b} in {rb['secs']:.2f} s{extra})")
                    results["B"].setdefault(name, []).append(rb)
                    rl = latency(s, oha, 2000, lat_dur)
                    log(f"{name:15} latency at 2000/s: p50 {rl['p50_ms']:.2f} ms, p99 {rl['p99_ms']:.2f} ms, "
                        f"max {rl['max_ms']:.1f} ms ({rl['requests']} requests)")
                    results["lat"].setdefault(name, []).append(rl)
                finally:
                    s.cleanup()
        results["load"].append(load())

        log("")
        log(f"| figure | smsgate | Kannel spool | Kannel no store | smsgate / spool | smsgate / no store |")
        log("|---|---|---|---|---|---|")

        def row(label, key, field, fmt, higher_better=True):
            vals = [median([x[field] for x in results[key].get(n, [])]) for n, _ in systems]
            ratio = lambda v: (v[0] / v[1]) if higher_better else (v[1] / v[0])  # noqa: E731
            log(f"| {label} | {fmt.format(vals[0])} | {fmt.format(vals[1])} | {fmt.format(vals[2])} | "
                f"{ratio([vals[0], vals[1]]):.2f} | {ratio([vals[0], vals[2]]):.2f} |")
            return vals

        row(f"A: {n_a} single sends, msg/s", "A", "rate", "{:,.0f}")
        row(f"B: {n_b} in one batch, msg/s", "B", "rate", "{:,.0f}")
        row("latency at 2000/s, p50 ms", "lat", "p50_ms", "{:.2f}", higher_better=False)
        row("latency at 2000/s, p99 ms", "lat", "p99_ms", "{:.2f}", higher_better=False)
        log("(medians of the rounds; ratios for latency are Kannel / smsgate, so above 1 means smsgate is faster)")
        for key in ("A", "B"):
            for n, _ in systems:
                log(f"  {key} {n}: " + ", ".join(f"{x['rate']:,.0f}" for x in results[key].get(n, [])))
        for n, _ in systems:
            log(f"  latency {n}: p99 " + ", ".join(f"{x['p99_ms']:.2f}" for x in results['lat'].get(n, [])))

    if not a.skip_extras:
        log(f"## smsgate alone, load {load()}")
        per_channel = 4 if q else 16
        p = pacing(a.smsgate, a.workdir, per_channel)
        results["pacing"] = p
        log(f"pacing, 32 channels at 1000 ms, {p['messages']} messages: early {p['early']} of {p['gaps']} gaps "
            f"(smallest {p['min_gap_ms']:.2f} ms); late p50 {p['late_p50_ms']:.2f} ms, "
            f"p99 {p['late_p99_ms']:.2f} ms, max {p['late_max_ms']:.2f} ms")
        n_dncr = 1_000_000 if q else 10_000_000
        d = dncr_import(a.smsgate, a.workdir, n_dncr, cache, a.root)
        results["dncr"] = d
        log(f"DNCR import of {d['entries']:,} numbers through POST /api/v1/dncr: {d['secs']:.1f} s, "
            f"daemon's peak RSS {d['peak_rss_mib']:.1f} MiB (sampled every 50 ms); look-up through the API "
            f"p50 {d['lookup_api_p50_ms']:.2f} ms, p99 {d['lookup_api_p99_ms']:.2f} ms")
        for what, f in d["lookup_us"].items():
            log(f"DNCR send-path look-up ({what}), {n_dncr:,} entries: mean {f['mean']:.2f} us, "
                f"p50 {f['p50']:.2f} us, p99 {f['p99']:.2f} us")
        n_q = 100_000 if q else 1_000_000
        m = queued_million(a.smsgate, a.workdir, n_q, cache)
        results["memory"] = m
        log(f"idle RSS {m['idle_rss_mib']:.1f} MiB (READY in {m['ready_empty_ms']:.0f} ms empty); "
            f"{m['queued']:,} queued (import {m['import_secs']:.2f} s): RSS {m['rss_after_import_mib']:.1f} MiB "
            f"(peak {m['peak_rss_import_mib']:.1f} MiB), after a restart {m['rss_restarted_mib']:.1f} MiB; "
            f"READY with them queued in " + ", ".join(f"{x:.0f}" for x in m["ready_queued_ms"]) + " ms")
    log(f"# done, load {load()}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
