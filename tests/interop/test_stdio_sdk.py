"""Interop: the official MCP Python SDK drives mcp-proxy-server over stdio.

The proxy is started with a config naming two real, pinned reference servers
(installed by scripts/install-test-deps.sh):

- ``everything``: @modelcontextprotocol/server-everything (Node, stdio)
- ``time``: mcp-server-time (Python, stdio)

Each test opens a fresh SDK ``ClientSession`` on the proxy and proves one
behaviour of the aggregated server: tools from both backends are listed under
``<key>__<tool>`` with their input schemas unchanged, tool calls are routed to
the right backend, a backend resource is read by its original URI, a backend
prompt is served under its original name with its arguments forwarded, and
progress notifications of a long-running tool reach the client's callback
before the result.

The proxy binary is taken from ``MCP_PROXY_BIN`` (default
``target/debug/mcp-proxy-server``); it is not built here.
"""

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client, types
from peers import only_text

REPO = Path(__file__).resolve().parents[2]
DEPS = REPO / ".deps"
PROXY_BIN = Path(os.environ.get("MCP_PROXY_BIN", REPO / "target/debug/mcp-proxy-server"))
EVERYTHING_ENTRY = DEPS / "node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
TIME_SERVER = DEPS / "venv/bin/mcp-server-time"

SESSION_TIMEOUT_S = 30
INSTALL_HINT = "run scripts/install-test-deps.sh"


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


