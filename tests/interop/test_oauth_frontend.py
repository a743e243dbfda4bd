"""Interop: OAuth clients let into the proxy by access tokens from a real authorization server.

The proxy runs with ``MCP_PROXY_OAUTH_ISSUER`` / ``MCP_PROXY_OAUTH_RESOURCE`` in front of the mock
backend; the authorization server is npm ``oidc-provider`` (tests/fixtures/oauth_as.mjs: dynamic client
registration, PKCE, resource indicators, JWT access tokens, refresh tokens, revocation, introspection),
its login and consent pages driven headlessly (oauth_peers.py). The clients are the official Python SDK's
``OAuthClientProvider`` and the TypeScript SDK's ``StreamableHTTPClientTransport`` with an auth provider
(``ts_oauth_client.mjs``): each discovers the proxy's protected resource metadata from its 401,
registers, logs in and calls tools, and goes on after its access token expires (refreshed, no new login).
Tokens that are not for this proxy get 401 each for its own reason; too few scopes get 403; opaque tokens
are introspected; static API keys keep working beside OAuth; no token reaches the proxy's log.
"""

import json
from contextlib import asynccontextmanager
import shutil
import subprocess
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client, ClientSession
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from oauth_peers import REDIRECT, AuthorizationServer, callback_params, drive_login
from peers import DEPS, PYTHON, REPO, HttpProxy, free_port, only_text, proxy_env, require, run, write_config

ACCESS_TTL_S = 4
API_KEY = "oauth-test-static-key"
TS_CLIENT = Path(__file__).with_name("ts_oauth_client.mjs")
MCP = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "probe", "version": "0"}}}


def mock_backend() -> dict:
    return {"mock": {"command": require(PYTHON, "run scripts/install-test-deps.sh"),
                     "args": [str(REPO / "tests/fixtures/mock_server.py"), "--name", "mock"]}}


def protected_proxy(folder: Path, issuer: str, scheme: str = "http", **settings: str) -> HttpProxy:
    """The proxy on a port chosen beforehand, since its URL is the resource its tokens must name."""
    port = free_port()
    env = proxy_env(MCP_PROXY_OAUTH_ISSUER=issuer, MCP_PROXY_OAUTH_RESOURCE=f"{scheme}://127.0.0.1:{port}/mcp",
                    MCP_PROXY_OAUTH_LEEWAY="0", **settings)
    return HttpProxy(write_config(folder, mock_backend()), env, port=port)


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory) -> str:
    """Signing keys shared by two authorization servers, so their tokens differ only in `iss`."""
    return str(tmp_path_factory.mktemp("keys") / "jwks.json")


@pytest.fixture(scope="module")
def issuer(tmp_path_factory, keys_file):
    server = AuthorizationServer(tmp_path_factory.mktemp("as"), ACCESS_TTL=str(ACCESS_TTL_S), JWKS_FILE=keys_file,
                                 SCOPES="mcp:tools mcp:admin")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory, issuer):
    proxy = protected_proxy(tmp_path_factory.mktemp("proxy"), issuer.issuer, ALLOWED_KEYS=API_KEY, MCP_PROXY_OAUTH_SCOPES="mcp:tools")
    yield proxy
    proxy.stop()


def post(url: str, token: str | None = None, **headers: str) -> httpx2.Response:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return httpx2.post(url, json=INITIALIZE, headers=MCP | headers, timeout=10)


def test_the_metadata_names_the_proxy_and_its_authorization_server(proxy, issuer):
    origin = proxy.url.removesuffix("/mcp")
    for path in ("/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"):
        r = httpx2.get(origin + path, timeout=10)
        assert r.status_code == 200, (path, r.text)
        assert r.json()["resource"] == proxy.url
        assert r.json()["authorization_servers"] == [issuer.issuer]
        assert r.json()["scopes_supported"] == ["mcp:tools"]
    assert httpx2.get(origin + "/.well-known/oauth-protected-resource/nope", timeout=10).status_code == 404


