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
    from 127.0.0.3), each from an address of its own, as an attacker's would be;
  - with --isolation (the default): a fifth mock, `iso`, with "isolation": "session" (--max-instances,
    default 8; --instance-idle, default 2 s). Its own workers open many short Streamable HTTP sessions
    that call its `count` tool (each session must see its own instance's count: 1, 2, 3... and 1 again
    from a new process after a crash or an idle stop), pause past the idle timeout, end by DELETE or are
    left to expire; sessions past maxInstances get its error (an answer, counted as expected); instance
    processes are SIGKILLed from outside, between calls and during a call of their client's;
  - with --profiles (the default): ALLOWED_KEYS is set (every other client sends the unbound key), a
    `lean` profile with toolSearch (and its crash tools denied) and a `bound` profile bound to a key of
    its own; profile workers call search_tools, call_tool (shared and isolated tools), list_servers and
    denied tools on /mcp/lean, /mcp/bound and /mcp (where the bound key sees its profile), try the bound
    key on another profile's path (403), and send sessionless 2026-07-28 requests (an isolated server
    refuses them).
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
import re  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MOCK = os.path.join(ROOT, "tests", "fixtures", "mock_server.py")
BACKENDS = ("a", "b", "c")
HOST = "127.0.0.1"
# Headers every client sends: the key bound to no profile, when --profiles sets ALLOWED_KEYS.
AUTH = {}
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
        self.kinds = collections.Counter()
        self.problems = []
        self.examples = collections.defaultdict(list)  # a failure with a check of its own -> its first cases

    def add(self, key, n=1):
        with self.lock:
            self.c[key] += n

    def example(self, key, text):
        """Counts a failure that has a check of its own (not among the problems), keeping its first cases."""
        with self.lock:
            self.c[key] += 1
            if len(self.examples[key]) < 8:
                self.examples[key].append(f"{time.strftime('%H:%M:%S', time.gmtime())} {text}")

    def kind(self, answer):
        """Counts an error answer (JSON-RPC error or tool error) by its message, digits blurred."""
        if "error" in answer:
            text = f"{answer['error'].get('code')} {answer['error'].get('message')}"
        else:
            content = answer.get("result", {}).get("content") or [{}]
            text = f"isError {content[0].get('text')}"
        text = re.sub(r"\d+", "N", re.sub(r"'[^']*'", "'…'", str(text)))[:100]
        with self.lock:
            self.kinds[text] += 1

    def problem(self, text):
        with self.lock:
            self.c["problems"] += 1
            if len(self.problems) < 40:
                self.problems.append(text)


def classify(stats, answer, expect_text=None):
    """Counts one answer to a tools/call; checks it belongs to the call."""
    if "error" in answer:
        stats.add(f"rpc error {answer['error'].get('code')}")
        stats.kind(answer)
        return
    result = answer.get("result", {})
    if result.get("isError"):
        stats.add("tool error (isError)")
        stats.kind(answer)
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

def opened_session(port, stats, who):
    """An initialized Streamable HTTP session, or None (counted as a problem, after a pause) when the
    proxy refused it: the worker tries again."""
    session = StreamableSession(HOST, port, AUTH)
    try:
        session.initialize()
        return session
    except (HttpError, OSError, ConnectionError, ValueError) as e:
        stats.problem(f"{who} initialize failed: {e}")
        session.drop()
        time.sleep(0.5)
        return None


def streamable_worker(n, port, stop, stats, disconnect_p):
    rng = random.Random(n)
    while not stop.is_set():
        session = opened_session(port, stats, "streamable")
        if session is None:
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
        resp = conn.request("GET", "/mcp", {"Accept": "text/event-stream", "Mcp-Session-Id": session_id, **AUTH})
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
            session = LegacySession(HOST, port, AUTH)
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
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream", **AUTH}
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
        mocks = [pid for pid, state, cmd in descendants(proxy_pid) if MOCK in cmd and state != "Z" and not is_iso(cmd)]
        SEEN_BACKENDS.update(mocks)
        if mocks:
            victim = rng.choice(mocks)
            try:
                os.kill(victim, signal.SIGKILL)
                stats.add("backends SIGKILLed")
            except ProcessLookupError:
                pass


