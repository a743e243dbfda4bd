"""Interop: the proxy in front of remote backends, driven by the official MCP Python SDK over stdio.

The pinned reference server ``@modelcontextprotocol/server-everything`` (installed by
scripts/install-test-deps.sh) runs twice, as HTTP servers on free ports (``PORT``):

- ``legacy``: ``node dist/index.js sse`` (legacy HTTP+SSE, ``/sse``)
- ``modern``: ``node dist/index.js streamableHttp`` (Streamable HTTP, ``/mcp``)

and the proxy names both as remote backends. The SDK client sets a sampling and an elicitation
callback, so it declares both capabilities; the proxy waits for this stdio client's ``initialize``
before initializing its backends and declares them onwards, which makes server-everything register its
conditional tools (``trigger-sampling-request``, ``trigger-elicitation-request``). Each test proves one
behaviour through the proxy: tools of both backends are listed, the long-running tool reports
progress, and the sampling and elicitation tools reach the client's callbacks and return their answers.

Every server started here is killed when its test ends. The proxy binary is taken from
``MCP_PROXY_BIN`` (default ``target/debug/mcp-proxy-server``); it is not built here.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client, types
from peers import Callbacks, run

REPO = Path(__file__).resolve().parents[2]
DEPS = REPO / ".deps"
PROXY_BIN = Path(os.environ.get("MCP_PROXY_BIN", REPO / "target/debug/mcp-proxy-server"))
EVERYTHING_ENTRY = DEPS / "node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
INSTALL_HINT = "run scripts/install-test-deps.sh"

SESSION_TIMEOUT_S = 60
SERVER_START_TIMEOUT_S = 20
CONDITIONAL_TOOLS = ("trigger-sampling-request", "trigger-elicitation-request")
SAMPLED_TEXT = "sampled answer from the proxy's client"
ELICITED_NAME = "Ada from the proxy's client"


def require(path: Path | str | None, hint: str) -> str:
    """Return `path` as a string, or fail the test with `hint` if it is not a file."""
    if path is None or not Path(path).is_file():
        pytest.fail(f"{path} not found: {hint}", pytrace=False)
    return str(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def everything_server(transport: str) -> Iterator[int]:
    """Run server-everything over `transport` (``sse`` or ``streamableHttp``) on a free port; yield it.

    The server is killed at the end and its output printed, so pytest shows it with a failure.
    """
    node = require(shutil.which("node"), "node must be on PATH for server-everything")
    entry = require(EVERYTHING_ENTRY, INSTALL_HINT)
    port = free_port()
    env = {**os.environ, "PORT": str(port)}
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen([node, entry, transport], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while not accepts_connections(port):
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"server-everything {transport} did not listen on port {port}", pytrace=False)
                time.sleep(0.05)
            yield port
        finally:
            server.kill()
            server.wait()
            log.seek(0)
            print(f"--- output of server-everything {transport} ---\n{log.read()}", file=sys.stderr)


def answers() -> Callbacks:
    """The client's sampling and elicitation callbacks (tests/interop/peers.py)."""
    return Callbacks(SAMPLED_TEXT, ELICITED_NAME)


@asynccontextmanager
async def proxy_on_remote_backends(callbacks: Callbacks | None) -> AsyncIterator[ClientSession]:
    """Start both servers and the proxy in front of them; yield an initialized SDK session on the proxy.

    With `callbacks`, the client declares sampling and elicitation; with None, neither.
    """
    proxy = require(PROXY_BIN, "build the proxy (cargo build) or set MCP_PROXY_BIN")
    with everything_server("sse") as sse_port, everything_server("streamableHttp") as http_port:
        servers = {
            "legacy": {"type": "sse", "url": f"http://127.0.0.1:{sse_port}/sse"},
            "modern": {"type": "http", "url": f"http://127.0.0.1:{http_port}/mcp"},
        }
        with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile("w+") as errlog:
            config = Path(tmp) / "config.json"
            config.write_text(json.dumps({"mcpServers": servers}))
            env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROXY_") and "TOOL_CALL" not in k}
            env["LOGGING"] = "debug"
            params = StdioServerParameters(command=proxy, args=["--config", str(config)], env=env)
            try:
                with anyio.fail_after(SESSION_TIMEOUT_S):
                    async with stdio_client(params, errlog=errlog) as (read, write):
                        async with ClientSession(
                            read,
                            write,
                            sampling_callback=callbacks.sample if callbacks else None,
                            elicitation_callback=callbacks.elicit if callbacks else None,
                        ) as session:
                            await session.initialize()
                            yield session
            finally:
                errlog.seek(0)
                print(f"--- stderr of the proxy ---\n{errlog.read()}", file=sys.stderr)


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


