// The admin UI in a real headless Chromium, against the real proxy binary (node --test tests/e2e/).
//
// The proxy ($MCP_PROXY_BIN, default target/debug/mcp-proxy-server) runs with the admin UI and the web
// terminal on and one mock backend (tests/fixtures/mock_server.py, key "mock"). Chromium
// (/usr/bin/chromium, $CHROMIUM to override) is started here with a fresh profile and driven over CDP by
// playwright-core (pinned, in .deps/node: scripts/install-test-deps.sh), which downloads no browser.
//
// Screenshots go to target/e2e-artifacts/. Every wait has a timeout, and the proxy and the browser are
// killed (by process group) whatever happens.

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
const STEP = 20_000; // ms: the longest any one thing may take
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

let workDir, proxy, proxyLog = "", base, browser, chrome, chromeLog = "", context;
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
  for (const child of [chrome, proxy]) {
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

before(async () => {
  assert.ok(fs.existsSync(PROXY_BIN), `no proxy binary at ${PROXY_BIN} (cargo build, or set MCP_PROXY_BIN)`);
  assert.ok(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (bash scripts/install-test-deps.sh)`);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), "mcp-admin-e2e-"));
  const config = path.join(workDir, "mcp_server.json");
  const mock = (key) => ({ command: "python3", args: [MOCK_SERVER, "--name", key] });
  // "pkg" is installable; its install fails at its second command.
  const pkg = { ...mock("pkg"), installCommands: ["echo installing-pkg", "echo broken >&2; exit 3"] };
  fs.writeFileSync(config, JSON.stringify({ mcpServers: { mock: mock("mock"), pkg } }, null, 2));

  const env = { ...process.env };
  for (const name of Object.keys(env)) {
    if (/^(MCP_PROXY_|ADMIN_|ALLOWED_|TERMINAL_|LOGGING$|RUST_LOG$|HOST$|PORT$|TOOLS_FOLDER$|NODE_ENV$)/.test(name)) delete env[name];
  }
  Object.assign(env, {
    ENABLE_ADMIN_UI: "true", ADMIN_USERNAME: USER, ADMIN_PASSWORD: PASSWORD,
    ENABLE_WEB_TERMINAL: "true", SHELL: "/bin/sh", HOME: workDir, TOOLS_FOLDER: path.join(workDir, "tools"),
    MCP_PROXY_CONFIG_POLL: "0", MCP_PROXY_SHUTDOWN_GRACE: "1", LOGGING: "info",
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
  try { if (browser) await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5000))]); } catch { /* killed below */ }
  await killGroup(chrome);
  await killGroup(proxy);
  if (workDir) fs.rmSync(workDir, { recursive: true, force: true });
  // The proxy's log, for when a step failed.
  fs.writeFileSync(path.join(ARTIFACTS, "proxy.log"), proxyLog);
}, { timeout: 30_000 });

test("log in and see the mock server connected", { timeout: 60_000 }, async () => {
  const page = await newPage();
  await page.goto(base + "/admin/");
  await page.locator("#login [name=username]").fill(USER);
  await page.locator("#login [name=password]").fill(PASSWORD);
  await page.locator("#login button").click();
  await page.locator("#v-servers").waitFor({ state: "visible" });
  const card = serverCard(page, "mock");
  // The status is polled every 5 s: the backend may still be starting at the first poll.
  await card.locator(".badge.st-connected").waitFor({ state: "visible", timeout: 30_000 });
  assert.equal((await card.locator(".badge.st-connected").textContent()).trim(), "connected");
  await page.close();
});

test("servers page on a 390x844 phone screen", { timeout: 60_000 }, async () => {
  const page = await newPage({ width: 390, height: 844 });
  await page.goto(base + "/admin/#servers");
  await serverCard(page, "mock").locator(".badge.st-connected").waitFor({ state: "visible", timeout: 30_000 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  await page.screenshot({ path: path.join(ARTIFACTS, "servers-390x844.png"), fullPage: true });
  assert.ok(overflow <= 0, `the servers page scrolls sideways on a phone by ${overflow}px`);
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

test("no script errors and no failed loads on any page", () => {
  assert.deepEqual(pageErrors, []);
  // Expected: the page asks for the session before anyone has logged in.
  const unexpected = failedLoads.filter((l) => l !== "GET /admin/session: 401");
  assert.deepEqual(unexpected, []);
});
