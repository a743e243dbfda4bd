#!/usr/bin/env python3
"""Soak test of mcp-proxy-server in HTTP mode (run by scripts/soak.sh; Python stdlib only).

Starts the proxy on loopback in front of three mock stdio backends (tests/fixtures/mock_server.py) with a
short restart backoff and session idle timeout, then for the given time:
  - Streamable HTTP workers: sessions of random tools/call (echo, sleep, progress) and tools/list, some
    with a GET stream open beside them, ended by DELETE or left to expire;
  - legacy SSE workers: GET /sse sessions posting 1-3 concurrent calls at a time to /message;
  - random client disconnects mid-call (the connection is closed before the answer);
  - a killer thread that SIGKILLs a random backend process every few seconds;
  - with --hostile (the default), at the same time: a fourth backend that writes 200000 log
    notifications each time it starts (and the killer restarts it), a session flood (initialize after
    initialize, never used, from 127.0.0.2) and an idle-socket flood (300 connections that send nothing,
    from 127.0.0.3), each from an address of its own, as an attacker's would be.
Every call is checked: exactly one answer (a result or an error), echo text and progress tokens belong
to the call that sent them. After the load stops and sessions expire, the proxy's threads, open fds,
descendant processes and RSS are compared with the idle baseline. Prints a summary; exits 1 on a
failed check.
"""

import argparse
import collections
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcpclient  # noqa: E402
from mcpclient import HttpError, LegacySession, StreamableSession  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MOCK = os.path.join(ROOT, "tests", "fixtures", "mock_server.py")
BACKENDS = ("a", "b", "c")
HOST = "127.0.0.1"
# Writes log notifications each time it starts, then becomes the mock.
FLOOD_BACKEND = "flood"
FLOOD_CODE = (
    "import json, os, sys\n"
    "line = json.dumps({'jsonrpc': '2.0', 'method': 'notifications/message', "
    "'params': {'level': 'info', 'logger': 'flood', 'data': 'x' * 100}}) + '\\n'\n"
    "for _ in range(200):\n    sys.stdout.write(line * 1000)\n"
    "sys.stdout.flush()\n"
    f"os.execv(sys.executable, [sys.executable, {MOCK!r}, '--name', 'flood'])\n"
)


# ---------------------------------------------------------------- process inspection (/proc)

def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def threads(pid):
    return int(proc_status(pid)["Threads"])