# ---------------------------------------------------------------- isolation per session, profiles

ISO = "iso"  # the server isolated per client session
ANY_KEY, BOUND_KEY = "soak-any", "soak-bound"
MODERN = "2026-07-28"
# `lean`: tool search over every server, crash tools denied (a denied tool that got through would crash
# its backend); `bound`: two servers, three tools (one renamed), bound to a key of its own.
PROFILES = {
    "lean": {"toolSearch": True, "tools": {"deny": ["*__crash"]}},
    "bound": {"servers": ["b", ISO], "tools": {"allow": ["b__echo", "b__sleep", f"{ISO}__count"]},
              "rename": {"b__echo": "say"}, "keys": [BOUND_KEY]},
}
LEAN_TOOLS = {"search_tools", "call_tool", "list_servers"}
BOUND_TOOLS = {"say", "b__sleep", f"{ISO}__count"}
# Pids of isolated instances (from their count answers): pid -> the session it served last.
INSTANCES = {}
INSTANCES_LOCK = threading.Lock()


def is_iso(cmd):
    return MOCK in cmd and cmd.split()[-2:] == ["--name", ISO]


def error_message(answer):
    if "error" in answer:
        return str(answer["error"].get("message"))
    return str((answer.get("result", {}).get("content") or [{}])[0].get("text"))


def failed(answer):
    return "error" in answer or answer.get("result", {}).get("isError")


def ask(session, stats, id_, method, params, on_message=None):
    """One request in a session, accounted as every request is: the answer (id checked), or None
    (HTTP refusal or missing answer, counted; a lost session is a problem)."""
    stats.add("requests sent")
    try:
        answer = session.call(id_, method, params, on_message)
    except HttpError as e:
        stats.add(f"http {e.status}")
        if e.status == 404:
            stats.problem(f"session lost mid-use on {session.path}: {e}")
        return None
    except (OSError, ConnectionError, ValueError, AssertionError) as e:
        stats.problem(f"{session.path} call {method} {params.get('name', '')} got no answer: {e!r}")
        stats.add("missing answer")
        session.drop()
        return None
    if answer.get("id") != id_:
        stats.problem(f"answer id {answer.get('id')!r} to request {id_}")
    stats.add("answers")
    return answer


class Instance:
    """A client session's view of its own instance of the isolated server: the pid and count its last
    `count` answered. Its next count is that count + 1 from the same pid, or 1 from another pid (a new
    process: after a crash, an idle stop, or the first call); anything else is another session's count."""

    def __init__(self, label):
        self.label, self.pid, self.count = label, None, 0

    def check(self, stats, answer, paused=False):
        if failed(answer):
            stats.kind(answer)
            message = error_message(answer)
            if '"maxInstances"' in message:
                stats.add("iso: refused past maxInstances (expected)")
            elif "error" in answer and answer["error"].get("code") == -32000:
                stats.add("iso: -32000 (its instance gone or restarting)")
            else:
                stats.add("iso: unexpected error")
                stats.problem(f"{self.label}: count answered {json.dumps(answer)[:200]}")
            return
        stats.add("result")
        content = answer.get("result", {}).get("structuredContent") or {}
        pid, count = content.get("pid"), content.get("count")
        with INSTANCES_LOCK:
            previous = INSTANCES.get(pid)
            INSTANCES[pid] = self.label
        if pid == self.pid:
            if count != self.count + 1:
                stats.add("iso: count not its own")
                stats.problem(f"{self.label}: count {count} from its instance {pid} after {self.count}")
            if paused:
                stats.add("iso: instance outlived its idleTimeout")
                stats.problem(f"{self.label}: instance {pid} still served after a pause past idleTimeout")
        elif count != 1:
            stats.add("iso: count not its own")
            stats.problem(f"{self.label}: count {count} from pid {pid} (last served {previous}), its own was {self.pid}")
        else:
            stats.add("iso: new instance (first call, crash or idle stop)" if self.pid else "iso: first instance of a session")
        self.pid, self.count = pid, count


