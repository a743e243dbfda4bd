"""Interop: a server asking its client something (sampling, elicitation) across protocol eras.

The handshake era sends the client requests of its own; 2026-07-28 answers the call with
``input_required`` and takes the answers on a retry. The proxy bridges the two, and passes the
modern way through when both sides speak it. Real SDK callbacks answer every question:

- a 2026-07-28 client (Python SDK pinned to ``2026-07-28``) in front of
  ``@modelcontextprotocol/server-everything`` (handshake era only): its sampling and elicitation tools;
- a handshake-era client (Python SDK ``mode="legacy"``, over stdio and Streamable HTTP) in front of
  ``tests/fixtures/modern_server.py`` (a Python SDK server that speaks only 2026-07-28): its elicitation
  and sampling tools; and the TypeScript SDK client (handshake era only) calling it;
- a 2026-07-28 client in front of the same modern-only server: ``input_required`` passes through;
- two 2026-07-28 clients calling the same sampling tool of one shared stdio backend one after the
  other each get their own question.

The proxy binary is ``MCP_PROXY_BIN`` (default ``target/debug/mcp-proxy-server``).
"""

import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters, types
from peers import Callbacks, everything, modern_only, proxy_bin, proxy_env, require, write_config, run
from peers import http_proxy as peers_http_proxy

TS_CLIENT = Path(__file__).with_name("ts_client.mjs")
TIMEOUT_S = 40
SAMPLED_TEXT = "sampled by the client"
ELICITED_NAME = "Ada"
# Over HTTP the proxy declares to backends what its clients can answer, since they come and go.
ENV = proxy_env(MCP_PROXY_CLIENT_CAPABILITIES="sampling,elicitation")


def answers() -> Callbacks:
    return Callbacks(SAMPLED_TEXT, ELICITED_NAME)


def http_proxy(tmp: Path, servers: dict[str, Any]):
    """The proxy over HTTP on `servers`; yields its /mcp URL."""
    return peers_http_proxy(tmp, servers, ENV)


@asynccontextmanager
async def client_of(target: Any, mode: str, callbacks: Callbacks) -> AsyncIterator[Client]:
    with anyio.fail_after(TIMEOUT_S):
        async with Client(target, mode=mode, sampling_callback=callbacks.sample, elicitation_callback=callbacks.elicit) as client:
            yield client


def stdio_target(tmp: Path, servers: dict[str, Any]) -> StdioServerParameters:
    return StdioServerParameters(command=proxy_bin(), args=["--config", str(write_config(tmp, servers))], env=ENV)


async def wait_for_tool(client: Client, name: str) -> None:
    """Waits until `name` is listed: server-everything adds its sampling and elicitation tools once it
    knows its client can answer them, after the handshake."""
    with anyio.fail_after(10):
        while True:
            listed = await client.list_tools(cache_mode="refresh") if client.protocol_version == "2026-07-28" else await client.list_tools()
            if any(tool.name == name for tool in listed.tools):
                return
            await anyio.sleep(0.1)


def text_of(result: types.CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, types.TextContent))


# ----- a 2026-07-28 client, a handshake-era backend ----------------------------------------------------


def test_a_modern_client_answers_server_everythings_elicitation_through_input_required(tmp_path):
    async def scenario():
        callbacks = answers()
        async with client_of(stdio_target(tmp_path, {"everything": everything()}), "2026-07-28", callbacks) as client:
            await wait_for_tool(client, "everything__trigger-elicitation-request")
            result = await client.call_tool("everything__trigger-elicitation-request", {})
        assert len(callbacks.elicitation) == 1, callbacks.elicitation
        assert ELICITED_NAME in text_of(result), result

    run(scenario)


