#!/usr/bin/env python3
"""Hostile-input, fault and load cases for mcp-proxy-server (docs/reliability.md), one function each.

    python3 scripts/reliability/cases.py --bin target/release/mcp-proxy-server [CASE ...]
    python3 scripts/reliability/cases.py --list

Each case starts its own proxy on a free loopback port (HTTP mode) with the settings it needs, in front
of mock backends (tests/fixtures/mock_server.py) or tiny purpose-built ones, does the thing, checks what
happened, and prints one result line. Exit status: the number of failed cases. Python stdlib only.
"""

import argparse
import collections
import faulthandler
import json
import os
import random
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "soak"))
import mcpclient  # noqa: E402
from mcpclient import Connection, HttpError, LegacySession, StreamableSession  # noqa: E402
from soak import descendants, fds, rss_kib, threads  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MOCK = os.path.join(ROOT, "tests", "fixtures", "mock_server.py")
HOST = "127.0.0.1"
BIN = None


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def mock(name, *extra):
    return {"command": sys.executable, "args": [MOCK, "--name", name, *extra]}


def python_backend(code, name):
    """A stdio backend from a Python snippet that may exec the mock afterwards (MOCK and NAME are set)."""
    prelude = f"import os, sys, time\nMOCK = {MOCK!r}\nNAME = {name!r}\n"
    return {"command": sys.executable, "args": ["-c", prelude + code]}


STARTED = []


