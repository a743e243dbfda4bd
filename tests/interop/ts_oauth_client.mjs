// The official MCP TypeScript SDK as an OAuth client of the proxy: its StreamableHTTPClientTransport with
// an OAuthClientProvider, the login and consent at oidc-provider driven headlessly (as oauth_peers.py
// does). Used by test_oauth_frontend.py:
//
//   NODE_PATH=.deps/node/node_modules node ts_oauth_client.mjs PROXY_URL ACCESS_TTL_SECONDS
//
// 1. connect: 401 -> the SDK reads the proxy's protected resource metadata, the authorization server's
//    metadata, registers (DCR), redirects (PKCE, resource); the "user" logs in, state and iss are checked
//    (RFC 9207: this SDK version leaves that to the app), finishAuth(code), reconnect; list and call tools;
// 2. after the access token expires the next call still works: the SDK refreshes, no new login.
// Prints one JSON line: {tools, echo, afterExpiry, logins, refreshed}.
import { createRequire } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';

const require = createRequire(`${process.env.NODE_PATH}/`);
const sdk = (path) => import(require.resolve(`@modelcontextprotocol/sdk/${path}`));
const { Client } = await sdk('client/index.js');
const { StreamableHTTPClientTransport } = await sdk('client/streamableHttp.js');
const { UnauthorizedError } = await sdk('client/auth.js');

const [proxyUrl, ttl] = [process.argv[2], Number(process.argv[3])];
const REDIRECT = 'http://127.0.0.1:33419/callback';

// The browser: GET, follow redirects keeping cookies, POST the login form, then the consent form.
async function driveLogin(authorizationUrl) {
  const jar = new Map();
  const send = async (url, init = {}) => {
    const headers = { ...(init.headers || {}), cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') };
    const r = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const cookie of r.headers.getSetCookie()) {
      const [pair] = cookie.split(';');
      const eq = pair.indexOf('=');
      jar.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
    return r;
  };
  let url = authorizationUrl;
  for (let step = 0; step < 20; step++) {
    let r = await send(url);
    while (r.status === 302 || r.status === 303) {
      url = new URL(r.headers.get('location'), url).href;
      if (url.startsWith(REDIRECT)) return url;
      r = await send(url);
    }
    const html = await r.text();
    const action = /<form[^>]*action="([^"]+)"[^>]*method="post"/i.exec(html);
    const prompt = /name="prompt" value="([a-z]+)"/.exec(html);
    if (r.status !== 200 || !action || !prompt) throw new Error(`no interaction form at ${url}: ${r.status}`);
    const form = new URLSearchParams({ prompt: prompt[1] });
    if (prompt[1] === 'login') {
      form.set('login', 'bob');
      form.set('password', 'any');
    }
    r = await send(new URL(action[1], url).href, {
      method: 'POST', body: form, headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    url = new URL(r.headers.get('location'), url).href;
    if (url.startsWith(REDIRECT)) return url;
  }
  throw new Error('too many interaction steps');
}

class HeadlessProvider {
  logins = 0;
  get redirectUrl() { return REDIRECT; }
  get clientMetadata() {
    return {
      client_name: 'ts-interop', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'], token_endpoint_auth_method: 'none', application_type: 'native',
    };
  }
  state() { this.expectedState = crypto.randomUUID(); return this.expectedState; }
  clientInformation() { return this.info; }
  saveClientInformation(info) { this.info = info; this.issuer = info.issuer; }
  tokens() { return this.saved; }
  saveTokens(tokens) { this.saved = tokens; }
  saveCodeVerifier(verifier) { this.verifier = verifier; }
  codeVerifier() { return this.verifier; }
  invalidateCredentials(scope) { if (scope === 'all' || scope === 'tokens') this.saved = undefined; }
  async redirectToAuthorization(url) {
    this.logins += 1;
    const back = new URL(await driveLogin(url.href)).searchParams;
    if (!back.get('code')) throw new Error(`the authorization server sent no code: ${back}`);
    if (back.get('state') !== this.expectedState) throw new Error('state mismatch');
    const metadata = await (await fetch(new URL('/.well-known/oauth-authorization-server', url))).json();
    if (back.get('iss') !== metadata.issuer) throw new Error(`iss ${back.get('iss')} is not ${metadata.issuer}`);
    this.code = back.get('code');
  }
}

const provider = new HeadlessProvider();
const client = new Client({ name: 'ts-interop', version: '0.0.0' });
const transport = () => new StreamableHTTPClientTransport(new URL(proxyUrl), { authProvider: provider });
const first = transport();
try {
  await client.connect(first);
} catch (e) {
  if (!(e instanceof UnauthorizedError)) throw e;
  await first.finishAuth(provider.code);
  await client.connect(transport());
}
const text = (result) => result.content[0].text;
const tools = (await client.listTools()).tools.map((t) => t.name);
const echo = text(await client.callTool({ name: 'mock__echo', arguments: { text: 'hi' } }));
const before = provider.saved.access_token;
await sleep((ttl + 1) * 1000);
const afterExpiry = text(await client.callTool({ name: 'mock__echo', arguments: { text: 'later' } }));
await client.close();
console.log(JSON.stringify({
  tools: tools.includes('mock__echo'), echo, afterExpiry, logins: provider.logins, refreshed: provider.saved.access_token !== before,
}));
