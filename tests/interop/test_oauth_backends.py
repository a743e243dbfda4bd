"""Interop: the proxy logs in to a protected remote MCP server with OAuth, and keeps its tokens fresh.

The remote server is the official Python SDK's, protected by its bearer middleware with a JWKS token
verifier (tests/fixtures/protected_server.py); the authorization server is npm ``oidc-provider``
(tests/fixtures/oauth_as.mjs), its login and consent pages driven headlessly (oauth_peers.py). The proxy
runs over HTTP with the remote server and a local mock beside it:

- before any login the remote server "needs_login" in ``/health``, its tools are withdrawn, a call says
  how to log in, and the local server is unaffected;
- ``mcp-proxy-server login remote`` (a subprocess) discovers the server's metadata from its 401,
  registers (DCR), prints the authorization URL; the "user" logs in; the browser's redirect reaches the
  login's loopback listener; the tokens land in ``oauth_tokens.json`` (mode 0600); the running proxy
  connects and the remote tools work;
- the access token expires and the next call still works (refreshed by the proxy, the client sees nothing);
- the refresh token is revoked and the access token expires: the server "needs_login" again;
- ``logout`` forgets the tokens; no token ever appears in the proxy's log.
"""

import json
from contextlib import closing
import os
import re
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from mcp import ClientSession
from mcp.shared.exceptions import MCPError
from mcp.client.streamable_http import streamable_http_client
from oauth_peers import AuthorizationServer, callback_params, drive_login
from peers import PYTHON, REPO, HttpProxy, free_port, only_text, proxy_bin, proxy_env, require, run, write_config

ACCESS_TTL_S = 4
ADMIN_PASSWORD = "oauth-Adm1n-pass"
PROTECTED_SERVER = REPO / "tests/fixtures/protected_server.py"
TLS = REPO / "tests/fixtures/tls"
TEST_CA = ssl.create_default_context(cafile=str(TLS / "ca.pem"))
WAIT_S = 30


@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    server = AuthorizationServer(tmp_path_factory.mktemp("as"), ACCESS_TTL=str(ACCESS_TTL_S))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def protected(tmp_path_factory, issuer):
    """The protected SDK server's /mcp URL."""
    yield from protected_server(tmp_path_factory.mktemp("protected"), issuer)