def kill_instance(proxy_pid, pid):
    """SIGKILLs an instance of the isolated server, if pid still is one of the proxy's children."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        if int(rest[1]) != proxy_pid or rest[0] == "Z" or not is_iso(cmd):
            return False
        os.kill(pid, signal.SIGKILL)
        return True
    except (OSError, ValueError, IndexError):
        return False


def iso_worker(n, port, stop, stats, args, proxy_pid):
    """Short sessions calling the isolated server's count: pauses past its idleTimeout, a crash of its
    own instance during a call (SIGKILL from outside), DELETE or left to expire."""
    rng = random.Random(2000 + n)
    while not stop.is_set():
        session = opened_session(port, stats, "iso")
        if session is None:
            continue
        stats.add("iso: sessions")
        mine = Instance(f"iso{n}/{session.session[:8]}")
        next_id = 1
        for _ in range(rng.randint(1, 8)):
            # A long pause only once the session has sent a request: one that sent nothing after its
            # initialize is forgotten after MCP_PROXY_SESSION_UNUSED_TIMEOUT (3 s here).
            r = rng.random() if next_id > 1 else 1
            pause = rng.uniform(args.instance_idle + 1, args.instance_idle + 2) if r < 0.12 else rng.uniform(0, 0.3) if r < 0.6 else 0
            if stop.wait(pause):
                break
            id_, next_id = next_id, next_id + 1
            if mine.pid and not pause and rng.random() < 0.08:
                # Its instance is SIGKILLed from outside while it serves a 3 s call.
                victim = mine.pid
                killed = []
                timer = threading.Timer(rng.uniform(0.2, 0.6), lambda: killed.append(kill_instance(proxy_pid, victim)))
                timer.start()
                asked = time.monotonic()
                answer = ask(session, stats, id_, "tools/call", {"name": f"{ISO}__sleep", "arguments": {"ms": 3000}})
                timer.join()
                took = time.monotonic() - asked
                if killed and killed[0]:
                    stats.add("iso: instances SIGKILLed during a call")
                if answer is None:
                    continue
                if failed(answer):
                    stats.kind(answer)
                    if "error" in answer and answer["error"].get("code") == -32000:
                        stats.add("iso: call failed with its instance (expected)")
                        if took > 2.5:
                            stats.problem(f"{mine.label}: call in flight to a killed instance answered after {took:.1f}s")
                    elif '"maxInstances"' in error_message(answer):
                        stats.add("iso: refused past maxInstances (expected)")
                    else:
                        stats.problem(f"{mine.label}: call to a killed instance answered {json.dumps(answer)[:200]}")
                elif killed and killed[0]:
                    # Its instance was alive and killed mid-call, yet something else answered the call.
                    stats.add("result")
                    stats.problem(f"{mine.label}: a call answered {json.dumps(answer)[:120]} although its instance {victim} was killed")
                else:
                    stats.add("result")
                    stats.add("iso: call outlived the kill (its instance was already gone; a new one served it)")
                continue
            answer = ask(session, stats, id_, "tools/call", {"name": f"{ISO}__count", "arguments": {}})
            if answer is not None:
                mine.check(stats, answer, paused=pause > args.instance_idle + 0.5)
                if failed(answer) and '"maxInstances"' in error_message(answer):
                    stop.wait(rng.uniform(0.2, 0.5))  # a client told to try again later waits a little
        try:
            if rng.random() < 0.6:
                stats.add(f"iso: DELETE {session.delete()}")
            else:
                stats.add("iso: sessions left to expire")
        except (OSError, ConnectionError):
            stats.add("DELETE failed (connection)")
        session.drop()


def iso_killer(proxy_pid, stop, stats, period):
    """SIGKILLs a running instance of the isolated server (one a session has called) now and then."""
    rng = random.Random(11)
    while not stop.wait(rng.uniform(period / 2, period * 1.5)):
        with INSTANCES_LOCK:
            pids = list(INSTANCES)
        rng.shuffle(pids)
        for pid in pids:
            if kill_instance(proxy_pid, pid):
                stats.add("iso: instances SIGKILLed between calls")
                break


def iso_monitor(port, proxy_pid, stop, peaks):
    """Samples the isolated server's instances (/health) and processes, for the maxInstances check."""
    while not stop.wait(0.5):
        try:
            _, health = mcpclient.get_json(HOST, port, "/health", AUTH)
        except (OSError, ConnectionError, ValueError):
            continue
        for b in health.get("backends", []) if isinstance(health, dict) else []:
            if b["key"] == ISO:
                peaks["instances"] = max(peaks["instances"], len(b.get("instances") or []))
        procs = [p for p, state, cmd in descendants(proxy_pid) if is_iso(cmd) and state != "Z"]
        SEEN_BACKENDS.update(procs)
        peaks["processes"] = max(peaks["processes"], len(procs))