@asynccontextmanager
async def mcp_session(command: str, args: list[str]) -> AsyncIterator[ClientSession]:
    """Start `command args` as a stdio MCP server and yield an initialized SDK session.

    Everything inside runs under a timeout. The server's stderr is printed when
    the session ends, so pytest shows it with any failure of the test.
    """
    server = StdioServerParameters(command=command, args=args)
    with tempfile.TemporaryFile("w+") as errlog, anyio.fail_after(SESSION_TIMEOUT_S):
        try:
            async with stdio_client(server, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    yield session
        finally:
            errlog.seek(0)
            print(f"--- stderr of {Path(command).name} ---\n{errlog.read()}", file=sys.stderr)


@asynccontextmanager
async def proxy_session() -> AsyncIterator[ClientSession]:
    """Start the proxy on a temp config aggregating `everything` and `time`; yield a session on it."""
    proxy = require(PROXY_BIN, "build the proxy (cargo build) or set MCP_PROXY_BIN")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(json.dumps({"mcpServers": backends()}))
        async with mcp_session(proxy, ["--config", str(config)]) as session:
            yield session


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


def test_tools_of_both_backends_are_listed_with_key_prefix_and_unchanged_schema():
    async def scenario():
        expected = {}
        for key, spec in backends().items():
            async with mcp_session(spec["command"], spec["args"]) as backend:
                for tool in await list_all_tools(backend):
                    expected[f"{key}__{tool.name}"] = tool.input_schema

        async with proxy_session() as proxy:
            listed = {tool.name: tool.input_schema for tool in await list_all_tools(proxy)}

        assert {"everything__echo", "time__get_current_time"} <= listed.keys()
        assert sorted(listed) == sorted(expected)
        assert listed == expected

    anyio.run(scenario)


def test_call_to_everything_echo_is_routed_to_server_everything():
    async def scenario():
        async with proxy_session() as proxy:
            result = await proxy.call_tool("everything__echo", {"message": "hello through the proxy"})
        assert only_text(result) == "Echo: hello through the proxy"

    anyio.run(scenario)


def test_call_to_time_get_current_time_is_routed_to_time_server():
    async def scenario():
        async with proxy_session() as proxy:
            result = await proxy.call_tool("time__get_current_time", {"timezone": "UTC"})
        assert json.loads(only_text(result))["timezone"] == "UTC"

    anyio.run(scenario)


def test_resource_of_server_everything_is_read_by_its_original_uri():
    uri = "demo://resource/static/document/features.md"

    async def scenario():
        async with proxy_session() as proxy:
            result = await proxy.read_resource(uri)
        [contents] = result.contents
        assert isinstance(contents, types.TextResourceContents), contents
        assert contents.uri == uri
        assert contents.text.startswith("# Everything Server - Features")

    anyio.run(scenario)


def test_prompt_of_server_everything_is_served_under_its_name_with_arguments():
    async def scenario():
        async with proxy_session() as proxy:
            result = await proxy.get_prompt("args-prompt", {"city": "Paris", "state": "IDF"})
        [message] = result.messages
        assert message.role == "user"
        assert isinstance(message.content, types.TextContent), message
        assert message.content.text == "What's weather in Paris, IDF?"

    anyio.run(scenario)


def test_progress_of_long_running_tool_reaches_client_before_result():
    async def scenario():
        progress: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        async with proxy_session() as proxy:
            result = await proxy.call_tool(
                "everything__trigger-long-running-operation",
                {"duration": 1, "steps": 4},
                progress_callback=on_progress,
            )
        assert "Long running operation completed" in only_text(result)
        # The SDK only invokes the callback while the request is pending, i.e. before its result.
        assert len(progress) >= 2, progress
        assert all(a < b for a, b in zip(progress, progress[1:])), progress

    anyio.run(scenario)


def test_typescript_sdk_runs_a_tool_call_as_a_task_through_the_proxy(tmp_path):
    """MCP 2025-11-25 tasks: the TypeScript SDK (tests/interop/ts_tasks_client.mjs) calls
    server-everything's research tool, which runs only as a task, creates the task through the proxy,
    polls it and fetches its result; the proxy routes each tasks/* request to the backend that made it."""
    node = require(shutil.which("node"), "node must be on PATH for the TypeScript SDK client")
    config = tmp_path / "mcp_server.json"
    config.write_text(json.dumps({"mcpServers": {"everything": backends()["everything"]}}))
    client = Path(__file__).with_name("ts_tasks_client.mjs")
    args = json.dumps({"topic": "proxies"})
    done = subprocess.run(
        [node, str(client), str(PROXY_BIN), str(config), "everything__simulate-research-query", args],
        capture_output=True, text=True, timeout=90,
    )
    print(f"--- ts_tasks_client stderr ---\n{done.stderr}", file=sys.stderr)
    assert done.returncode == 0, done.stdout
    summary = json.loads(done.stdout)
    assert summary["capabilities"]["tasks"]["requests"]["tools"]["call"] == {}
    assert summary["types"][0] == "taskCreated" and summary["types"][-1] == "result", summary["types"]
    assert "Research Report: proxies" in summary["text"], summary["text"]


def raw_exchange(config: dict[str, Any], requests: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """Send `requests` to the proxy over stdio as raw JSON lines and return the answers by id.

    The SDK client parses URIs (and so normalises them) before sending; a raw client sends them as
    spelled, as an attacker would.
    """
    proxy = require(PROXY_BIN, "build the proxy (cargo build) or set MCP_PROXY_BIN")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(json.dumps(config))
        child = subprocess.Popen(
            [proxy, "--config", str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        try:
            answers: dict[Any, dict[str, Any]] = {}
            for request in requests:
                child.stdin.write(json.dumps(request) + "\n")
                child.stdin.flush()
                while "id" in request and request["id"] not in answers:
                    ready, _, _ = select.select([child.stdout], [], [], SESSION_TIMEOUT_S)
                    assert ready, f"no answer to {request}"
                    message = json.loads(child.stdout.readline())
                    if "id" in message and "method" not in message:
                        answers[message["id"]] = message
            return answers
        finally:
            child.kill()
            child.wait()


def test_a_denied_resource_of_server_everything_cannot_be_read_by_spelling_its_uri_differently():
    everything = backends()["everything"]
    config = {"mcpServers": {"everything": {**everything, "resources": {"deny": ["demo://resource/static/*"]}}}}
    spellings = [
        "demo://resource/static/document/features.md",
        "DEMO://resource/static/document/features.md",
        "demo://RESOURCE/static/document/features.md",
        "demo://resource/dynamic/../static/document/features.md",
        "demo://resource/dynamic/%2e%2e/static/document/features.md",
        " demo://resource/static/document/features.md",
    ]
    init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
    requests = [{"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": init}]
    requests.append({"jsonrpc": "2.0", "method": "notifications/initialized"})
    requests += [{"jsonrpc": "2.0", "id": i, "method": "resources/read", "params": {"uri": uri}} for i, uri in enumerate(spellings)]
    allowed = "DEMO://resource/dynamic/./text/1"
    requests.append({"jsonrpc": "2.0", "id": "allowed", "method": "resources/read", "params": {"uri": allowed}})

    answers = raw_exchange(config, requests)

    for i, uri in enumerate(spellings):
        assert "error" in answers[i], f"{uri!r} was read: {answers[i]}"
    [contents] = answers["allowed"]["result"]["contents"]
    assert contents["uri"] == "demo://resource/dynamic/text/1", "forwarded in its normalised spelling"