def protected_server(folder: Path, issuer: AuthorizationServer):
    port = free_port()
    log = folder / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen([require(PYTHON, "run scripts/install-test-deps.sh"), str(PROTECTED_SERVER), "--port", str(port),
                                    "--issuer", issuer.issuer], stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        wait_for("the protected server", lambda: reachable(url), log)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        print(f"--- protected server log ---\n{log.read_text(errors='replace')}", file=sys.stderr)


def reachable(url: str) -> bool:
    try:
        return httpx2.post(url, json={}, timeout=2).status_code == 401
    except httpx2.HTTPError:
        return False


def wait_for(what: str, check, log: Path | None = None, timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout}s" + (f":\n{log.read_text(errors='replace')}" if log else ""), pytrace=False)
        time.sleep(0.2)
    return found


class Hub:
    """The proxy over HTTP in front of the protected server ("remote") and a local mock ("local")."""

    def __init__(self, folder: Path, protected_url: str, port: int = 0, **settings: str):
        servers = {"remote": {"type": "http", "url": protected_url},
                   "local": {"command": require(PYTHON, "run scripts/install-test-deps.sh"),
                             "args": [str(REPO / "tests/fixtures/mock_server.py"), "--name", "local"]}}
        self.config = write_config(folder, servers)
        self.store = folder / "oauth_tokens.json"
        # A server that needs a login is tried again at most every second here (30 s by default).
        self.settings = settings
        self.proxy = HttpProxy(self.config, proxy_env(MCP_PROXY_RESTART_BACKOFF_MAX="1", **settings), port=port)
        self.origin = self.proxy.url.removesuffix("/mcp")

    def state(self, key: str) -> dict:
        backends = httpx2.get(f"{self.origin}/health", timeout=5, verify=TEST_CA).json()["backends"]
        return next(b for b in backends if b["key"] == key)

    def wait_state(self, key: str, state: str) -> dict:
        return wait_for(f"'{key}' to be {state}", lambda: (b := self.state(key))["state"] == state and b, self.proxy.log)

    def cli(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([proxy_bin(), "--config", str(self.config), *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=proxy_env(**self.settings))

    def login(self) -> None:
        """`login remote`, the person's part played by drive_login and a GET of the final redirect."""
        login = self.cli("login", "remote")
        lines = []
        for line in login.stderr:
            lines.append(line)
            if line.startswith("  http"):
                break
        else:
            pytest.fail(f"login printed no URL:\n{''.join(lines)}", pytrace=False)
        url = line.strip()
        redirect_uri = callback_params(url)["redirect_uri"]
        final = drive_login(url, redirect_prefix=redirect_uri)
        page = httpx2.get(final, timeout=10)
        out, err = login.communicate(timeout=30)
        assert login.returncode == 0, "".join(lines) + err
        assert page.status_code == 200 and "Logged in to 'remote'" in page.text, page.text

    def stop(self) -> None:
        self.proxy.stop()


@pytest.fixture
def hub(tmp_path, protected):
    hub = Hub(tmp_path, protected)
    yield hub
    hub.stop()


async def call(hub: Hub, tool: str, arguments: dict):
    """The tools listed, and the call's result (or the error it raised)."""
    async with streamable_http_client(hub.proxy.url) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = [t.name for t in (await session.list_tools()).tools]
            try:
                return tools, await session.call_tool(tool, arguments)
            except MCPError as e:
                return tools, e


def test_a_server_that_asks_for_a_login_needs_login_and_its_tools_are_withdrawn(hub):
    remote = hub.wait_state("remote", "needs_login")
    assert "run `mcp-proxy-server login remote`" in remote["lastError"], remote
    hub.wait_state("local", "connected")
    results = {}

    async def scenario():
        results["tools"], results["call"] = await call(hub, "remote__echo", {"text": "hi"})

    run(scenario)
    assert "local__echo" in results["tools"] and not any(t.startswith("remote__") for t in results["tools"])
    assert isinstance(results["call"], MCPError), results["call"]
    assert "server 'remote' is not connected: needs login" in str(results["call"]), results["call"]
    assert "run `mcp-proxy-server login remote`" in str(results["call"])


def test_login_then_calls_refresh_and_a_revoked_grant_asks_for_login_again(hub, issuer):
    hub.wait_state("remote", "needs_login")
    hub.login()
    mode = stat.S_IMODE(hub.store.stat().st_mode)
    assert mode == 0o600, oct(mode)
    stored = json.loads(hub.store.read_text())
    assert stored["servers"]["remote"]["issuer"] == issuer.issuer
    assert issuer.issuer in stored["registrations"], "the dynamic registration is kept for this issuer"
    hub.wait_state("remote", "connected")
    results = {}

    async def calls():
        results["tools"], echoed = await call(hub, "remote__echo", {"text": "hi"})
        results["echo"] = only_text(echoed)
        _, who = await call(hub, "remote__whoami", {})
        results["whoami"] = only_text(who)

    run(calls)
    assert "remote__echo" in results["tools"] and results["echo"] == "hi"
    assert results["whoami"].startswith("sub=alice"), results["whoami"]
    first = json.loads(hub.store.read_text())["servers"]["remote"]["access_token"]

    time.sleep(ACCESS_TTL_S + 1)

    async def after_expiry():
        _, echoed = await call(hub, "remote__echo", {"text": "later"})
        results["later"] = only_text(echoed)

    run(after_expiry)
    assert results["later"] == "later"
    assert json.loads(hub.store.read_text())["servers"]["remote"]["access_token"] != first, "refreshed"
    assert hub.state("remote")["state"] == "connected", "the refresh went unnoticed"

    tokens = json.loads(hub.store.read_text())["servers"]["remote"]
    issuer.revoke(tokens["refresh_token"], tokens["client"]["client_id"])
    time.sleep(ACCESS_TTL_S + 1)

    async def after_revocation():
        _, results["refused"] = await call(hub, "remote__echo", {"text": "again"})

    run(after_revocation)
    refused = results["refused"]
    assert isinstance(refused, MCPError) or refused.is_error, refused
    assert "login" in str(refused.message if isinstance(refused, MCPError) else refused.content), refused
    remote = hub.wait_state("remote", "needs_login")
    assert "refresh was refused" in remote["lastError"] or "login" in remote["lastError"], remote
    log = hub.proxy.log.read_text()
    for secret in (first, tokens["access_token"], tokens["refresh_token"]):
        assert secret not in log, "a token reached the log"


def test_logout_forgets_the_tokens(hub):
    hub.wait_state("remote", "needs_login")
    hub.login()
    hub.wait_state("remote", "connected")
    logout = hub.cli("logout", "remote")
    _, err = logout.communicate(timeout=30)
    assert logout.returncode == 0 and "Forgot the OAuth tokens of 'remote'" in err, err
    assert "remote" not in json.loads(hub.store.read_text())["servers"]


def test_login_to_an_unknown_server_names_the_servers_there_are(hub):
    login = hub.cli("login", "nope")
    _, err = login.communicate(timeout=30)
    assert login.returncode == 1 and "has no server 'nope' (it has: remote, local)" in err, err


def test_login_to_a_stdio_server_is_refused_with_a_reason(hub):
    login = hub.cli("login", "local")
    _, err = login.communicate(timeout=30)
    assert login.returncode == 1 and "'local' is a stdio server" in err, err


def admin_client(hub: Hub) -> httpx2.Client:
    """An admin UI session (cookie and CSRF token) on the hub's proxy."""
    admin = httpx2.Client(base_url=hub.origin, timeout=30)
    r = admin.post("/admin/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 200, r.text
    admin.headers["X-CSRF-Token"] = r.json()["csrfToken"]
    return admin


@pytest.fixture
def admin_hub(tmp_path, protected):
    hub = Hub(tmp_path, protected, ENABLE_ADMIN_UI="true", ADMIN_PASSWORD=ADMIN_PASSWORD)
    yield hub
    hub.stop()


def test_the_admin_ui_authorizes_a_server_and_comes_back_to_the_admin_page(admin_hub):
    hub = admin_hub
    hub.wait_state("remote", "needs_login")
    with closing(admin_client(hub)) as admin:
        r = admin.post("/admin/server/authorize/remote")
        assert r.status_code == 200, r.text
        url = r.json()["url"]
        callback = f"{hub.origin}/admin/oauth/callback"
        assert callback_params(url)["redirect_uri"] == callback
        final = drive_login(url, user="carol", redirect_prefix=callback)
        # The browser's way back carries no admin cookie (SameSite=Strict): the state alone finds the login.
        back = httpx2.get(final, timeout=30, follow_redirects=False)
        assert back.status_code == 303 and back.headers["location"] == "/admin/?authorized=remote", back.text
        again = httpx2.get(final, timeout=30)
        assert again.status_code == 400 and "unknown or expired" in again.text, "a login is finished once"
        assert admin.post("/admin/server/authorize/nope").status_code == 404
    hub.wait_state("remote", "connected")
    results = {}

    async def whoami():
        _, who = await call(hub, "remote__whoami", {})
        results["who"] = only_text(who)

    run(whoami)
    assert results["who"].startswith("sub=carol"), results["who"]
    assert "registrations" not in json.loads(hub.store.read_text()) or not json.loads(hub.store.read_text())["registrations"]


def test_a_callback_with_an_unknown_state_changes_nothing(admin_hub):
    r = httpx2.get(f"{admin_hub.origin}/admin/oauth/callback?code=x&state=forged", timeout=10)
    assert r.status_code == 400 and "unknown or expired" in r.text
    assert not admin_hub.store.exists()


def test_an_authorization_server_that_takes_client_metadata_documents_gets_the_proxys_url_as_client_id(tmp_path):
    """CIMD: the proxy serves its client metadata document (over HTTPS, the test CA) and logs in with its
    URL as the client id; nothing is registered."""
    cimd_issuer = AuthorizationServer(tmp_path, CIMD="1", NODE_EXTRA_CA_CERTS=str(TLS / "ca.pem"))
    servers = protected_server(tmp_path, cimd_issuer)
    protected_url = next(servers)
    port = free_port()
    document = f"https://127.0.0.1:{port}/oauth-client.json"
    hub = Hub(tmp_path, protected_url, port=port, MCP_PROXY_OAUTH_CLIENT_METADATA_URL=document,
              MCP_PROXY_TLS_CERT=str(TLS / "server.pem"), MCP_PROXY_TLS_KEY=str(TLS / "server.key"))
    try:
        assert cimd_issuer.metadata.get("client_id_metadata_document_supported") is True
        served = httpx2.get(document, verify=TEST_CA, timeout=10).json()
        assert served["client_id"] == document and "http://127.0.0.1/callback" in served["redirect_uris"]
        hub.wait_state("remote", "needs_login")
        hub.login()
        stored = json.loads(hub.store.read_text())
        assert stored["servers"]["remote"]["client"]["client_id"] == document
        assert stored.get("registrations", {}) == {}, "nothing was registered"
        hub.wait_state("remote", "connected")
    finally:
        hub.stop()
        servers.close()
        cimd_issuer.stop()


def test_a_login_after_the_server_wanted_more_scope_asks_for_it_with_the_scope_granted(hub):
    hub.wait_state("remote", "needs_login")
    hub.login()
    stored = json.loads(hub.store.read_text())
    # What the proxy records on a 403 insufficient_scope (tested with a real 403 in src/backend).
    stored["servers"]["remote"]["wanted_scope"] = "mcp:admin"
    hub.store.write_text(json.dumps(stored))
    login = hub.cli("login", "remote")
    try:
        url = next(line.strip() for line in login.stderr if line.startswith("  http"))
        assert callback_params(url)["scope"] == "mcp:tools mcp:admin", url
    finally:
        login.kill()
        login.wait(10)