def test_a_request_without_a_token_gets_401_naming_the_metadata(proxy):
    r = post(proxy.url)
    assert r.status_code == 401
    challenge = r.headers["www-authenticate"]
    metadata = proxy.url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
    assert f'Bearer resource_metadata="{metadata}", scope="mcp:tools"' in challenge, challenge
    assert 'ApiKey header="X-Api-Key"' in challenge, "the static keys are offered too"


class MemoryStorage(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class HeadlessUser:
    """The SDK's redirect and callback handlers, the browser being drive_login."""

    def __init__(self) -> None:
        self.logins = 0
        self.last: dict[str, str] = {}

    async def redirect(self, authorization_url: str) -> None:
        self.logins += 1
        self.last = callback_params(await anyio.to_thread.run_sync(drive_login, authorization_url))

    async def callback(self) -> AuthorizationCodeResult:
        return AuthorizationCodeResult(code=self.last["code"], state=self.last.get("state"), iss=self.last.get("iss"))


def sdk_auth(url: str) -> tuple[OAuthClientProvider, HeadlessUser, MemoryStorage]:
    """The Python SDK's OAuth client for `url`, with a headless user and tokens kept in memory."""
    user, storage = HeadlessUser(), MemoryStorage()
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(client_name="interop", redirect_uris=[REDIRECT], response_types=["code"],
                                            grant_types=["authorization_code", "refresh_token"], token_endpoint_auth_method="none"),
        storage=storage, redirect_handler=user.redirect, callback_handler=user.callback)
    return provider, user, storage


@asynccontextmanager
async def oauth_session(url: str, provider: OAuthClientProvider):
    """An initialized Python SDK session on `url` whose HTTP client logs in through `provider`."""
    async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def test_the_python_sdk_logs_in_and_calls_tools_and_goes_on_after_its_token_expires(proxy):
    provider, user, storage = sdk_auth(proxy.url)

    async def scenario():
        async with oauth_session(proxy.url, provider) as session:
            assert "mock__echo" in [t.name for t in (await session.list_tools()).tools]
            assert only_text(await session.call_tool("mock__echo", {"text": "hi"})) == "hi"
            first = storage.tokens.access_token
            await anyio.sleep(ACCESS_TTL_S + 1)
            # The same session, a refreshed token: the token's holder, not the token, owns it.
            assert only_text(await session.call_tool("mock__echo", {"text": "later"})) == "later"
            assert storage.tokens.access_token != first and user.logins == 1

    run(scenario)
    assert storage.client_info.client_id, "registered dynamically"
    log = proxy.log.read_text()
    assert storage.tokens.access_token not in log and storage.tokens.refresh_token not in log


def test_a_2026_07_28_client_without_sessions_logs_in_and_calls_tools(proxy):
    provider, user, _ = sdk_auth(proxy.url)

    async def scenario():
        async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
            async with Client(streamable_http_client(proxy.url, http_client=http), mode="2026-07-28") as client:
                assert client.protocol_version == "2026-07-28"
                for text in ("one", "two", "three"):
                    assert only_text(await client.call_tool("mock__echo", {"text": text})) == text
        assert user.logins == 1

    run(scenario)


def test_the_python_sdk_logs_in_to_the_proxy_over_https(tmp_path, issuer, monkeypatch):
    """What a hosted connector needs: the proxy on https (the test CA), tokens from the same server."""
    tls = REPO / "tests/fixtures/tls"
    monkeypatch.setenv("SSL_CERT_FILE", str(tls / "ca.pem"))
    proxy = protected_proxy(tmp_path, issuer.issuer, scheme="https", MCP_PROXY_OAUTH_SCOPES="mcp:tools",
                            MCP_PROXY_TLS_CERT=str(tls / "server.pem"), MCP_PROXY_TLS_KEY=str(tls / "server.key"))
    provider, user, _ = sdk_auth(proxy.url)

    async def scenario():
        async with oauth_session(proxy.url, provider) as session:
            assert only_text(await session.call_tool("mock__echo", {"text": "secure"})) == "secure"

    try:
        assert proxy.url.startswith("https://")
        run(scenario)
        assert user.logins == 1
    finally:
        proxy.stop()