def rss_kib(pid):
    return int(proc_status(pid)["VmRSS"].split()[0])


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def all_processes():
    """pid -> (ppid, state, cmdline)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        table[int(entry)] = (int(rest[1]), rest[0], cmd)
    return table


def descendants(pid):
    table = all_processes()
    children = collections.defaultdict(list)
    for p, (ppid, _, _) in table.items():
        children[ppid].append(p)
    out, todo = [], [pid]
    while todo:
        for child in children[todo.pop()]:
            out.append((child, table[child][1], table[child][2]))
            todo.append(child)
    return out


SEEN_BACKENDS = set()


def snapshot(pid):
    desc = descendants(pid)
    SEEN_BACKENDS.update(p for p, _, cmd in desc if MOCK in cmd)
    return {
        "threads": threads(pid),
        "fds": fds(pid),
        "children": len(desc),
        "zombies": sum(1 for _, state, _ in desc if state == "Z"),
        "rss_kib": rss_kib(pid),
    }


# ---------------------------------------------------------------- bookkeeping

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = collections.Counter()
        self.problems = []

    def add(self, key, n=1):
        with self.lock:
            self.c[key] += n

    def problem(self, text):
        with self.lock:
            self.c["problems"] += 1
            if len(self.problems) < 40:
                self.problems.append(text)


def classify(stats, answer, expect_text=None):
    """Counts one answer to a tools/call; checks it belongs to the call."""
    if "error" in answer:
        stats.add(f"rpc error {answer['error'].get('code')}")
        return
    result = answer.get("result", {})
    if result.get("isError"):
        stats.add("tool error (isError)")
        return
    stats.add("result")
    if expect_text is not None:
        got = result.get("structuredContent", {}).get("text")
        if got != expect_text:
            stats.problem(f"echo answered {got!r} to a call that sent {expect_text!r}")


def random_call(rng, tag):
    """A random tools/call: (params, echo text expected or None, progress token or None)."""
    backend = rng.choice(BACKENDS)
    kind = rng.choices(("echo", "sleep", "progress", "list"), weights=(5, 3, 2, 1))[0]
    if kind == "echo":
        text = f"{tag}-{rng.random()}"
        return "tools/call", {"name": f"{backend}__echo", "arguments": {"text": text}}, text, None
    if kind == "sleep":
        return "tools/call", {"name": f"{backend}__sleep", "arguments": {"ms": rng.randint(0, 1500)}}, None, None
    if kind == "progress":
        token = f"{tag}-p{rng.random()}"
        params = {
            "name": f"{backend}__progress",
            "arguments": {"steps": rng.randint(1, 5), "ms": rng.randint(20, 200)},
            "_meta": {"progressToken": token},
        }
        return "tools/call", params, None, token
    return "tools/list", {}, None, None


# ---------------------------------------------------------------- workers

def streamable_worker(n, port, stop, stats, disconnect_p):
    rng = random.Random(n)
    while not stop.is_set():
        session = StreamableSession(HOST, port)
        try:
            session.initialize()
        except (HttpError, OSError, ConnectionError, ValueError) as e:
            stats.problem(f"streamable initialize failed: {e}")
            session.drop()
            time.sleep(0.5)
            continue
        stats.add("streamable sessions")
        watcher = None
        if rng.random() < 0.3:
            watch_conn = mcpclient.Connection(HOST, port, timeout=120)
            watcher = threading.Thread(target=get_stream_watch, args=(watch_conn, session.session, stats), daemon=True)
            watcher.start()
        next_id = 1
        for _ in range(rng.randint(3, 30)):
            if stop.is_set():
                break
            method, params, text, token = random_call(rng, f"s{n}-{next_id}")
            id_ = next_id
            next_id += 1
            stats.add("requests sent")
            if rng.random() < disconnect_p:
                try:
                    session.send_and_drop(id_, method, params, after=rng.uniform(0, 0.5))
                except OSError:
                    pass
                stats.add("abandoned (client disconnected mid-call)")
                continue
            progress_seen = []

            def on_message(msg, token=token, seen=progress_seen):
                if msg.get("method") == "notifications/progress":
                    got = msg.get("params", {}).get("progressToken")
                    if got != token:
                        stats.problem(f"progress for token {got!r} on a call with token {token!r}")
                    seen.append(got)

            try:
                answer = session.call(id_, method, params, on_message)
            except HttpError as e:
                stats.add(f"http {e.status}")
                if e.status == 404:
                    stats.problem(f"session lost mid-use: {e}")
                    break
                continue
            except (OSError, ConnectionError, ValueError, AssertionError) as e:
                stats.problem(f"streamable call {method} got no answer: {e!r}")
                stats.add("missing answer")
                session.drop()
                continue
            if answer.get("id") != id_:
                stats.problem(f"answer id {answer.get('id')!r} to request {id_}")
            if method == "tools/list":
                stats.add("tools/list answered")
            else:
                classify(stats, answer, text)
            stats.add("answers")
        try:
            if rng.random() < 0.7:
                status = session.delete()
                stats.add(f"DELETE {status}")
            else:
                stats.add("sessions left to expire")
        except (OSError, ConnectionError):
            stats.add("DELETE failed (connection)")
        session.drop()
        if watcher:
            watch_conn.close()  # the client goes away: its GET stream closes too
            watcher.join(10)


def get_stream_watch(conn, session_id, stats):
    """Holds a session's GET /mcp stream; no response to a request may ever arrive there."""
    try:
        resp = conn.request("GET", "/mcp", {"Accept": "text/event-stream", "Mcp-Session-Id": session_id})
        if resp.status != 200:
            resp.body.read_all()
            conn.close()
            return
        stats.add("GET streams")
        for _, data in resp.body.events():
            msg = json.loads(data)
            if "method" not in msg:
                stats.problem(f"a response arrived on a GET stream: {data[:120]}")
        conn.close()
    except (OSError, ConnectionError, ValueError):
        pass


