"""Scale-out: three mcp-proxy-server instances behind a real nginx, driven by the official Python SDK.

nginx runs as a plain foreground process on loopback with everything in a temp directory (``-p``,
``-c``, ``-e``, ``daemon off``, pid file, logs and temp paths), configured from
``scripts/nginx/mcp-proxy.conf.template`` (the file docs/scale-out.md documents). It is not installed
here: scripts/install-test-deps.sh gets it from apt. In front of it, three proxies (``--sse --port 0``,
``MCP_PROXY_INSTANCE_ID=i1..i3``), each aggregating one mock backend (tests/fixtures/mock_server.py)
under the key ``m`` and named after its instance, so ``m__whoami`` says which instance answered.

- stateless (``MCP_PROXY_STATELESS=true``): nginx spreads every POST round-robin; calls go on in a loop
  while one instance is killed and restarted, and the client never sees an error.
- a 2026-07-28 client (the SDK pinned to ``2026-07-28``) needs no session at all: behind nginx
  spreading POSTs round-robin, its calls are served by every instance in turn.
- stateful: nginx routes by the instance prefix of ``Mcp-Session-Id``. A session sticks to one
  instance; once that instance is killed and restarted, the session is gone (HTTP 404, which the SDK
  raises), and a new session works again.

An instance is "killed" with SIGKILL (a crash, no goodbye), between two calls: nginx must never replay
a POST that reached an instance, so a call in flight to a dying instance fails by design. It comes back
on the same port, as under systemd or an orchestrator. Every process started here is killed at the end,
and the test fails if any outlives it.

The proxy binary is taken from ``MCP_PROXY_BIN`` (default ``target/debug/mcp-proxy-server``).
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client, ClientSession, types
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

REPO = Path(__file__).resolve().parents[2]
PROXY_BIN = Path(os.environ.get("MCP_PROXY_BIN", REPO / "target/debug/mcp-proxy-server"))
MOCK_SERVER = REPO / "tests/fixtures/mock_server.py"
TEMPLATE = REPO / "scripts/nginx/mcp-proxy.conf.template"
INSTANCES = ("i1", "i2", "i3")
STARTUP_TIMEOUT_S = 10
SCENARIO_TIMEOUT_S = 25
STOP_TIMEOUT_S = 5
SESSION_ID = re.compile(r"^(i[123])-[0-9a-f]{32}$")


def find_nginx() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.fail("nginx not found: run scripts/install-test-deps.sh (apt-get install nginx-light)", pytrace=False)
    return found


def unfilled(conf: str) -> list[str]:
    """The ${MCP_...} placeholders left in a rendered config, outside comments."""
    code = "\n".join(line for line in conf.splitlines() if not line.lstrip().startswith("#"))
    return re.findall(r"\$\{MCP_[A-Z0-9_]+\}", code)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check, timeout: float = STARTUP_TIMEOUT_S, log: Path | None = None):
    """Polls `check` until it returns something truthy; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            tail = f"\n--- {log} ---\n{log.read_text(errors='replace')}" if log and log.exists() else ""
            pytest.fail(f"timed out waiting for {what}{tail}", pytrace=False)
        time.sleep(0.02)


