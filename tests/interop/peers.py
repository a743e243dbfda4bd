"""What the interop tests share: where the proxy binary and the pinned peers are, how a peer server is
configured, and the proxy started over HTTP (stopped with SIGTERM, its log printed with any failure).

The peers are installed by scripts/install-test-deps.sh into .deps/; the proxy binary is ``MCP_PROXY_BIN``
(default ``target/debug/mcp-proxy-server``), not built here.
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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import types

REPO = Path(__file__).resolve().parents[2]
DEPS = REPO / ".deps"
PROXY_BIN = Path(os.environ.get("MCP_PROXY_BIN", REPO / "target/debug/mcp-proxy-server"))
EVERYTHING_ENTRY = DEPS / "node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
TIME_SERVER = DEPS / "venv/bin/mcp-server-time"
PYTHON = DEPS / "venv/bin/python"
MODERN_SERVER = REPO / "tests/fixtures/modern_server.py"
SERVERS_NPM = DEPS / "servers/node_modules/@modelcontextprotocol"
SERVERS_VENV = DEPS / "servers-venv/bin"
INSTALL_HINT = "run scripts/install-test-deps.sh"
STARTUP_TIMEOUT_S = 20


def require(path: Path | str | None, hint: str) -> str:
    """`path` as a string, or the test fails with `hint` when it is not a file."""
    if path is None or not Path(path).is_file():
        pytest.fail(f"{path} not found: {hint}", pytrace=False)
    return str(path)


def proxy_bin() -> str:
    return require(PROXY_BIN, "build the proxy (cargo build) or set MCP_PROXY_BIN")


def everything() -> dict[str, Any]:
    """server-everything over stdio: a handshake-era-only server (TypeScript SDK)."""
    node = require(shutil.which("node"), "node must be on PATH for server-everything")
    return {"command": node, "args": [require(EVERYTHING_ENTRY, INSTALL_HINT), "stdio"]}


def time_server() -> dict[str, Any]:
    """mcp-server-time: a dual-era server (Python SDK 2.3)."""
    return {"command": require(TIME_SERVER, INSTALL_HINT), "args": [], "env": {"TZ": "UTC"}}


def modern_only() -> dict[str, Any]:
    """tests/fixtures/modern_server.py: a server that speaks only 2026-07-28 (Python SDK 2.3)."""
    return {"command": require(PYTHON, INSTALL_HINT), "args": [str(MODERN_SERVER)]}


def reference_catalog(folder: Path) -> dict[str, Any]:
    """server-everything, mcp-server-time and twelve more pinned reference servers (npm and PyPI, from
    scripts/install-test-deps.sh): 112 real tools. None needs the network to list its tools; those that
    want a token get a dummy one (nothing here calls them). The filesystem server may touch `folder`/files
    only; the memory server keeps its graph in `folder`."""
    node = require(shutil.which("node"), "node must be on PATH for the npm servers")
    files = folder / "files"
    files.mkdir(exist_ok=True)
    (files / "hello.txt").write_text("hello from the tool search test\n")

    def npm(package: str, *args: str, **env: str) -> dict[str, Any]:
        return {"command": node, "args": [require(SERVERS_NPM / package / "dist/index.js", INSTALL_HINT), *args], "env": env}

    def pypi(program: str, *args: str) -> dict[str, Any]:
        return {"command": require(SERVERS_VENV / program, INSTALL_HINT), "args": list(args)}

    return {
        "everything": everything(),
        "time": time_server(),
        "filesystem": npm("server-filesystem", str(files)),
        "memory": npm("server-memory", MEMORY_FILE_PATH=str(folder / "memory.jsonl")),
        "sequential-thinking": npm("server-sequential-thinking"),
        "github": npm("server-github", GITHUB_PERSONAL_ACCESS_TOKEN="dummy-token"),
        "gitlab": npm("server-gitlab", GITLAB_PERSONAL_ACCESS_TOKEN="dummy-token"),
        "slack": npm("server-slack", SLACK_BOT_TOKEN="dummy-token", SLACK_TEAM_ID="T0000000"),
        "google-maps": npm("server-google-maps", GOOGLE_MAPS_API_KEY="dummy-key"),
        "brave-search": npm("server-brave-search", BRAVE_API_KEY="dummy-key"),
        "everart": npm("server-everart", EVERART_API_KEY="dummy-key"),
        "puppeteer": npm("server-puppeteer"),
        "fetch": pypi("mcp-server-fetch"),
        "git": pypi("mcp-server-git"),
    }


class Callbacks:
    """A client's sampling and elicitation callbacks: they answer with `sampled` text and the name
    `elicited`, and record what they were asked."""

    def __init__(self, sampled: str, elicited: str) -> None:
        self.sampled, self.elicited = sampled, elicited
        self.sampling: list[types.CreateMessageRequestParams] = []
        self.elicitation: list[types.ElicitRequestParams] = []

    async def sample(self, context, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.sampling.append(params)
        content = types.TextContent(type="text", text=self.sampled)
        return types.CreateMessageResult(role="assistant", content=content, model="test-model", stop_reason="endTurn")

    async def elicit(self, context, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.elicitation.append(params)
        return types.ElicitResult(action="accept", content={"name": self.elicited, "check": True})


def write_config(folder: Path, servers: dict[str, Any]) -> Path:
    config = folder / "mcp_server.json"
    config.write_text(json.dumps({"mcpServers": servers}))
    return config


def proxy_env(**settings: str) -> dict[str, str]:
    """The test's environment without anything the proxy reads, plus `settings`."""
    drop = ("ALLOWED_KEYS", "ALLOWED_TOKENS", "PORT", "HOST")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_PROXY_") and k not in drop}
    return env | settings


class HttpProxy:
    """The proxy serving HTTP (HTTPS when `env` names a certificate) on 127.0.0.1, on `port` or a free
    one; `url` is its /mcp endpoint."""

    def __init__(self, config: Path, env: dict[str, str], port: int = 0):
        self.log = config.with_name("proxy.log")
        args = [proxy_bin(), "--sse", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not (found := re.search(r"listening on (https?://127\.0\.0\.1:\d+)", self.log.read_text(errors="replace"))):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the proxy did not start:\n{self.log.read_text(errors='replace')}", pytrace=False)
            time.sleep(0.02)
        self.url = found.group(1) + "/mcp"

    def stop(self) -> None:
        """SIGTERM, and the log printed (pytest shows it with a failure)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail("the proxy ignored SIGTERM", pytrace=False)
        finally:
            print(f"--- proxy log ---\n{self.log.read_text(errors='replace')}", file=sys.stderr)


@asynccontextmanager
async def http_proxy(folder: Path, servers: dict[str, Any], env: dict[str, str]) -> AsyncIterator[str]:
    """The proxy over HTTP on `servers` for the time of a `with`; yields its /mcp URL."""
    proxy = HttpProxy(write_config(folder, servers), env)
    try:
        yield proxy.url
    finally:
        proxy.stop()
        await anyio.lowlevel.checkpoint()


def free_port() -> int:
    """A port nothing listens on now (for a server whose URL must be known before it starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(scenario: Any) -> None:
    """Runs an async test scenario to its end."""
    anyio.run(scenario)


def only_text(result: types.CallToolResult) -> str:
    """The text of a successful tool result made of exactly one text block."""
    assert not result.is_error, result
    assert len(result.content) == 1 and isinstance(result.content[0], types.TextContent), result
    return result.content[0].text
