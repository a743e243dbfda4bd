'use strict';
// MCP proxy admin UI (docs/admin-api.md). Plain JS; data reaches the DOM only as text, never as HTML.
const $ = (s, r = document) => r.querySelector(s);
const $$ = (s, r = document) => [...r.querySelectorAll(s)];
const has = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
const isObj = v => v !== null && typeof v === 'object' && !Array.isArray(v);
const str = v => v == null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
const J = JSON.stringify;
// Maps keyed by server or tool keys have no prototype, so a key such as "constructor" is just a key.
const dict = o => Object.assign(Object.create(null), o);
const S = { csrf: '', view: '', cfg: null, saved: '', old: dict(), probs: dict(), glob: [], status: dict(), cards: dict(), ns: dict(), rows: null, groups: [], logs: [], inst: dict(), instOpen: dict(), last: {} };

function h(tag, p, ...kids) {
  const [t, ...cls] = tag.split('.'), e = document.createElement(t); // 'div.a.b': a div with classes a and b
  e.className = cls.join(' ');
  for (const k in p || {}) {
    const v = p[k];
    if (v == null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (typeof v !== 'string' && k in e) e[k] = v;
    else e.setAttribute(k, v);
  }
  for (const c of kids.flat()) if (c != null && c !== false) e.append(c);
  return e;
}
function toast(msg, kind = 'ok') {
  const box = $('#toasts'), t = h('div', { class: 'toast ' + kind, role: kind === 'err' ? 'alert' : 'status', onclick: () => t.remove() }, msg);
  box.append(t);
  while (box.children.length > 4) box.firstChild.remove();
  if (box.showPopover) { try { box.hidePopover(); box.showPopover(); } catch (e) { /* not supported */ } }
  setTimeout(() => t.remove(), kind === 'ok' ? 4500 : 10000);
}
async function api(method, path, body) {
  const o = { method, credentials: 'same-origin', headers: {} };
  if (method !== 'GET' && path !== '/admin/login') o.headers['X-CSRF-Token'] = S.csrf;
  if (body !== undefined) { o.headers['Content-Type'] = 'application/json'; o.body = J(body); }
  const err = (m, status, data) => Object.assign(new Error(m), { status, data: isObj(data) ? data : {} });
  let r, data = null;
  try { r = await fetch(path, o); } catch (e) { throw err('network error (' + e.message + ')', 0); }
  const text = await r.text();
  try { data = text ? JSON.parse(text) : null; } catch (e) { if (r.ok) throw err(path + ' did not return valid JSON (' + e.message + ')', r.status); }
  if (r.status === 401 && !/\/(login|session)$/.test(path)) expired();
  if (!r.ok) throw err((data && (data.error || data.message)) || 'HTTP ' + r.status, r.status, data);
  return data;
}
const fail = (what, e) => { if (e.status !== 401) toast(what + ': ' + e.message, 'err'); };
const list = (title, items) => [h('strong', {}, title), h('ul', {}, items.map(p => h('li', {}, str(p))))];

// ---------- session, navigation, polling ----------
function showLogin(msg) {
  $$('main>section').forEach(s => { s.hidden = s.id !== 'v-login'; });
  $('#nav').hidden = $('#logout').hidden = $('#savebar').hidden = true;
  $('#who').textContent = '';
  $('#login-err').textContent = msg || '';
  setTimeout(() => $('#login [name=username]').focus());
}
function expired() {
  if (!S.csrf) return;
  S.csrf = '';
  if (S.es) S.es.close();
  showLogin('Your session has ended. Sign in again; unsaved changes are kept.');
}
function start(user) {
  $('#nav').hidden = $('#logout').hidden = false;
  $('#who').textContent = user || '';
  api('GET', '/admin/environment').then(env => { $('#nav-term').hidden = !(env && env.webTerminal); }).catch(() => {});
  sse();
  S.view = '';
  route();
}
$('#login').addEventListener('submit', async ev => {
  ev.preventDefault();
  const f = ev.target, b = $('button', f);
  $('#login-err').textContent = '';
  b.disabled = true;
  try {
    const d = await api('POST', '/admin/login', { username: f.username.value, password: f.password.value });
    S.csrf = (d && d.csrfToken) || (await api('GET', '/admin/session')).csrfToken;
    f.password.value = '';
    start(f.username.value);
  } catch (e) {
    $('#login-err').textContent = e.status === 401 ? 'Invalid username or password.'
      : e.status === 429 ? e.data.error || 'Too many login attempts; try again later.' : 'Sign-in failed: ' + e.message;
    f.password.select();
  }
  b.disabled = false;
});
$('#logout').onclick = async () => {
  if ((sDirty() || tDirty() || pDirty()) && !confirm('You have unsaved changes. Discard them and log out?')) return;
  try { await api('POST', '/admin/logout'); } catch (e) { if (e.status !== 401) return fail('Logout failed', e); }
  S.csrf = S.view = ''; S.cfg = S.rows = null;
  if (S.es) S.es.close();
  showLogin();
  toast('Logged out.');
};
const dirty = v => v === 'servers' ? sDirty() : v === 'tools' ? tDirty() : v === 'profiles' && pDirty();
function route() {
  if (!S.csrf) return;
  let v = location.hash.slice(1);
  if (!['servers', 'tools', 'profiles', 'logs'].includes(v)) v = 'servers';
  if (S.view && S.view !== v && dirty(S.view)) toast(`Unsaved changes on ${S.view} are kept; save or discard them there.`, 'warn');
  S.view = v;
  $$('main>section').forEach(s => { s.hidden = s.id !== 'v-' + v; });
  $$('#nav a').forEach(a => { if (a.dataset.v === v) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current'); });
  if (v === 'servers') loadServers(); else if (v === 'tools') loadTools(); else if (v === 'profiles') loadProfiles(); else loadLogs(true);
  updDirty();
}
addEventListener('hashchange', route);
addEventListener('beforeunload', e => { if (S.csrf && (sDirty() || tDirty() || pDirty())) { e.preventDefault(); e.returnValue = ''; } });
function updDirty() {
  $$('#nav a').forEach(a => a.classList.toggle('dirty', !!dirty(a.dataset.v)));
  $('#savebar').hidden = !S.csrf || !dirty(S.view);
}
$('#save').onclick = () => (S.view === 'servers' ? saveServers() : S.view === 'profiles' ? saveProfiles() : saveTools());
$('#discard').onclick = () => {
  if (confirm('Discard all unsaved changes on this page?')) S.view === 'servers' ? loadServers(true) : S.view === 'profiles' ? loadProfiles(true) : loadTools(true);
};
// Status every 5 s on Servers and what each profile exposes every 5 s on Profiles, logs every 3 s on Logs, only while the page is visible.
setInterval(() => {
  if (!S.csrf || document.hidden) return;
  const now = Date.now();
  if (S.view === 'servers' && now - (S.last.s || 0) >= 5000) pollStatus();
  if (S.view === 'profiles' && now - (S.last.p || 0) >= 5000) pollProfiles();
  if (S.view === 'logs' && now - (S.last.l || 0) >= 3000) loadLogs();
}, 500);
document.addEventListener('visibilitychange', () => { S.last = {}; });

// ---------- the config file: servers and profiles ----------
// mcp_server.json holds both: "profiles" is the Profiles page's part, everything else the Servers page's.
// S.cfg is the file with the unsaved changes of both; S.saved the file as last loaded or saved. Each page
// saves its own part: it posts the saved file with only that part replaced, so the other page's unsaved
// changes stay unsaved (and unsent), and keys neither page knows are posted as they were.
const savedCfg = () => (S.saved ? JSON.parse(S.saved) : {});
function withProfiles(base, profiles) {
  const c = JSON.parse(J(base));
  if (profiles === undefined) delete c.profiles; else c.profiles = JSON.parse(J(profiles));
  return c;
}
const sDirty = () => !!S.cfg && J(withProfiles(S.cfg, savedCfg().profiles)) !== S.saved;
const pDirty = () => !!S.cfg && J(S.cfg.profiles) !== J(savedCfg().profiles);
// Reads the file; the unsaved changes of each part are kept, except those of the part `drop` names.
async function loadCfg(drop) {
  let c;
  try { c = await api('GET', '/admin/config'); } catch (e) {
    if (e.status !== 404) throw e;
    c = { mcpServers: {} };
    toast('No configuration file yet; saving creates it.', 'warn');
  }
  if (!isObj(c)) throw new Error('mcp_server.json is not a JSON object');
  if (!isObj(c.mcpServers)) c.mcpServers = {};
  let cfg = c;
  if (drop !== 'servers' && sDirty()) cfg = withProfiles(S.cfg, c.profiles);
  if (drop !== 'profiles' && pDirty()) cfg = withProfiles(cfg, S.cfg.profiles);
  S.saved = J(c); S.cfg = JSON.parse(J(cfg)); S.old = dict(c.mcpServers);
}

// ---------- servers ----------
const isActive = o => !(o.active === false || o.active === 'false');
function typeOf(o) {
  const t = str(o.type).toLowerCase().replace(/[-_]/g, '');
  return t === 'stdio' || t === 'sse' ? t : t === 'http' || t === 'streamablehttp' ? 'http' : o.url != null && o.command == null ? 'sse' : 'stdio';
}
async function loadServers(force) {
  if (S.cfg && sDirty() && !force) return renderServers(), pollStatus();
  try {
    await loadCfg(force ? 'servers' : '');
    if (!force && sDirty()) return renderServers();
    S.probs = dict(); S.glob = [];
  } catch (e) { fail('Loading the configuration failed', e); }
  renderServers();
  pollStatus();
}
async function pollStatus() {
  if (S.busyS) return;
  S.busyS = true; S.last.s = Date.now();
  try {
    const d = await api('GET', '/admin/status'), bs = d.backends || [];
    S.status = dict(Object.fromEntries(bs.map(b => [b.key, b])));
    $('#s-sum').textContent = `${bs.filter(b => b.state === 'connected').length} of ${bs.length} connected · ${d.sessions || 0} client sessions` + (d.version ? ' · v' + d.version : '');
  } catch (e) { $('#s-sum').textContent = e.status === 401 ? '' : 'Status unavailable: ' + e.message; }
  S.busyS = false;
  for (const k in S.cards) fillStatus(k);
}
function fillStatus(k) {
  const c = S.cards[k], s = S.status[k], o = S.cfg && S.cfg.mcpServers[k];
  if (!c || !o) return;
  const st = s ? str(s.state) : !S.old[k] ? 'not saved' : !isActive(o) ? 'inactive' : 'unknown';
  c.b.textContent = st.replace('_', ' ');
  c.b.className = 'badge st-' + st.replace(' ', '-');
  c.info.replaceChildren(s ? `Tools ${Array.isArray(s.tools) ? s.tools.length : s.tools ?? 0} · Restarts ${s.restarts ?? 0}` : '',
    s && s.lastError ? h('div.srv-err', null, str(s.lastError)) : '',
    s && s.state === 'needs_login' ? h('button.authorize', { onclick: () => authorize(k) }, 'Authorize') : '');
  // A server isolated per client session: its running instances (the status lists them for such servers only).
  const inst = s && Array.isArray(s.instances) ? s.instances : null, n = inst ? inst.length : 0;
  c.inst.hidden = !inst;
  if (!inst) return;
  const m = S.old[k] && S.old[k].maxInstances, max = Number.isInteger(m) ? m : 16;
  c.instSum.textContent = (n ? `${n} instance${n === 1 ? '' : 's'} running` : 'No instance running') + ` (at most ${max})`;
  c.instBody.replaceChildren(n ? h('table', null,
    h('thead', null, h('tr', null, ['Client', 'State', 'Age', 'Restarts'].map(x => h('th', { scope: 'col' }, x)))),
    h('tbody', null, inst.map(i => h('tr', null,
      h('td', {}, 'client ' + str(i.client)),
      h('td', {}, h('span', { class: 'badge st-' + str(i.state) }, str(i.state))),
      h('td', {}, age(i.ageSecs)),
      h('td', {}, str(i.restarts ?? 0))))))
    : h('p.muted', null, "Each client session's first call starts an instance of its own."));
}
// Seconds as "42 s", "3 min 5 s", "2 h 10 min", "4 d 3 h".
function age(v) {
  const s = Math.max(0, Math.floor(Number(v) || 0)), f = Math.floor;
  return s < 60 ? s + ' s' : s < 3600 ? `${f(s / 60)} min ${s % 60} s` : s < 86400 ? `${f(s / 3600)} h ${f(s % 3600 / 60)} min` : `${f(s / 86400)} d ${f(s % 86400 / 3600)} h`;
}
function renderServers() {
  const el = $('#s-list'), ms = S.cfg && S.cfg.mcpServers;
  el.replaceChildren(); S.cards = dict();
  $('#s-probs').hidden = !S.glob.length;
  $('#s-probs').replaceChildren(...list('Problems', S.glob));
  if (!ms) el.append(h('p.empty', null, 'The configuration could not be loaded.'));
  else if (!Object.keys(ms).length) el.append(h('p.empty', null, 'No servers yet. Add one, or import a Claude Desktop JSON block.'));
  else for (const k in ms) el.append(card(k, isObj(ms[k]) ? ms[k] : {}));
  updDirty();
}
function card(k, o) {
  const t = typeOf(o), on = isActive(o), probs = S.probs[k] || [];
  const chg = !S.old[k] ? 'new' : J(S.old[k]) !== J(o) && 'modified';
  const target = t === 'stdio' ? [o.command, ...(Array.isArray(o.args) ? o.args : [])].filter(x => x != null).map(str).join(' ') : str(o.url);
  const c = S.cards[k] = { b: h('span'), info: h('div.srv-i.muted', null), instSum: h('summary', {}), instBody: h('div', {}) };
  c.inst = h('details.inst', { hidden: true, open: !!S.instOpen[k], ontoggle: e => { S.instOpen[k] = e.target.open; } }, c.instSum, c.instBody);
  c.tg = h('input', { type: 'checkbox', checked: on, onchange: e => { setActive(k, e.target.checked); renderServers(); S.cards[k].tg.focus(); } });
  const el = h('article', { class: 'card srv' + (on ? '' : ' off') + (probs.length ? ' bad' : '') },
    h('div.srv-h', null,
      h('div.srv-t', null, h('strong', {}, str(o.name || k)), o.name ? h('code', {}, k) : null),
      h('span.badge', null, t), o.isolation === 'session' && h('span.badge', { title: 'One instance per client session' }, 'per session'),
      chg && h('span.badge.chg', null, chg), c.b),
    h('div.mono.target', null, target || '—'),
    c.info,
    c.inst,
    probs.length > 0 && h('ul.problems', null, probs.map(p => h('li', {}, p))),
    h('div.srv-a', null,
      h('label.chk', null, c.tg, 'Enabled'),
      h('button', { onclick: () => openEdit(k) }, 'Edit'),
      t === 'stdio' && Array.isArray(o.installCommands) && o.installCommands.length > 0 && h('button', { onclick: () => install(k, chg) }, 'Install'),
      h('button.danger', { onclick: () => del(k) }, 'Delete')));
  fillStatus(k);
  return el;
}
function setActive(k, on) {
  const o = S.cfg.mcpServers[k], old = S.old[k];
  if (!on) o.active = false;
  else if (old && 'active' in old && isActive(old)) o.active = old.active;
  else if (!old || !('active' in old)) delete o.active;
  else o.active = true;
  toast(`${k} will be ${on ? 'enabled' : 'disabled'} on Save & reload.`);
}
function del(k) {
  const ps = savedCfg().profiles, users = isObj(ps) ? Object.keys(ps).filter(n => isObj(ps[n]) && Array.isArray(ps[n].servers) && ps[n].servers.includes(k)) : [];
  const note = users.length ? `\n\nProfiles that list it (${users.join(', ')}) must stop listing it first (Profiles page), or the save is refused.` : '';
  if (!confirm(`Delete server "${k}"? It stops on Save & reload.` + note)) return;
  delete S.cfg.mcpServers[k];
  renderServers();
  toast(`Deleted ${k} (not saved yet).`);
}
function checkAll() {
  const p = dict(), add = (k, m) => (p[k] = p[k] || []).push(m);
  for (const [k, o] of Object.entries(S.cfg.mcpServers)) {
    if (!k.trim()) add(k, 'The server key is empty.');
    if (!isObj(o)) { add(k, 'The entry is not a JSON object.'); continue; }
    const t = typeOf(o);
    if (t === 'stdio' && !str(o.command).trim()) add(k, 'A stdio server needs a command.');
    if (t !== 'stdio' && !str(o.url).trim()) add(k, `An ${t} server needs a url.`);
  }
  return p;
}
function placeProblems(ps) {
  S.probs = dict(); S.glob = [];
  for (const p of ps.map(str)) {
    const m = /server ['"`]([^'"`]+)['"`]/.exec(p);
    if (m && has(S.cfg.mcpServers, m[1])) (S.probs[m[1]] = S.probs[m[1]] || []).push(p); else S.glob.push(p);
  }
  renderServers();
}
async function reloadProxy() {
  try { toast((await api('POST', '/admin/server/reload') || {}).message || 'Reloaded.'); return true; } catch (e) {
    if (e.status !== 400) return fail('Reload failed', e);
    const ps = e.data.details || e.data.problems || [e.message];
    if (S.view === 'tools') setProbs(ps, 'Reload failed'); else if (S.view === 'profiles') pPlace(ps, 'Reload failed'); else if (S.cfg) placeProblems(ps);
    toast('Reload failed: ' + e.message + ' See the problems listed.', 'err');
  }
}
async function saveServers() {
  const p = checkAll();
  if (Object.keys(p).length) { S.probs = p; S.glob = []; renderServers(); return toast('Fix the problems marked in red before saving.', 'err'); }
  // The servers' part only: the profiles as saved.
  const b = $('#save'), body = withProfiles(S.cfg, savedCfg().profiles), snap = J(body);
  b.disabled = true;
  try {
    await api('POST', '/admin/config', body);
    S.saved = snap; S.old = dict(body.mcpServers); S.probs = dict(); S.glob = [];
    renderServers();
    toast('Configuration saved.');
    if (await reloadProxy()) { if (!tDirty()) S.rows = null; setTimeout(pollStatus, 800); }
  } catch (e) {
    if (e.status !== 400) fail('Saving failed', e);
    else { placeProblems(e.data.problems || [e.message]); toast('The configuration was rejected; see the problems listed.', 'err'); }
  }
  b.disabled = false;
  updDirty();
}
$('#s-reload').onclick = async () => {
  if (sDirty()) toast('Unsaved changes are not part of this reload; use Save & reload for them.', 'warn');
  if (await reloadProxy()) setTimeout(pollStatus, 800);
};

// ----- server editor: only fields the user changed are written, so other keys and formats stay as they were -----
const LINES = ['args', 'installCommands'], KV = ['env', 'headers'];
const STDIO = ['command', 'args', 'env', 'cwd', 'installDirectory', 'installCommands'], REMOTE = ['url', 'apiKey', 'bearerToken', 'headers'];
const SESSION = ['maxInstances', 'idleTimeout'], NUMS = ['timeout', ...SESSION];
const KNOWN = ['type', 'name', 'active', 'namespace', 'timeout', 'isolation', ...SESSION, 'tools', 'prompts', 'resources', ...STDIO, ...REMOTE];
// The server's rules (config.rs): seconds are positive and below 1e9; maxInstances is a whole number from 1 to 100000.
const isSecs = t => Number(t) > 0 && Number(t) < 1e9;
const isMax = t => /^\d+$/.test(t) && +t >= 1 && +t <= 100000;
function readF(o, f) {
  if (f === 'type') return typeOf(o);
  if (f === 'active') return isActive(o);
  if (f === 'isolation') return o.isolation == null ? 'shared' : str(o.isolation);
  const [a, b] = f.split('.'), v = b ? isObj(o[a]) ? o[a][b] : null : o[f];
  if (b) return Array.isArray(v) ? v.join(', ') : str(v);
  if (LINES.includes(f) && Array.isArray(v)) return v.map(str).join('\n');
  if (KV.includes(f) && isObj(v)) return Object.entries(v).map(([x, y]) => x + '=' + str(y)).join('\n');
  return str(v);
}
function writeF(o, f, v) {
  if (f === 'type') return void (o.type = v);
  if (f === 'active') return void (v ? delete o.active : o.active = false);
  if (f === 'isolation') return void (v === 'shared' ? delete o.isolation : o.isolation = v);
  const [a, b] = f.split('.');
  if (b) {
    const arr = v.split(/[,\n]/).map(s => s.trim()).filter(Boolean);
    if (!isObj(o[a])) o[a] = {};
    if (arr.length) o[a][b] = arr; else delete o[a][b];
    if (!Object.keys(o[a]).length) delete o[a];
    return;
  }
  if (LINES.includes(f)) v = v.split('\n').map(s => s.trim()).filter(Boolean);
  else if (KV.includes(f)) v = Object.fromEntries(v.split('\n').filter(l => l.trim()).map(l => [l.slice(0, l.indexOf('=')).trim(), l.slice(l.indexOf('=') + 1).trim()]));
  else v = NUMS.includes(f) && v.trim() ? Number(v) : v.trim();
  if (v === '' || (typeof v === 'object' && !Object.keys(v).length)) delete o[f]; else o[f] = v;
}
const edF = () => $$('#ed [data-f]');
const edVals = () => Object.fromEntries(edF().map(el => [el.dataset.f, el.type === 'checkbox' ? el.checked : el.value]));
function setErr(el, msg) {
  const l = el.parentElement;
  const s = $('.ferr', l) || l.appendChild(h('small.ferr', null));
  s.textContent = msg || '';
  el.setAttribute('aria-invalid', !!msg);
}
function showGroups() {
  const t = $('#ed [data-f=type]').value, session = $('#ed [data-f=isolation]').value === 'session';
  $$('#ed .g-stdio').forEach(x => { x.hidden = t !== 'stdio'; });
  $$('#ed .g-remote').forEach(x => { x.hidden = t === 'stdio'; });
  // Max instances and idle timeout mean something only with isolation "session"; an entry that has them
  // without it keeps them shown, so they can be seen and cleared.
  $$('#ed .g-session').forEach(x => { x.hidden = !session && !strayF($('[data-f]', x).dataset.f); });
  $('#ed-session').hidden = $$('#ed .g-session').every(x => x.hidden);
}
const strayF = f => !!S.ed && S.ed.init.isolation !== 'session' && S.ed.init[f] !== '';
$('#ed [data-f=type]').onchange = showGroups;
$('#ed [data-f=isolation]').onchange = showGroups;
$$('dialog input, dialog textarea').forEach(e => { e.spellcheck = false; e.autocomplete = 'off'; e.setAttribute('autocapitalize', 'none'); });
function openEdit(k, type) {
  if (!S.cfg) return toast('The configuration is not loaded.', 'err');
  const o = k == null ? { type } : S.cfg.mcpServers[k], f = $('#ed-form');
  S.ed = { k, o: isObj(o) ? o : {}, init: {}, key: k == null ? '' : k };
  $('#ed-title').textContent = k == null ? 'Add server' : 'Edit ' + k;
  f.key.value = S.ed.key;
  setErr(f.key);
  for (const el of edF()) {
    const v = S.ed.init[el.dataset.f] = readF(S.ed.o, el.dataset.f);
    // A value the list does not offer (a mistake in the file) is shown as it is, not replaced unseen.
    if (el.tagName === 'SELECT') {
      $$('option.extra', el).forEach(x => x.remove());
      if (![...el.options].some(x => x.value === v)) el.append(h('option.extra', { value: v }, v + ' (as in the file)'));
    }
    if (el.type === 'checkbox') el.checked = v; else el.value = v;
    setErr(el);
  }
  const extra = Object.keys(S.ed.o).filter(x => !KNOWN.includes(x));
  $('#ed-extra').textContent = extra.length ? 'Other keys, kept as they are: ' + extra.join(', ') : '';
  $('details', f).open = ['tools', 'prompts', 'resources'].some(x => x in S.ed.o);
  showGroups();
  $('#ed').showModal();
  $('.dlg-b', f).scrollTop = 0;
}
function edClose(ev) {
  if (ev) ev.preventDefault();
  const v = edVals(), changed = $('#ed-form').key.value !== S.ed.key || Object.keys(v).some(n => str(v[n]) !== str(S.ed.init[n]));
  if (!changed || confirm('Discard the changes made in this form?')) $('#ed').close();
}
$('#ed').addEventListener('cancel', edClose);
$('#ed-cancel').onclick = () => edClose();
$('#ed-form').addEventListener('submit', ev => {
  ev.preventDefault();
  const f = ev.target, E = S.ed, ms = S.cfg.mcpServers, v = edVals(), key = f.key.value.trim(), errs = {};
  if (!key) errs.key = 'A key is required.';
  else if (key !== E.k && has(ms, key)) errs.key = 'Another server already uses this key.';
  if (v.type === 'stdio' && !v.command.trim()) errs.command = 'Required for a stdio server.';
  if (v.type !== 'stdio' && !v.url.trim()) errs.url = 'Required for an sse or http server.';
  for (const n of KV) {
    const bad = v[n].split('\n').find(l => l.trim() && !(l.indexOf('=') > 0));
    if (bad) errs[n] = 'Use one KEY=value per line: ' + bad.trim();
  }
  if (v.timeout.trim() && !isSecs(v.timeout)) errs.timeout = 'A positive number of seconds.';
  const session = v.isolation === 'session';
  if (!session && v.isolation !== 'shared') errs.isolation = 'Choose shared or one instance per client session.';
  if (session && v.maxInstances.trim() && !isMax(v.maxInstances.trim())) errs.maxInstances = 'A whole number from 1 to 100000.';
  if (session && v.idleTimeout.trim() && !isSecs(v.idleTimeout)) errs.idleTimeout = 'A positive number of seconds.';
  for (const n of SESSION) if (!session && strayF(n) && v[n].trim()) errs[n] = 'Applies only to one instance per client session: clear it, or choose that isolation.';
  setErr(f.key, errs.key);
  for (const el of edF()) setErr(el, errs[el.dataset.f]);
  const first = $('#ed [aria-invalid=true]');
  if (first) { const d = first.closest('details'); if (d) d.open = true; return first.focus(); }
  const o = E.o;
  for (const n in v) if (str(v[n]) !== str(E.init[n])) writeF(o, n, v[n]);
  if (v.type !== E.init.type) for (const n of v.type === 'stdio' ? REMOTE : STDIO) delete o[n];
  if (!session) for (const n of SESSION) delete o[n];
  if (E.k == null) ms[key] = o;
  else if (key !== E.k) S.cfg.mcpServers = Object.fromEntries(Object.entries(ms).map(([x, y]) => x === E.k ? [key, o] : [x, y]));
  delete S.probs[key];
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
};
$('#im-cancel').onclick = () => { if (!$('#im-text').value.trim() || confirm('Discard the pasted text?')) $('#im').close(); };
$('#im-form').addEventListener('submit', ev => {
  ev.preventDefault();
  const say = m => { $('#im-err').textContent = m; }, txt = $('#im-text').value.trim(), ms = S.cfg.mcpServers;
  let j, m;
  try { j = JSON.parse(txt); } catch (e) {
    try { j = JSON.parse('{' + txt.replace(/,\s*$/, '') + '}'); } catch (e2) { return say('Not valid JSON: ' + e.message); }
  }
  if (!isObj(j)) return say('Expected a JSON object.');
  if (isObj(j.mcpServers)) m = j.mcpServers;
  else if (['command', 'url', 'type', 'args'].some(x => typeof j[x] === 'string' || Array.isArray(j[x]))) {
    const k = $('#im-key').value.trim();
    if (!k) return say('This is a single server object: enter a key for it.'), $('#im-key').focus();
    m = { [k]: j };
  } else m = j;
  const ents = Object.entries(m).map(([k, o]) => [k.trim(), o]), keys = ents.map(e => e[0]);
  if (!keys.length) return say('No servers found.');
  if (keys.some(k => !k)) return say('A server key is empty.');
  if (ents.some(e => !isObj(e[1]))) return say('Expected {"mcpServers": {…}}, a map of server objects or one server object.');
  const dup = keys.filter(k => has(ms, k));
  if (dup.length && !confirm('Replace the existing server(s) ' + dup.join(', ') + '?')) return;
  ents.forEach(([k, o]) => { ms[k] = o; });
  S.probs = checkAll();
  $('#im-text').value = $('#im-key').value = '';
  $('#im').close();
  renderServers();
  toast(`Imported ${keys.join(', ')}; Save & reload to apply.`);
});

// ----- installs, with live output from the admin SSE stream -----
function sse() {
  if (S.es) S.es.close();
  if (!window.EventSource) return;
  S.es = new EventSource('/admin/sse/updates');
  // Every (re)connection starts with a replay of the latest install output: start from that.
  S.es.addEventListener('connected', () => { S.inst = dict(); });
  const on = (ev, cls, f) => S.es.addEventListener(ev, m => {
    let d;
    try { d = JSON.parse(m.data); } catch (e) { return; }
    if (d && d.serverKey != null) instLine(str(d.serverKey), typeof cls === 'function' ? cls(d) : cls, f(d), d.replayed ? 'replayed' : ev);
  });
  on('install_info', 'info', d => d.message);
  on('install_stdout', 'out', d => d.output);
  on('install_stderr', 'stderr', d => d.output);
  on('install_error', 'error', d => [d.error, d.command && 'command: ' + d.command, d.exitCode != null && 'exit code ' + d.exitCode].filter(Boolean).join(' · '));
  on('install_complete', d => d.code === 0 ? 'info' : 'error', d => d.message || 'Finished with code ' + d.code);
}
function instLine(k, cls, text, ev) {
  const buf = S.inst[k] = S.inst[k] || [], line = [cls, str(text).replace(/\r?\n$/, '')], open = S.instKey === k;
  buf.push(line);
  buf.splice(0, buf.length - 3000);
  if (ev === 'install_complete' || ev === 'install_error') {
    toast(`Install of ${k}: ${line[1]}`, cls === 'error' ? 'err' : 'ok');
    if (open) $('#in-state').textContent = cls === 'error' ? 'Failed' : 'Finished';
  }
  if (open) {
    const out = $('#in-out'), bottom = out.scrollHeight - out.scrollTop - out.clientHeight < 40;
    out.append(h('div', { class: cls }, line[1]));
    if (bottom) out.scrollTop = out.scrollHeight;
  }
}
// A remote server that needs an OAuth login: the browser goes to its authorization server and comes back
// to /admin/?authorized=<key>; the proxy connects to the server once the tokens are stored.
async function authorize(k) {
  try { location.assign((await api('POST', '/admin/server/authorize/' + encodeURIComponent(k))).url); }
  catch (e) { fail('Authorize failed', e); }
}
async function install(k, chg) {
  if (chg === 'new') return toast(`Save ${k} first: installs use the saved configuration.`, 'warn');
  if (chg) toast(`${k} has unsaved changes; the install uses the saved configuration.`, 'warn');
  S.instKey = k;
  $('#in-title').textContent = 'Install ' + k;
  $('#in-state').textContent = 'Running…';
  $('#in-out').replaceChildren(...(S.inst[k] || []).map(([c, t]) => h('div', { class: c }, t)));
  if (!$('#in').open) $('#in').showModal();
  $('#in-out').scrollTop = 1e9;
  // Progress arrives on the event stream (often before this answer): only a refusal is shown from here.
  try { await api('POST', '/admin/server/install/' + encodeURIComponent(k)); } catch (e) {
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
  if (!S.rows) $('#t-list').replaceChildren(h('p.empty', null, 'Loading…'));
  try {
    const [l, c, env, cfg] = await Promise.all([api('GET', '/admin/tools/list'), api('GET', '/admin/tools/config'),
      api('GET', '/admin/environment').catch(() => ({})), api('GET', '/admin/config').catch(() => null)]);
    if (!force && tDirty()) return;
    S.tCfg = isObj(c) ? c : {};
    if (!isObj(S.tCfg.tools)) S.tCfg.tools = {};
    S.sep = str((env && env.serverToolnameSeparator) || '__');
    S.ns = dict();
    for (const [k, o] of Object.entries((cfg && cfg.mcpServers) || {})) if (isObj(o) && typeof o.namespace === 'string') S.ns[k] = o.namespace;
    renderTools((l && l.tools) || [], (l && l.problems) || []);
  } catch (e) {
    fail('Loading tools failed', e);
    if (!S.rows) $('#t-list').replaceChildren(h('p.empty', null, 'Tools could not be loaded: ' + e.message));
  }
}
function setProbs(ps, title) {
  $('#t-probs').hidden = !ps.length;
  $('#t-probs').replaceChildren(...list(title, ps));
}
function renderTools(tools, problems) {
  setProbs(problems, 'Problems in the tool configuration');
  const by = dict();
  for (const t of tools) (by[str(t.serverName)] = by[str(t.serverName)] || []).push(t);
  S.rows = []; S.groups = [];
  $('#t-list').replaceChildren(tools.length ? '' : h('p.empty', null, 'No tools: no server is connected, or they offer none.'));
  for (const srv of Object.keys(by).sort()) {
    const rows = by[srv].map(toolRow), cnt = h('span.muted', null);
    const bulk = on => () => { rows.forEach(r => { r.cb.checked = on; }); tUpd(); toast(`All tools of ${srv} ${on ? 'enabled' : 'disabled'} (not saved yet).`); };
    const g = { rows, cnt, el: h('section.card.grp', null,
      h('div.grp-h', null, h('div.ttl', null, h('h2', {}, srv), cnt),
        h('button', { onclick: bulk(true) }, 'Enable all'),
        h('button', { onclick: bulk(false) }, 'Disable all')),
      rows.map(r => r.el)) };
    S.groups.push(g); S.rows.push(...rows);
    $('#t-list').append(g.el);
  }
  tUpd(); filterTools();
}
function toolRow(t) {
  const key = str(t.key || t.serverName + S.sep + t.name), e = isObj(S.tCfg.tools[key]) ? S.tCfg.tools[key] : {};
  const pre = S.ns[t.serverName] ?? str(t.serverName), def = pre === '' ? str(t.name) : pre + S.sep + t.name;
  const nm = str(e.exposedName ?? e.displayName), ds = str(e.exposedDescription ?? e.description);
  // Default exposed name: what the proxy reports when no override applies, else the computed prefix + name.
  const r = { t, key, dflt: nm ? def : str(t.exposedName) || def, init: { en: t.enabled !== false, nm, ds } };
  r.cb = h('input', { type: 'checkbox', checked: r.init.en, 'aria-label': 'Enable ' + key, onchange: tUpd });
  r.nm = h('input', { value: nm, placeholder: r.dflt, autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', oninput: tUpd });
  r.ds = h('textarea', { rows: 2, placeholder: str(t.description) || '(no description)', oninput: tUpd });
  r.ds.value = ds;
  r.err = h('small.ferr', null);
  r.el = h('div.tool', null, h('label.tcb', null, r.cb),
    h('div', {},
      h('div.mono.tkey', null, key),
      h('div.tf', null, h('label', {}, 'Exposed name', r.nm, r.err), h('label', {}, 'Description', r.ds)),
      t.description && ds && h('details.muted', null, h('summary', {}, 'Original description'), str(t.description))));
  return r;
}
function tUpd() {
  const names = dict();
  for (const r of S.rows) (names[r.nm.value.trim() || r.dflt] = names[r.nm.value.trim() || r.dflt] || []).push(r.key);
  let bad = 0;
  for (const r of S.rows) {
    const v = r.nm.value.trim(), same = v ? names[v].filter(x => x !== r.key) : [];
    const msg = v && !/^[a-zA-Z0-9_-]{1,64}$/.test(v) ? 'Use 1–64 letters, digits, _ or -.' : same.length ? 'Also the name of ' + same.join(', ') : '';
    r.err.textContent = msg;
    r.nm.setAttribute('aria-invalid', !!msg);
    bad += !!msg;
    r.el.classList.toggle('off', !r.cb.checked);
    r.el.classList.toggle('chg', tChanged(r));
  }
  const on = rs => `${rs.filter(r => r.cb.checked).length} of ${rs.length}`;
  for (const g of S.groups) g.cnt.textContent = on(g.rows) + ' enabled';
  $('#t-sum').textContent = on(S.rows) + ' tools enabled';
  updDirty();
  return bad;
}
function filterTools() {
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
    $('#t-q').value = '';
    filterTools();
    S.rows.find(x => x.err.textContent).nm.focus();
    return toast('Fix the exposed names marked in red first.', 'err');
  }
  // Start from the file as loaded (entries of tools not listed now are kept) and store only what differs from the default.
  const out = JSON.parse(J(S.tCfg)), T = out.tools;
  for (const r of S.rows.filter(tChanged)) {
    const e = isObj(T[r.key]) ? T[r.key] : {}, nv = r.nm.value.trim(), dv = r.ds.value.trim();
    if (r.cb.checked !== r.init.en) { if (r.cb.checked) delete e.enabled; else e.enabled = false; }
    if (nv !== r.init.nm) { delete e.displayName; delete e.exposedName; if (nv && nv !== r.dflt) e.exposedName = nv; }
    if (dv !== r.init.ds.trim()) { delete e.description; delete e.exposedDescription; if (dv && dv !== str(r.t.description)) e.exposedDescription = dv; }
    if (Object.keys(e).length) T[r.key] = e; else delete T[r.key];
  }
  const b = $('#save');
  b.disabled = true;
  try {
    const d = await api('POST', '/admin/tools/config', out);
    S.tCfg = out;
    for (const r of S.rows) r.init = { en: r.cb.checked, nm: r.nm.value.trim(), ds: r.ds.value.trim() };
    tUpd();
    toast((d && d.message) || 'Tool configuration saved.');
    if (await reloadProxy()) loadTools();
  } catch (e) {
    if (e.status !== 400) fail('Saving failed', e);
    else {
      const ps = (e.data.problems || [e.message]).map(str);
      setProbs(ps, 'The tool configuration was rejected');
      for (const r of S.rows) { const p = ps.find(x => x.includes(r.key)); if (p) r.err.textContent = p; }
      $('#t-probs').scrollIntoView({ block: 'nearest' });
      toast('The tool configuration was rejected; see the problems listed.', 'err');
    }
  }
  b.disabled = false;
  updDirty();
}

// ---------- profiles ----------
// A profile ("profiles" in mcp_server.json, src/profile_config.rs) is a named view of the aggregate, served at
// /mcp/<name> and /sse/<name>; the keys and tokens bound to it see nothing else. The cards show what the proxy
// serves now (/admin/tools/list); the editor writes only the members the user changed.
const MASK = '********';
// A stored key or token is shown as the mask and its number in the stored list (********2): the proxy puts
// back the value that number names, wherever the entry has moved.
const isMask = v => /^\*{8}\d+$/.test(v);
const P_KNOWN = ['servers', 'tools', 'prompts', 'resources', 'rename', 'keys', 'tokens', 'toolSearch'];
const P_GLOBS = ['tools.allow', 'tools.deny', 'prompts.allow', 'prompts.deny', 'resources.allow', 'resources.deny'];
const SECRETS = { keys: ['API key', 'key'], tokens: ['Bearer token', 'token'] };
// The proxy's rules: a profile name is part of a URL, a shown tool name is one any client accepts.
const isPName = n => /^[A-Za-z0-9_.-]{1,64}$/.test(n) && n !== '.' && n !== '..';
const isTName = n => /^[a-zA-Z0-9_-]{1,64}$/.test(n);
const isRef = v => /^\$\{[A-Za-z0-9_]+\}$/.test(v);
const plural = (n, one) => `${n} ${one}${n === 1 ? '' : 's'}`;
// The profiles a problem names: "profile 'a': …", "profiles 'a' and 'b' bind …".
const pNamed = p => [...str(p).matchAll(/\bprofiles? '([^']*)'(?: and '([^']*)')?/g)].flatMap(m => [m[1], m[2]]).filter(x => x != null);
const savedServers = () => Object.keys(isObj(savedCfg().mcpServers) ? savedCfg().mcpServers : {});
const pAll = () => (S.cfg && isObj(S.cfg.profiles) ? S.cfg.profiles : dict());

async function loadProfiles(force) {
  if (!S.cfg || force || !pDirty()) {
    try {
      await loadCfg(force ? 'profiles' : '');
      if (force || !pDirty()) { S.pErr = dict(); S.pGlob = []; }
    } catch (e) { fail('Loading the configuration failed', e); }
  }
  renderProfiles();
  await pollProfiles();
}
// What each profile exposes now, who is bound to it, and the proxy's problems about profiles.
async function pollProfiles() {
  if (S.busyP) return;
  S.busyP = true; S.last.p = Date.now();
  try {
    const l = (await api('GET', '/admin/tools/list')) || {};
    S.pLive = dict(Object.fromEntries((Array.isArray(l.profiles) ? l.profiles : []).filter(isObj).map(p => [str(p.name), p])));
    S.pRun = (l.problems || []).map(str).filter(p => pNamed(p).length);
    S.tNames = (l.tools || []).filter(t => isObj(t) && t.enabled !== false).map(t => str(t.exposedName)).filter(Boolean).sort();
    S.pLoadErr = '';
  } catch (e) { S.pLoadErr = e.status === 401 ? '' : 'What the profiles expose is unavailable: ' + e.message; }
  S.busyP = false;
  if (S.view === 'profiles') renderProfiles();
}
function renderProfiles() {
  const el = $('#p-list'), ps = S.cfg && S.cfg.profiles, names = Object.keys(pAll());
  S.pErr = S.pErr || dict(); S.pOpen = S.pOpen || dict();
  const glob = S.pGlob || [];
  $('#p-probs').hidden = !glob.length;
  $('#p-probs').replaceChildren(...list(S.pGlobTitle || 'Problems', glob));
  el.replaceChildren();
  if (!S.cfg) el.append(h('p.empty', null, 'The configuration could not be loaded.'));
  else if (ps != null && !isObj(ps)) el.append(h('p.empty', null, "'profiles' in mcp_server.json is not an object of named profiles; adding a profile replaces it."));
  else if (!names.length) el.append(h('p.empty', null, 'No profiles yet. A profile is a named view of the servers: its own URLs (/mcp/<name>, /sse/<name>), and the keys bound to it see nothing else.'));
  else for (const n of names) el.append(pCard(n, pAll()[n]));
  const live = Object.keys(S.pLive || {}).length;
  $('#p-sum').textContent = S.pLoadErr || (names.length ? `${plural(names.length, 'profile')} · ${live} served now` : '');
  updDirty();
}
function pCard(n, o) {
  o = isObj(o) ? o : {};
  const sp = savedCfg().profiles, old = isObj(sp) && has(sp, n) ? sp[n] : undefined;
  const chg = old === undefined ? 'new' : J(old) !== J(o) && 'modified', live = S.pLive && S.pLive[n];
  const probs = [...(S.pErr[n] || []), ...(S.pRun || []).filter(p => pNamed(p).includes(n))];
  const servers = Array.isArray(o.servers) ? (o.servers.length ? o.servers.map(str).join(', ') : 'none') : 'all';
  const count = k => (Array.isArray(o[k]) ? o[k].length : 0), nk = count('keys'), nt = count('tokens');
  const stored = [nk && plural(nk, 'key'), nt && plural(nt, 'token')].filter(Boolean).join(', ');
  const creds = live && !chg
    ? (Array.isArray(live.credentials) && live.credentials.length ? live.credentials.map(str).join(', ') : 'none: any key or token not bound to another profile may use its URLs')
    : stored ? stored + ' (bound on Save & reload)' : 'none: any key or token not bound to another profile may use its URLs';
  let tools;
  if (!S.pLive) tools = h('span.muted', null, 'Loading…');
  else if (!live) tools = h('span.muted', null, chg === 'new' ? 'Not served yet: Save & reload.' : 'Not served now (see the problems, or Save & reload).');
  else {
    const ts = Array.isArray(live.tools) ? live.tools.map(str) : [];
    const what = plural(ts.length, 'tool') + (live.toolSearch ? ', found through search_tools and called through call_tool' : '') + (chg ? ' (as served now, before the unsaved changes)' : '');
    tools = ts.length
      ? h('details.ptools', { open: !!S.pOpen[n], ontoggle: e => { S.pOpen[n] = e.target.open; } }, h('summary', {}, what), h('ul.mono', null, ts.map(t => h('li', {}, t))))
      : h('span', { class: 'muted' }, what);
  }
  const origin = location.origin;
  return h('article', { class: 'card srv prof' + (probs.length ? ' bad' : ''), 'data-profile': n },
    h('div.srv-h', null,
      h('div.srv-t', null, h('strong', {}, n)),
      o.toolSearch === true && h('span.badge', { title: 'Lists search_tools, call_tool and list_servers instead of its tools' }, 'tool search'),
      chg && h('span.badge.chg', null, chg)),
    h('dl.pinfo', null,
      h('dt', {}, 'URLs'), h('dd', {}, h('code', { title: origin + '/mcp/' + n }, '/mcp/' + n), ' · ', h('code', { title: origin + '/sse/' + n }, '/sse/' + n)),
      h('dt', {}, 'Servers'), h('dd.psrv', null, servers),
      h('dt', {}, 'Credentials'), h('dd.pcred', null, creds),
      h('dt', {}, 'Tools'), h('dd.ptool', null, tools)),
    probs.length > 0 && h('ul.problems', null, probs.map(p => h('li', {}, p))),
    h('div.srv-a', null,
      h('button', { onclick: () => openProfile(n) }, 'Edit'),
      h('button.danger', { onclick: () => pDel(n) }, 'Delete')));
}
function pDel(n) {
  if (!confirm(`Delete profile "${n}"? Its URLs stop answering and its keys lose access on Save & reload.`)) return;
  delete S.cfg.profiles[n];
  if (!Object.keys(S.cfg.profiles).length && savedCfg().profiles === undefined) delete S.cfg.profiles;
  delete S.pErr[n];
  renderProfiles();
  toast(`Deleted profile ${n} (not saved yet).`);
}
// Problems the proxy gave (a refused save, a failed reload), on the cards of the profiles they name.
function pPlace(ps, title) {
  S.pErr = dict(); S.pGlob = []; S.pGlobTitle = title;
  // A file's profile problems come joined in one line: one problem a line here.
  for (const p of ps.map(str).flatMap(x => x.split(/; (?=profiles? ')/))) {
    const named = pNamed(p).filter(n => has(pAll(), n));
    S.pGlob.push(p);
    for (const n of named) (S.pErr[n] = S.pErr[n] || []).push(p);
  }
  renderProfiles();
}
async function saveProfiles() {
  const bad = Object.entries(pAll()).map(([n, o]) => [n, pCheck(n, o)]).filter(([, ps]) => ps.length);
  if (bad.length) {
    S.pErr = dict(Object.fromEntries(bad)); S.pGlob = []; renderProfiles();
    return toast('Fix the problems marked in red before saving.', 'err');
  }
  // The profiles' part only: everything else as saved.
  const b = $('#save'), body = withProfiles(savedCfg(), S.cfg.profiles), snap = J(body);
  b.disabled = true;
  try {
    await api('POST', '/admin/config', body);
    S.saved = snap; S.pErr = dict(); S.pGlob = [];
    renderProfiles();
    toast('Profiles saved.');
    if (await reloadProxy()) await pollProfiles();
  } catch (e) {
    if (e.status !== 400) fail('Saving failed', e);
    else {
      pPlace(e.data.problems || [e.message], 'The proxy refused the profiles');
      $('#p-probs').scrollIntoView({ block: 'nearest' });
      toast('The profiles were rejected; see the problems listed.', 'err');
    }
  }
  b.disabled = false;
  updDirty();
}
// What the file alone shows wrong with a profile (the proxy checks the same, and whether its keys and tokens
// are in ALLOWED_KEYS / ALLOWED_TOKENS, on save).
function pCheck(n, o) {
  const ps = [], strs = v => Array.isArray(v) && v.every(x => typeof x === 'string');
  if (!isPName(n)) ps.push(`The name '${n}' is not 1–64 letters, digits, _, - or . (it is part of the URL).`);
  if (!isObj(o)) return ps.concat('A profile must be a JSON object.');
  const extra = Object.keys(o).filter(k => !P_KNOWN.includes(k));
  if (extra.length) ps.push(`Not known to the proxy: ${extra.join(', ')} (edit the profile to remove them).`);
  if (o.servers != null) {
    if (!strs(o.servers)) ps.push("'servers' must be a list of server keys.");
    else for (const k of o.servers) if (!savedServers().includes(k)) ps.push(`'servers' names '${k}', which is not a saved server.`);
  }
  for (const f of ['tools', 'prompts', 'resources']) {
    if (o[f] == null) continue;
    if (!isObj(o[f]) || Object.keys(o[f]).some(k => k !== 'allow' && k !== 'deny') || ['allow', 'deny'].some(k => o[f][k] != null && !strs(o[f][k]))) ps.push(`'${f}' must be {"allow": [globs], "deny": [globs]}.`);
  }
  if (o.rename != null) {
    if (!isObj(o.rename)) ps.push("'rename' must map exposed tool names to shown names.");
    else {
      const to = Object.values(o.rename).map(str);
      const badName = to.find(t => !isTName(t)), twice = to.find((t, i) => to.indexOf(t) !== i);
      if (badName != null) ps.push(`'rename' gives '${badName}', which is not a tool name (1–64 letters, digits, _ or -).`);
      if (twice != null) ps.push(`'rename' gives two tools the name '${twice}'.`);
    }
  }
  for (const k of ['keys', 'tokens']) if (o[k] != null && !strs(o[k])) ps.push(`'${k}' must be a list of strings.`);
  if (o.toolSearch != null && typeof o.toolSearch !== 'boolean') ps.push("'toolSearch' must be true or false.");
  return ps;
}

// ----- profile editor -----
const peAreas = () => $$('#pe [data-p]');
function globsOf(o, f) {
  const [a, b] = f.split('.'), v = isObj(o[a]) ? o[a][b] : null;
  return Array.isArray(v) ? v.map(str).join('\n') : str(v);
}
function peRow(box, cls, cells, r) {
  r.err = h('small.ferr', null);
  r.el = h('div', { class: 'prow ' + cls }, ...cells, h('button.danger', { type: 'button', onclick: () => { r.el.remove(); peNumber(); } }, 'Remove'), r.err, r.hint);
  box.append(r.el);
  return r;
}
const peInput = (value, p) => h('input', { value, autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', ...p });
function peRename(from, to) {
  const r = {};
  r.from = peInput(from, { list: 'pe-tools', placeholder: 'exposed name, e.g. time__get_current_time' });
  r.to = peInput(to, { placeholder: 'shown as' });
  return peRow($('#pe-ren'), 'ren', [r.from, h('span.muted', { 'aria-hidden': 'true' }, '→'), r.to], r);
}
// A key or token; `orig` is its index in the list as loaded (-1: added here).
function peSecret(kind, value, orig) {
  const r = { kind, orig };
  r.hint = h('small.muted', null);
  r.inp = peInput(value, { oninput: () => peHint(r) });
  peRow($('#pe-' + kind), 'sec', [r.inp], r);
  peHint(r);
  return r;
}
function peHint(r) {
  const v = r.inp.value.trim();
  r.hint.textContent = isMask(v) && r.orig >= 0 ? 'the stored value, kept on save' : isRef(v) ? 'read from the environment variable' : '';
}
function peNumber() {
  for (const kind in SECRETS) $$(`#pe-${kind} .prow`).forEach((row, i) => $('input', row).setAttribute('aria-label', `${SECRETS[kind][0]} ${i + 1}`));
  $$('#pe-ren .prow').forEach((row, i) => {
    const [a, b] = $$('input', row);
    a.setAttribute('aria-label', `Rename ${i + 1}: tool`); b.setAttribute('aria-label', `Rename ${i + 1}: shown as`);
  });
}
const peRows = () => ({
  ren: $$('#pe-ren .prow').map(el => S.pe.rows.find(r => r.el === el)),
  keys: $$('#pe-keys .prow').map(el => S.pe.rows.find(r => r.el === el)),
  tokens: $$('#pe-tokens .prow').map(el => S.pe.rows.find(r => r.el === el)),
});
// The form as values: what is compared to tell a change, and what is written.
function peVals() {
  const R = peRows(), v = { name: $('#pe-name').value.trim(), toolSearch: $('#pe-search').checked };
  v.servers = $$('#pe-srv input').filter(c => c.checked).map(c => c.value);
  for (const el of peAreas()) v[el.dataset.p] = el.value.split('\n').map(s => s.trim()).filter(Boolean).join('\n');
  v.rename = R.ren.map(r => [r.from.value.trim(), r.to.value.trim()]).filter(([a, b]) => a || b);
  for (const k in SECRETS) v[k] = R[k].map(r => r.inp.value.trim()).filter(Boolean);
  return v;
}
function openProfile(n) {
  if (!S.cfg) return toast('The configuration is not loaded.', 'err');
  const o0 = n == null ? {} : pAll()[n], o = isObj(o0) ? o0 : {}, f = $('#pe-form');
  S.pe = { n, o, rows: [] };
  $('#pe-title').textContent = n == null ? 'Add profile' : 'Edit profile ' + n;
  $('#pe-name').value = n == null ? '' : n;
  setErr($('#pe-name'));
  // Servers: the saved ones (a profile is saved with the saved servers); one listed that is none of them is
  // shown, checked, so that it can be unchecked.
  const known = savedServers(), listed = Array.isArray(o.servers) ? o.servers.map(str) : [];
  const keys = [...known, ...listed.filter(k => !known.includes(k))];
  $('#pe-srv').replaceChildren(...keys.map(k => h('label.chk', {}, h('input', { type: 'checkbox', value: k, checked: listed.includes(k) }), k,
    !known.includes(k) && h('small.ferr', null, 'not a saved server'))));
  if (!keys.length) $('#pe-srv').append(h('span.muted', null, 'No saved servers.'));
  const unsaved = Object.keys(S.cfg.mcpServers || {}).filter(k => !known.includes(k));
  $('#pe-srv-note').textContent = (Array.isArray(o.servers) && !o.servers.length ? "The file lists no server ('servers': []): the profile shows none. " : '')
    + (unsaved.length ? `Not offered until saved on the Servers page: ${unsaved.join(', ')}.` : '');
  setErr($('#pe-srv'));
  for (const el of peAreas()) { el.value = globsOf(o, el.dataset.p); setErr(el); }
  $('#pe-more').open = ['prompts', 'resources'].some(x => x in o);
  $('#pe-ren').replaceChildren(); $('#pe-keys').replaceChildren(); $('#pe-tokens').replaceChildren();
  for (const [a, b] of Object.entries(isObj(o.rename) ? o.rename : {})) S.pe.rows.push(peRename(a, str(b)));
  for (const k in SECRETS) (Array.isArray(o[k]) ? o[k] : []).forEach((v, i) => S.pe.rows.push(peSecret(k, str(v), i)));
  $('#pe-search').checked = o.toolSearch === true;
  const extra = Object.keys(o).filter(x => !P_KNOWN.includes(x));
  $('#pe-extra').textContent = extra.length ? `Not known to the proxy, which refuses them; removed on Apply: ${extra.join(', ')}` : '';
  let dl = $('#pe-tools');
  if (!dl) { dl = h('datalist', { id: 'pe-tools' }); document.body.append(dl); }
  dl.replaceChildren(...(S.tNames || []).map(t => h('option', { value: t })));
  peNumber();
  S.pe.init = J(peVals());
  $('#pe').showModal();
  $('.dlg-b', f).scrollTop = 0;
}
for (const kind in SECRETS) $(`#pe-${kind}-add`).onclick = () => { S.pe.rows.push(peSecret(kind, '', -1)); peNumber(); S.pe.rows.at(-1).inp.focus(); };
$('#pe-ren-add').onclick = () => { S.pe.rows.push(peRename('', '')); peNumber(); S.pe.rows.at(-1).from.focus(); };
function peClose(ev) {
  if (ev) ev.preventDefault();
  if (J(peVals()) === S.pe.init || confirm('Discard the changes made in this form?')) $('#pe').close();
}
$('#pe').addEventListener('cancel', peClose);
$('#pe-cancel').onclick = () => peClose();
$('#p-add').onclick = () => openProfile(null);
$('#pe-form').addEventListener('submit', ev => {
  ev.preventDefault();
  const E = S.pe, v = peVals(), R = peRows(), ps = pAll(), name = v.name, init = JSON.parse(E.init);
  // A row's first problem is shown under it, and the input it is about marked.
  const flag = (r, m, inp) => { if (!r.err.textContent) { r.err.textContent = m; inp.setAttribute('aria-invalid', true); } };
  for (const r of S.pe.rows) { r.err.textContent = ''; for (const i of $$('input', r.el)) i.setAttribute('aria-invalid', false); }
  let nameErr = '';
  if (!name) nameErr = 'A name is required.';
  else if (!isPName(name)) nameErr = 'Use 1–64 letters, digits, _, - or . (it is part of the URL).';
  else if (name !== E.n && has(ps, name)) nameErr = 'Another profile already has this name.';
  setErr($('#pe-name'), nameErr);
  const gone = v.servers.filter(k => !savedServers().includes(k));
  setErr($('#pe-srv'), gone.length ? `Not a saved server: ${gone.join(', ')}. Uncheck it.` : '');
  // Renames: a tool once, each shown name a valid tool name and given once.
  const from = dict(), to = dict();
  for (const r of R.ren) {
    const a = r.from.value.trim(), b = r.to.value.trim();
    if (!a && !b) continue;
    if (!a) flag(r, 'Enter the exposed name of the tool to rename.', r.from);
    else if (from[a]) flag(r, `${a} is renamed twice.`, r.from);
    if (!b) flag(r, 'Enter the name to show it under.', r.to);
    else if (!isTName(b)) flag(r, 'A tool name is 1–64 letters, digits, _ or -.', r.to);
    else if (to[b]) flag(r, `Two tools would be shown as ${b}.`, r.to);
    from[a] = to[b] = true;
  }
  // Keys and tokens: a stored (masked) value stays in its own profile, a new one is the value itself, none twice,
  // and none bound to another profile too (a credential sees one profile).
  for (const kind in SECRETS) {
    const seen = dict(), [, one] = SECRETS[kind];
    for (const r of R[kind]) {
      const x = r.inp.value.trim();
      if (!x) continue;
      if (x === MASK || isMask(x)) {
        if (r.orig < 0 || !isMask(x)) flag(r, `This is the mask, not a ${one}: enter the ${one} itself.`, r.inp);
        else if (E.n == null || name !== E.n) flag(r, `A stored ${one} stays with the profile's name: enter it again to rename the profile.`, r.inp);
      } else {
        if (seen[x]) flag(r, `This ${one} is listed twice.`, r.inp);
        const other = Object.keys(ps).find(n => n !== E.n && isObj(ps[n]) && Array.isArray(ps[n][kind]) && ps[n][kind].includes(x));
        if (other != null) flag(r, `Also bound to profile ${other}: a ${one} sees one profile.`, r.inp);
      }
      seen[x] = true;
    }
  }
  const first = $('#pe [aria-invalid=true]');
  if (first) { const d = first.closest('details'); if (d) d.open = true; return ($('input', first) || first).focus(); }
  // Only what changed is written, so untouched members keep their form.
  const o = E.o;
  if (J(v.servers) !== J(init.servers)) { if (v.servers.length) o.servers = v.servers; else delete o.servers; }
  for (const g of P_GLOBS) {
    if (v[g] === init[g]) continue;
    const [a, b] = g.split('.'), arr = v[g] ? v[g].split('\n') : [];
    if (!isObj(o[a])) o[a] = {};
    if (arr.length) o[a][b] = arr; else delete o[a][b];
    if (!Object.keys(o[a]).length) delete o[a];
  }
  if (J(v.rename) !== J(init.rename)) { if (v.rename.length) o.rename = Object.fromEntries(v.rename); else delete o.rename; }
  for (const k in SECRETS) if (J(v[k]) !== J(init[k])) { if (v[k].length) o[k] = v[k]; else delete o[k]; }
  if (v.toolSearch !== init.toolSearch) { if (v.toolSearch) o.toolSearch = true; else delete o.toolSearch; }
  for (const x of Object.keys(o)) if (!P_KNOWN.includes(x)) delete o[x];
  if (!isObj(S.cfg.profiles)) S.cfg.profiles = {};
  if (E.n == null) S.cfg.profiles[name] = o;
  else if (name !== E.n) S.cfg.profiles = Object.fromEntries(Object.entries(S.cfg.profiles).map(([x, y]) => x === E.n ? [name, o] : [x, y]));
  // The proxy's problems with this profile were about what the form just changed.
  if (S.pErr) { delete S.pErr[name]; if (E.n != null) delete S.pErr[E.n]; }
  S.pGlob = (S.pGlob || []).filter(p => !pNamed(p).some(x => x === name || x === E.n));
  $('#pe').close();
  renderProfiles();
  toast(pDirty() ? `Profile ${name}: changes kept; Save & reload to apply them.` : 'No changes.');
});

// ---------- logs ----------
async function loadLogs(jump) {
  if (S.busyL) return;
  S.busyL = true; S.last.l = Date.now();
  try { S.logs = ((await api('GET', '/admin/logs')) || {}).lines || []; renderLogs(jump); } catch (e) { if (e.status !== 401) $('#l-sum').textContent = 'Could not load the logs: ' + e.message; }
  S.busyL = false;
}
function renderLogs(jump) {
  const box = $('#l-out'), q = $('#l-q').value.trim().toLowerCase(), lines = S.logs.map(str).filter(l => l.toLowerCase().includes(q)), sig = q + '\n' + lines.join('\n');
  $('#l-sum').textContent = q ? `${lines.length} of ${S.logs.length} lines` : `${S.logs.length} lines · refreshed every 3 s`;
  if (sig === S.logSig && !jump) return;
  const bottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  S.logSig = sig;
  box.replaceChildren(...lines.map(l => h('div', { class: /\bERROR\b/.test(l) ? 'e' : /\bWARN/.test(l) ? 'w' : /\b(DEBUG|TRACE)\b/.test(l) ? 'd' : '' }, l)));
  if (!lines.length) box.append(h('div.d', null, q ? 'No line matches the filter.' : 'No log lines yet.'));
  if (bottom || jump) box.scrollTop = box.scrollHeight;
}
$('#l-q').addEventListener('input', () => renderLogs(true));

api('GET', '/admin/session').then(s => { S.csrf = s.csrfToken; start(s.user); }, e => showLogin(e.status === 401 ? '' : 'Could not check the session: ' + e.message));
const authorized = new URLSearchParams(location.search).get('authorized');
if (authorized) { toast(`Logged in to ${authorized}: it connects in a moment.`); history.replaceState(null, '', '/admin/'); }
