'use strict';
// MCP proxy admin UI: plain JS, no dependencies. All data goes into the DOM as text (never innerHTML).
const $ = (s, r = document) => r.querySelector(s);
const $$ = (s, r = document) => [...r.querySelectorAll(s)];
const isObj = v => v !== null && typeof v === 'object' && !Array.isArray(v);
const clone = v => JSON.parse(JSON.stringify(v));
const NAME_RE = /^[a-zA-Z0-9_-]{1,64}$/;
const VIEWS = ['servers', 'tools', 'logs'];
const S = { csrf: '', view: '', cfg: null, saved: '', savedCfg: null, sProbs: {}, sGlobal: [], status: {}, cards: {},
  rows: null, groups: [], tCfg: null, logs: [], logSig: '', inst: {}, instKey: '', es: null, last: {} };

function h(tag, p, ...kids) {
  const e = document.createElement(tag);
  for (const k in p || {}) {
    const v = p[k];
    if (v == null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (typeof v !== 'string' && k in e) e[k] = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of kids.flat()) if (c != null && c !== false) e.append(c);
  return e;
}

function toast(msg, kind = 'ok') {
  const box = $('#toasts');
  const t = h('div', { class: 'toast ' + kind, role: kind === 'err' ? 'alert' : 'status', onclick: () => t.remove() }, msg);
  box.append(t);
  while (box.children.length > 4) box.firstChild.remove();
  setTimeout(() => t.remove(), kind === 'err' ? 10000 : 4500);
}

async function api(method, path, body, retried) {
  const o = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (method !== 'GET' && path !== '/admin/login') o.headers['X-CSRF-Token'] = S.csrf;
  if (body !== undefined) { o.headers['Content-Type'] = 'application/json'; o.body = JSON.stringify(body); }
  let r;
  try { r = await fetch(path, o); } catch (e) { throw Object.assign(new Error('network error (' + e.message + ')'), { status: 0, data: {} }); }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) {
    if (r.ok) throw Object.assign(new Error('the answer of ' + path + ' is not valid JSON (' + e.message + ')'), { status: r.status, data: {} });
  }
  if (r.status === 401 && path !== '/admin/login' && path !== '/admin/session') expired();
  if (r.status === 403 && !retried && S.csrf && /csrf/i.test(text)) {
    try { S.csrf = (await api('GET', '/admin/session')).csrfToken; return api(method, path, body, true); } catch (e) { /* fall through */ }
  }
  if (!r.ok) {
    const e = new Error((data && (data.error || data.message)) || 'HTTP ' + r.status);
    e.status = r.status; e.data = isObj(data) ? data : {};
    throw e;
  }
  return data;
}
const fail = (what, e) => { if (e.status !== 401) toast(what + ': ' + e.message, 'err'); };

// ---------- session and navigation ----------
function showLogin(msg) {
  $$('main>section').forEach(s => { s.hidden = s.id !== 'v-login'; });
  $('#nav').hidden = $('#logout').hidden = true;
  $('#who').textContent = '';
  $('#savebar').hidden = true;
  $('#login-err').textContent = msg || '';
  setTimeout(() => $('#login [name=username]').focus(), 0);
}
function expired() {
  if (!S.csrf) return;
  S.csrf = '';
  if (S.es) { S.es.close(); S.es = null; }
  showLogin('Your session has ended. Sign in again; unsaved changes are kept.');
}
function start(user) {
  $('#nav').hidden = $('#logout').hidden = false;
  $('#who').textContent = user || '';
  sse();
  S.view = '';
  route();
}
$('#login').addEventListener('submit', async ev => {
  ev.preventDefault();
  const f = ev.target, err = $('#login-err'), b = $('button', f);
  err.textContent = ''; b.disabled = true;
  try {
    const d = await api('POST', '/admin/login', { username: f.username.value, password: f.password.value });
    S.csrf = d && d.csrfToken;
    if (!S.csrf) S.csrf = (await api('GET', '/admin/session')).csrfToken;
    f.password.value = '';
    start(f.username.value);
  } catch (e) {
    err.textContent = e.status === 401 ? 'Invalid username or password.'
      : e.status === 429 ? (e.data.error || 'Too many login attempts; try again later.') : 'Sign-in failed: ' + e.message;
    f.password.select();
  } finally { b.disabled = false; }
});
$('#logout').onclick = async () => {
  if ((sDirty() || tDirty()) && !confirm('You have unsaved changes. Discard them and log out?')) return;
  try { await api('POST', '/admin/logout'); } catch (e) { if (e.status !== 401) return fail('Logout failed', e); }
  S.csrf = ''; S.cfg = null; S.rows = null; S.view = '';
  if (S.es) { S.es.close(); S.es = null; }
  showLogin();
  toast('Logged out.');
};