def descendants(pid: int) -> set[int]:
    """Every live process below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def kill_tree(process: subprocess.Popen, sig: int = signal.SIGKILL) -> set[int]:
    """Signals `process`, reaps it, and SIGKILLs whatever it had started; returns every pid involved."""
    family = descendants(process.pid)
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    family |= descendants(process.pid)  # nothing new can appear once it is dead; cheap belt and braces
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return family | {process.pid}


# --- the processes -----------------------------------------------------------------------------


@dataclass
class Instance:
    """One proxy: instance id, port (fixed after the first start) and log file."""

    name: str
    dir: Path
    stateless: bool
    port: int = 0
    process: subprocess.Popen | None = None
    pids: set[int] = field(default_factory=set)

    @property
    def log(self) -> Path:
        return self.dir / f"{self.name}.log"

    def start(self) -> None:
        """Starts the proxy (on the port it had before, if any) and waits until it listens."""
        config = self.dir / f"{self.name}.json"
        mock = {"command": sys.executable, "args": [str(MOCK_SERVER), "--name", self.name]}
        config.write_text(json.dumps({"mcpServers": {"m": mock}}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROXY_") and k not in ("ALLOWED_KEYS", "ALLOWED_TOKENS", "HOST", "PORT")}
        env["MCP_PROXY_INSTANCE_ID"] = self.name
        # As docs/scale-out.md says: every connection comes from nginx's address. (Host is 127.0.0.1,
        # an IP address, so MCP_PROXY_ALLOWED_HOSTS is not needed here.)
        env["MCP_PROXY_MAX_CONNECTIONS_PER_ADDRESS"] = "0"
        if self.stateless:
            env["MCP_PROXY_STATELESS"] = "true"
        args = [str(PROXY_BIN), "--sse", "--config", str(config), "--host", "127.0.0.1", "--port", str(self.port)]
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("a") as log:
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env)
        self.pids.add(self.process.pid)

        def listening():
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited:\n{self.log.read_text(errors='replace')}", pytrace=False)
            found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log.read_bytes()[offset:].decode(errors="replace"))
            return found and int(found.group(1))

        self.port = wait_for(f"{self.name} to listen", listening, log=self.log)

    def wait_ready(self) -> None:
        """Waits until the instance's backend is connected (GET /health)."""

        def ready():
            try:
                health = httpx2.get(f"http://127.0.0.1:{self.port}/health", timeout=2).json()
            except httpx2.HTTPError:
                return False
            return all(b.get("state") == "connected" for b in health.get("backends", [])) and health.get("backends")

        wait_for(f"{self.name}'s backend", ready, log=self.log)

    def kill(self) -> None:
        """SIGKILL: the instance dies at once, its sessions with it (its backend sees EOF and is killed too)."""
        self.pids |= kill_tree(self.process)


@dataclass
class Nginx:
    process: subprocess.Popen
    port: int
    prefix: Path
    pids: set[int]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


def start_nginx(prefix: Path, instances: list[Instance]) -> Nginx:
    """nginx on a free loopback port in front of the instances, from the shipped template."""
    prefix.mkdir()
    port = free_port()
    values = {
        "MCP_NGINX_PREFIX": str(prefix),
        "MCP_LISTEN": f"127.0.0.1:{port}",
        **{f"MCP_{i.name.upper()}": f"127.0.0.1:{i.port}" for i in instances},
    }
    conf = TEMPLATE.read_text()
    for name, value in values.items():
        conf = conf.replace("${" + name + "}", value)
    assert not unfilled(conf), f"placeholders of the template not filled in: {unfilled(conf)}"
    (prefix / "nginx.conf").write_text(conf)
    error_log = prefix / "error.log"
    args = [find_nginx(), "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(error_log), "-g", "daemon off;"]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def listening():
        if process.poll() is not None:
            pytest.fail(f"nginx exited ({process.returncode}):\n{error_log.read_text(errors='replace')}", pytrace=False)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    wait_for("nginx to listen", listening, log=error_log)
    return Nginx(process, port, prefix, {process.pid} | descendants(process.pid))


@dataclass
class Cluster:
    nginx: Nginx
    instances: dict[str, Instance]


def cluster(tmp: Path, stateless: bool) -> Iterator[Cluster]:
    """Three instances and nginx; everything is killed afterwards, and nothing may outlive it."""
    instances = {name: Instance(name, tmp, stateless) for name in INSTANCES}
    nginx = None
    try:
        for instance in instances.values():
            instance.start()
        for instance in instances.values():
            instance.wait_ready()
        nginx = start_nginx(tmp / "nginx", list(instances.values()))
        yield Cluster(nginx, instances)
    finally:
        started: set[int] = set()
        if nginx is not None:
            nginx.pids |= descendants(nginx.process.pid)  # the worker
            started |= nginx.pids | kill_tree(nginx.process, signal.SIGTERM)
        for instance in instances.values():
            if instance.process is not None:
                instance.kill()
            started |= instance.pids
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while (left := {pid for pid in started if alive(pid)}) and time.monotonic() < deadline:
            time.sleep(0.05)
        for instance in instances.values():
            print(f"--- {instance.log.name} ---\n{instance.log.read_text(errors='replace')}", file=sys.stderr)
        if nginx is not None:
            print(f"--- nginx error.log ---\n{(nginx.prefix / 'error.log').read_text(errors='replace')}", file=sys.stderr)
            print(f"--- nginx access.log ---\n{(nginx.prefix / 'access.log').read_text(errors='replace')}", file=sys.stderr)
        if left:
            pytest.fail(f"processes outlived the test: {sorted(left)}", pytrace=False)


@pytest.fixture
def stateless_cluster(tmp_path) -> Iterator[Cluster]:
    yield from cluster(tmp_path, stateless=True)


@pytest.fixture
def stateful_cluster(tmp_path) -> Iterator[Cluster]:
    yield from cluster(tmp_path, stateless=False)


# --- SDK sessions ------------------------------------------------------------------------------


@dataclass
class Seen:
    """What the HTTP client saw: every response's status (all, and those of POSTs) and every session id issued."""

    statuses: list[int] = field(default_factory=list)
    post_statuses: list[int] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)