def test_the_typescript_sdk_logs_in_and_calls_tools_and_goes_on_after_its_token_expires(proxy):
    node = require(shutil.which("node"), "node must be on PATH")
    done = subprocess.run([node, str(TS_CLIENT), proxy.url, str(ACCESS_TTL_S)], capture_output=True, text=True, timeout=120,
                          env={"NODE_PATH": str(DEPS / "node/node_modules"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"tools": True, "echo": "hi", "afterExpiry": "later", "logins": 1, "refreshed": True}, report


def refused(proxy: HttpProxy, token: str) -> str:
    r = post(proxy.url, token)
    assert r.status_code == 401, r.text
    challenge = r.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge and "resource_metadata=" in challenge, challenge
    return challenge


def test_a_token_for_another_resource_is_refused(proxy, issuer):
    token, _ = issuer.access_token("http://127.0.0.1:1/mcp")
    assert "not made out to this resource (aud)" in refused(proxy, token)


def test_a_token_from_another_issuer_with_the_same_keys_is_refused(proxy, tmp_path, keys_file):
    other = AuthorizationServer(tmp_path, JWKS_FILE=keys_file)
    try:
        token, _ = other.access_token(proxy.url)
    finally:
        other.stop()
    assert "issued by another issuer" in refused(proxy, token)


def test_a_tampered_token_is_refused(proxy, issuer):
    token, _ = issuer.access_token(proxy.url)
    header, claims, signature = token.split(".")
    assert post(proxy.url, token).status_code == 200
    forged = f"{header}.{claims}.{signature[:-4]}{'AAAA' if not signature.endswith('AAAA') else 'BBBB'}"
    assert "bad signature" in refused(proxy, forged)


def test_an_expired_token_is_refused(proxy, issuer):
    token, _ = issuer.access_token(proxy.url)
    assert post(proxy.url, token).status_code == 200
    time.sleep(ACCESS_TTL_S + 1)
    assert "expired" in refused(proxy, token)


def test_a_token_signed_with_rs256_is_accepted(tmp_path, keys_file):
    rsa_issuer = AuthorizationServer(tmp_path, ACCESS_ALG="RS256", JWKS_FILE=keys_file)
    proxy = protected_proxy(tmp_path, rsa_issuer.issuer)
    try:
        token, _ = rsa_issuer.access_token(proxy.url)
        assert post(proxy.url, token).status_code == 200
    finally:
        proxy.stop()
        rsa_issuer.stop()


def test_a_token_without_a_needed_scope_gets_403(tmp_path, issuer):
    proxy = protected_proxy(tmp_path, issuer.issuer, MCP_PROXY_OAUTH_SCOPES="mcp:tools mcp:admin")
    try:
        narrow, _ = issuer.access_token(proxy.url, scope="mcp:tools")
        r = post(proxy.url, narrow)
        assert r.status_code == 403, r.text
        assert 'error="insufficient_scope", scope="mcp:tools mcp:admin"' in r.headers["www-authenticate"]
        wide, _ = issuer.access_token(proxy.url, scope="mcp:tools mcp:admin")
        assert post(proxy.url, wide).status_code == 200
    finally:
        proxy.stop()


def test_static_keys_work_beside_oauth(proxy):
    assert post(proxy.url, **{"X-Api-Key": API_KEY}).status_code == 200
    assert post(proxy.url, **{"X-Api-Key": "wrong"}).status_code == 401


def test_opaque_tokens_are_introspected_and_a_revoked_one_is_refused(tmp_path):
    opaque = AuthorizationServer(tmp_path, TOKEN_FORMAT="opaque")
    proxy = protected_proxy(tmp_path, opaque.issuer, MCP_PROXY_OAUTH_INTROSPECTION_CLIENT_ID="introspector",
                            MCP_PROXY_OAUTH_INTROSPECTION_CLIENT_SECRET="introspector-secret")
    try:
        token, _ = opaque.access_token(proxy.url)
        assert "." not in token, "an opaque token"
        assert post(proxy.url, token).status_code == 200
        revoked, client_id = opaque.access_token(proxy.url)
        opaque.revoke(revoked, client_id)
        assert "not active" in refused(proxy, revoked)
        assert "introspector-secret" not in proxy.log.read_text()
    finally:
        proxy.stop()
        opaque.stop()
