"""Interop: the official MCP Python SDK as a 2026-07-28 ("modern") client of the proxy.

The SDK's ``Client`` is pinned with ``mode="2026-07-28"`` (no handshake, every
request carrying its protocol version in ``_meta``) or left in ``mode="auto"``
(it probes ``server/discover`` and must end up on 2026-07-28). It talks to the
proxy over stdio and over Streamable HTTP; behind the proxy are two real,
pinned servers that the proxy speaks the handshake era to:

- ``everything``: @modelcontextprotocol/server-everything (TypeScript SDK,
  handshake era only)
- ``time``: mcp-server-time (Python SDK 2.3, dual-era)

Each test proves one behaviour: tools listed and called, a resource read, a
prompt got, a completion, progress reaching the callback, an auto client
settling on 2026-07-28, and ``subscriptions/listen`` delivering a list change
(caused by a config reload that adds a server). The wire details (envelope
checks, headers, ``resultType``, caching hints) are pinned by tests/modern.rs.

The proxy binary is ``MCP_PROXY_BIN`` (default ``target/debug/mcp-proxy-server``).
"""

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters, types
from peers import HttpProxy, everything, proxy_bin, proxy_env, time_server, write_config, run, only_text

MODERN = "2026-07-28"
TIMEOUT_S = 30
TRANSPORTS = ["stdio", "streamable_http"]
# Reloads are what the listen test waits for: the proxy looks at its config five times a second.
ENV = proxy_env(MCP_PROXY_CONFIG_POLL="0.2")


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """A config aggregating both reference servers."""
    return write_config(tmp_path_factory.mktemp("modern"), {"everything": everything(), "time": time_server()})


@pytest.fixture(scope="module")
def http_proxy(config) -> Iterator[HttpProxy]:
    proxy = HttpProxy(config, ENV)
    yield proxy
    proxy.stop()


@asynccontextmanager
async def modern_client(transport: str, config: Path, http: HttpProxy | None, **options: Any) -> AsyncIterator[Client]:
    """An SDK client of the proxy, pinned to 2026-07-28 unless `options` say otherwise."""
    options = {"mode": MODERN} | options
    if transport == "stdio":
        server: Any = StdioServerParameters(command=proxy_bin(), args=["--config", str(config)], env=ENV)
    else:
        assert http is not None
        server = http.url
    with anyio.fail_after(TIMEOUT_S):
        async with Client(server, **options) as client:
            yield client


@pytest.fixture(params=TRANSPORTS)
def transport(request) -> str:
    return request.param


@pytest.fixture
def http(request, transport) -> HttpProxy | None:
    return request.getfixturevalue("http_proxy") if transport == "streamable_http" else None


def test_tools_of_both_backends_are_listed(transport, config, http):
    async def scenario():
        async with modern_client(transport, config, http) as client:
            assert client.protocol_version == MODERN
            names = {tool.name for tool in (await client.list_tools()).tools}
        assert {"everything__echo", "time__get_current_time"} <= names, names

    run(scenario)


def test_calls_reach_a_handshake_era_and_a_dual_era_backend(transport, config, http):
    async def scenario():
        async with modern_client(transport, config, http) as client:
            echoed = await client.call_tool("everything__echo", {"message": "modern"})
            now = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
        assert only_text(echoed) == "Echo: modern"
        assert json.loads(only_text(now))["timezone"] == "UTC"

    run(scenario)


def test_a_resource_is_read_by_its_original_uri(transport, config, http):
    uri = "demo://resource/static/document/features.md"

    async def scenario():
        async with modern_client(transport, config, http) as client:
            result = await client.read_resource(uri)
        [contents] = result.contents
        assert isinstance(contents, types.TextResourceContents), contents
        assert contents.text.startswith("# Everything Server - Features")

    run(scenario)


def test_a_prompt_is_got_with_its_arguments(transport, config, http):
    async def scenario():
        async with modern_client(transport, config, http) as client:
            result = await client.get_prompt("args-prompt", {"city": "Paris", "state": "IDF"})
        [message] = result.messages
        assert isinstance(message.content, types.TextContent), message
        assert message.content.text == "What's weather in Paris, IDF?"

    run(scenario)


def test_a_completion_is_answered_by_the_prompts_backend(transport, config, http):
    async def scenario():
        async with modern_client(transport, config, http) as client:
            result = await client.complete(types.PromptReference(type="ref/prompt", name="completable-prompt"), {"name": "department", "value": "E"})
        assert result.completion.values == ["Engineering"]

    run(scenario)


def test_progress_of_a_long_running_tool_reaches_the_callback(transport, config, http):
    async def scenario():
        progress: list[tuple[float, float | None]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append((value, total))

        async with modern_client(transport, config, http) as client:
            result = await client.call_tool("everything__trigger-long-running-operation", {"duration": 1, "steps": 3}, progress_callback=on_progress)
        assert "Long running operation completed" in only_text(result)
        assert progress == [(1, 3), (2, 3), (3, 3)]

    run(scenario)


def test_an_auto_client_ends_up_on_2026_07_28(transport, config, http):
    async def scenario():
        async with modern_client(transport, config, http, mode="auto") as client:
            assert client.protocol_version == MODERN
            assert only_text(await client.call_tool("everything__echo", {"message": "auto"})) == "Echo: auto"

    run(scenario)


def test_listen_hears_the_list_change_of_a_reload_that_adds_a_server(transport, tmp_path):
    config = write_config(tmp_path, {"time": time_server()})
    http = HttpProxy(config, ENV) if transport == "streamable_http" else None

    async def scenario():
        async with modern_client(transport, config, http) as client:
            assert not any(t.name.startswith("everything__") for t in (await client.list_tools()).tools)
            async with client.listen(tools_list_changed=True) as subscription:
                assert subscription.honored.tools_list_changed
                write_config(tmp_path, {"time": time_server(), "everything": everything()})
                async for event in subscription:
                    names = {t.name for t in (await client.list_tools(cache_mode="refresh")).tools}
                    if "everything__echo" in names:
                        break

    try:
        run(scenario)
    finally:
        if http:
            http.stop()