def legacy_worker(n, port, stop, stats, disconnect_p):
    rng = random.Random(1000 + n)
    while not stop.is_set():
        try:
            session = LegacySession(HOST, port)
            session.initialize()
        except (HttpError, OSError, ConnectionError, ValueError, StopIteration, AssertionError) as e:
            stats.problem(f"legacy SSE session failed to start: {e!r}")
            time.sleep(0.5)
            continue
        stats.add("legacy SSE sessions")
        next_id = 1
        dropped = False
        tokens = set()
        for _ in range(rng.randint(2, 12)):
            if stop.is_set():
                break
            batch = []
            for _ in range(rng.randint(1, 3)):
                method, params, text, token = random_call(rng, f"l{n}-{next_id}")
                batch.append((next_id, method, text, token))
                tokens.add(token)
                stats.add("requests sent")
                try:
                    status, body = session.post(mcpclient.rpc(next_id, method, params))
                except (OSError, ConnectionError) as e:
                    stats.problem(f"legacy POST failed: {e!r}")
                    status = None
                if status != 202:
                    stats.add(f"http {status}")
                    batch.pop()
                next_id += 1
            if rng.random() < disconnect_p:
                time.sleep(rng.uniform(0, 0.5))
                session.close()
                stats.add("abandoned (client disconnected mid-call)", len(batch))
                dropped = True
                break
            for id_, method, text, token in batch:
                answer = session.wait(id_, 90)
                if answer is None:
                    stats.problem(f"legacy call {id_} {method}: no answer within 90 s (stream closed: {session.closed})")
                    stats.add("missing answer")
                    continue
                if method == "tools/list":
                    stats.add("tools/list answered")
                else:
                    classify(stats, answer, text)
                stats.add("answers")
        with session.lock:
            for note in session.notifications:
                if note.get("method") == "notifications/progress":
                    stats.add("progress notifications (legacy)")
                    got = note.get("params", {}).get("progressToken")
                    if got not in tokens:
                        stats.problem(f"legacy session got progress for token {got!r}, not one of its own")
        if not dropped:
            session.close()
        stats.add("duplicate answers", session.duplicates)
        stats.add("answers to unknown ids", session.strays)
        if session.duplicates or session.strays:
            stats.problem(f"legacy session: {session.duplicates} duplicate and {session.strays} stray answers")


def session_flooder(port, stop, stats):
    """Opens session after session and never uses one, from an address of its own."""
    body = json.dumps(mcpclient.rpc(0, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}})).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    while not stop.is_set():
        try:
            sock = socket.create_connection((HOST, port), timeout=10, source_address=("127.0.0.2", 0))
            conn = mcpclient.Connection.__new__(mcpclient.Connection)
            conn.host, conn.port, conn.sock, conn.rfile = HOST, port, sock, sock.makefile("rb")
            for _ in range(200):
                response = conn.request("POST", "/mcp", headers, body)
                response.body.read_all()
                stats.add(f"session flood: HTTP {response.status}")
            conn.close()
        except (OSError, ConnectionError) as e:
            stats.add(f"session flood: {type(e).__name__}")
        stop.wait(0.5)


def idle_flooder(port, stop, stats):
    """Holds 300 connections that send nothing, from an address of its own, and opens them again."""
    while not stop.is_set():
        socks = []
        for _ in range(300):
            try:
                socks.append(socket.create_connection((HOST, port), timeout=5, source_address=("127.0.0.3", 0)))
            except OSError:
                stats.add("idle flood: connect refused")
        stats.add("idle flood: sockets opened", len(socks))
        stop.wait(12)
        for sock in socks:
            sock.close()


def killer(proxy_pid, stop, stats, period):
    rng = random.Random(7)
    while not stop.wait(rng.uniform(period / 2, period * 1.5)):
        mocks = [pid for pid, state, cmd in descendants(proxy_pid) if MOCK in cmd and state != "Z"]
        SEEN_BACKENDS.update(mocks)
        if mocks:
            victim = rng.choice(mocks)
            try:
                os.kill(victim, signal.SIGKILL)
                stats.add("backends SIGKILLed")
            except ProcessLookupError:
                pass


# ---------------------------------------------------------------- main