class Proxy:
    """The proxy in HTTP mode on a free port, its stderr in a file."""

    def __init__(self, servers, env=None, wait_backends=True, args=(), nofile=None):
        self.dir = tempfile.mkdtemp(prefix="mcp-case-")
        self.config = os.path.join(self.dir, "mcp_server.json")
        with open(self.config, "w") as f:
            json.dump({"mcpServers": servers}, f, indent=2)
        self.port = free_port()
        self.log_path = os.path.join(self.dir, "stderr.log")
        self.log = open(self.log_path, "wb")
        full_env = {k: v for k, v in os.environ.items() if k not in ("LOGGING", "RUST_LOG")}
        full_env.update(MCP_PROXY_CONFIG_POLL="0", MCP_PROXY_RESTART_BACKOFF_MIN="0.2")
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [BIN, "--sse", "--host", HOST, "--port", str(self.port), "--config", self.config, *args],
            env=full_env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None,
        )
        self.pid = self.proc.pid
        STARTED.append(self.pid)
        self.wait_ready(len(servers) if wait_backends else 0, headers=self.auth_headers(env or {}))

    @staticmethod
    def auth_headers(env):
        keys = env.get("ALLOWED_KEYS")
        return {"X-Api-Key": keys.split(",")[0]} if keys else {}

    def wait_ready(self, backends, headers, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy exited {self.proc.returncode}: {self.stderr()[-500:]}")
            try:
                status, health = mcpclient.get_json(HOST, self.port, "/health", headers)
                if status == 200 and (backends == 0 or sum(b["state"] == "connected" for b in health.get("backends", [])) >= backends):
                    return health
            except (OSError, ConnectionError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError("proxy not ready")

    def health(self, headers=None):
        return mcpclient.get_json(HOST, self.port, "/health", headers)

    def alive(self):
        return self.proc.poll() is None

    def stderr(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def raw(port, data, read_timeout=5.0):
    """Sends raw bytes and returns what came back until close or timeout."""
    s = socket.create_connection((HOST, port))
    s.settimeout(read_timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    except ConnectionResetError:
        out += b"<RST>"
    s.close()
    return out


def status_of(reply):
    m = re.match(rb"HTTP/1\.[01] (\d+)", reply)
    return int(m.group(1)) if m else None


def http_threads(pid):
    """The proxy's connection threads (named `http`)."""
    names = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return names.count("http")


def echo_ok(p, session=None, name="a__echo", headers=None):
    """One echo call through a fresh (or the given) Streamable HTTP session; True when it works."""
    s = session or StreamableSession(HOST, p.port, headers=headers)
    try:
        if not session:
            s.initialize()
        answer = s.call(99, "tools/call", {"name": name, "arguments": {"text": "still here"}})
        return answer.get("result", {}).get("structuredContent", {}).get("text") == "still here"
    except (HttpError, OSError, ConnectionError, ValueError):
        return False
    finally:
        if not session:
            s.drop()


RESULTS = []


def result(case, ok, detail):
    RESULTS.append((case, ok, detail))
    print(f"{'ok  ' if ok else 'FAIL'} {case}: {detail}", flush=True)


# ---------------------------------------------------------------------------------------------- cases

def trickle(port, first, piece, seconds, every=1.0):
    """Sends `first`, then `piece` every `every` seconds until the server answers or closes, or `seconds`
    pass. Returns (seconds until cut off or None, the status the server sent)."""
    s = socket.create_connection((HOST, port))
    s.sendall(first)
    s.settimeout(every)
    start, reply = time.monotonic(), b""
    try:
        while time.monotonic() - start < seconds:
            try:
                chunk = s.recv(4096)
                reply += chunk
                if not chunk or reply:
                    return time.monotonic() - start, status_of(reply)
            except socket.timeout:
                pass
            try:
                s.sendall(piece)
            except OSError:
                return time.monotonic() - start, status_of(reply)
        return None, None
    finally:
        s.close()


def case_slowloris_head():
    """Clients trickling a request head: one header line per second, and one byte per second (no
    newline). Both must be cut off at the request read timeout (30 s, 408); 100 more idle heads open
    meanwhile, and normal calls go on."""
    with Proxy({"a": mock("a")}) as p:
        herd = []
        for _ in range(100):
            s = socket.create_connection((HOST, p.port))
            s.sendall(b"GET /health HTTP/1.1\r\n")
            herd.append(s)
        out = {}
        runs = {
            "line": (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"X-Slow: 1\r\n"),
            "byte": (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ", b"a"),
        }
        ts = [threading.Thread(target=lambda k=k, v=v: out.__setitem__(k, trickle(p.port, *v, seconds=75)))
              for k, v in runs.items()]
        for t in ts:
            t.start()
        served = 0
        for _ in range(15):
            time.sleep(5)
            served += echo_ok(p)
        for t in ts:
            t.join()
        for s in herd:
            s.close()
        fmt = lambda r: f"cut off after {r[0]:.1f}s with {r[1]}" if r[0] is not None else "still connected after 75 s"
        ok = all(r[0] is not None and 28 <= r[0] <= 35 and r[1] == 408 for r in out.values()) and served == 15
        result("slowloris: trickled head", ok,
               f"a header line per second: {fmt(out['line'])}; a byte per second within one line: {fmt(out['byte'])}; "
               f"100 idle heads open meanwhile; {served}/15 normal calls served")


def case_slowloris_body():
    """Clients trickling a body: a Content-Length body at 1 byte/s, and a chunked body's data at 1 byte/s.
    Both must be cut off at 30 s (408)."""
    with Proxy({"a": mock("a")}) as p:
        out = {}
        runs = {
            "length": (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", b" "),
            "chunked": (b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n3e8\r\n{", b" "),
        }
        ts = [threading.Thread(target=lambda k=k, v=v: out.__setitem__(k, trickle(p.port, *v, seconds=75)))
              for k, v in runs.items()]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        fmt = lambda r: f"cut off after {r[0]:.1f}s with {r[1]}" if r[0] is not None else "still connected after 75 s"
        ok = all(r[0] is not None and 28 <= r[0] <= 35 and r[1] == 408 for r in out.values()) and p.alive()
        result("slowloris: trickled body", ok,
               f"Content-Length body at 1 byte/s: {fmt(out['length'])}; chunked body at 1 byte/s: {fmt(out['chunked'])}")


def case_idle_connection():
    """A connection that never sends a byte: how long it holds its thread and connection slot (the
    first-request deadline, MCP_PROXY_FIRST_REQUEST_TIMEOUT, 10 s)."""
    with Proxy({"a": mock("a")}) as p:
        s = socket.create_connection((HOST, p.port))
        s.settimeout(200)
        start = time.monotonic()
        try:
            data = s.recv(100)
        except OSError as e:
            data = repr(e).encode()
        held = time.monotonic() - start
        s.close()
        ok = 9.5 <= held <= 12 and data == b""
        result("idle connection (no byte sent)", ok, f"closed by the proxy after {held:.1f}s, reply {data[:40]!r}")


def case_slowloris_exhaust():
    """With MCP_PROXY_MAX_CONNECTIONS=20, 20 connections each trickling one byte of a header line every 5 s:
    after the 30 s read timeout they should be gone and a normal client served."""
    with Proxy({"a": mock("a")}, env={"MCP_PROXY_MAX_CONNECTIONS": "20"}) as p:
        stop = threading.Event()
        socks = []
        for _ in range(20):
            s = socket.create_connection((HOST, p.port))
            s.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            socks.append(s)

        def drip():
            while not stop.wait(5):
                for s in socks:
                    try:
                        s.sendall(b"a")
                    except OSError:
                        pass

        t = threading.Thread(target=drip, daemon=True)
        t.start()
        try:
            time.sleep(45)
            reply = raw(p.port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 2)
        finally:
            stop.set()
            t.join()
        for s in socks:
            s.close()
        time.sleep(1)
        after = status_of(raw(p.port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 2))
        ok = status_of(reply) == 200
        result("slowloris: 20 byte-trickling connections vs MCP_PROXY_MAX_CONNECTIONS=20", ok,
               f"45 s in (past the 30 s read timeout) a new client gets {status_of(reply)}; 1 s after the trickling "
               f"stops: {after}; total sent by the attacker: {20 * 9} bytes")


def case_sse_non_reader():
    """A legacy SSE client that never reads its stream while the server sends it many messages is
    dropped once its queue (1024) fills; another client's calls are unaffected meanwhile."""
    with Proxy({"a": mock("a"), "b": mock("b")}) as p:
        slow = LegacySession(HOST, p.port)
        slow.initialize()
        # Stop reading: the reader thread is blocked by pausing it on the lock... simpler: shrink the
        # socket's receive buffer and hold the lock the reader needs to deliver each event.
        slow.stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.lock.acquire()
        big = "x" * 60000
        for i in range(40):  # ~2.4 MB of echo answers to fill the socket buffers
            slow.post(mcpclient.rpc(1000 + i, "tools/call", {"name": "a__echo", "arguments": {"text": big}}))
        status, _ = slow.post(mcpclient.rpc(2000, "tools/call", {
            "name": "a__progress", "arguments": {"steps": 3000, "ms": 0}, "_meta": {"progressToken": "flood"}}))
        # Meanwhile another client works normally.
        other = StreamableSession(HOST, p.port)
        other.initialize()
        latencies, dropped_at = [], None
        start = time.monotonic()
        for i in range(40):
            t0 = time.monotonic()
            ok = echo_ok(p, other, name="b__echo")
            latencies.append(time.monotonic() - t0)
            if not ok:
                break
            if dropped_at is None:
                st, _ = slow.post(mcpclient.rpc(3000 + i, "ping"))
                if st == 404:
                    dropped_at = time.monotonic() - start
            time.sleep(0.1)
        slow.lock.release()
        log = p.stderr()
        slow.close()
        other.drop()
        ok = dropped_at is not None and len(latencies) > 0 and max(latencies) < 1.0 and p.alive()
        result("SSE client that never reads", ok,
               f"session gone (POST -> 404) {dropped_at and round(dropped_at, 1)}s after the flood started; other "
               f"client's calls max {max(latencies) * 1000:.0f} ms over {len(latencies)} calls; "
               f"log: {first_line(log, 'drop') or first_line(log, 'not reading') or 'no drop line'}")


def case_streamable_post_non_reader():
    """A Streamable HTTP POST that turns into an SSE stream (progress before the answer) whose client
    never reads. The per-request reply channel is not the 1024-message queue of standing streams: this
    measures what the proxy buffers, that others are served, and that the thread goes once writes time out."""
    with Proxy({"a": mock("a")}) as p:
        base = rss_kib(p.pid)
        s = StreamableSession(HOST, p.port)
        s.initialize()
        conn = s._conn()
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        params = {"name": "a__progress", "arguments": {"steps": 300000, "ms": 0}, "_meta": {"progressToken": "t"}}
        conn.send("POST", "/mcp", s.headers(), json.dumps(mcpclient.rpc(5, "tools/call", params)).encode())
        time.sleep(1)
        assert http_threads(p.pid) == 1, "the POST's connection thread"
        peak, start, released = base, time.monotonic(), None
        other_ok = True
        while time.monotonic() - start < 100:
            time.sleep(1)
            peak = max(peak, rss_kib(p.pid))
            if int(time.monotonic() - start) % 10 == 0:
                other_ok = other_ok and echo_ok(p)
                time.sleep(0.2)  # let that call's connection thread end before counting again
            if http_threads(p.pid) == 0 and released is None:
                released = time.monotonic() - start
                break
        conn.close()
        time.sleep(1)
        ok = other_ok and released is not None and p.alive()
        result("Streamable POST stream that is never read", ok,
               f"300000 progress notifications to a client that never reads: RSS {base} KiB -> peak {peak} KiB "
               f"; its connection thread gone after "
               f"{released and round(released)}s (write timeouts) with the client still connected; "
               f"RSS after {rss_kib(p.pid)} KiB; other clients served meanwhile: {other_ok}")


def case_connection_flood():
    """3000 idle connections against MCP_PROXY_MAX_CONNECTIONS=100: the ones over the limit get 503 at
    once; once the flood closes, normal service resumes; threads and fds go back."""
    # Held past the first-request deadline: this case is about the total limit.
    env = {"MCP_PROXY_MAX_CONNECTIONS": "100", "MCP_PROXY_FIRST_REQUEST_TIMEOUT": "120"}
    with Proxy({"a": mock("a")}, env=env) as p:
        base_threads, base_fds = threads(p.pid), fds(p.pid)
        socks, refused, other, resets = [], 0, 0, 0
        for _ in range(3000):
            s = socket.create_connection((HOST, p.port))
            socks.append(s)
        time.sleep(1)
        peak_threads = threads(p.pid)
        for s in socks:
            s.settimeout(0.01)
            try:
                data = s.recv(200)
                if status_of(data) == 503:
                    refused += 1
                else:
                    other += 1
            except ConnectionResetError:
                resets += 1
            except (socket.timeout, OSError):
                pass
        during = raw(p.port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 2)
        for s in socks:
            s.close()
        time.sleep(2)
        after_ok = echo_ok(p)
        time.sleep(1)
        ok = refused == 2900 and status_of(during) == 503 and after_ok and p.alive()
        result("connection flood (limit 100)", ok,
               f"3000 idle connections: {refused} got 503 at once, {resets} were reset, "
               f"{3000 - refused - other - resets} held; a new client "
               f"meanwhile got {during[:12]!r}; threads {base_threads} -> {peak_threads} -> {threads(p.pid)}, "
               f"fds {base_fds} -> {fds(p.pid)}; served after the flood: {after_ok}")


def case_connection_flood_default():
    """3000 idle connections from one address (127.0.0.2) under the default limits: 256 held (the
    per-address limit), the rest 429; one thread each; a client from 127.0.0.1 is served meanwhile."""
    with Proxy({"a": mock("a")}) as p:
        base_threads, base_rss = threads(p.pid), rss_kib(p.pid)
        socks, statuses = open_idle(3000, ["127.0.0.2"], p.port)
        peak_threads, peak_rss = threads(p.pid), rss_kib(p.pid)
        t0 = time.monotonic()
        served = echo_ok(p)
        latency = time.monotonic() - t0
        for s in socks:
            s.close()
        deadline = time.monotonic() + 20
        while threads(p.pid) > base_threads + 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        ok = served and len(socks) == 256 and p.alive() and threads(p.pid) <= base_threads + 2
        result("connection flood (default limit)", ok,
               f"3000 idle connections from one address: {len(socks)} held, refused {statuses}; threads {base_threads} -> {peak_threads} -> {threads(p.pid)}, RSS "
               f"{base_rss} -> {peak_rss} KiB; a call meanwhile took {latency * 1000:.0f} ms")


def open_idle(count, sources, port):
    """`count` idle connections, spread over the loopback addresses `sources`; those the proxy refused at
    once (its answer read within 1 s) are counted by status and closed. Returns (held sockets, statuses)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 1024)), hard))
    socks = []
    for i in range(count):
        s = socket.socket()
        s.bind((sources[i % len(sources)], 0))
        s.connect((HOST, port))
        socks.append(s)
    time.sleep(1)
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLIN)
    answered = {fd for fd, _ in poller.poll(0)}
    held, statuses = [], {}
    for s in socks:
        if s.fileno() not in answered:
            held.append(s)
            continue
        try:
            status = status_of(s.recv(200)) or "closed"
        except OSError:
            status = "reset"
        statuses[status] = statuses.get(status, 0) + 1
        s.close()
    return held, statuses


def case_idle_flood_one_address():
    """The OpenWrt packaging's nofile=4096 and 8192 idle connections from one address: the address gets
    its 256, the rest 429 at once; a normal client is served; descriptors stay free; the held ones are
    closed at the first-request deadline (10 s)."""
    nofile = 4096
    with Proxy({"a": mock("a")}, nofile=nofile) as p:
        base_fds = fds(p.pid)
        held, statuses = open_idle(8192, ["127.0.0.2"], p.port)
        during_fds = fds(p.pid)
        t0 = time.monotonic()
        served = echo_ok(p)
        latency = time.monotonic() - t0
        deadline = time.monotonic() + 20
        while fds(p.pid) > base_fds + 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        closed_after = time.monotonic() - t0
        for s in held:
            s.close()
        # Opening 8192 takes longer than the first-request deadline (the accept queue fills), so earlier
        # held ones are closed meanwhile ("closed") and their slots taken by later ones.
        ok = served and len(held) == 256 and statuses.get(429, 0) + statuses.get("closed", 0) == 8192 - 256 and p.alive()
        result("idle flood from one address (nofile 4096)", ok,
               f"8192 idle connections: {len(held)} held, refused {statuses}; a normal client served: {served} "
               f"({latency * 1000:.0f} ms); proxy fds {base_fds} -> {during_fds} ({nofile - during_fds} left) -> "
               f"{fds(p.pid)} after {closed_after:.1f} s (first-request deadline)")


def case_idle_flood_many_addresses():
    """nofile=4096 and 4000 idle connections from 16 addresses (250 each, under the per-address limit):
    3584 held (4096 less the 512 kept for backends), the rest 503; a backend that crashes meanwhile is
    restarted, and a session opened before the flood keeps working."""
    nofile = 4096
    # The flood is held for the whole case (not cut at the first-request deadline) to measure the reserve.
    with Proxy({"a": mock("a")}, env={"MCP_PROXY_FIRST_REQUEST_TIMEOUT": "120"}, nofile=nofile) as p:
        session = StreamableSession(HOST, p.port)
        session.initialize()
        held, statuses = open_idle(4000, [f"127.0.1.{i}" for i in range(1, 17)], p.port)
        during_fds = fds(p.pid)
        try:
            session.call(1, "tools/call", {"name": "a__crash", "arguments": {}})
        except (HttpError, OSError, ConnectionError, ValueError):
            pass
        restarted, deadline = False, time.monotonic() + 15
        while not restarted and time.monotonic() < deadline:
            restarted = echo_ok(p, session=session)
            time.sleep(0.2)
        for s in held:
            s.close()
        emfile = "Too many open files" in p.stderr()
        ok = restarted and len(held) == nofile - 512 - 1 and not emfile and p.alive()  # one slot is the session's
        result("idle flood from 16 addresses (nofile 4096)", ok,
               f"4000 idle connections: {len(held)} held, refused {statuses}; proxy fds {during_fds} "
               f"({nofile - during_fds} left); crashed backend restarted and called through the old session: "
               f"{restarted}; 'Too many open files' logged: {emfile}")


def case_smuggling():
    """Heads two readers could frame differently, each followed by `GET /health`: 400 and close, and
    nothing after the head is served."""
    post = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    smuggled = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    shapes = {
        "CL+TE": b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "two CLs": b"Content-Length: 0\r\nContent-Length: 5\r\n\r\n",
        "CL +0": b"Content-Length: +0\r\n\r\n",
        "chunk +0": b"Transfer-Encoding: chunked\r\n\r\n+0\r\n\r\n",
        "TE gzip": b"Transfer-Encoding: gzip\r\n\r\n",
        "TE xchunked": b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        "TE chunked, gzip": b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        "TE chunked;q=1": b"Transfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n",
        "two TEs": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    }
    with Proxy({"a": mock("a")}) as p:
        outcomes = {}
        for name, rest in shapes.items():
            reply = raw(p.port, post + rest + smuggled, 3)
            outcomes[name] = (status_of(reply), reply.count(b"\r\n\r\n"))
        no_host = raw(p.port, b"GET /health HTTP/1.1\r\n\r\n" + smuggled, 3)
        outcomes["no Host"] = (status_of(no_host), no_host.count(b"\r\n\r\n"))
        ok = all(v == (400, 1) for v in outcomes.values()) and p.alive()
        result("request smuggling shapes", ok,
               "(status, responses) per shape: " + ", ".join(f"{k} {v}" for k, v in outcomes.items()))


def case_dns_rebinding():
    """A page whose name rebinds to 127.0.0.1 sends its own Host and Origin: every route refuses it, the
    admin UI has no default password, and a cross-origin admin change is refused."""
    env = {"ENABLE_ADMIN_UI": "true"}
    with Proxy({"a": mock("a")}, env=env) as p:
        evil = f"Host: rebound.example:{p.port}\r\nOrigin: http://rebound.example:{p.port}\r\n".encode()
        body = b'{"username":"admin","password":"password"}'
        statuses = {
            path: status_of(raw(p.port, f"{method} {path} HTTP/1.1\r\n".encode() + evil
                                + f"Content-Type: application/json\r\nContent-Length: {len(body) if method == 'POST' else 0}\r\n"
                                  f"Connection: close\r\n\r\n".encode() + (body if method == "POST" else b""), 3))
            for method, path in [("GET", "/health"), ("POST", "/mcp"), ("POST", "/admin/login"), ("GET", "/admin/")]
        }
        login = b"POST /admin/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" \
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
        default_login = status_of(raw(p.port, login, 3))
        printed = "admin UI login for this run" in p.stderr()
        ok = all(s == 403 for s in statuses.values()) and default_login == 401 and printed
        result("DNS rebinding", ok,
               f"Host/Origin rebound.example: {statuses}; admin/password from 127.0.0.1: {default_login}; "
               f"random password printed at start-up: {printed}")


def case_huge_line_backend():
    """A stdio backend printing one 100 MiB line before behaving: the line is dropped with a log line,
    the backend is usable, and the proxy's memory goes back down."""
    code = ("sys.stdout.write('x' * (100 << 20) + '\\n'); sys.stdout.flush()\n"
            "os.execv(sys.executable, [sys.executable, MOCK, '--name', NAME])\n")
    start = time.monotonic()
    peak = [0]
    sampling = threading.Event()

    def sample():
        # The proxy's pid is not known until Popen returns: sample every proxy of ours that is running.
        while not sampling.is_set():
            for pid in list(STARTED):
                try:
                    peak[0] = max(peak[0], rss_kib(pid))
                except (OSError, KeyError):
                    pass
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with Proxy({"big": python_backend(code, "big")}) as p:
        ready = time.monotonic() - start
        works = echo_ok(p, name="big__echo")
        time.sleep(0.5)
        sampling.set()
        rss = rss_kib(p.pid)
        log = first_line(p.stderr(), "dropped a")
        ok = works and p.alive() and log is not None
        result("100 MiB line from a stdio backend", ok,
               f"ready in {ready:.1f}s, calls work: {works}; proxy RSS peak {peak[0] / 1024:.1f} MiB, afterwards "
               f"{rss / 1024:.1f} MiB; log: {log}")


def log_flood(count):
    """Python for a stdio backend that writes `count` log notifications before it becomes the mock."""
    return ("import json\n"
            "line = json.dumps({'jsonrpc': '2.0', 'method': 'notifications/message', "
            "'params': {'level': 'info', 'logger': NAME, 'data': 'x' * 100}}) + '\\n'\n"
            f"for _ in range({count} // 1000):\n    sys.stdout.write(line * 1000)\n"
            "sys.stdout.flush()\n"
            "os.execv(sys.executable, [sys.executable, MOCK, '--name', NAME])\n")


def sample_peak(stop, peak):
    """Samples the RSS of every proxy of ours until `stop` is set (the pid is not known before Popen returns)."""
    while not stop.is_set():
        for pid in list(STARTED):
            try:
                peak[0] = max(peak[0], rss_kib(pid))
            except (OSError, KeyError):
                pass
        time.sleep(0.01)


def metric(p, name):
    """The value of one line of /metrics, by its name with labels."""
    conn = Connection(HOST, p.port)
    try:
        body = conn.request("GET", "/metrics", {"Connection": "close"}).body.read_all().decode()
    finally:
        conn.close()
    return next((line.split()[-1] for line in body.splitlines() if line.startswith(name)), None)


def case_log_flood_no_listener():
    """A stdio backend writes 1M log notifications with no client listening: the dispatcher's intake
    drops notifications beyond its queue (counted in /metrics) and the proxy's memory stays bounded."""
    stop, peak = threading.Event(), [0]
    threading.Thread(target=sample_peak, args=(stop, peak), daemon=True).start()
    code = log_flood(1_000_000)
    start = time.monotonic()
    with Proxy({"flood": python_backend(code, "flood")}, wait_backends=True) as p:
        ready = time.monotonic() - start
        works = echo_ok(p, name="flood__echo")
        time.sleep(1)
        stop.set()
        rss = rss_kib(p.pid)
        dropped = metric(p, 'mcp_proxy_notifications_dropped_total{stage="dispatcher"}')
        ok = works and p.alive() and peak[0] < 64 * 1024
        result("1M log notifications, no listener", ok,
               f"backend ready after its flood in {ready:.1f}s, calls work: {works}; proxy RSS peak "
               f"{peak[0] / 1024:.1f} MiB, afterwards {rss / 1024:.1f} MiB; dropped at the dispatcher: {dropped}")


def case_stdio_client_non_reader():
    """The proxy in stdio mode; its client calls a tool that sends 300000 progress notifications and never
    reads stdout: the client's queue drops notifications past 1024 (never the answer) and RSS stays bounded."""
    work = tempfile.mkdtemp(prefix="mcp-case-")
    config = os.path.join(work, "mcp_server.json")
    with open(config, "w") as f:
        json.dump({"mcpServers": {"a": mock("a")}}, f)
    env = {k: v for k, v in os.environ.items() if k not in ("LOGGING", "RUST_LOG")}
    proc = subprocess.Popen([BIN, "--config", config], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    STARTED.append(proc.pid)
    try:
        def send(msg):
            proc.stdin.write((json.dumps(msg) + "\n").encode())
            proc.stdin.flush()
        send(mcpclient.rpc(0, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}))
        time.sleep(2)
        base = rss_kib(proc.pid)
        params = {"name": "a__progress", "arguments": {"steps": 300000, "ms": 0}, "_meta": {"progressToken": "t"}}
        send(mcpclient.rpc(1, "tools/call", params))
        peak, start = base, time.monotonic()
        while time.monotonic() - start < 40:
            time.sleep(0.5)
            peak = max(peak, rss_kib(proc.pid))
        # Now read: the answer comes after what was queued and what the backend sends meanwhile.
        seen = {"lines": 0, "answer": None}

        def read():
            for line in proc.stdout:
                seen["lines"] += 1
                if json.loads(line).get("id") == 1:
                    seen["answer"] = json.loads(line)
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(120)
        lines, answer = seen["lines"], seen["answer"]
        after = rss_kib(proc.pid)
        ok = answer is not None and "result" in answer and peak < base + 64 * 1024
        result("stdio client that does not read (300000 progress)", ok,
               f"RSS {base / 1024:.1f} MiB -> peak {peak / 1024:.1f} MiB while not read, {after / 1024:.1f} MiB after; "
               f"answer {'received' if answer else 'MISSING'} after {lines} messages read")
    finally:
        proc.kill()
        proc.wait()


def case_session_flood():
    """4096 initializes on one connection in a few seconds: the address gets its 256 sessions and 429
    after (not 503: the table is not full for others), and the unused sessions are gone within seconds."""
    with Proxy({"a": mock("a")}, env={"MCP_PROXY_SESSION_UNUSED_TIMEOUT": "3"}) as p:
        conn = Connection(HOST, p.port)
        statuses = collections.Counter()
        start = time.monotonic()
        body = json.dumps(mcpclient.rpc(0, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}})).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        for _ in range(4096):
            response = conn.request("POST", "/mcp", headers, body)
            response.body.read_all()
            statuses[response.status] += 1
        took = time.monotonic() - start
        conn.close()
        _, health = p.health()
        during = health.get("sessions")
        time.sleep(4.5)
        _, health = p.health()
        after = health.get("sessions")
        fresh_ok = echo_ok(p)
        ok = statuses[200] == 256 and statuses[429] == 4096 - 256 and after == 0 and fresh_ok
        result("session flood (4096 initializes, one address)", ok,
               f"in {took:.1f}s: {dict(statuses)}; sessions held {during}, {after} after 4.5 s "
               f"(MCP_PROXY_SESSION_UNUSED_TIMEOUT=3); a new client then served: {fresh_ok}")


def case_junk_stdout():
    """A backend whose stdout carries junk between its JSON-RPC lines (text, binary, not UTF-8, JSON of
    the wrong shape, answers to unknown ids, a batch): every junk line is logged and skipped, calls work."""
    code = r'''
import subprocess, threading
junk = [b"hello, I am a log line on stdout", b"\x00\x01\x02\xff\xfe binary", b"\xc3\x28 not utf-8",
        b"{\"jsonrpc\":\"2.0\",\"id\":987654,\"result\":{}}", b"{\"jsonrpc\":\"1.0\",\"method\":\"x\"}",
        b"[{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}]", b"{\"half\": ", b"", b"   ", b"null",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"nobody\",\"progress\":1}}",
        b"{\"jsonrpc\":\"2.0\",\"id\":{\"obj\":1},\"method\":\"ping\"}"]
child = subprocess.Popen([sys.executable, MOCK, "--name", NAME], stdin=sys.stdin, stdout=subprocess.PIPE)
out = sys.stdout.buffer
for line in child.stdout:
    for j in junk:
        out.write(j + b"\n")
    out.write(line)
    out.flush()
'''
    with Proxy({"junk": python_backend(code, "junk")}) as p:
        results = [echo_ok(p, name="junk__echo") for _ in range(10)]
        log = p.stderr()
        skipped = sum(1 for line in log.splitlines() if "[junk]" in line and ("WARN" in line or "ERROR" in line))
        ok = all(results) and p.alive()
        result("junk on a backend's stdout", ok,
               f"{sum(results)}/10 calls answered; {skipped} junk lines logged; e.g. {first_line(log, '[junk]', 'WARN')}")


def case_body_too_large():
    """Bodies over MCP_PROXY_MAX_BODY_BYTES get 413: by Content-Length (before reading) and chunked."""
    with Proxy({"a": mock("a")}, env={"MCP_PROXY_MAX_BODY_BYTES": "1000"}) as p:
        over = raw(p.port, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1001\r\n\r\n" + b" " * 1001)
        huge = raw(p.port, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000000\r\n\r\n")
        chunk = b"400\r\n" + b" " * 1024 + b"\r\n"
        chunked = raw(p.port, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 2 + b"0\r\n\r\n")
        body = json.dumps(mcpclient.rpc(0, "initialize", mcpclient.INIT_PARAMS)).encode()
        body += b" " * (1000 - len(body))
        at_limit = raw(p.port, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json"
                       b"\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n" + body)
        codes = [status_of(over), status_of(huge), status_of(chunked), status_of(at_limit)]
        ok = codes == [413, 413, 413, 200] and p.alive()
        result("body over MCP_PROXY_MAX_BODY_BYTES=1000", ok,
               f"1001 bytes -> {codes[0]}, Content-Length 10^10 -> {codes[1]}, chunked 2 KiB -> {codes[2]}, "
               f"exactly 1000 -> {codes[3]}")


def case_head_limits():
    """Heads over 32 KiB get 431, more than 64 headers 431, garbage 400; a bad Content-Length 400."""
    with Proxy({"a": mock("a")}) as p:
        big = raw(p.port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
        many = raw(p.port, b"GET /health HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(70)) + b"\r\n")
        garbage = raw(p.port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")
        bad_len = raw(p.port, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n")
        codes = [status_of(big), status_of(many), status_of(garbage), status_of(bad_len)]
        ok = codes == [431, 431, 400, 400] and p.alive()
        result("oversized / malformed heads", ok, f"40 KB header -> {codes[0]}, 70 headers -> {codes[1]}, "
               f"TLS hello bytes -> {codes[2]}, Content-Length -1 -> {codes[3]}")


def case_chunked_overflow():
    """A chunked body whose second chunk size is 2^64-1: must be refused (413/400), not crash."""
    with Proxy({"a": mock("a")}) as p:
        reply = raw(p.port, b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\nffffffffffffffff\r\n", 3)
        time.sleep(0.5)
        alive = p.alive()
        code = p.proc.poll()
        tail = p.stderr().strip().splitlines()[-3:] if not alive else []
        ok = alive and status_of(reply) in (400, 413)
        result("chunk size 0xffffffffffffffff (unauthenticated)", ok,
               f"reply {status_of(reply)}; proxy {'alive' if alive else f'DIED (exit {code}): ' + ' | '.join(tail)}")


def case_sse_backend_bad_events():
    """A legacy SSE backend that sends its endpoint, then 3000 events that are not UTF-8 (9 KB): the proxy
    must skip them, not crash."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", EVIL_SSE, str(port), "3000"], stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        died = None
        try:
            p = Proxy({"evil": {"type": "sse", "url": f"http://127.0.0.1:{port}/sse"}}, wait_backends=False)
            time.sleep(3)
            if not p.alive():
                died = f"exit {p.proc.returncode}: " + " | ".join(p.stderr().strip().splitlines()[-2:])
            p.stop()
        except RuntimeError as e:  # died before it answered /health
            died = " | ".join(str(e).strip().splitlines()[-2:])
        result("SSE backend sending 3000 non-UTF-8 events", died is None,
               "proxy alive" if died is None else f"proxy DIED ({died})")
    finally:
        server.kill()
        server.wait()


EVIL_SSE = r'''
import http.server, sys, time
N = int(sys.argv[2])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Type", "text/event-stream"); self.end_headers()
        self.wfile.write(b"event: endpoint\ndata: /message\n\n" + b"\xff\n\n" * N); self.wfile.flush()
        time.sleep(30)
    def do_POST(self):
        self.send_response(202); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''


def case_max_sessions():
    """MCP_PROXY_MAX_SESSIONS=5: the 6th session (Streamable or legacy) gets 503; one ending frees a slot."""
    with Proxy({"a": mock("a")}, env={"MCP_PROXY_MAX_SESSIONS": "5"}) as p:
        sessions = []
        for _ in range(3):
            s = StreamableSession(HOST, p.port)
            s.initialize()
            sessions.append(s)
        legacy = [LegacySession(HOST, p.port) for _ in range(2)]
        codes = []
        try:
            StreamableSession(HOST, p.port).initialize()
            codes.append(200)
        except HttpError as e:
            codes.append(e.status)
        try:
            LegacySession(HOST, p.port)
            codes.append(200)
        except HttpError as e:
            codes.append(e.status)
        sessions[0].delete()
        again = StreamableSession(HOST, p.port)
        try:
            again.initialize()
            codes.append(200)
        except HttpError as e:
            codes.append(e.status)
        for s in legacy:
            s.close()
        ok = codes == [503, 503, 200]
        result("MCP_PROXY_MAX_SESSIONS=5", ok,
               f"6th Streamable -> {codes[0]}, 6th legacy SSE -> {codes[1]}, after one DELETE -> {codes[2]}")


def case_max_sessions_per_key():
    """MCP_PROXY_MAX_SESSIONS_PER_KEY=2 with ALLOWED_KEYS=k1,k2: k1's 3rd session gets 429, k2 is not
    affected."""
    env = {"MCP_PROXY_MAX_SESSIONS_PER_KEY": "2", "ALLOWED_KEYS": "key-one,key-two"}
    with Proxy({"a": mock("a")}, env=env) as p:
        k1, k2 = {"X-Api-Key": "key-one"}, {"X-Api-Key": "key-two"}
        for _ in range(2):
            StreamableSession(HOST, p.port, headers=k1).initialize()
        codes = []
        for headers in (k1, k2, {"X-Api-Key": "nope"}):
            try:
                StreamableSession(HOST, p.port, headers=headers).initialize()
                codes.append(200)
            except HttpError as e:
                codes.append(e.status)
        try:
            LegacySession(HOST, p.port, headers=k1)
            codes.append(200)
        except HttpError as e:
            codes.append(e.status)
        ok = codes == [429, 200, 401, 429]
        result("MCP_PROXY_MAX_SESSIONS_PER_KEY=2", ok,
               f"key-one 3rd Streamable -> {codes[0]}, key-two -> {codes[1]}, wrong key -> {codes[2]}, "
               f"key-one 3rd legacy SSE -> {codes[3]}")


def case_max_in_flight():
    """MCP_PROXY_MAX_IN_FLIGHT=2: a 3rd concurrent call to one backend gets a JSON-RPC error at once;
    another backend is not affected."""
    with Proxy({"a": mock("a"), "b": mock("b")}, env={"MCP_PROXY_MAX_IN_FLIGHT": "2"}) as p:
        answers = {}

        def call(key, name, ms):
            s = StreamableSession(HOST, p.port)
            s.initialize()
            t0 = time.monotonic()
            answers[key] = (s.call(1, "tools/call", {"name": name, "arguments": {"ms": ms}}), time.monotonic() - t0)
            s.drop()

        slow = [threading.Thread(target=call, args=(i, "a__sleep", 2000)) for i in range(2)]
        for t in slow:
            t.start()
        time.sleep(0.7)
        call("third", "a__sleep", 10)
        call("other", "b__sleep", 10)
        for t in slow:
            t.join()
        third, t3 = answers["third"]
        other, _ = answers["other"]
        ok = ("error" in third and third["error"]["code"] == -32000 and t3 < 0.5 and "result" in other
              and all("result" in answers[i][0] for i in range(2)))
        result("MCP_PROXY_MAX_IN_FLIGHT=2", ok,
               f"3rd call to a: {json.dumps(third.get('error'))} after {t3 * 1000:.0f} ms; call to b: "
               f"{'result' if 'result' in other else other}; the 2 slow calls: "
               f"{[('result' if 'result' in answers[i][0] else 'error') for i in range(2)]}")


def case_sigterm_during_call():
    """SIGTERM during a 2 s call (MCP_PROXY_SHUTDOWN_GRACE=5): the call gets its result, the proxy exits 0
    and no backend process is left. And a 20 s call: cut at the grace with an error, exit 0."""
    for ms, label in ((2000, "2 s call"), (20000, "20 s call")):
        p = Proxy({"a": mock("a")}, env={"MCP_PROXY_SHUTDOWN_GRACE": "5"})
        kids = [pid for pid, _, cmd in descendants(p.pid) if MOCK in cmd]
        out = {}

        def call():
            s = StreamableSession(HOST, p.port)
            s.initialize()
            try:
                out["answer"] = s.call(1, "tools/call", {"name": "a__sleep", "arguments": {"ms": ms}})
            except Exception as e:  # noqa: BLE001 - any failure is the result to report
                out["answer"] = repr(e)

        t = threading.Thread(target=call)
        t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        p.proc.send_signal(signal.SIGTERM)
        code = p.proc.wait(30)
        exit_after = time.monotonic() - t0
        t.join(10)
        time.sleep(0.3)
        left = [k for k in kids if os.path.exists(f"/proc/{k}") and open(f"/proc/{k}/stat").read().split()[2] != "Z"]
        answer = out.get("answer")
        got = "result" if isinstance(answer, dict) and "result" in answer else (
            json.dumps(answer.get("error")) if isinstance(answer, dict) else answer)
        want_result = ms < 5000
        ok = code == 0 and not left and ((got == "result") if want_result else (got != "result"))
        p.log.close()
        result(f"SIGTERM during a {label}", ok,
               f"call answered: {got}; proxy exit {code} after {exit_after:.1f}s; backend processes left: {left}")


def case_admin_kill9():
    """kill -9 of the proxy while the admin API rewrites the config file in a loop: afterwards the file
    is always valid JSON, the old or the new version (30 rounds)."""
    env = {"ENABLE_ADMIN_UI": "true", "ADMIN_PASSWORD": "x"}
    bad, rounds, writes, leftovers = [], 30, 0, 0
    versions = set()
    for r in range(rounds):
        p = Proxy({"a": mock("a")}, env=env)
        conn = Connection(HOST, p.port)
        body = json.dumps({"username": "admin", "password": "x"}).encode()
        resp = conn.request("POST", "/admin/login", {"Content-Type": "application/json"}, body)
        token = json.loads(resp.body.read_all())["csrfToken"]
        cookie = resp.headers["set-cookie"].split(";")[0]
        stop = threading.Event()

        def writer(conn=conn, token=token, cookie=cookie, stop=stop, r=r):
            nonlocal writes
            i = 0
            while not stop.is_set():
                i += 1
                cfg = {"mcpServers": {"a": mock("a")}, "round": r, "write": i, "pad": "p" * random.randint(0, 200000)}
                try:
                    resp = conn.request("POST", "/admin/config", {"Content-Type": "application/json", "X-CSRF-Token": token,
                                                                   "Cookie": cookie}, json.dumps(cfg).encode())
                    resp.body.read_all()
                    if resp.status == 200:
                        writes += 1
                except (OSError, ConnectionError):
                    return

        t = threading.Thread(target=writer)
        t.start()
        time.sleep(random.uniform(0.2, 1.0))
        os.kill(p.pid, signal.SIGKILL)
        p.proc.wait()
        stop.set()
        t.join(5)
        p.log.close()
        leftovers += sum(".tmp-" in name for name in os.listdir(p.dir))
        try:
            with open(p.config) as f:
                parsed = json.load(f)
            versions.add((parsed.get("round"), parsed.get("write")))
            if "mcpServers" not in parsed:
                bad.append(f"round {r}: no mcpServers")
        except ValueError as e:
            bad.append(f"round {r}: {e}")
    ok = not bad
    result("kill -9 during admin config writes", ok,
           f"{rounds} rounds, {writes} successful writes, file valid JSON after every kill: {not bad} {bad[:3]}; "
           f"{len(versions)} distinct versions found; temporary files left behind by the kills: {leftovers}")


def case_admin_concurrent_writes():
    """Two admin sessions saving the config at the same time (plus kill -9): the file must stay valid."""
    env = {"ENABLE_ADMIN_UI": "true", "ADMIN_PASSWORD": "x"}
    invalid_reads, bad_after_kill, statuses = 0, [], {}
    for r in range(10):
        p = Proxy({"a": mock("a")}, env=env)
        stop = threading.Event()

        def writer(n, p=p, stop=stop):
            conn = Connection(HOST, p.port)
            resp = conn.request("POST", "/admin/login", {"Content-Type": "application/json"},
                                json.dumps({"username": "admin", "password": "x"}).encode())
            token = json.loads(resp.body.read_all())["csrfToken"]
            cookie = resp.headers["set-cookie"].split(";")[0]
            while not stop.is_set():
                cfg = {"mcpServers": {"a": mock("a")}, "writer": n, "pad": str(n) * 300000}
                try:
                    resp = conn.request("POST", "/admin/config", {"Content-Type": "application/json", "X-CSRF-Token": token,
                                                                   "Cookie": cookie}, json.dumps(cfg).encode())
                    resp.body.read_all()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                except (OSError, ConnectionError):
                    return

        def reader(p=p, stop=stop):
            nonlocal invalid_reads
            while not stop.is_set():
                try:
                    with open(p.config) as f:
                        json.load(f)
                except ValueError:
                    invalid_reads += 1
                except OSError:
                    pass

        ts = [threading.Thread(target=writer, args=(n,)) for n in (1, 2)] + [threading.Thread(target=reader)]
        for t in ts:
            t.start()
        time.sleep(random.uniform(1.0, 3.0))
        os.kill(p.pid, signal.SIGKILL)
        p.proc.wait()
        stop.set()
        for t in ts:
            t.join(5)
        p.log.close()
        try:
            with open(p.config) as f:
                json.load(f)
        except ValueError as e:
            bad_after_kill.append(f"round {r}: {e}")
    ok = not bad_after_kill and invalid_reads == 0
    result("two admins saving at once (+ kill -9)", ok,
           f"10 rounds; POST /admin/config statuses {statuses}; reads of a non-JSON file while writing: "
           f"{invalid_reads}; invalid after kill -9: {bad_after_kill[:3]}")


def case_secrets():
    """The API key and admin password never appear in stderr (debug level), /health, /admin/logs or --check."""
    key, password, remote = "sk-live-KEY-0123456789", "pw-ADMIN-9876543210", "tok-URL-5555"
    bearer, api_key = "tok-BEARER-6666", "tok-APIKEY-7777"
    env = {"ALLOWED_KEYS": key, "ENABLE_ADMIN_UI": "true", "ADMIN_PASSWORD": password, "LOGGING": "debug",
           "REMOTE_TOKEN": remote, "REMOTE_BEARER": bearer, "REMOTE_APIKEY": api_key}
    servers = {"a": mock("a"),
               "remote": {"type": "http", "url": f"http://127.0.0.1:{free_port()}/mcp?token=${{REMOTE_TOKEN}}",
                          "bearerToken": "${REMOTE_BEARER}", "apiKey": "${REMOTE_APIKEY}",
                          "headers": {"X-Secret": "${REMOTE_BEARER}"}}}
    with Proxy(servers, env=env, wait_backends=False) as p:
        p.wait_ready(1, {"X-Api-Key": key})
        s = StreamableSession(HOST, p.port, headers={"X-Api-Key": key})
        s.initialize()
        s.call(1, "tools/call", {"name": "a__echo", "arguments": {"text": "hello"}})
        s.call(2, "tools/call", {"name": "a__stderr", "arguments": {"text": "backend says hi"}})
        raw(p.port, f"GET /sse?key={key} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode(), 1)
        raw(p.port, f"GET /sse?key={key}x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode(), 1)
        raw(p.port, f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: {key}\r\nContent-Length: 5\r\n\r\n{{bad}}".encode(), 1)
        conn = Connection(HOST, p.port)
        for user, pw in (("admin", password + "x"), (password, "nope"), ("admin", password)):
            resp = conn.request("POST", "/admin/login", {"Content-Type": "application/json"},
                                json.dumps({"username": user, "password": pw}).encode())
            login = resp.body.read_all()
        cookie = resp.headers.get("set-cookie", "").split(";")[0]
        resp = conn.request("GET", "/admin/logs", {"Cookie": cookie})
        admin_logs = resp.body.read_all().decode(errors="replace")
        _, health_anon = p.health()
        _, health_key = p.health({"X-Api-Key": key})
        time.sleep(1.5)
        stderr = p.stderr()
    check = subprocess.run([BIN, "--check", "--config", p.config], env=dict(os.environ, **env), capture_output=True,
                           timeout=60)
    check_out = (check.stdout + check.stderr).decode(errors="replace")
    places = {"stderr": stderr, "/health": json.dumps(health_anon) + json.dumps(health_key), "/admin/logs": admin_logs,
              "--check": check_out}
    found = {f"{name} in {where}": text.count(secret) for where, text in places.items()
             for name, secret in (("API key", key), ("admin password", password), ("remote token", remote),
                                  ("remote bearerToken/header", bearer), ("remote apiKey", api_key))
             if secret in text}
    core = {k: v for k, v in found.items() if not k.startswith("remote")}
    backend = {k: v for k, v in found.items() if k.startswith("remote")}
    ok = not core and b"success" in login
    result("secrets in logs, /health, /admin/logs, --check", ok,
           f"ALLOWED_KEYS / ADMIN_PASSWORD found: {core or 'nowhere'}; a remote backend's ${{VAR}} secrets found: "
           f"{backend or 'nowhere'}" + (f"; e.g. {first_line(stderr + check_out, remote)}" if backend else ""))


def first_line(text, *needles):
    for line in text.splitlines():
        if all(n in line for n in needles):
            return line.strip()[:200]
    return None


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


def main():
    global BIN
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid> prints every thread's stack: for a stuck case
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "mcp-proxy-server"))
    ap.add_argument("--list", action="store_true")
    ap.add_argument("cases", nargs="*")
    args = ap.parse_args()
    if args.list:
        for name, fn in CASES.items():
            print(f"{name:28} {fn.__doc__.split(chr(10))[0]}")
        return 0
    BIN = os.path.abspath(args.bin)
    for name in args.cases or CASES:
        t0 = time.monotonic()
        try:
            CASES[name]()
        except Exception as e:  # noqa: BLE001 - a case that cannot run is a failed case
            result(name, False, f"could not run: {e!r}")
        print(f"     ({time.monotonic() - t0:.0f}s)", flush=True)
    failed = sum(not ok for _, ok, _ in RESULTS)
    print(f"\n{len(RESULTS) - failed} ok, {failed} failed")
    return failed


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # a case that failed half-way may leave a helper thread behind: do not wait for it
