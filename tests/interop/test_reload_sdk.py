"""Interop: live reload seen by the official MCP Python SDK over stdio.

The proxy runs as a stdio server (``<bin> --config <tmp>/mcp_server.json``,
``MCP_PROXY_CONFIG_POLL=0.2``) with one mock backend (tests/fixtures/mock_server.py,
key ``first``). An SDK ``ClientSession`` whose ``message_handler`` records every
``ToolListChangedNotification`` is connected to it. The test then

1. rewrites the server config in place to add a second mock backend (``second``):
   ``notifications/tools/list_changed`` reaches the client, and a re-list after it
   shows the new server's tools, which are routed to it;
2. writes ``tool_config.json`` beside the config (atomically: temp file + rename)
   disabling ``second__echo``: another ``list_changed`` arrives, the tool is gone
   from a re-list and calling it fails, while the rest of ``second`` stays.

Every wait is bounded; the proxy's stderr is printed when the session ends, so
pytest shows it with a failure. The proxy binary is taken from ``MCP_PROXY_BIN``
(default ``target/debug/mcp-proxy-server``); it is not built here.
"""

import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client, types
from mcp.shared.exceptions import MCPError
from peers import only_text

REPO = Path(__file__).resolve().parents[2]
PROXY_BIN = Path(os.environ.get("MCP_PROXY_BIN", REPO / "target/debug/mcp-proxy-server"))
MOCK_SERVER = REPO / "tests/fixtures/mock_server.py"

TEST_TIMEOUT_S = 60
RELOAD_TIMEOUT_S = 15  # config poll is 0.2 s; a backend start (python3) takes well under a second
POLL = "0.2"

MOCK_TOOLS = {"echo", "whoami", "sleep"}  # a few of the mock's static tools, enough to recognise it


def mock(key: str) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(MOCK_SERVER), "--name", key]}


class ListChanged:
    """The message handler: counts `ToolListChangedNotification`s and lets the test wait for the next."""

    def __init__(self) -> None:
        self.count = 0
        self.others: list[str] = []
        self._event = anyio.Event()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.count += 1
            self._event.set()
            self._event = anyio.Event()
        else:
            self.others.append(type(message).__name__)

    async def wait_beyond(self, count: int, what: str, timeout: float) -> None:
        """Return once more than `count` notifications have arrived; fail after `timeout` seconds."""
        with anyio.move_on_after(timeout):
            while self.count <= count:
                await self._event.wait()
            return
        pytest.fail(f"no notifications/tools/list_changed {what} within {timeout:.1f} s "
                    f"(received {self.count} in all; other messages: {self.others})", pytrace=False)


async def list_tool_names(session: ClientSession) -> set[str]:
    names: set[str] = set()
    cursor: str | None = None
    while True:
        page = await session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        names.update(tool.name for tool in page.tools)
        cursor = page.next_cursor
        if not cursor:
            return names


async def relist_until(session: ClientSession, seen: ListChanged, since: int, done, what: str) -> tuple[set[str], float]:
    """What a client does on list_changed: re-list after each one until `done(names)`.

    A proxy may send more than one list_changed for one change (say, one when the
    config is applied and one when the new backend has its tools); the test accepts
    that, but the list must be right after the last one, within the timeout.
    Returns the names and the seconds it took.
    """
    started = time.monotonic()
    deadline = started + RELOAD_TIMEOUT_S
    lists: list[list[str]] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"{what}: {len(lists)} list_changed notifications in {RELOAD_TIMEOUT_S} s, "
                        f"and the re-lists after them were {lists}", pytrace=False)
        await seen.wait_beyond(since, what, remaining)
        since = seen.count
        with anyio.fail_after(max(remaining, 1)):
            names = await list_tool_names(session)
        lists.append(sorted(names))
        if done(names):
            return names, time.monotonic() - started


@asynccontextmanager
async def proxy_session(config: Path, seen: ListChanged) -> AsyncIterator[ClientSession]:
    if not PROXY_BIN.is_file():
        pytest.fail(f"{PROXY_BIN} not found: build the proxy (cargo build) or set MCP_PROXY_BIN", pytrace=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROXY_") and k not in ("LOGGING", "RUST_LOG")}
    env.update({"MCP_PROXY_CONFIG_POLL": POLL, "LOGGING": "info"})
    server = StdioServerParameters(command=str(PROXY_BIN), args=["--config", str(config)], env=env)
    with tempfile.TemporaryFile("w+") as errlog:
        try:
            async with stdio_client(server, errlog=errlog) as (read, write):
                async with ClientSession(read, write, message_handler=seen) as session:
                    await session.initialize()
                    yield session
        finally:
            errlog.seek(0)
            print(f"--- stderr of the proxy ---\n{errlog.read()}", file=sys.stderr)


def test_added_server_and_disabled_tool_reach_the_sdk_client_as_list_changed():
    async def scenario():
        with tempfile.TemporaryDirectory() as tmp, anyio.fail_after(TEST_TIMEOUT_S):
            config = Path(tmp) / "mcp_server.json"
            config.write_text(json.dumps({"mcpServers": {"first": mock("first")}}, indent=2))
            seen = ListChanged()
            async with proxy_session(config, seen) as session:
                before = await list_tool_names(session)
                assert {f"first__{t}" for t in MOCK_TOOLS} <= before, sorted(before)
                assert not any(n.startswith("second__") for n in before), sorted(before)
                # Notifications that came with start-up are not what is tested below.
                await anyio.sleep(0.5)
                count = seen.count

                # 1. A second server, written in place (as an editor without rename would).
                config.write_text(json.dumps({"mcpServers": {"first": mock("first"), "second": mock("second")}}, indent=2))
                names, took = await relist_until(
                    session, seen, count,
                    lambda n: {f"second__{t}" for t in MOCK_TOOLS} <= n,
                    "after adding server 'second' to the config")
                print(f"second's tools listed {took:.2f} s after the config write, "
                      f"{seen.count - count} list_changed", file=sys.stderr)
                assert {f"first__{t}" for t in MOCK_TOOLS} <= names, sorted(names)
                assert only_text(await session.call_tool("second__whoami", {})) == "second"
                assert only_text(await session.call_tool("first__whoami", {})) == "first"

                # 2. second__echo disabled in tool_config.json beside the config (temp file + rename).
                await anyio.sleep(0.5)
                count = seen.count
                staged = Path(tmp) / "tool_config.json.tmp"
                staged.write_text(json.dumps({"tools": {"second__echo": {"enabled": False}}}))
                os.replace(staged, Path(tmp) / "tool_config.json")
                names, took = await relist_until(
                    session, seen, count, lambda n: "second__echo" not in n,
                    "after disabling second__echo in tool_config.json")
                print(f"second__echo gone {took:.2f} s after the tool config write, "
                      f"{seen.count - count} list_changed", file=sys.stderr)
                assert {"second__whoami", "second__sleep", "first__echo"} <= names, sorted(names)
                # "A call gets the same error as an unknown tool": a JSON-RPC error naming it.
                with pytest.raises(MCPError, match="second__echo") as refused:
                    await session.call_tool("second__echo", {"text": "x"})
                assert refused.value.code == types.INVALID_PARAMS, refused.value
                assert only_text(await session.call_tool("first__echo", {"text": "still here"})) == "still here"

    anyio.run(scenario)