@asynccontextmanager
async def sdk_session(url: str, seen: Seen) -> AsyncIterator[ClientSession]:
    """An initialized official-SDK session over Streamable HTTP through nginx."""

    async def record(response: httpx2.Response) -> None:
        seen.statuses.append(response.status_code)
        if response.request.method == "POST":
            seen.post_statuses.append(response.status_code)
        if (session := response.headers.get("mcp-session-id")) and session not in seen.session_ids:
            seen.session_ids.append(session)

    client = httpx2.AsyncClient(timeout=httpx2.Timeout(10, read=30), event_hooks={"response": [record]})
    async with client, streamable_http_client(url, http_client=client) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


def text(result: types.CallToolResult) -> str:
    assert not result.is_error, result
    assert len(result.content) == 1 and isinstance(result.content[0], types.TextContent), result
    return result.content[0].text


async def whoami(session: ClientSession) -> str:
    """Which instance answered (each instance's mock backend is named after it)."""
    return text(await session.call_tool("m__whoami", {}))


# --- the scenarios -----------------------------------------------------------------------------


def test_stateless_calls_go_on_while_an_instance_is_killed_and_restarted(stateless_cluster):
    c = stateless_cluster
    victim = c.instances["i2"]

    async def scenario():
        with anyio.fail_after(SCENARIO_TIMEOUT_S):
            await stateless_scenario()

    async def stateless_scenario():
        seen = Seen()
        answered: list[tuple[str, str]] = []  # (phase, instance)
        async with sdk_session(c.nginx.url, seen) as session:
            assert seen.session_ids == [], f"a stateless proxy issued session ids: {seen.session_ids}"

            async def calls(phase: str, count: int) -> None:
                for _ in range(count):
                    answered.append((phase, await whoami(session)))
                assert text(await session.call_tool("m__echo", {"text": phase})) == phase

            await calls("all up", 9)
            victim.kill()
            await calls("i2 down", 12)
            victim.start()  # on its old port, as a service manager would restart it
            # Calls go on until the restarted instance has answered one (nginx tries it again once
            # fail_timeout, 2 s, has passed), a bounded number of times.
            for _ in range(200):
                await calls("i2 back", 1)
                if ("i2 back", "i2") in answered:
                    break
                await anyio.sleep(0.05)
        by_phase = {phase: {who for p, who in answered if p == phase} for phase, _ in answered}
        assert by_phase["all up"] == set(INSTANCES), f"round-robin reaches every instance: {answered}"
        assert by_phase["i2 down"] == {"i1", "i3"}, f"the dead instance is skipped: {answered}"
        assert "i2" in by_phase["i2 back"], f"the restarted instance gets work again: {answered}"
        assert all(s < 400 for s in seen.statuses), f"the client saw HTTP errors: {seen.statuses}"

    anyio.run(scenario)


def test_a_2026_07_28_clients_calls_are_served_by_every_instance_in_turn(stateless_cluster):
    async def scenario():
        statuses: list[int] = []

        async def record(response: httpx2.Response) -> None:
            statuses.append(response.status_code)

        http = httpx2.AsyncClient(timeout=httpx2.Timeout(10, read=30), event_hooks={"response": [record]})
        answered = []
        with anyio.fail_after(SCENARIO_TIMEOUT_S):
            async with http, streamable_http_client(stateless_cluster.nginx.url, http_client=http) as (read, write):
                async with Client(_Streams(read, write), mode="2026-07-28") as client:
                    for _ in range(9):
                        answered.append(text(await client.call_tool("m__whoami", {})))
        assert set(answered) == set(INSTANCES), f"every instance answers in turn: {answered}"
        assert all(s < 400 for s in statuses), f"the client saw HTTP errors: {statuses}"

    anyio.run(scenario)