async def wait_for_tools(session: ClientSession, names: set[str], timeout: float = 15) -> set[str]:
    """Polls tools/list until every name in `names` is listed; all the names listed."""
    with anyio.move_on_after(timeout):
        while True:
            listed = {tool.name for tool in await list_all_tools(session)}
            if names <= listed:
                return listed
            await anyio.sleep(0.1)
    listed = {tool.name for tool in await list_all_tools(session)}
    pytest.fail(f"not listed after {timeout} s: {sorted(names - listed)}; listed: {sorted(listed)}", pytrace=False)


def texts(result: types.CallToolResult) -> str:
    """All text content of a successful tool result, joined."""
    assert not result.is_error, result
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


def test_tools_of_sse_and_streamable_http_backends_are_listed_with_the_conditional_ones():
    async def scenario():
        async with proxy_on_remote_backends(answers()) as proxy:
            expected = {f"{key}__{tool}" for key in ("legacy", "modern") for tool in ("echo", *CONDITIONAL_TOOLS)}
            await wait_for_tools(proxy, expected)
            for key in ("legacy", "modern"):
                result = await proxy.call_tool(f"{key}__echo", {"message": f"hello {key}"})
                assert f"hello {key}" in texts(result), result

    run(scenario)


def test_client_without_sampling_and_elicitation_gets_no_tools_that_need_them():
    async def scenario():
        async with proxy_on_remote_backends(None) as proxy:
            # The proxy answers its first tools/list once its backends are ready, so this list is whole.
            listed = {tool.name for tool in await list_all_tools(proxy)}
            assert {"legacy__echo", "modern__echo"} <= listed, sorted(listed)
            needing = {name for name in listed if name.split("__", 1)[1] in CONDITIONAL_TOOLS}
            assert not needing, f"the proxy declared capabilities its client does not have: {sorted(needing)}"

    run(scenario)


@pytest.mark.parametrize("key", ["legacy", "modern"])
def test_long_running_tool_reports_progress_through_the_proxy(key):
    async def scenario():
        async with proxy_on_remote_backends(answers()) as proxy:
            tool = f"{key}__trigger-long-running-operation"
            await wait_for_tools(proxy, {tool})
            progress: list[tuple[float, float | None]] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append((value, total))

            result = await proxy.call_tool(tool, {"duration": 1, "steps": 4}, progress_callback=on_progress)
            assert "Long running operation completed" in texts(result), result
            assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)], progress

    run(scenario)


@pytest.mark.parametrize("key", ["legacy", "modern"])
def test_sampling_request_of_a_remote_backend_reaches_the_client_callback(key):
    async def scenario():
        callbacks = answers()
        async with proxy_on_remote_backends(callbacks) as proxy:
            tool = f"{key}__trigger-sampling-request"
            await wait_for_tools(proxy, {tool})
            result = await proxy.call_tool(tool, {"prompt": "say something", "maxTokens": 20})
            text = texts(result)
            assert len(callbacks.sampling) == 1, callbacks.sampling
            asked = callbacks.sampling[0]
            assert asked.max_tokens == 20, asked
            assert "say something" in json.dumps(asked.model_dump(mode="json")), asked
            assert SAMPLED_TEXT in text, text

    run(scenario)


@pytest.mark.parametrize("key", ["legacy", "modern"])
def test_elicitation_request_of_a_remote_backend_reaches_the_client_callback(key):
    async def scenario():
        callbacks = answers()
        async with proxy_on_remote_backends(callbacks) as proxy:
            tool = f"{key}__trigger-elicitation-request"
            await wait_for_tools(proxy, {tool})
            result = await proxy.call_tool(tool, {})
            text = texts(result)
            assert len(callbacks.elicitation) == 1, callbacks.elicitation
            assert ELICITED_NAME in text, text
            assert "User provided the requested information" in text, text

    run(scenario)
