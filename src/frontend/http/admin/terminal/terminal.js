// The web terminal page: xterm.js on top of the proxy's terminal API (SSE out, POST in).
import { Terminal } from "/admin/terminal/xterm.mjs";
import { FitAddon } from "/admin/terminal/addon-fit.mjs";

const $ = (id) => document.getElementById(id);
const status = (text) => { $("status").textContent = text; };
let csrf = "";
let termId = new URLSearchParams(location.search).get("id");
let source = null;

async function api(method, path, body) {
  const res = await fetch(path, {
    method, credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) { location.href = "/admin/"; throw new Error("not logged in"); }
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status}`);
  const text = await res.text();
  return text ? JSON.parse(text) : {};
}

const term = new Terminal({ cursorBlink: true, convertEol: false, fontSize: 14, theme: { background: "#1e1e1e" } });
const fit = new FitAddon();
term.loadAddon(fit);
term.open($("term"));
fit.fit();

// Keystrokes are sent in small batches, one POST at a time: keys typed while a POST is on its way wait
// for it, so they can never reach the shell out of order.
let pending = "", timer = null, sending = false;
term.onData((data) => {
  pending += data;
  if (!timer && !sending) timer = setTimeout(flush, 8);
});
async function flush() {
  timer = null;
  if (sending || !pending || !termId) return;
  const input = pending; pending = "";
  sending = true;
  try {
    await api("POST", `/admin/terminal/${termId}/input`, { input });
  } catch (e) {
    status(e.message);
  } finally {
    sending = false;
    if (pending) flush();
  }
}

let resizeTimer = null;
function sendSize() {
  fit.fit();
  if (termId) api("POST", `/admin/terminal/${termId}/resize`, { cols: term.cols, rows: term.rows }).catch(() => {});
}
window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(sendSize, 200); });

function attach(id) {
  termId = id;
  history.replaceState(null, "", `?id=${encodeURIComponent(id)}`);
  if (source) source.close();
  term.reset();
  status("Connecting…");
  source = new EventSource(`/admin/terminal/${id}/output`);
  source.addEventListener("connected", () => { status("Connected"); sendSize(); term.focus(); });
  source.addEventListener("output", (e) => term.write(JSON.parse(e.data)));
  source.addEventListener("exit", (e) => {
    const exit = JSON.parse(e.data);
    status(`Exited (code ${exit.exitCode ?? "?"})`);
    source.close();
    refreshList();
  });
  source.onerror = () => status("Disconnected");
  refreshList();
}

async function start() {
  const { termId: id } = await api("POST", "/admin/terminal/start", { cols: term.cols, rows: term.rows });
  attach(id);
}

async function refreshList() {
  const { terminals } = await api("GET", "/admin/terminal/list");
  const select = $("sessions");
  select.replaceChildren(...terminals.map((t) => {
    const option = document.createElement("option");
    option.value = t.id;
    option.textContent = `${t.id.slice(0, 8)} (pid ${t.pid})`;
    option.selected = t.id === termId;
    return option;
  }));
  select.hidden = terminals.length === 0;
}

$("sessions").addEventListener("change", (e) => attach(e.target.value));
$("new").addEventListener("click", () => start().catch((e) => status(e.message)));
$("kill").addEventListener("click", async () => {
  if (!termId || !confirm("Kill this terminal and everything running in it?")) return;
  await api("DELETE", `/admin/terminal/${termId}`).catch((e) => status(e.message));
  termId = null;
  if (source) source.close();
  status("Killed");
  refreshList();
});

(async () => {
  try {
    csrf = (await api("GET", "/admin/session")).csrfToken;
    const { terminals } = await api("GET", "/admin/terminal/list");
    if (termId && terminals.some((t) => t.id === termId)) attach(termId);
    else await start();
  } catch (e) {
    status(e.message);
  }
})();
