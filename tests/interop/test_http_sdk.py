"""Interop: the official MCP SDKs drive mcp-proxy-server over HTTP.

Two proxies are started once per module with ``--sse --port 0`` (each binds a
free port and names it on stderr), in front of two real, pinned reference
servers (installed by scripts/install-test-deps.sh):

- ``everything``: @modelcontextprotocol/server-everything (Node, stdio)
- ``time``: mcp-server-time (Python, stdio)

Every behaviour is checked against the first proxy over both HTTP transports
it serves, with the official Python SDK's own clients: legacy HTTP+SSE
(``sse_client`` on ``/sse``) and Streamable HTTP (``streamable_http_client`` on
``/mcp``). The second proxy, with ``ALLOWED_KEYS`` and ``ALLOWED_TOKENS`` set,
shows that the SDK connects with a valid credential and is refused (HTTP 401)
without one. The official TypeScript SDK (``tests/interop/ts_client.mjs``, run
with node) is a client of the first proxy too.

The proxy binary is taken from ``MCP_PROXY_BIN`` (default
``target/debug/mcp-proxy-server``); it is not built here. Each proxy is stopped
with SIGTERM when the module ends, and the test fails if any process it
started (the backends) outlives it.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import ClientSession, types
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from peers import run, only_text

REPO = Path(__file__).resolve().parents[2]
DEPS = REPO / ".deps"
PROXY_BIN = Path(os.environ.get("MCP_PROXY_BIN", REPO / "target/debug/mcp-proxy-server"))
EVERYTHING_ENTRY = DEPS / "node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
TIME_SERVER = DEPS / "venv/bin/mcp-server-time"
TS_CLIENT = Path(__file__).with_name("ts_client.mjs")

SESSION_TIMEOUT_S = 30
REFUSAL_TIMEOUT_S = 10
STARTUP_TIMEOUT_S = 20
SHUTDOWN_TIMEOUT_S = 10
INSTALL_HINT = "run scripts/install-test-deps.sh"
API_KEY = "interop-test-key"
BEARER_TOKEN = "interop-test-token"

TRANSPORTS = ["sse", "streamable_http"]


def require(path: Path | str | None, hint: str) -> str:
    """Return `path` as a string, or fail the test with `hint` if it is not a file."""
    if path is None or not Path(path).is_file():
        pytest.fail(f"{path} not found: {hint}", pytrace=False)
    return str(path)


def backends() -> dict[str, dict[str, Any]]:
    """The proxy's `mcpServers` config: backend key -> how to start it over stdio."""
    node = require(shutil.which("node"), "node must be on PATH for server-everything")
    return {
        "everything": {"command": node, "args": [require(EVERYTHING_ENTRY, INSTALL_HINT), "stdio"]},
        "time": {"command": require(TIME_SERVER, INSTALL_HINT), "args": []},
    }


# --- the proxy process -------------------------------------------------------------------------