def expect_unknown(stats, answer, name, label):
    """A call of a tool the profile does not show: -32602 "Unknown tool", or a tool error saying so
    through call_tool."""
    if answer is None:
        return
    message = error_message(answer)
    if failed(answer) and message.startswith(f"Unknown tool: '{name}'"):
        stats.add("profile: hidden tool refused (expected)")
        return
    stats.add("profile: hidden tool NOT refused")
    stats.problem(f"{label}: hidden tool {name} answered {json.dumps(answer)[:200]}")


def shown_answer(stats, answer, label, expect_text=None, mine=None):
    """The answer to a call of a tool the profile shows."""
    if answer is None:
        return
    if failed(answer) and error_message(answer).startswith("Unknown tool"):
        # The tool is shown, but its server is restarting: /mcp retries such a call, a profile does not.
        stats.kind(answer)
        stats.example("profile: shown tool answered Unknown tool (server restarting)",
                      f"{label}: {error_message(answer)[:100]}")
        return
    if mine is not None:
        mine.check(stats, answer)
    else:
        classify(stats, answer, expect_text)


def profile_lean(n, rng, port, stop, stats):
    """A session on /mcp/lean (tool search): lists, searches, calls through call_tool and directly."""
    session = StreamableSession(HOST, port, AUTH, path="/mcp/lean")
    session.initialize()
    stats.add("profile: lean sessions")
    label = f"lean{n}/{session.session[:8]}"
    mine = Instance(label)
    for id_ in range(1, rng.randint(3, 12)):
        if stop.wait(rng.uniform(0, 0.2)):
            break
        step = rng.choices(("list", "search", "count", "direct", "denied", "servers"), weights=(1, 4, 2, 2, 2, 1))[0]
        if step == "list":
            answer = ask(session, stats, id_, "tools/list", {})
            if answer is not None:
                got = {t.get("name") for t in answer.get("result", {}).get("tools", [])}
                stats.add("tools/list answered")
                if got != LEAN_TOOLS:
                    stats.problem(f"{label}: tools/list {sorted(got)}")
        elif step == "search":
            answer = ask(session, stats, id_, "tools/call", {"name": "search_tools", "arguments": {"query": "echo text back", "limit": 3}})
            if answer is None:
                continue
            found = (answer.get("result", {}).get("structuredContent") or {}).get("tools") or [{}]
            name = found[0].get("name", "")
            if failed(answer) or not name.endswith("__echo"):
                stats.problem(f"{label}: search_tools for echo answered {json.dumps(answer)[:200]}")
                continue
            stats.add("profile: search_tools found echo")
            text = f"{label}-{id_}-{rng.random()}"
            answer = ask(session, stats, 100 + id_, "tools/call", {"name": "call_tool", "arguments": {"name": name, "arguments": {"text": text}}})
            shown_answer(stats, answer, f"{label} call_tool {name}", expect_text=text)
        elif step == "count":
            answer = ask(session, stats, id_, "tools/call", {"name": "call_tool", "arguments": {"name": f"{ISO}__count", "arguments": {}}})
            shown_answer(stats, answer, f"{label} call_tool {ISO}__count", mine=mine)
        elif step == "direct":
            backend = rng.choice(BACKENDS)
            text = f"{label}-{id_}-{rng.random()}"
            answer = ask(session, stats, id_, "tools/call", {"name": f"{backend}__echo", "arguments": {"text": text}})
            shown_answer(stats, answer, f"{label} {backend}__echo", expect_text=text)
        elif step == "denied":
            name = f"{rng.choice(BACKENDS)}__crash"
            if rng.random() < 0.5:
                answer = ask(session, stats, id_, "tools/call", {"name": "call_tool", "arguments": {"name": name, "arguments": {}}})
            else:
                answer = ask(session, stats, id_, "tools/call", {"name": name, "arguments": {}})
            expect_unknown(stats, answer, name, label)
        else:
            answer = ask(session, stats, id_, "tools/call", {"name": "list_servers", "arguments": {}})
            if answer is not None:
                servers = (answer.get("result", {}).get("structuredContent") or {}).get("servers")
                if failed(answer) or not servers:
                    stats.problem(f"{label}: list_servers answered {json.dumps(answer)[:200]}")
                else:
                    stats.add("result")
    return session