def test_a_modern_client_answers_server_everythings_sampling_through_input_required(tmp_path):
    async def scenario():
        callbacks = answers()
        async with client_of(stdio_target(tmp_path, {"everything": everything()}), "2026-07-28", callbacks) as client:
            await wait_for_tool(client, "everything__trigger-sampling-request")
            result = await client.call_tool("everything__trigger-sampling-request", {"prompt": "say something", "maxTokens": 20})
        assert len(callbacks.sampling) == 1 and callbacks.sampling[0].max_tokens == 20, callbacks.sampling
        assert SAMPLED_TEXT in text_of(result), result

    run(scenario)


def test_two_modern_clients_calling_one_shared_backends_sampling_tool_in_turn_each_get_their_own_question(tmp_path):
    async def scenario():
        firsts, seconds = answers(), answers()
        async with http_proxy(tmp_path, {"everything": everything()}) as url:
            async with client_of(url, "2026-07-28", firsts) as first, client_of(url, "2026-07-28", seconds) as second:
                await wait_for_tool(first, "everything__trigger-sampling-request")
                one = await first.call_tool("everything__trigger-sampling-request", {"prompt": "first", "maxTokens": 10})
                two = await second.call_tool("everything__trigger-sampling-request", {"prompt": "second", "maxTokens": 10})
        assert [len(firsts.sampling), len(seconds.sampling)] == [1, 1]
        assert "first" in json.dumps(firsts.sampling[0].model_dump(mode="json"))
        assert "second" in json.dumps(seconds.sampling[0].model_dump(mode="json"))
        assert SAMPLED_TEXT in text_of(one) and SAMPLED_TEXT in text_of(two)

    run(scenario)


# ----- a handshake-era client, a 2026-07-28 backend ----------------------------------------------------


@pytest.mark.parametrize("transport", ["stdio", "streamable_http"])
def test_a_handshake_client_answers_a_modern_backends_elicitation_as_a_request(tmp_path, transport):
    async def scenario():
        callbacks = answers()
        servers = {"modern": modern_only()}
        if transport == "stdio":
            async with client_of(stdio_target(tmp_path, servers), "legacy", callbacks) as client:
                result = await client.call_tool("modern__greet", {})
        else:
            async with http_proxy(tmp_path, servers) as url, client_of(url, "legacy", callbacks) as client:
                result = await client.call_tool("modern__greet", {})
        assert len(callbacks.elicitation) == 1, callbacks.elicitation
        assert text_of(result) == f"Hello, {ELICITED_NAME}!", result

    run(scenario)


def test_a_handshake_client_answers_a_modern_backends_sampling_as_a_request(tmp_path):
    async def scenario():
        callbacks = answers()
        async with client_of(stdio_target(tmp_path, {"modern": modern_only()}), "legacy", callbacks) as client:
            assert client.protocol_version != "2026-07-28"
            result = await client.call_tool("modern__summarize", {})
        assert len(callbacks.sampling) == 1, callbacks.sampling
        assert text_of(result) == f"the model said: {SAMPLED_TEXT}", result

    run(scenario)


def test_the_typescript_sdk_a_handshake_only_client_calls_a_modern_only_backend(tmp_path):
    node = require(shutil.which("node"), "node must be on PATH for the TypeScript SDK client")

    async def scenario():
        async with http_proxy(tmp_path, {"modern": modern_only()}) as url:
            done = await anyio.run_process([node, str(TS_CLIENT), url, "modern__echo", json.dumps({"text": "from TypeScript"})], check=False)
        assert done.returncode == 0, done.stderr.decode()
        summary = json.loads(done.stdout)
        assert "modern__greet" in summary["tools"], summary
        assert summary["echo"] == {"isError": False, "text": "from TypeScript"}, summary

    run(scenario)


# ----- 2026-07-28 on both sides ------------------------------------------------------------------------


def test_input_required_passes_through_when_both_sides_speak_2026_07_28(tmp_path):
    async def scenario():
        callbacks = answers()
        async with client_of(stdio_target(tmp_path, {"modern": modern_only()}), "2026-07-28", callbacks) as client:
            result = await client.call_tool("modern__greet", {})
        assert len(callbacks.elicitation) == 1
        assert text_of(result) == f"Hello, {ELICITED_NAME}!", result

    run(scenario)