class _Streams:
    """An already open pair of SDK streams, as the `Transport` a `Client` connects through."""

    def __init__(self, read, write):
        self.streams = (read, write)

    async def __aenter__(self):
        return self.streams

    async def __aexit__(self, *exc):
        return None


def test_stateful_sessions_stick_to_their_instance_and_start_over_after_it_restarts(stateful_cluster):
    c = stateful_cluster

    async def scenario():
        with anyio.fail_after(SCENARIO_TIMEOUT_S):
            await stateful_scenario()

    async def stateful_scenario():
        seen = Seen()
        async with sdk_session(c.nginx.url, seen) as session:
            assert len(seen.session_ids) == 1, seen.session_ids
            match = SESSION_ID.match(seen.session_ids[0])
            assert match, f"session id without an instance prefix: {seen.session_ids[0]}"
            holder = c.instances[match.group(1)]
            # Every request of the session reaches the instance in its id, whatever round-robin does.
            assert {await whoami(session) for _ in range(6)} == {holder.name}

            # Progress and the answer come back through nginx as one SSE response, unbuffered.
            progress: list[float] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append(value)

            result = await session.call_tool("m__progress", {"steps": 3, "ms": 20}, progress_callback=on_progress)
            assert not result.is_error, result
            assert progress == [1, 2, 3], progress

            holder.kill()
            with pytest.raises(MCPError):  # nginx: 502, the only instance of this session is down
                await whoami(session)
            assert seen.post_statuses[-1] == 502, seen.post_statuses

            holder.start()
            holder.wait_ready()
            with pytest.raises(MCPError) as gone:  # the restarted instance does not know the session
                await whoami(session)
            assert seen.post_statuses[-1] == 404, seen.post_statuses
            assert "session" in gone.value.message.lower(), gone.value

        # What a client does on 404: initialize again, through nginx (round-robin), and carry on.
        again = Seen()
        async with sdk_session(c.nginx.url, again) as session:
            assert len(again.session_ids) == 1 and SESSION_ID.match(again.session_ids[0]), again.session_ids
            assert again.session_ids[0] != seen.session_ids[0]
            who = await whoami(session)
            assert again.session_ids[0].startswith(f"{who}-"), (who, again.session_ids)
            assert text(await session.call_tool("m__echo", {"text": "again"})) == "again"

    anyio.run(scenario)


def test_legacy_sse_sessions_are_routed_by_the_session_id_in_the_query(stateful_cluster):
    """GET /sse goes round-robin; the POSTs to /message?sessionId=<instance>-... follow the id."""
    c = stateful_cluster
    url = f"http://127.0.0.1:{c.nginx.port}/sse"

    async def scenario():
        with anyio.fail_after(SCENARIO_TIMEOUT_S):
            answered = set()
            for _ in range(3):  # three sessions: round-robin puts them on different instances
                async with sse_client(url) as (read, write), ClientSession(read, write) as session:
                    await session.initialize()
                    who = {await whoami(session) for _ in range(4)}
                    assert len(who) == 1, f"one session, one instance: {who}"
                    answered |= who
            assert answered == set(INSTANCES), answered

    anyio.run(scenario)
    endpoints = re.findall(r"POST /message\?sessionId=(i[123])-[0-9a-f]+ HTTP/1.1\" 202", (c.nginx.prefix / "access.log").read_text())
    assert set(endpoints) == set(INSTANCES), endpoints


def test_nginx_template_renders_and_passes_nginx_t(tmp_path):
    """The shipped template, filled in as docs/scale-out.md says, is a valid nginx config."""
    prefix = tmp_path / "t"
    prefix.mkdir()
    conf = TEMPLATE.read_text()
    values = {"MCP_NGINX_PREFIX": str(prefix), "MCP_LISTEN": "127.0.0.1:1", "MCP_I1": "127.0.0.1:2", "MCP_I2": "127.0.0.1:3", "MCP_I3": "127.0.0.1:4"}
    for name, value in values.items():
        conf = conf.replace("${" + name + "}", value)
    assert not unfilled(conf), unfilled(conf)
    (prefix / "nginx.conf").write_text(conf)
    checked = subprocess.run(
        [find_nginx(), "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", str(prefix / "error.log")],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert checked.returncode == 0, checked.stderr