@dataclass
class Proxy:
    """A running proxy: where it listens and where its log (stderr) goes."""

    process: subprocess.Popen
    base_url: str
    log: Path

    def log_from(self, offset: int) -> str:
        return self.log.read_bytes()[offset:].decode(errors="replace")

    def log_size(self) -> int:
        return self.log.stat().st_size


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (the proxy's backends and their children), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # Fields after the parenthesised command name: state, ppid, ...
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
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def launch_proxy(tmp: Path, extra_env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    """Start the proxy on a config aggregating `everything` and `time`; return it and its log file."""
    proxy_bin = require(PROXY_BIN, "build the proxy (cargo build) or set MCP_PROXY_BIN")
    config = tmp / "config.json"
    config.write_text(json.dumps({"mcpServers": backends()}))
    log = tmp / "proxy.log"
    env = {k: v for k, v in os.environ.items() if k not in ("ALLOWED_KEYS", "ALLOWED_TOKENS", "PORT", "HOST")}
    env.update(extra_env)
    args = [proxy_bin, "--sse", "--config", str(config), "--host", "127.0.0.1", "--port", "0"]
    with log.open("w") as log_file:
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file, env=env)
    return process, log


def wait_until_listening(process: subprocess.Popen, log: Path) -> Proxy:
    """The proxy, once its log says where it listens (it was started with --port 0)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text(errors="replace"))
        if found:
            return Proxy(process, found.group(1), log)
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the proxy did not start listening:\n{log.read_text(errors='replace')}", pytrace=False)
        time.sleep(0.02)


def stop_proxy(process: subprocess.Popen) -> str | None:
    """SIGTERM the proxy, which ends its backends; say what went wrong, if anything.

    Any process it started that is still alive a few seconds after it exited
    is killed, and reported.
    """
    started = descendants(process.pid)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return f"the proxy ignored SIGTERM for {SHUTDOWN_TIMEOUT_S}s"
    deadline = time.monotonic() + SHUTDOWN_TIMEOUT_S
    while (left := {pid for pid in started if alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return f"processes started by the proxy outlived it: {sorted(left)}" if left else None


@pytest.fixture(scope="module")
def proxies(tmp_path_factory) -> Iterator[dict[str, Proxy]]:
    """Two proxies for the module, launched together so their backends start in parallel: "open",
    without auth, and "auth", with one API key and one bearer token configured."""
    envs = {"open": {}, "auth": {"ALLOWED_KEYS": API_KEY, "ALLOWED_TOKENS": BEARER_TOKEN}}
    launched: dict[str, tuple[subprocess.Popen, Path]] = {}
    try:
        for name, env in envs.items():
            launched[name] = launch_proxy(tmp_path_factory.mktemp(f"proxy-{name}"), env)
        yield {name: wait_until_listening(*process_and_log) for name, process_and_log in launched.items()}
    finally:
        problems = [problem for process, _ in launched.values() if (problem := stop_proxy(process))]
        if problems:
            pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def proxy(proxies) -> Proxy:
    """The proxy without auth."""
    return proxies["open"]


@pytest.fixture(scope="module")
def proxy_with_auth(proxies) -> Proxy:
    """The proxy with ALLOWED_KEYS and ALLOWED_TOKENS set."""
    return proxies["auth"]


# --- SDK sessions ------------------------------------------------------------------------------


def http_client_factory(statuses: list[int]) -> Callable[..., httpx2.AsyncClient]:
    """An httpx2 client factory (the SDK's signature) that records every response status."""

    async def record(response: httpx2.Response) -> None:
        statuses.append(response.status_code)

    def factory(headers=None, timeout=None, auth=None) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers=headers,
            timeout=timeout or httpx2.Timeout(30, read=300),
            auth=auth,
            event_hooks={"response": [record]},
        )

    return factory


@asynccontextmanager
async def sdk_session(
    proxy: Proxy,
    transport: str,
    headers: dict[str, str] | None = None,
    statuses: list[int] | None = None,
    timeout: float = SESSION_TIMEOUT_S,
    query: str = "",
) -> AsyncIterator[ClientSession]:
    """An initialized SDK session on `proxy` over `transport` ("sse" or "streamable_http").

    Everything inside runs under a timeout. The proxy's log lines written
    during the session are printed when it ends, so pytest shows them with any
    failure of the test.
    """
    factory = http_client_factory(statuses if statuses is not None else [])
    log_start = proxy.log_size()
    try:
        with anyio.fail_after(timeout):
            if transport == "sse":
                async with sse_client(f"{proxy.base_url}/sse{query}", headers=headers, httpx_client_factory=factory) as (
                    read,
                    write,
                ):
                    async with ClientSession(read, write) as session:
                        await session.initialize()
                        yield session
            else:
                async with factory(headers=headers) as http_client:
                    async with streamable_http_client(f"{proxy.base_url}/mcp{query}", http_client=http_client) as (
                        read,
                        write,
                    ):
                        async with ClientSession(read, write) as session:
                            await session.initialize()
                            yield session
    finally:
        print(f"--- proxy log during the session ---\n{proxy.log_from(log_start)}", file=sys.stderr)


async def list_all_tools(session: ClientSession) -> list[types.Tool]:
    """Every tool the server lists, following pagination cursors."""
    tools: list[types.Tool] = []
    cursor: str | None = None
    while True:
        page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return tools


# --- the aggregate over both transports --------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_tools_of_both_backends_are_listed_with_key_prefix(proxy, transport):
    async def scenario():
        async with sdk_session(proxy, transport) as session:
            names = [tool.name for tool in await list_all_tools(session)]
        assert len(names) == len(set(names)), names
        assert {"everything__echo", "everything__trigger-long-running-operation", "time__get_current_time", "time__convert_time"} <= set(names)
        assert all(name.startswith(("everything__", "time__")) for name in names), names

    run(scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_call_to_everything_echo_is_routed_to_server_everything(proxy, transport):
    async def scenario():
        async with sdk_session(proxy, transport) as session:
            result = await session.call_tool("everything__echo", {"message": f"hello over {transport}"})
        assert only_text(result) == f"Echo: hello over {transport}"

    run(scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_call_to_time_get_current_time_is_routed_to_time_server(proxy, transport):
    async def scenario():
        async with sdk_session(proxy, transport) as session:
            result = await session.call_tool("time__get_current_time", {"timezone": "UTC"})
        assert json.loads(only_text(result))["timezone"] == "UTC"

    run(scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_progress_of_long_running_tool_reaches_the_callback(proxy, transport):
    async def scenario():
        progress: list[tuple[float, float | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, total))

        async with sdk_session(proxy, transport) as session:
            result = await session.call_tool(
                "everything__trigger-long-running-operation",
                {"duration": 1, "steps": 3},
                progress_callback=on_progress,
            )
        assert "Long running operation completed" in only_text(result)
        # The SDK only invokes the callback while the request is pending, i.e. before its result.
        assert progress == [(1, 3), (2, 3), (3, 3)]

    run(scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_resource_of_server_everything_is_read_by_its_original_uri(proxy, transport):
    uri = "demo://resource/static/document/features.md"

    async def scenario():
        async with sdk_session(proxy, transport) as session:
            result = await session.read_resource(uri)
        [contents] = result.contents
        assert isinstance(contents, types.TextResourceContents), contents
        assert contents.uri == uri
        assert contents.text.startswith("# Everything Server - Features")

    run(scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_prompt_of_server_everything_is_served_under_its_name_with_arguments(proxy, transport):
    async def scenario():
        async with sdk_session(proxy, transport) as session:
            result = await session.get_prompt("args-prompt", {"city": "Paris", "state": "IDF"})
        [message] = result.messages
        assert message.role == "user"
        assert isinstance(message.content, types.TextContent), message
        assert message.content.text == "What's weather in Paris, IDF?"

    run(scenario)


# --- auth --------------------------------------------------------------------------------------


async def echo_through(session: ClientSession) -> str:
    return only_text(await session.call_tool("everything__echo", {"message": "authorized"}))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_with_api_key_header_the_sdk_is_served(proxy_with_auth, transport):
    async def scenario():
        async with sdk_session(proxy_with_auth, transport, headers={"X-Api-Key": API_KEY}) as session:
            assert await echo_through(session) == "Echo: authorized"

    run(scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_with_bearer_token_the_sdk_is_served(proxy_with_auth, transport):
    async def scenario():
        async with sdk_session(proxy_with_auth, transport, headers={"Authorization": f"Bearer {BEARER_TOKEN}"}) as session:
            assert await echo_through(session) == "Echo: authorized"

    run(scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "headers", [None, {"X-Api-Key": "wrong-key"}, {"Authorization": "Bearer wrong-token"}], ids=["none", "wrong_key", "wrong_token"]
)
def test_without_valid_credentials_the_sdk_is_refused_with_401(proxy_with_auth, transport, headers):
    async def scenario():
        statuses: list[int] = []
        # sse_client raises the HTTP error (in an exception group); the Streamable HTTP client turns
        # it into a JSON-RPC error for `initialize`. Either way no session may come up.
        with pytest.raises(Exception) as refused:
            async with sdk_session(proxy_with_auth, transport, headers, statuses, timeout=REFUSAL_TIMEOUT_S):
                pass
        assert not refused.errisinstance(TimeoutError), "the SDK hung instead of being refused"
        assert statuses and set(statuses) == {401}, statuses

    run(scenario)


def test_sse_with_api_key_in_query_string_is_served(proxy_with_auth):
    async def scenario():
        statuses: list[int] = []

        # The SDK does not fail on a 401 to its POST: it waits for an answer that never comes. Fail at
        # the first 401 instead of at the session timeout.
        async def fail_on_401() -> None:
            while 401 not in statuses:
                await anyio.sleep(0.02)
            raise AssertionError(f"a request of the session was refused with 401; statuses: {statuses}")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(fail_on_401)
            async with sdk_session(proxy_with_auth, "sse", statuses=statuses, query=f"?key={API_KEY}") as session:
                assert await echo_through(session) == "Echo: authorized"
            tasks.cancel_scope.cancel()

    run(scenario)


def test_streamable_http_with_api_key_in_query_string_is_served(proxy_with_auth):
    async def scenario():
        async with sdk_session(proxy_with_auth, "streamable_http", query=f"?key={API_KEY}") as session:
            assert await echo_through(session) == "Echo: authorized"

    run(scenario)


# --- the TypeScript SDK ------------------------------------------------------------------------


def test_typescript_sdk_client_lists_tools_and_calls_echo_over_streamable_http(proxy):
    node = require(shutil.which("node"), "node must be on PATH for the TypeScript SDK client")
    require(DEPS / "node/node_modules/@modelcontextprotocol/sdk/package.json", INSTALL_HINT)
    log_start = proxy.log_size()
    done = subprocess.run(
        [node, str(TS_CLIENT), f"{proxy.base_url}/mcp"],
        capture_output=True,
        text=True,
        timeout=SESSION_TIMEOUT_S,
    )
    print(f"--- ts_client stderr ---\n{done.stderr}\n--- proxy log ---\n{proxy.log_from(log_start)}", file=sys.stderr)
    assert done.returncode == 0, done.stdout
    summary = json.loads(done.stdout)
    assert summary["serverInfo"]["name"]
    assert summary["protocolVersion"]
    assert {"everything__echo", "time__get_current_time"} <= set(summary["tools"])
    assert summary["echo"] == {"isError": False, "text": "Echo: hello from the TypeScript SDK"}
