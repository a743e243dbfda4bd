"""Interop: the official MCP SDKs as clients of mcp-proxy-server serving HTTPS.

One proxy for the module, started with ``MCP_PROXY_TLS_CERT`` / ``MCP_PROXY_TLS_KEY`` on the test
certificate of ``tests/fixtures/tls/`` (127.0.0.1 and localhost, signed by the test CA ``ca.pem``), in
front of server-everything. The clients trust the test CA the way a user would make them:

- the Python SDK (``streamable_http_client``, ``sse_client``) with its default HTTP client and
  ``SSL_CERT_FILE`` naming the CA;
- the TypeScript SDK (``tests/interop/ts_client.mjs``) with ``NODE_EXTRA_CA_CERTS``.

Without the CA the Python SDK refuses the proxy: the certificate is checked, not waved through.
"""

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from peers import DEPS, INSTALL_HINT, HttpProxy, everything, only_text, proxy_env, require, run, write_config

TLS = Path(__file__).resolve().parents[1] / "fixtures/tls"
TS_CLIENT = Path(__file__).with_name("ts_client.mjs")
SESSION_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def proxy(tmp_path_factory) -> Iterator[HttpProxy]:
    folder = tmp_path_factory.mktemp("https")
    env = proxy_env(MCP_PROXY_TLS_CERT=str(TLS / "server.pem"), MCP_PROXY_TLS_KEY=str(TLS / "server.key"))
    running = HttpProxy(write_config(folder, {"everything": everything()}), env)
    try:
        yield running
    finally:
        running.stop()


async def echo(url: str, transport: str, message: str) -> str:
    """Initializes an SDK session on `url` over `transport` and calls everything's echo."""
    with anyio.fail_after(SESSION_TIMEOUT_S):
        client = sse_client(url) if transport == "sse" else streamable_http_client(url)
        async with client as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return only_text(await session.call_tool("everything__echo", {"message": message}))


def test_the_proxy_says_it_serves_https(proxy):
    assert proxy.url.startswith("https://127.0.0.1:")


@pytest.mark.parametrize("transport", ["streamable_http", "sse"])
def test_python_sdk_calls_a_tool_over_https_trusting_the_test_ca_from_ssl_cert_file(proxy, transport, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS / "ca.pem"))
    url = proxy.url if transport == "streamable_http" else proxy.url.removesuffix("/mcp") + "/sse"

    async def scenario():
        assert await echo(url, transport, f"hello over {transport} and TLS") == f"Echo: hello over {transport} and TLS"

    run(scenario)


def test_python_sdk_without_the_test_ca_refuses_the_proxys_certificate(proxy, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)

    async def scenario():
        with pytest.raises(BaseException) as refused:
            await echo(proxy.url, "streamable_http", "never")
        assert "CERTIFICATE_VERIFY_FAILED" in repr(refused.value), repr(refused.value)

    run(scenario)


def test_typescript_sdk_lists_tools_and_calls_echo_over_https_with_node_extra_ca_certs(proxy):
    node = require(shutil.which("node"), "node must be on PATH for the TypeScript SDK client")
    require(DEPS / "node/node_modules/@modelcontextprotocol/sdk/package.json", INSTALL_HINT)
    env = proxy_env(NODE_EXTRA_CA_CERTS=str(TLS / "ca.pem"))
    done = subprocess.run([node, str(TS_CLIENT), proxy.url], capture_output=True, text=True, timeout=SESSION_TIMEOUT_S, env=env)
    print(f"--- ts_client stderr ---\n{done.stderr}", file=sys.stderr)
    assert done.returncode == 0, done.stdout
    summary = json.loads(done.stdout)
    assert "everything__echo" in summary["tools"]
    assert summary["echo"] == {"isError": False, "text": "Echo: hello from the TypeScript SDK"}