def dropped_notifications(port):
    """The proxy's counts of notifications dropped for consumers that did not keep up, from /metrics."""
    conn = mcpclient.Connection(HOST, port)
    try:
        body = conn.request("GET", "/metrics", {"Connection": "close"}).body.read_all().decode()
    except (OSError, ConnectionError):
        return "unknown"
    finally:
        conn.close()
    return ", ".join(line.split("{", 1)[1].replace('stage="', "").replace('"}', ":") for line in body.splitlines()
                     if line.startswith("mcp_proxy_notifications_dropped_total"))


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_ready(port, backends, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, health = mcpclient.get_json(HOST, port, "/health")
            if status == 200 and all(b["state"] == "connected" for b in health.get("backends", [])) \
                    and len(health.get("backends", [])) == backends:
                return health
        except (OSError, ConnectionError, ValueError):
            pass
        time.sleep(0.2)
    raise SystemExit("proxy not ready in time")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--minutes", type=float, default=5)
    ap.add_argument("--streamable", type=int, default=10, help="Streamable HTTP worker threads")
    ap.add_argument("--legacy", type=int, default=5, help="legacy SSE worker threads")
    ap.add_argument("--disconnect", type=float, default=0.05, help="chance a call is abandoned mid-way")
    ap.add_argument("--kill-every", type=float, default=4.0, help="mean seconds between backend SIGKILLs")
    ap.add_argument("--idle-timeout", type=float, default=5.0)
    ap.add_argument("--hostile", action=argparse.BooleanOptionalAction, default=True,
                    help="add a notification-flooding backend, a session flood and an idle-socket flood")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="mcp-soak-")
    config = {"mcpServers": {k: {"command": sys.executable, "args": [MOCK, "--name", k]} for k in BACKENDS}}
    if args.hostile:
        config["mcpServers"][FLOOD_BACKEND] = {"command": sys.executable, "args": ["-c", FLOOD_CODE]}
    config_path = os.path.join(work, "mcp_server.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    port = free_port()
    env = dict(
        os.environ,
        LOGGING="warn",
        MCP_PROXY_RESTART_BACKOFF_MIN="0.1",
        MCP_PROXY_RESTART_BACKOFF_MAX="1",
        MCP_PROXY_SESSION_IDLE_TIMEOUT=str(args.idle_timeout),
        MCP_PROXY_SSE_KEEPALIVE="2",
        MCP_PROXY_CONFIG_POLL="0",
        MCP_PROXY_SESSION_UNUSED_TIMEOUT="3",
    )
    log_path = os.path.join(work, "proxy.log")
    log = open(log_path, "wb")
    proxy = subprocess.Popen(
        [args.bin, "--sse", "--host", HOST, "--port", str(port), "--config", config_path],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
    )
    print(f"soak: proxy pid {proxy.pid} on {HOST}:{port}, log {log_path}", flush=True)
    checks = []
    stats = Stats()
    try:
        wait_ready(port, len(config["mcpServers"]))
        # Warm up (first-use allocations, thread-local caches), let it go idle, then take the baseline.
        warm = StreamableSession(HOST, port)
        warm.initialize()
        warm.call(1, "tools/call", {"name": "a__echo", "arguments": {"text": "warm"}})
        warm.delete()
        warm.drop()
        time.sleep(3)
        base = snapshot(proxy.pid)
        print(f"soak: idle baseline {base}", flush=True)

        stop = threading.Event()
        workers = [threading.Thread(target=streamable_worker, args=(i, port, stop, stats, args.disconnect), daemon=True)
                   for i in range(args.streamable)]
        workers += [threading.Thread(target=legacy_worker, args=(i, port, stop, stats, args.disconnect), daemon=True)
                    for i in range(args.legacy)]
        kill_thread = threading.Thread(target=killer, args=(proxy.pid, stop, stats, args.kill_every), daemon=True)
        floods = [threading.Thread(target=f, args=(port, stop, stats), daemon=True) for f in (session_flooder, idle_flooder)]
        for t in floods if args.hostile else []:
            t.start()
        for t in workers + [kill_thread]:
            t.start()
        started = time.monotonic()
        peak = dict(base)
        end = started + args.minutes * 60
        while time.monotonic() < end:
            time.sleep(min(10, max(0.1, end - time.monotonic())))
            if proxy.poll() is not None:
                break
            snap = snapshot(proxy.pid)
            peak = {k: max(peak[k], snap[k]) for k in peak}
            with stats.lock:
                done = stats.c["answers"]
            print(f"soak: {time.monotonic() - started:5.0f}s answers {done} now {snap}", flush=True)
        stop.set()
        for t in workers:
            t.join(120)
        kill_thread.join(10)
        for t in floods if args.hostile else []:
            t.join(30)
        alive_workers = sum(t.is_alive() for t in workers)
        load_seconds = time.monotonic() - started

        checks.append(("proxy still running after the load", proxy.poll() is None, f"exit {proxy.poll()}"))
        checks.append(("every worker finished", alive_workers == 0, f"{alive_workers} stuck"))
        # Wait for dropped connections to be noticed, sessions to expire and killed backends to be back.
        settle_deadline = time.monotonic() + args.idle_timeout + 60
        final = None
        slack = {"threads": 2, "fds": 4}
        while proxy.poll() is None:
            final = snapshot(proxy.pid)
            _, health = mcpclient.get_json(HOST, port, "/health")
            settled = (final["threads"] <= base["threads"] and final["fds"] <= base["fds"] and health.get("sessions") == 0
                       and final["children"] == base["children"] and final["zombies"] == 0)
            if settled or time.monotonic() > settle_deadline:
                break
            time.sleep(1)
        settle_seconds = time.monotonic() - (started + load_seconds)
        health = None
        if proxy.poll() is None:
            _, health = mcpclient.get_json(HOST, port, "/health")
        if final is None:
            final = {k: -1 for k in base}
        sent = stats.c["requests sent"]
        abandoned = stats.c["abandoned (client disconnected mid-call)"]
        http_failures = sum(v for k, v in stats.c.items() if k.startswith("http "))
        answered = stats.c["answers"]
        # Sent = answered + abandoned by the client + refused at the HTTP level + missing: the last must be 0.
        accounted = answered + abandoned + http_failures + stats.c["missing answer"]
        checks += [
            ("requests: answered + abandoned + HTTP-refused == sent", accounted == sent,
             f"{answered} + {abandoned} + {http_failures} + {stats.c['missing answer']} missing vs {sent} sent"),
            ("no request without an answer", stats.c["missing answer"] == 0, f"{stats.c['missing answer']} missing"),
            ("no duplicate or stray answer", stats.c["duplicate answers"] + stats.c["answers to unknown ids"] == 0,
             f"{stats.c['duplicate answers']} duplicate, {stats.c['answers to unknown ids']} stray"),
            ("no other problem (cross-talk, lost session, failed start)", stats.c["problems"] == 0,
             f"{stats.c['problems']} problems"),
            (f"threads back to baseline (+{slack['threads']})", final["threads"] <= base["threads"] + slack["threads"],
             f"{base['threads']} -> peak {peak['threads']} -> {final['threads']}"),
            (f"fds back to baseline (+{slack['fds']})", final["fds"] <= base["fds"] + slack["fds"],
             f"{base['fds']} -> peak {peak['fds']} -> {final['fds']}"),
            ("child processes == baseline, no zombie", final["children"] == base["children"] and final["zombies"] == 0,
             f"{base['children']} -> peak {peak['children']} -> {final['children']} ({final['zombies']} zombies)"),
            ("RSS back near idle (<= 2x baseline + 16 MiB)", final["rss_kib"] <= 2 * base["rss_kib"] + 16384,
             f"{base['rss_kib']} KiB -> peak {peak['rss_kib']} KiB -> {final['rss_kib']} KiB"),
            ("RSS bounded under load and floods (peak <= baseline + 64 MiB)", peak["rss_kib"] <= base["rss_kib"] + 65536,
             f"{base['rss_kib']} KiB -> peak {peak['rss_kib']} KiB; notifications dropped: {dropped_notifications(port)}"),
            ("all backends connected at the end", bool(health) and all(b["state"] == "connected" for b in health["backends"]),
             ", ".join(f"{b['key']}:{b['state']} restarts {b['restarts']}" for b in (health or {}).get("backends", []))),
            ("no sessions left", bool(health) and health.get("sessions") == 0, f"sessions {(health or {}).get('sessions')}"),
        ]
    finally:
        if proxy.poll() is None:
            proxy.send_signal(signal.SIGTERM)
            try:
                code = proxy.wait(20)
            except subprocess.TimeoutExpired:
                proxy.kill()
                code = proxy.wait()
            checks.append(("SIGTERM: exit 0", code == 0, f"exit {code}"))
        log.close()
    with open(log_path, "rb") as f:
        text = f.read().decode(errors="replace")
    panics = text.count("panicked")
    checks.append(("no panic in the proxy log", panics == 0, f"{panics} panics"))
    time.sleep(0.5)
    # Every backend process seen during the run must be gone once the proxy has exited.
    table = all_processes()
    orphans = [p for p in SEEN_BACKENDS if p in table and MOCK in table[p][2] and table[p][1] != "Z"]
    checks.append(("no backend process left after exit", not orphans, f"survivors {orphans}"))

    print()
    print(f"soak: {args.minutes:g} min of load, {args.streamable} Streamable HTTP + {args.legacy} legacy SSE workers, "
          f"settled in {settle_seconds:.0f}s")
    print(f"{'counter':48} {'value':>10}")
    for key in sorted(stats.c):
        print(f"{key:48} {stats.c[key]:>10}")
    print()
    print(f"{'check':60} {'result':6}  detail")
    failed = 0
    for name, ok, detail in checks:
        failed += not ok
        print(f"{name:60} {'ok' if ok else 'FAIL':6}  {detail}")
    if stats.problems:
        print("\nfirst problems:")
        for p in stats.problems:
            print("  " + p)
    warnings = [line for line in text.splitlines() if " WARN " in line or " ERROR " in line]
    kinds = collections.Counter(line.split(" ", 2)[2][:70] for line in warnings)
    print(f"\nproxy log: {len(warnings)} WARN/ERROR lines; most common:")
    for line, count in kinds.most_common(8):
        print(f"  {count:6}  {line}")
    print(f"\nsoak: {'FAILED' if failed else 'passed'} ({failed} failed checks); log {log_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