const dirty = v => v === 'servers' ? sDirty() : v === 'tools' ? tDirty() : false;
function route() {
  if (!S.csrf) return;
  let v = location.hash.slice(1);
  if (!VIEWS.includes(v)) v = 'servers';
  if (S.view && S.view !== v && dirty(S.view)) toast('Unsaved changes on ' + S.view + ' are kept; save or discard them there.', 'warn');
  S.view = v;
  $$('main>section').forEach(s => { s.hidden = s.id !== 'v-' + v; });
  $$('#nav a').forEach(a => { if (a.dataset.v === v) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current'); });
  if (v === 'servers') loadServers();
  else if (v === 'tools') loadTools();
  else loadLogs(true);
  updDirty();
}
addEventListener('hashchange', route);
addEventListener('beforeunload', e => { if (S.csrf && (sDirty() || tDirty())) { e.preventDefault(); e.returnValue = ''; } });
function updDirty() {
  $$('#nav a').forEach(a => a.classList.toggle('dirty', dirty(a.dataset.v)));
  $('#savebar').hidden = !S.csrf || !dirty(S.view);
}
$('#save').onclick = () => (S.view === 'servers' ? saveServers() : saveTools());
$('#discard').onclick = () => {
  if (!confirm('Discard all unsaved changes on this page?')) return;
  if (S.view === 'servers') loadServers(true); else loadTools(true);
};
// Polling: status every 5 s on Servers, logs every 3 s on Logs, only while the page is visible.
setInterval(() => {
  if (!S.csrf || document.hidden) return;
  const now = Date.now();
  if (S.view === 'servers' && now - (S.last.status || 0) >= 5000) pollStatus();
  if (S.view === 'logs' && now - (S.last.logs || 0) >= 3000) loadLogs();
}, 500);
document.addEventListener('visibilitychange', () => { S.last = {}; });

// ---------- servers ----------
const sDirty = () => !!S.cfg && JSON.stringify(S.cfg) !== S.saved;
const isActive = o => !(o.active === false || o.active === 'false');
function typeOf(o) {
  const t = String(o.type || '').toLowerCase().replace(/[-_]/g, '');
  if (t === 'stdio' || t === 'sse') return t;
  if (t === 'http' || t === 'streamablehttp') return 'http';
  return o.url != null && o.command == null ? 'sse' : 'stdio';
}
async function loadServers(force) {
  if (S.cfg && sDirty() && !force) { renderServers(); pollStatus(); return; }
  try {
    let c;
    try { c = await api('GET', '/admin/config'); } catch (e) {
      if (e.status !== 404) throw e;
      c = { mcpServers: {} };
      toast('No configuration file yet; saving creates it.', 'warn');
    }
    if (!isObj(c)) throw new Error('mcp_server.json is not a JSON object');
    if (!force && sDirty()) return renderServers();
    if (!isObj(c.mcpServers)) c.mcpServers = {};
    S.cfg = c; S.saved = JSON.stringify(c); S.savedCfg = clone(c); S.sProbs = {}; S.sGlobal = [];
  } catch (e) { fail('Loading the configuration failed', e); }
  renderServers();
  pollStatus();
}
async function pollStatus() {
  if (S.busyS) return;
  S.busyS = true; S.last.status = Date.now();
  try {
    const d = await api('GET', '/admin/status');
    S.status = {};
    for (const b of d.backends || []) S.status[b.key] = b;
    const n = (d.backends || []).filter(b => b.state === 'connected').length;
    $('#s-sum').textContent = `${n} of ${(d.backends || []).length} connected · ${d.sessions || 0} client sessions` + (d.version ? ' · v' + d.version : '');
  } catch (e) { $('#s-sum').textContent = e.status === 401 ? '' : 'Status unavailable: ' + e.message; }
  finally { S.busyS = false; }
  for (const k in S.cards) fillStatus(k);
}
function fillStatus(k) {
  const c = S.cards[k], s = S.status[k], o = S.cfg && S.cfg.mcpServers[k];
  if (!c || !o) return;
  const saved = S.savedCfg && S.savedCfg.mcpServers[k];
  const st = s ? s.state : !saved ? 'not saved' : !isActive(o) ? 'inactive' : 'unknown';
  c.b.textContent = st;
  c.b.className = 'badge st-' + st.replace(' ', '-');
  const tools = s ? (Array.isArray(s.tools) ? s.tools.length : s.tools) : null;
  c.info.replaceChildren(
    s ? h('span', {}, `Tools ${tools ?? 0} · Restarts ${s.restarts ?? 0}`) : '',
    s && s.lastError ? h('div', { class: 'srv-err' }, s.lastError) : '');
}
function renderServers() {
  const list = $('#s-list'), ms = S.cfg && S.cfg.mcpServers;
  list.replaceChildren(); S.cards = {};
  const pb = $('#s-probs');
  pb.hidden = !S.sGlobal.length;
  pb.replaceChildren(h('strong', {}, 'Problems'), h('ul', {}, S.sGlobal.map(p => h('li', {}, p))));
  if (!ms) list.append(h('p', { class: 'empty' }, 'The configuration could not be loaded.'));
  else if (!Object.keys(ms).length) list.append(h('p', { class: 'empty' }, 'No servers yet. Add one, or import a Claude Desktop JSON block.'));
  else for (const k of Object.keys(ms)) list.append(card(k, ms[k]));
  updDirty();
}
function card(k, o) {
  if (!isObj(o)) o = {};
  const t = typeOf(o), on = isActive(o), old = S.savedCfg && S.savedCfg.mcpServers[k];
  const chg = !old ? 'new' : JSON.stringify(old) !== JSON.stringify(o) ? 'modified' : '';
  const probs = S.sProbs[k] || [];
  const target = t === 'stdio' ? [o.command, ...(Array.isArray(o.args) ? o.args : [])].filter(x => x != null).join(' ') : o.url || '';
  const inst = t === 'stdio' && Array.isArray(o.installCommands) && o.installCommands.length > 0;
  const c = { b: h('span'), info: h('div', { class: 'srv-i muted' }) };
  c.tg = h('input', { type: 'checkbox', checked: on, onchange: e => { setActive(k, e.target.checked); renderServers(); S.cards[k] && S.cards[k].tg.focus(); } });
  S.cards[k] = c;
  const el = h('article', { class: 'card srv' + (on ? '' : ' off') + (probs.length ? ' bad' : '') },
    h('div', { class: 'srv-h' },
      h('div', { class: 'srv-t' }, h('strong', {}, String(o.name || k)), o.name ? h('code', {}, k) : null),
      h('span', { class: 'badge' }, t), chg && h('span', { class: 'badge chg' }, chg), c.b),
    h('div', { class: 'mono target' }, target || '—'),
    c.info,
    probs.length ? h('ul', { class: 'problems' }, probs.map(p => h('li', {}, p))) : null,
    h('div', { class: 'srv-a' },
      h('label', { class: 'chk' }, c.tg, 'Enabled'),
      h('button', { type: 'button', onclick: () => openEdit(k) }, 'Edit'),
      inst && h('button', { type: 'button', onclick: () => install(k, chg) }, 'Install'),
      h('button', { type: 'button', class: 'danger', onclick: () => del(k) }, 'Delete')));
  fillStatus(k);
  return el;
}
function setActive(k, on) {
  const o = S.cfg.mcpServers[k], old = S.savedCfg.mcpServers[k];
  if (!on) o.active = false;
  else if (old && 'active' in old && isActive(old)) o.active = old.active;
  else if (!old || !('active' in old)) delete o.active;
  else o.active = true;
  toast(`${k} will be ${on ? 'enabled' : 'disabled'} on Save & reload.`);
}
function del(k) {
  if (!confirm(`Delete server "${k}"? It stops on Save & reload.`)) return;
  delete S.cfg.mcpServers[k];
  delete S.sProbs[k];
  renderServers();
  toast(`Deleted ${k} (not saved yet).`);
}
function checkAll() {
  const p = {}, add = (k, m) => (p[k] = p[k] || []).push(m);
  for (const [k, o] of Object.entries(S.cfg.mcpServers)) {
    if (!k.trim()) add(k, 'The server key is empty.');
    if (!isObj(o)) { add(k, 'The entry is not a JSON object.'); continue; }
    const t = typeOf(o);
    if (t === 'stdio' && !String(o.command || '').trim()) add(k, 'A stdio server needs a command.');
    if (t !== 'stdio' && !String(o.url || '').trim()) add(k, `An ${t} server needs a url.`);
  }
  return p;
}
function placeProblems(list) {
  S.sProbs = {}; S.sGlobal = [];
  const ms = S.cfg.mcpServers;
  for (const p of list) {
    const m = /server ['"`]([^'"`]+)['"`]/.exec(String(p));
    if (m && m[1] in ms) (S.sProbs[m[1]] = S.sProbs[m[1]] || []).push(String(p)); else S.sGlobal.push(String(p));
  }
}
async function reloadProxy() {
  try { const d = await api('POST', '/admin/server/reload'); toast((d && d.message) || 'Reloaded.'); return true; } catch (e) {
    if (e.status === 400) {
      placeProblems(e.data.details || e.data.problems || [e.message]);
      renderServers();
      toast('Reload failed: ' + e.message + ' See the problems listed.', 'err');
    } else fail('Reload failed', e);
    return false;
  }
}
async function saveServers() {
  const p = checkAll();
  if (Object.keys(p).length) {
    S.sProbs = p; S.sGlobal = []; renderServers();
    return toast('Fix the problems marked in red before saving.', 'err');
  }
  const b = $('#save'); b.disabled = true;
  try {
    const body = S.cfg, snap = JSON.stringify(body);
    await api('POST', '/admin/config', body);
    S.saved = snap; S.savedCfg = JSON.parse(snap); S.sProbs = {}; S.sGlobal = [];
    toast('Configuration saved.');
    renderServers();
    if (await reloadProxy()) { S.rows = tDirty() ? S.rows : null; setTimeout(pollStatus, 800); }
  } catch (e) {
    if (e.status === 400) {
      placeProblems(e.data.problems || [e.message]); renderServers();
      toast('The configuration was rejected; see the problems listed.', 'err');
    } else fail('Saving failed', e);
  } finally { b.disabled = false; updDirty(); }
}
$('#s-reload').onclick = async () => { if (await reloadProxy()) setTimeout(pollStatus, 800); };

// ----- server editor -----
const LINES = ['args', 'installCommands'], KV = ['env', 'headers'];
const STDIO_F = ['command', 'args', 'env', 'cwd', 'installDirectory', 'installCommands'], REMOTE_F = ['url', 'apiKey', 'bearerToken', 'headers'];
const KNOWN = new Set(['type', 'name', 'active', 'namespace', 'timeout', 'tools', 'prompts', 'resources', ...STDIO_F, ...REMOTE_F]);
const str = v => v == null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
function readF(o, f) {
  if (f === 'type') return typeOf(o);
  if (f === 'active') return isActive(o);
  if (f.includes('.')) {
    const [a, b] = f.split('.'), v = isObj(o[a]) ? o[a][b] : null;
    return Array.isArray(v) ? v.join(', ') : str(v);
  }
  const v = o[f];
  if (LINES.includes(f)) return Array.isArray(v) ? v.map(str).join('\n') : str(v);
  if (KV.includes(f)) return isObj(v) ? Object.entries(v).map(([a, b]) => a + '=' + str(b)).join('\n') : str(v);
  return str(v);
}
function writeF(o, f, v) {
  if (f === 'type') { o.type = v; return; }
  if (f === 'active') { if (v) delete o.active; else o.active = false; return; }
  if (f.includes('.')) {
    const [a, b] = f.split('.'), arr = v.split(/[,\n]/).map(s => s.trim()).filter(Boolean);
    if (!isObj(o[a])) o[a] = {};
    if (arr.length) o[a][b] = arr; else delete o[a][b];
    if (!Object.keys(o[a]).length) delete o[a];
    return;
  }
  if (LINES.includes(f)) v = v.split('\n').map(s => s.trim()).filter(Boolean);
  else if (KV.includes(f)) {
    const m = {};
    for (const l of v.split('\n')) if (l.trim()) { const i = l.indexOf('='); m[l.slice(0, i).trim()] = l.slice(i + 1).trim(); }
    v = m;
  } else if (f === 'timeout') v = v.trim() === '' ? '' : Number(v);
  else v = v.trim();
  if (v === '' || (Array.isArray(v) && !v.length) || (isObj(v) && !Object.keys(v).length)) delete o[f]; else o[f] = v;
}
const edF = () => $$('#ed-form [data-f]');
const edVals = () => Object.fromEntries(edF().map(el => [el.dataset.f, el.type === 'checkbox' ? el.checked : el.value]));
function setErr(el, msg) {
  let s = el.parentElement.querySelector('.ferr');
  if (!s) el.parentElement.append(s = h('small', { class: 'ferr' }));
  s.textContent = msg || '';
  el.setAttribute('aria-invalid', msg ? 'true' : 'false');
}
function showGroups() {
  const t = $('#ed-form [data-f=type]').value;
  $$('#ed .g-stdio').forEach(x => { x.hidden = t !== 'stdio'; });
  $$('#ed .g-remote').forEach(x => { x.hidden = t === 'stdio'; });
}
$('#ed-form [data-f=type]').onchange = showGroups;
function openEdit(k, type) {
  if (!S.cfg) return toast('The configuration is not loaded.', 'err');
  const o = k == null ? { type: type || 'stdio' } : S.cfg.mcpServers[k];
  const f = $('#ed-form');
  S.ed = { k, o: isObj(o) ? o : {}, init: {} };
  $('#ed-title').textContent = k == null ? 'Add server' : 'Edit ' + k;
  f.key.value = S.ed.initKey = k == null ? '' : k;
  setErr(f.key, '');
  for (const el of edF()) {
    const v = readF(S.ed.o, el.dataset.f);
    S.ed.init[el.dataset.f] = v;
    if (el.type === 'checkbox') el.checked = v; else el.value = v;
    setErr(el, '');
  }
  const extra = Object.keys(S.ed.o).filter(x => !KNOWN.has(x));
  $('#ed-extra').textContent = extra.length ? 'Other keys, kept as they are: ' + extra.join(', ') : '';
  $('details', f).open = ['tools', 'prompts', 'resources'].some(x => x in S.ed.o);
  showGroups();
  $('#ed').showModal();
  $('.dlg-b', f).scrollTop = 0;
  (k == null ? f.key : $('[data-f=name]', f)).focus();
}
function edChanged() {
  const v = edVals();
  return $('#ed-form').key.value !== S.ed.initKey || Object.keys(v).some(n => String(v[n]) !== String(S.ed.init[n]));
}
function edClose(ev) {
  if (ev) ev.preventDefault();
  if (edChanged() && !confirm('Discard the changes made in this form?')) return;
  $('#ed').close();
}
$('#ed').addEventListener('cancel', edClose);
$('#ed-cancel').onclick = () => edClose();
$('#ed-form').addEventListener('submit', ev => {
  ev.preventDefault();
  const f = ev.target, E = S.ed, ms = S.cfg.mcpServers, v = edVals(), key = f.key.value.trim(), errs = {};
  if (!key) errs.key = 'A key is required.';
  else if (key !== E.k && Object.prototype.hasOwnProperty.call(ms, key)) errs.key = 'Another server already uses this key.';
  if (v.type === 'stdio' && !v.command.trim()) errs.command = 'Required for a stdio server.';
  if (v.type !== 'stdio' && !v.url.trim()) errs.url = 'Required for an sse or http server.';
  for (const n of KV) {
    const bad = v[n].split('\n').find(l => l.trim() && !(l.indexOf('=') > 0));
    if (bad) errs[n] = 'Use one KEY=value per line: ' + bad.trim();
  }
  if (v.timeout.trim() && !(Number(v.timeout) > 0)) errs.timeout = 'A positive number of seconds.';
  setErr(f.key, errs.key);
  for (const el of edF()) setErr(el, errs[el.dataset.f]);
  const first = $('#ed [aria-invalid=true]');
  if (first) { first.closest('details') && (first.closest('details').open = true); first.focus(); return; }
  const o = E.o;
  for (const n in v) if (String(v[n]) !== String(E.init[n])) writeF(o, n, v[n]);
  if (v.type !== E.init.type) for (const n of v.type === 'stdio' ? REMOTE_F : STDIO_F) delete o[n];
  if (E.k == null) ms[key] = o;
  else if (key !== E.k) {
    const n = {};
    for (const x of Object.keys(ms)) n[x === E.k ? key : x] = x === E.k ? o : ms[x];
    S.cfg.mcpServers = n;
    delete S.sProbs[E.k];
  }
  delete S.sProbs[key];
  $('#ed').close();
  renderServers();
  toast(sDirty() ? `${key}: changes kept; Save & reload to apply them.` : 'No changes.');
});
$('#s-add').onclick = () => openEdit(null, 'stdio');

// ----- import -----
$('#s-import').onclick = () => {
  if (!S.cfg) return toast('The configuration is not loaded.', 'err');
  $('#im-err').textContent = '';
  $('#im').showModal();
  $('#im-text').focus();
};
$('#im-cancel').onclick = () => {
  if ($('#im-text').value.trim() && !confirm('Discard the pasted text?')) return;
  $('#im').close();
};
$('#im-form').addEventListener('submit', ev => {
  ev.preventDefault();
  const err = $('#im-err'), txt = $('#im-text').value.trim(), ms = S.cfg.mcpServers;
  let j, m;
  try { j = JSON.parse(txt); } catch (e) {
    try { j = JSON.parse('{' + txt.replace(/,\s*$/, '') + '}'); } catch (e2) { err.textContent = 'Not valid JSON: ' + e.message; return; }
  }
  if (!isObj(j)) { err.textContent = 'Expected a JSON object.'; return; }
  if (isObj(j.mcpServers)) m = j.mcpServers;
  else if (['command', 'url', 'type', 'args'].some(x => typeof j[x] === 'string' || Array.isArray(j[x]))) {
    const k = $('#im-key').value.trim();
    if (!k) { err.textContent = 'This is a single server object: enter a key for it.'; $('#im-key').focus(); return; }
    m = { [k]: j };
  } else if (Object.keys(j).length && Object.values(j).every(isObj)) m = j;
  else { err.textContent = 'Expected {"mcpServers": {…}}, a map of servers or one server object.'; return; }
  const keys = Object.keys(m).map(k => k.trim());
  if (!keys.length) { err.textContent = 'No servers found.'; return; }
  if (keys.some(k => !k)) { err.textContent = 'A server key is empty.'; return; }
  if (Object.values(m).some(x => !isObj(x))) { err.textContent = 'Every server must be a JSON object.'; return; }
  const dup = keys.filter(k => k in ms);
  if (dup.length && !confirm('Replace the existing server(s) ' + dup.join(', ') + '?')) return;
  Object.entries(m).forEach(([k, o]) => { ms[k.trim()] = o; });
  S.sProbs = checkAll();
  $('#im-text').value = $('#im-key').value = '';
  $('#im').close();
  renderServers();
  toast(`Imported ${keys.join(', ')}; Save & reload to apply.`);
});

// ----- installs and live output -----
function sse() {
  if (S.es) S.es.close();
  if (!window.EventSource) return;
  const es = S.es = new EventSource('/admin/sse/updates');
  const on = (ev, cls, f) => es.addEventListener(ev, m => {
    let d;
    try { d = JSON.parse(m.data); } catch (e) { return; }
    if (d && d.serverKey != null) instLine(String(d.serverKey), typeof cls === 'function' ? cls(d) : cls, f(d), ev);
  });
  on('install_info', 'info', d => d.message);
  on('install_stdout', 'out', d => d.output);
  on('install_stderr', 'stderr', d => d.output);
  on('install_error', 'error', d => [d.error, d.command && 'command: ' + d.command, d.exitCode != null && 'exit code ' + d.exitCode].filter(Boolean).join(' · '));
  on('install_complete', d => (d.code === 0 ? 'info' : 'error'), d => d.message || 'Finished with code ' + d.code);
}
function instLine(k, cls, text, ev) {
  const buf = S.inst[k] = S.inst[k] || [];
  const line = [cls, str(text).replace(/\r?\n$/, '')];
  buf.push(line);
  if (buf.length > 3000) buf.splice(0, buf.length - 3000);
  if (ev === 'install_complete') {
    toast(`Install of ${k}: ${line[1]}`, cls === 'error' ? 'err' : 'ok');
    if (S.instKey === k) $('#in-state').textContent = cls === 'error' ? 'Failed' : 'Finished';
  }
  if (S.instKey === k && $('#in').open) {
    const out = $('#in-out'), bottom = out.scrollHeight - out.scrollTop - out.clientHeight < 40;
    out.append(h('div', { class: cls }, line[1]));
    if (bottom) out.scrollTop = out.scrollHeight;
  }
}
function openInstall(k) {
  S.instKey = k;
  $('#in-title').textContent = 'Install ' + k;
  $('#in-state').textContent = '';
  $('#in-out').replaceChildren(...(S.inst[k] || []).map(([c, t]) => h('div', { class: c }, t)));
  if (!$('#in').open) $('#in').showModal();
  $('#in-out').scrollTop = 1e9;
}
async function install(k, chg) {
  if (chg === 'new') return toast(`Save ${k} first: installs use the saved configuration.`, 'warn');
  if (chg) toast(`${k} has unsaved changes; the install uses the saved configuration.`, 'warn');
  openInstall(k);
  $('#in-state').textContent = 'Running…';
  try {
    const d = await api('POST', '/admin/server/install/' + encodeURIComponent(k));
    instLine(k, 'info', (d && d.message) || 'Started.');
  } catch (e) {
    instLine(k, 'error', e.message);
    $('#in-state').textContent = 'Not started';
    fail('Install failed', e);
  }
}
$('#in-close').onclick = () => $('#in').close();
$('#in').addEventListener('close', () => { S.instKey = ''; });

// ---------- tools ----------
const tChanged = r => r.cb.checked !== r.init.en || r.nm.value.trim() !== r.init.nm || r.ds.value.trim() !== r.init.ds.trim();
const tDirty = () => !!S.rows && S.rows.some(tChanged);
async function loadTools(force) {
  if (S.rows && tDirty() && !force) return;
  if (!S.rows) $('#t-list').replaceChildren(h('p', { class: 'empty' }, 'Loading…'));
  try {
    const [l, c, env, cfg] = await Promise.all([
      api('GET', '/admin/tools/list'),
      api('GET', '/admin/tools/config').catch(e => { if (e.status === 404) return { tools: {} }; throw e; }),
      api('GET', '/admin/environment').catch(() => ({})),
      api('GET', '/admin/config').catch(() => null)]);
    if (!force && tDirty()) return;
    S.tCfg = isObj(c) ? c : { tools: {} };
    if (!isObj(S.tCfg.tools)) S.tCfg.tools = {};
    S.sep = (env && env.serverToolnameSeparator) || '__';
    S.ns = {};
    if (cfg && isObj(cfg.mcpServers)) for (const [k, o] of Object.entries(cfg.mcpServers)) if (isObj(o) && typeof o.namespace === 'string') S.ns[k] = o.namespace;
    renderTools((l && l.tools) || [], (l && l.problems) || []);
  } catch (e) {
    fail('Loading tools failed', e);
    if (!S.rows) $('#t-list').replaceChildren(h('p', { class: 'empty' }, 'Tools could not be loaded: ' + e.message));
  }
}
function setProbs(box, list, title) {
  box.hidden = !list.length;
  box.replaceChildren(h('strong', {}, title), h('ul', {}, list.map(p => h('li', {}, str(p)))));
}
function renderTools(tools, problems) {
  setProbs($('#t-probs'), problems, 'Problems in the tool configuration');
  const by = new Map();
  for (const t of tools) {
    const s = str(t.serverName);
    if (!by.has(s)) by.set(s, []);
    by.get(s).push(t);
  }
  S.rows = []; S.groups = [];
  const list = $('#t-list');
  list.replaceChildren();
  if (!tools.length) list.append(h('p', { class: 'empty' }, 'No tools: no server is connected, or they offer none.'));
  for (const [srv, ts] of [...by].sort((a, b) => a[0].localeCompare(b[0]))) {
    const rows = ts.map(toolRow), cnt = h('span', { class: 'muted' });
    const bulk = on => () => { rows.forEach(r => { r.cb.checked = on; }); tUpd(); };
    const g = { rows, cnt, el: h('section', { class: 'card grp' },
      h('div', { class: 'grp-h' }, h('div', { class: 'ttl' }, h('h2', {}, srv), cnt),
        h('button', { type: 'button', onclick: bulk(true) }, 'Enable all'),
        h('button', { type: 'button', onclick: bulk(false) }, 'Disable all')),
      rows.map(r => r.el)) };
    S.groups.push(g); S.rows.push(...rows);
    list.append(g.el);
  }
  tUpd(); filterTools();
}
function toolRow(t) {
  const key = str(t.key || t.serverName + S.sep + t.name), e = isObj(S.tCfg.tools[key]) ? S.tCfg.tools[key] : {};
  const pre = S.ns[t.serverName] ?? str(t.serverName);
  const def = pre === '' ? str(t.name) : pre + S.sep + t.name;
  const nm0 = str(e.exposedName ?? e.displayName), ds0 = str(e.exposedDescription ?? e.description);
  const r = { t, key, dflt: nm0 ? def : str(t.exposedName) || def, init: { en: t.enabled !== false, nm: nm0, ds: ds0 } };
  r.cb = h('input', { type: 'checkbox', checked: r.init.en, 'aria-label': 'Enable ' + key, onchange: tUpd });
  r.nm = h('input', { value: nm0, placeholder: r.dflt, autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', oninput: tUpd });
  r.ds = h('textarea', { rows: 2, placeholder: str(t.description) || '(no description)', oninput: tUpd });
  r.ds.value = ds0;
  r.err = h('small', { class: 'ferr' });
  r.el = h('div', { class: 'tool' },
    h('label', { class: 'tcb' }, r.cb),
    h('div', { class: 'tmain' },
      h('div', { class: 'mono tkey' }, key),
      h('div', { class: 'tf' },
        h('label', {}, 'Exposed name', r.nm, r.err),
        h('label', {}, 'Description', r.ds)),
      t.description && ds0 ? h('details', { class: 'muted' }, h('summary', {}, 'Original description'), str(t.description)) : null));
  return r;
}
function tUpd() {
  const names = new Map();
  for (const r of S.rows) {
    const n = r.nm.value.trim() || r.dflt;
    if (!names.has(n)) names.set(n, []);
    names.get(n).push(r);
  }
  let bad = 0;
  for (const r of S.rows) {
    const v = r.nm.value.trim(), same = v ? names.get(v).filter(x => x !== r) : [];
    const msg = v && !NAME_RE.test(v) ? 'Use 1–64 letters, digits, _ or -.' : same.length ? 'Also the name of ' + same.map(x => x.key).join(', ') : '';
    r.err.textContent = msg;
    r.nm.setAttribute('aria-invalid', msg ? 'true' : 'false');
    if (msg) bad++;
    r.el.classList.toggle('off', !r.cb.checked);
    r.el.classList.toggle('chg', tChanged(r));
  }
  for (const g of S.groups) g.cnt.textContent = `${g.rows.filter(r => r.cb.checked).length} of ${g.rows.length} enabled`;
  $('#t-sum').textContent = `${S.rows.filter(r => r.cb.checked).length} of ${S.rows.length} tools enabled`;
  updDirty();
  return bad;
}
function filterTools() {
  if (!S.rows) return;
  const q = $('#t-q').value.trim().toLowerCase();
  let n = 0;
  for (const g of S.groups) {
    let any = false;
    for (const r of g.rows) {
      const hit = !q || [r.key, r.t.name, r.t.exposedName, r.dflt, r.nm.value, r.t.description, r.ds.value].some(s => str(s).toLowerCase().includes(q));
      r.el.hidden = !hit; any = any || hit; n += hit;
    }
    g.el.hidden = !any;
  }
  $('#t-list').classList.toggle('nohit', !!q && !n);
}
$('#t-q').addEventListener('input', filterTools);
async function saveTools() {
  if (tUpd()) {
    const r = S.rows.find(x => x.err.textContent);
    if (r) { $('#t-q').value = ''; filterTools(); r.nm.focus(); }
    return toast('Fix the exposed names marked in red first.', 'err');
  }
  const out = clone(S.tCfg), T = out.tools;
  for (const r of S.rows) {
    if (!tChanged(r)) continue;
    const e = isObj(T[r.key]) ? T[r.key] : {};
    if (r.cb.checked !== r.init.en) { if (r.cb.checked) delete e.enabled; else e.enabled = false; }
    const nv = r.nm.value.trim(), dv = r.ds.value.trim();
    if (nv !== r.init.nm) { delete e.displayName; if (nv && nv !== r.dflt) e.exposedName = nv; else delete e.exposedName; }
    if (dv !== r.init.ds.trim()) { delete e.description; if (dv && dv !== str(r.t.description)) e.exposedDescription = dv; else delete e.exposedDescription; }
    if (Object.keys(e).length) T[r.key] = e; else delete T[r.key];
  }
  const b = $('#save'); b.disabled = true;
  try {
    const d = await api('POST', '/admin/tools/config', out);
    S.tCfg = out;
    for (const r of S.rows) r.init = { en: r.cb.checked, nm: r.nm.value.trim(), ds: r.ds.value.trim() };
    tUpd();
    toast((d && d.message) || 'Tool configuration saved.');
    if (await reloadProxy()) loadTools();
  } catch (e) {
    if (e.status === 400) {
      const ps = (e.data.problems || [e.message]).map(str);
      setProbs($('#t-probs'), ps, 'The tool configuration was rejected');
      for (const r of S.rows) { const p = ps.find(x => x.includes(r.key)); if (p) r.err.textContent = p; }
      $('#t-probs').scrollIntoView({ block: 'nearest' });
      toast('The tool configuration was rejected; see the problems listed.', 'err');
    } else fail('Saving failed', e);
  } finally { b.disabled = false; updDirty(); }
}

// ---------- logs ----------
async function loadLogs(first) {
  if (S.busyL) return;
  S.busyL = true; S.last.logs = Date.now();
  try { const d = await api('GET', '/admin/logs'); S.logs = (d && d.lines) || []; renderLogs(first); }
  catch (e) { if (e.status !== 401) $('#l-sum').textContent = 'Could not load the logs: ' + e.message; }
  finally { S.busyL = false; }
}
function renderLogs(jump) {
  const box = $('#l-out'), q = $('#l-q').value.trim().toLowerCase();
  const lines = q ? S.logs.filter(l => str(l).toLowerCase().includes(q)) : S.logs;
  const sig = q + '\n' + lines.join('\n');
  $('#l-sum').textContent = q ? `${lines.length} of ${S.logs.length} lines` : `${S.logs.length} lines · refreshed every 3 s`;
  if (sig === S.logSig && !jump) return;
  const bottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  S.logSig = sig;
  box.replaceChildren(...lines.map(l => h('div', { class: /\bERROR\b/.test(l) ? 'e' : /\bWARN/.test(l) ? 'w' : /\b(DEBUG|TRACE)\b/.test(l) ? 'd' : '' }, str(l))));
  if (!lines.length) box.append(h('div', { class: 'd' }, q ? 'No line matches the filter.' : 'No log lines yet.'));
  if (bottom || jump) box.scrollTop = box.scrollHeight;
}
$('#l-q').addEventListener('input', () => renderLogs(true));

// ---------- start ----------
(async () => {
  try { const s = await api('GET', '/admin/session'); S.csrf = s.csrfToken; start(s.user); }
  catch (e) { showLogin(e.status === 401 ? '' : 'Could not check the session: ' + e.message); }
})();