def profile_bound(n, rng, port, stop, stats, path):
    """A session of the key bound to `bound`, on /mcp (where that key sees its profile) or /mcp/bound."""
    session = StreamableSession(HOST, port, {"X-Api-Key": BOUND_KEY}, path=path)
    session.initialize()
    stats.add(f"profile: bound key sessions on {path}")
    label = f"bound{n}{path}/{session.session[:8]}"
    mine = Instance(label)
    for id_ in range(1, rng.randint(3, 12)):
        if stop.wait(rng.uniform(0, 0.2)):
            break
        step = rng.choices(("list", "say", "sleep", "count", "denied"), weights=(1, 3, 1, 2, 2))[0]
        if step == "list":
            answer = ask(session, stats, id_, "tools/list", {})
            if answer is not None:
                got = {t.get("name") for t in answer.get("result", {}).get("tools", [])}
                stats.add("tools/list answered")
                if not got <= BOUND_TOOLS:  # a tool of a server that is restarting is withdrawn
                    stats.problem(f"{label}: tools/list {sorted(got)}")
        elif step == "say":
            text = f"{label}-{id_}-{rng.random()}"
            shown_answer(stats, ask(session, stats, id_, "tools/call", {"name": "say", "arguments": {"text": text}}), f"{label} say", text)
        elif step == "sleep":
            answer = ask(session, stats, id_, "tools/call", {"name": "b__sleep", "arguments": {"ms": rng.randint(0, 500)}})
            shown_answer(stats, answer, f"{label} b__sleep")
        elif step == "count":
            shown_answer(stats, ask(session, stats, id_, "tools/call", {"name": f"{ISO}__count", "arguments": {}}), label, mine=mine)
        else:
            name = rng.choice(("a__echo", "b__whoami", "c__crash", "search_tools"))
            expect_unknown(stats, ask(session, stats, id_, "tools/call", {"name": name, "arguments": {"text": "x"}}), name, label)
    return session


def modern_post(port, path, id_, name, arguments, stats):
    """A sessionless 2026-07-28 tools/call; its answer or None (accounted)."""
    params = {"name": name, "arguments": arguments, "_meta": {
        "io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "soak", "version": "1"}}}
    headers = {**AUTH, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": name}
    session = StreamableSession(HOST, port, headers, path=path)
    try:
        return ask(session, stats, id_, "tools/call", params)
    finally:
        session.drop()


def profile_modern(n, rng, port, stats):
    """Sessionless 2026-07-28 calls: an echo, the isolated server (refused: no session), a search on /mcp/lean."""
    text = f"m{n}-{rng.random()}"
    backend = rng.choice(BACKENDS)
    answer = modern_post(port, "/mcp", 1, f"{backend}__echo", {"text": text}, stats)
    if answer is not None:
        classify(stats, answer, text)
    answer = modern_post(port, "/mcp", 2, f"{ISO}__count", {}, stats)
    if answer is not None:
        stats.kind(answer)
        if "error" in answer and "belongs to no session" in error_message(answer):
            stats.add("modern: isolated server refused a sessionless call (expected)")
        else:
            stats.problem(f"modern call of {ISO}__count answered {json.dumps(answer)[:200]}")
    answer = modern_post(port, "/mcp/lean", 3, "search_tools", {"query": "sleep milliseconds"}, stats)
    if answer is not None:
        found = (answer.get("result", {}).get("structuredContent") or {}).get("tools") or [{}]
        if failed(answer) or not found[0].get("name", "").endswith("__sleep"):
            stats.problem(f"modern search_tools on /mcp/lean answered {json.dumps(answer)[:200]}")
        else:
            stats.add("result")


def profile_worker(n, port, stop, stats):
    rng = random.Random(3000 + n)
    while not stop.is_set():
        kind = rng.choices(("lean", "bound", "bound-default", "modern", "foreign-path"), weights=(5, 2, 2, 1, 0.5))[0]
        session = None
        try:
            if kind == "lean":
                session = profile_lean(n, rng, port, stop, stats)
            elif kind in ("bound", "bound-default"):
                session = profile_bound(n, rng, port, stop, stats, "/mcp/bound" if kind == "bound" else "/mcp")
            elif kind == "modern":
                profile_modern(n, rng, port, stats)
            else:
                # The bound key on another profile's path: 403 naming its own.
                other = StreamableSession(HOST, port, {"X-Api-Key": BOUND_KEY}, path="/mcp/lean")
                try:
                    other.initialize()
                    stats.problem("the bound key opened a session on /mcp/lean")
                    other.delete()
                except HttpError as e:
                    if e.status == 403 and b"bound to profile 'bound'" in e.body:
                        stats.add("profile: bound key on another profile's path, 403 (expected)")
                    else:
                        stats.problem(f"the bound key on /mcp/lean: {e}")
                finally:
                    other.drop()
        except (HttpError, OSError, ConnectionError, ValueError) as e:
            stats.problem(f"profile {kind} session failed: {e!r}")
            time.sleep(0.5)
        if session is not None:
            try:
                if rng.random() < 0.7:
                    stats.add(f"profile: DELETE {session.delete()}")
                else:
                    stats.add("profile: sessions left to expire")
            except (OSError, ConnectionError):
                stats.add("DELETE failed (connection)")
            session.drop()


# ---------------------------------------------------------------- main

def dropped_notifications(port):
    """The proxy's counts of notifications dropped for consumers that did not keep up, from /metrics."""
    conn = mcpclient.Connection(HOST, port)
    try:
        body = conn.request("GET", "/metrics", {"Connection": "close", **AUTH}).body.read_all().decode()
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
            status, health = mcpclient.get_json(HOST, port, "/health", AUTH)
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
    ap.add_argument("--isolation", action=argparse.BooleanOptionalAction, default=True,
                    help="add a server isolated per session, its own workers and an instance killer")
    ap.add_argument("--iso-workers", type=int, default=8, help="workers of short sessions on the isolated server")
    ap.add_argument("--max-instances", type=int, default=8, help="the isolated server's maxInstances")
    ap.add_argument("--instance-idle", type=float, default=2.0, help="the isolated server's idleTimeout (s)")
    ap.add_argument("--iso-kill-every", type=float, default=3.0, help="mean seconds between instance SIGKILLs")
    ap.add_argument("--profiles", action=argparse.BooleanOptionalAction, default=True,
                    help="add keys, a tool-search profile and a profile bound to a key, and their workers")
    ap.add_argument("--profile-workers", type=int, default=4, help="workers on profiles (and sessionless 2026-07-28 calls)")
    args = ap.parse_args()
    if args.profiles and not args.isolation:
        ap.error("--profiles needs --isolation (its profiles show the isolated server)")

    work = tempfile.mkdtemp(prefix="mcp-soak-")
    config = {"mcpServers": {k: {"command": sys.executable, "args": [MOCK, "--name", k]} for k in BACKENDS}}
    if args.hostile:
        config["mcpServers"][FLOOD_BACKEND] = {"command": sys.executable, "args": ["-c", FLOOD_CODE]}
    if args.isolation:
        config["mcpServers"][ISO] = {"command": sys.executable, "args": [MOCK, "--name", ISO], "isolation": "session",
                                     "maxInstances": args.max_instances, "idleTimeout": args.instance_idle}
    if args.profiles:
        config["profiles"] = PROFILES
        AUTH["X-Api-Key"] = ANY_KEY
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
    if args.profiles:
        env["ALLOWED_KEYS"] = f"{ANY_KEY},{BOUND_KEY}"
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
        warm = StreamableSession(HOST, port, AUTH)
        warm.initialize()
        warm.call(1, "tools/call", {"name": "a__echo", "arguments": {"text": "warm"}})
        if args.isolation:
            warm.call(2, "tools/call", {"name": f"{ISO}__count", "arguments": {}})
        warm.delete()
        warm.drop()
        if args.profiles:
            warm = StreamableSession(HOST, port, AUTH, path="/mcp/lean")
            warm.initialize()
            warm.call(1, "tools/call", {"name": "search_tools", "arguments": {"query": "echo"}})
            warm.delete()
            warm.drop()
        time.sleep(3)
        # The warm-up's instance stops with its session; the baseline is one process per server.
        for _ in range(50):
            if len([p for p, state, _ in descendants(proxy.pid) if state != "Z"]) <= len(config["mcpServers"]):
                break
            time.sleep(0.2)
        base = snapshot(proxy.pid)
        print(f"soak: idle baseline {base}", flush=True)

        stop = threading.Event()
        workers = [threading.Thread(target=streamable_worker, args=(i, port, stop, stats, args.disconnect), daemon=True)
                   for i in range(args.streamable)]
        workers += [threading.Thread(target=legacy_worker, args=(i, port, stop, stats, args.disconnect), daemon=True)
                    for i in range(args.legacy)]
        kill_thread = threading.Thread(target=killer, args=(proxy.pid, stop, stats, args.kill_every), daemon=True)
        floods = [threading.Thread(target=f, args=(port, stop, stats), daemon=True) for f in (session_flooder, idle_flooder)]
        iso_peaks = {"instances": 0, "processes": 0}
        helpers = []
        if args.isolation:
            workers += [threading.Thread(target=iso_worker, args=(i, port, stop, stats, args, proxy.pid), daemon=True)
                        for i in range(args.iso_workers)]
            helpers += [threading.Thread(target=iso_killer, args=(proxy.pid, stop, stats, args.iso_kill_every), daemon=True),
                        threading.Thread(target=iso_monitor, args=(port, proxy.pid, stop, iso_peaks), daemon=True)]
        if args.profiles:
            workers += [threading.Thread(target=profile_worker, args=(i, port, stop, stats), daemon=True)
                        for i in range(args.profile_workers)]
        for t in floods if args.hostile else []:
            t.start()
        for t in workers + [kill_thread] + helpers:
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
        for t in helpers:
            t.join(10)
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
            _, health = mcpclient.get_json(HOST, port, "/health", AUTH)
            settled = (final["threads"] <= base["threads"] and final["fds"] <= base["fds"] and health.get("sessions") == 0
                       and final["children"] == base["children"] and final["zombies"] == 0
                       and not any(b.get("instances") for b in health.get("backends", [])))
            if settled or time.monotonic() > settle_deadline:
                break
            time.sleep(1)
        settle_seconds = time.monotonic() - (started + load_seconds)
        health = None
        if proxy.poll() is None:
            _, health = mcpclient.get_json(HOST, port, "/health", AUTH)
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
        c = stats.c
        if args.isolation:
            left = [len(b.get("instances") or []) for b in (health or {}).get("backends", []) if b["key"] == ISO]
            iso_procs = [p for p, state, cmd in descendants(proxy.pid) if is_iso(cmd) and state != "Z"]
            checks += [
                (f"isolated: instances never above maxInstances ({args.max_instances}; /health every 0.5 s)",
                 iso_peaks["instances"] <= args.max_instances,
                 f"peak {iso_peaks['instances']} instances, {iso_peaks['processes']} '{ISO}' processes (template included)"),
                ("isolated: sessions past maxInstances were refused with its error", c["iso: refused past maxInstances (expected)"] > 0,
                 f"{c['iso: refused past maxInstances (expected)']} refusals"),
                ("isolated: each session saw its own instance's count", c["iso: count not its own"] == 0,
                 f"{c['iso: count not its own']} foreign counts; {len(INSTANCES)} instance processes served"),
                ("isolated: an instance idle past idleTimeout was stopped", c["iso: instance outlived its idleTimeout"] == 0,
                 f"{c['iso: instance outlived its idleTimeout']} outlived it"),
                ("isolated: a call in flight failed with its killed instance", c["iso: call failed with its instance (expected)"] > 0,
                 f"{c['iso: instances SIGKILLed during a call']} killed during a call, {c['iso: call failed with its instance (expected)']} "
                 f"calls failed with them; {c['iso: instances SIGKILLed between calls']} killed between calls"),
                ("isolated: no instance left (/health, processes)", left == [0] and len(iso_procs) == 1,
                 f"instances {left}, '{ISO}' processes {len(iso_procs)} (the template is one)"),
            ]
        if args.profiles:
            bound_403 = c["profile: bound key on another profile's path, 403 (expected)"]
            checks += [
                ("profiles: hidden tools refused, bound key 403 elsewhere",
                 c["profile: hidden tool NOT refused"] == 0 and c["profile: hidden tool refused (expected)"] > 0 and bound_403 > 0,
                 f"{c['profile: hidden tool refused (expected)']} refused, {c['profile: hidden tool NOT refused']} not; "
                 f"{bound_403} 403"),
                ("profiles: a shown tool is never Unknown (retried while its server restarts, as on /mcp)",
                 c["profile: shown tool answered Unknown tool (server restarting)"] == 0,
                 f"{c['profile: shown tool answered Unknown tool (server restarting)']} Unknown tool answers"),
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
    extra = (f" + {args.iso_workers} isolated-server" if args.isolation else "") + \
        (f" + {args.profile_workers} profile" if args.profiles else "")
    print(f"soak: {args.minutes:g} min of load, {args.streamable} Streamable HTTP + {args.legacy} legacy SSE{extra} workers, "
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
    for key, cases in stats.examples.items():
        print(f"\nfirst cases of '{key}' (UTC):")
        for case in cases:
            print("  " + case)
    warnings = [line for line in text.splitlines() if " WARN " in line or " ERROR " in line]
    kinds = collections.Counter(line.split(" ", 2)[2][:70] for line in warnings)
    if stats.kinds:
        print("\nerrors by kind (JSON-RPC code or isError, message with names and numbers blurred):")
        for kind, count in stats.kinds.most_common(20):
            print(f"  {count:6}  {kind}")
    print(f"\nproxy log: {len(warnings)} WARN/ERROR lines; most common:")
    for line, count in kinds.most_common(8):
        print(f"  {count:6}  {line}")
    print(f"\nsoak: {'FAILED' if failed else 'passed'} ({failed} failed checks); log {log_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
