// Hive web interface: one page, hash routes, live updates over server-sent events, video over
// Media Source Extensions. No framework and no build step; every text put into the page goes
// through textContent (never innerHTML), and nothing runs inline (the server's CSP forbids it).
'use strict';

(() => {
  // ---------------------------------------------------------------- limits and constants

  /** Tiles in the grid. */
  const GRID_TILES_MAX = 16;
  /** Longest system name, in bytes (UTF-8), as the server checks it. */
  const SYSTEM_NAME_BYTES_MAX = 64;
  /** Longest user name, in bytes. */
  const USER_NAME_BYTES_MAX = 64;
  /** Longest camera name, in bytes. */
  const CAMERA_NAME_BYTES_MAX = 200;
  /** Longest camera URL, in bytes. */
  const CAMERA_URL_BYTES_MAX = 2048;
  /** Shortest password the server accepts. */
  const PASSWORD_LEN_MIN = 8;
  /** Most cameras a server may be given. */
  const MAX_CAMERAS_MAX = 10000;

  /** Live: seek when the picture lags the newest frame by more than this, s… */
  const LIVE_LAG_MAX_S = 1.5;
  /** …to this far behind it, s. */
  const LIVE_LAG_TARGET_S = 0.3;
  /** Media kept behind the played position, s. */
  const KEEP_BEHIND_S = 30;
  /** Bytes read from the network but not yet given to the decoder before reading pauses. */
  const QUEUE_BYTES_MAX = 8 * 1024 * 1024;
  /** Archive playback this close to now (ms) is live again. */
  const LIVE_AGAIN_MS = 2500;
  /** Wait before the first reconnection of a video, and the most between two. */
  const RETRY_MS_MIN = 1000;
  const RETRY_MS_MAX = 10000;

  /** Timeline zoom bounds. */
  const SPAN_MS_MIN = 5 * 60 * 1000;
  const SPAN_MS_MAX = 7 * 24 * 3600 * 1000;
  const SPAN_MS_DEFAULT = 3600 * 1000;
  /** After a person touched the timeline, it does not follow the playback for this long. */
  const TIMELINE_HANDS_OFF_MS = 6000;
  /** How often the timeline asks for recorded ranges. */
  const ARCHIVE_REFRESH_MS = 5000;

  /** Colours of recording servers on the timeline. */
  const SERVER_COLOURS = ['#3fb950', '#58a6ff', '#d29922', '#bc8cff', '#39c5cf', '#ff7b72', '#e3b341', '#7ee787'];
  const RECORDED_COLOUR = '#3fb950';

  // ---------------------------------------------------------------- state

  const S = {
    /** {name, role, csrf} of the logged-in person, or null. */
    session: null,
    /** Bumped on every login and logout: answers for an older session are dropped. */
    epoch: 0,
    /** GET /api/system, kept current by the event stream. */
    system: null,
    /** GET /api/cameras, kept current by the event stream. */
    cameras: null,
    /** GET /api/routes. */
    routes: [],
    routesAt: 0,
    routesTimer: null,
    /** System time minus this browser's clock, ms. */
    offsetMs: 0,
    events: null,
    eventsRetry: null,
    eventsDelayMs: 1000,
    /** The page shown: {update(kind), leave()}. */
    page: null,
    pageName: null,
  };

  const $ = (sel, root = document) => root.querySelector(sel);

  // ---------------------------------------------------------------- DOM helpers

  /** Properties set as DOM properties rather than attributes. */
  const PROPS = new Set(['hidden', 'disabled', 'checked', 'required', 'selected', 'readOnly', 'noValidate', 'multiple']);

  /**
   * An element: h('button', {class: 'btn', onclick: f, text: 'Go'}, ...children).
   * Strings among the children become text nodes; null/false children are skipped.
   */
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    let value;
    for (const [k, v] of Object.entries(props || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'value') value = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (PROPS.has(k)) el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const child of children.flat(Infinity)) {
      if (child == null || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    if (value !== undefined) el.value = value;
    return el;
  }

  /** Sets a node's text only when it changed (no needless layout, no lost selection). */
  function setText(el, text) {
    const t = text == null ? '' : String(text);
    if (el.textContent !== t) el.textContent = t;
  }

  /** Rebuilds an element's children only when `sig` changed. */
  function fill(el, sig, build) {
    if (el._sig === sig) return;
    el._sig = sig;
    el.replaceChildren(...[build()].flat(Infinity).filter((c) => c != null && c !== false));
  }

  /**
   * Makes `container`'s children one per item, in order, reusing the element of each key:
   * rows keep their focus, hover and open selects while data streams in.
   */
  function syncList(container, items, keyOf, make, update, empty) {
    const old = new Map();
    for (const el of [...container.children]) {
      if (el._key === undefined) el.remove();
      else old.set(el._key, el);
    }
    let prev = null;
    for (const item of items) {
      const key = keyOf(item);
      let el = old.get(key);
      if (el) old.delete(key);
      else {
        el = make(item);
        el._key = key;
      }
      el._item = item;
      update(el, item);
      const want = prev ? prev.nextSibling : container.firstChild;
      if (el !== want) container.insertBefore(el, want);
      prev = el;
    }
    for (const el of old.values()) el.remove();
    if (!items.length && empty) container.append(empty());
  }

  /** A table cell with the label the phone layout shows before its value. */
  function cell(cls, label) {
    return h('td', { class: cls, 'data-label': label });
  }

  function badge(text, kind, title) {
    return h('span', { class: `badge ${kind || ''}`, text, title });
  }

  function toast(message, kind = 'info') {
    const box = $('#toasts');
    const t = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' },
      h('span', { text: message }),
      h('button', { class: 'toast-close', type: 'button', 'aria-label': 'Dismiss', text: '×', onclick: () => t.remove() }));
    box.append(t);
    while (box.children.length > 4) box.firstChild.remove();
    setTimeout(() => t.remove(), kind === 'error' ? 9000 : 4000);
  }

  // ---------------------------------------------------------------- formatting

  const pad = (n, w = 2) => String(n).padStart(w, '0');

  /** Local date and time with seconds. */
  function fmtClock(ms) {
    if (ms == null || !Number.isFinite(ms)) return '—';
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fmtDuration(s) {
    if (s == null || !Number.isFinite(Number(s))) return '—';
    s = Math.max(0, Math.floor(Number(s)));
    const d = Math.floor(s / 86400), hr = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (d) return `${d} d ${hr} h`;
    if (hr) return `${hr} h ${m} min`;
    if (m) return `${m} min ${sec} s`;
    return `${sec} s`;
  }

  function fmtSpan(ms) {
    const min = ms / 60000;
    if (min < 60) return `${Math.round(min)} min`;
    const hours = min / 60;
    if (hours < 48) return `${Math.round(hours * 10) / 10} h`;
    return `${Math.round((hours / 24) * 10) / 10} d`;
  }

  function fmtMicros(us) {
    if (us == null) return null;
    if (us < 1000) return `${us} µs`;
    if (us < 1e6) return `${(us / 1000).toFixed(us < 10000 ? 2 : 1)} ms`;
    return `${(us / 1e6).toFixed(2)} s`;
  }

  function plural(n, one, many) {
    return `${n} ${n === 1 ? one : many || one + 's'}`;
  }

  const shortId = (id) => (id ? String(id).slice(0, 8) : '');
  const bytes = (s) => new TextEncoder().encode(s).length;
  // eslint-disable-next-line no-control-regex
  const hasControl = (s) => /[\u0000-\u001f\u007f-\u009f]/.test(s);

  /** System time now, by this browser's clock corrected with the server's offset. */
  const systemNow = () => Date.now() + S.offsetMs;

  const role = () => (S.session ? S.session.role : null);
  const isOwner = () => role() === 'owner';
  const isAdmin = () => role() === 'owner' || role() === 'admin';

  function serverName(id) {
    if (!id) return '';
    const s = S.system && S.system.servers.find((x) => x.id === id);
    return s ? s.name || shortId(s.id) : shortId(id);
  }

  function cameraById(id) {
    return (S.cameras || []).find((c) => c.id === id) || null;
  }

  // ---------------------------------------------------------------- the API

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** The words of an error answer: its `message`, else its status. */
  async function errorText(resp) {
    try {
      const body = await resp.json();
      if (body && body.message) return String(body.message);
    } catch (_) { /* not JSON */ }
    return `the server answered ${resp.status} ${resp.statusText || ''}`.trim();
  }

  /**
   * Calls the API. Changes carry the session's CSRF token; a 401 returns the page to the
   * login form; an error answer throws an ApiError with the server's message.
   */
  async function api(method, path, body) {
    const epoch = S.epoch;
    const opts = { method, credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } };
    if (method !== 'GET') {
      opts.headers['Content-Type'] = 'application/json';
      opts.headers['X-CSRF-Token'] = (S.session && S.session.csrf) || '';
      if (body !== undefined) opts.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, opts);
    } catch (e) {
      throw new ApiError(0, 'network', 'cannot reach the server; check the connection and try again');
    }
    if (!resp.ok) {
      const message = await errorText(resp);
      let code = 'error';
      if (resp.status === 401 && !(method === 'POST' && path === '/api/session')) {
        code = 'unauthorized';
        if (epoch === S.epoch) loggedOut(S.session ? message : '');
      }
      throw new ApiError(resp.status, code, message);
    }
    if (resp.status === 204) return null;
    const type = resp.headers.get('Content-Type') || '';
    return type.includes('json') ? resp.json() : resp.text();
  }

  /** Runs `work` and shows a failure as a toast. */
  async function attempt(work) {
    try {
      return await work();
    } catch (e) {
      if (e.code !== 'unauthorized') toast(e.message, 'error');
      return undefined;
    }
  }

  // ---------------------------------------------------------------- sessions

  async function boot() {
    $('#logout').addEventListener('click', logout);
    window.addEventListener('hashchange', route);
    try {
      const session = await api('GET', '/api/session');
      startApp(session);
    } catch (e) {
      if (e.code === 'unauthorized') return; // the login form is up
      showLogin(e.message);
    }
  }

  function startApp(session) {
    S.epoch += 1;
    S.session = session;
    const epoch = S.epoch;
    document.body.className = `role-${session.role}`;
    $('#top').hidden = false;
    setText($('#whoami'), `${session.name} · ${session.role}`);
    openEvents();
    api('GET', '/api/system').then((s) => epoch === S.epoch && !S.system && setSystem(s)).catch(() => {});
    api('GET', '/api/cameras').then((c) => epoch === S.epoch && !S.cameras && setCameras(c)).catch(() => {});
    syncClock();
    route();
  }

  /** Learns how far the system's time is from this browser's clock. */
  async function syncClock() {
    const t0 = Date.now();
    try {
      const t = await api('GET', '/api/time');
      const t1 = Date.now();
      if (t && Number.isFinite(t.system_ms) && t1 - t0 < 2000) S.offsetMs = t.system_ms - (t0 + t1) / 2;
    } catch (_) { /* keep the last offset */ }
  }

  /** Everything of the session stops: pages, videos, the event stream. */
  function stopSession() {
    S.epoch += 1;
    if (S.page) S.page.leave();
    S.page = null;
    S.pageName = null;
    closeEvents();
    clearTimeout(S.routesTimer);
    S.session = null;
    S.system = null;
    S.cameras = null;
    S.routes = [];
    for (const d of document.querySelectorAll('dialog')) d.remove();
  }

  function loggedOut(message) {
    showLogin(message || '');
  }

  async function logout() {
    try {
      await api('DELETE', '/api/session');
    } catch (e) {
      // 401: the session had ended already. Anything else: the server still holds the
      // session and the browser its cookie, so the person must not walk away thinking
      // they are logged out.
      if (e.code !== 'unauthorized') {
        toast(`Not logged out: ${e.message}`, 'error');
        return;
      }
    }
    showLogin('');
  }

  function showLogin(message) {
    const existing = $('#login-form');
    if (existing && !S.session) {
      if (message) setText($('#login-error'), message);
      return;
    }
    stopSession();
    document.body.className = 'logged-out';
    $('#top').hidden = true;
    setText($('#whoami'), '');
    document.title = 'Hive';
    const name = h('input', { id: 'login-name', name: 'username', autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false', required: true });
    const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
    const error = h('p', { id: 'login-error', class: 'form-error', role: 'alert', text: message || '' });
    const submit = h('button', { id: 'login-submit', type: 'submit', class: 'btn primary wide', text: 'Log in' });
    // The session cookie is Secure: over plain HTTP a browser keeps it only on loopback.
    const loopback = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/.test(location.hostname);
    const insecure = location.protocol === 'http:' && !loopback
      ? h('p', { id: 'login-insecure', class: 'form-error', text: 'This page came over plain HTTP, so your browser will not keep the login. Open it with https:// instead.' })
      : null;
    const form = h('form', { id: 'login-form', class: 'login-card', noValidate: true },
      h('div', { class: 'login-brand' }, h('span', { class: 'logo big', 'aria-hidden': 'true' }), h('span', { text: 'Hive' })),
      h('p', { class: 'muted', text: 'Log in to your video system.' }),
      insecure,
      h('label', { for: 'login-name', text: 'User name' }), name,
      h('label', { for: 'login-password', text: 'Password' }), password,
      error, submit);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      setText(error, '');
      if (!name.value.trim()) { setText(error, 'Enter your user name.'); name.focus(); return; }
      if (!password.value) { setText(error, 'Enter your password.'); password.focus(); return; }
      submit.disabled = true;
      setText(submit, 'Logging in…');
      try {
        const session = await api('POST', '/api/session', { name: name.value.trim(), password: password.value });
        startApp(session);
      } catch (e) {
        setText(error, e.message);
        password.select();
      } finally {
        submit.disabled = false;
        setText(submit, 'Log in');
      }
    });
    $('#app').replaceChildren(h('div', { class: 'login-wrap' }, form));
    name.focus();
  }

  // ---------------------------------------------------------------- live updates

  function openEvents() {
    closeEvents();
    const epoch = S.epoch;
    const es = new EventSource('/api/events');
    S.events = es;
    es.addEventListener('open', () => {
      S.eventsDelayMs = 1000;
      $('#conn-status').hidden = true;
    });
    es.addEventListener('system', (e) => {
      try { setSystem(JSON.parse(e.data)); } catch (_) { /* a torn event; the next one repairs */ }
    });
    es.addEventListener('cameras', (e) => {
      try { setCameras(JSON.parse(e.data)); } catch (_) { /* as above */ }
    });
    es.addEventListener('error', () => {
      if (epoch !== S.epoch) return;
      $('#conn-status').hidden = false;
      if (es.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself
      // Refused (a 401, a full server): ask whether the session lives, then open again.
      es.close();
      S.events = null;
      const delay = S.eventsDelayMs;
      S.eventsDelayMs = Math.min(delay * 2, 15000);
      S.eventsRetry = setTimeout(async () => {
        if (epoch !== S.epoch) return;
        try {
          await api('GET', '/api/session');
          if (epoch === S.epoch) openEvents();
        } catch (e) {
          if (e.code !== 'unauthorized' && epoch === S.epoch) openEvents();
        }
      }, delay);
    });
  }

  // Leaving the page (or entering the back/forward cache) closes its streams at once: each
  // holds one of the six HTTP/1.1 connections a browser opens to this server, and the next
  // page would queue behind them.
  window.addEventListener('pagehide', () => {
    closeEvents();
    if (S.page) S.page.leave();
    S.page = null;
  });
  window.addEventListener('pageshow', (e) => {
    if (e.persisted) location.reload();
  });

  function closeEvents() {
    clearTimeout(S.eventsRetry);
    if (S.events) S.events.close();
    S.events = null;
    const conn = $('#conn-status');
    if (conn) conn.hidden = true;
  }

  function setSystem(system) {
    if (!system || !Array.isArray(system.servers)) return;
    S.system = system;
    setText($('#header-system'), system.name);
    document.title = `${system.name} · Hive`;
    scheduleRoutes();
    if (S.page) S.page.update('system');
  }

  function setCameras(cameras) {
    if (!Array.isArray(cameras)) return;
    S.cameras = cameras;
    if (S.page) S.page.update('cameras');
  }

  /** Asks for the routes again after a change of the system, at most every 2 s. */
  function scheduleRoutes() {
    if (S.routesTimer) return;
    const wait = Math.max(0, S.routesAt + 2000 - Date.now());
    const epoch = S.epoch;
    S.routesTimer = setTimeout(async () => {
      S.routesTimer = null;
      S.routesAt = Date.now();
      try {
        const routes = await api('GET', '/api/routes');
        if (epoch !== S.epoch || !Array.isArray(routes)) return;
        S.routes = routes;
        if (S.page) S.page.update('routes');
      } catch (_) { /* shown as unknown */ }
    }, wait);
  }

  // ---------------------------------------------------------------- routing

  const PAGES = {
    system: systemPage,
    cameras: camerasPage,
    camera: cameraPage,
    grid: gridPage,
    licenses: licensesPage,
    users: usersPage,
  };

  function route() {
    if (!S.session) return;
    const parts = location.hash.replace(/^#\/?/, '').split('/');
    let name = parts[0] || 'system';
    let arg = parts[1] ? decodeURIComponent(parts[1]) : null;
    if (!PAGES[name] || (name === 'camera' && !arg)) {
      name = 'system';
      arg = null;
    }
    if (S.page) S.page.leave();
    for (const d of document.querySelectorAll('dialog')) d.remove();
    for (const a of document.querySelectorAll('#nav a')) {
      const active = a.dataset.page === name || (name === 'camera' && a.dataset.page === 'cameras');
      a.classList.toggle('active', active);
      if (active) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    S.pageName = name;
    S.page = PAGES[name]($('#app'), arg);
    window.scrollTo(0, 0);
  }

  /** The parts every page shares: a section with a heading row. */
  function pageFrame(root, title, actions, ...body) {
    const h1 = h('h1', { text: title });
    const section = h('section', { class: 'page' },
      h('div', { class: 'page-head' }, h('div', { class: 'titles' }, h1), h('div', { class: 'head-actions' }, actions)),
      body);
    root.replaceChildren(section);
    return { section, h1 };
  }

  // ---------------------------------------------------------------- dialogs

  /** Thrown by a dialog's check: `message` goes in its error line, `field` gets the focus. */
  class FormError extends Error {
    constructor(message, field) {
      super(message);
      this.field = field;
    }
  }

  function ensure(cond, message, field) {
    if (!cond) throw new FormError(message, field);
  }

  function checkName(input, what, maxBytes) {
    const v = input.value;
    ensure(v.trim() !== '', `Enter ${what}.`, input);
    ensure(bytes(v) <= maxBytes, `${what[0].toUpperCase()}${what.slice(1)} must be at most ${maxBytes} bytes.`, input);
    ensure(!hasControl(v), `${what[0].toUpperCase()}${what.slice(1)} must not contain control characters.`, input);
    return v;
  }

  function field(label, input, hint) {
    return h('div', { class: 'field' },
      h('label', { for: input.id, text: label }), input,
      hint ? h('p', { class: 'hint', text: hint }) : null);
  }

  /**
   * A modal dialog with a form. `submit()` may throw (FormError or ApiError): its message
   * shows in the dialog's red error line and the dialog stays open; on success it closes.
   */
  function openDialog({ id, title, body, submitId, submitLabel, submit, adminOnly = true, danger = false }) {
    const old = document.getElementById(id);
    if (old) old.remove();
    const base = id.replace(/-dialog$/, '');
    const error = h('p', { id: `${base}-error`, class: 'form-error', role: 'alert' });
    const ok = h('button', { id: submitId, type: 'submit', class: `btn ${danger ? 'danger' : 'primary'}`, text: submitLabel });
    const cancel = h('button', { type: 'button', class: 'btn', text: 'Cancel' });
    const form = h('form', { method: 'dialog', noValidate: true },
      h('h2', { text: title }), body, error,
      h('div', { class: 'dialog-actions' }, cancel, ok));
    const dialog = h('dialog', { id, class: adminOnly ? 'admin-only' : '', 'aria-labelledby': `${base}-title` }, form);
    form.firstChild.id = `${base}-title`;
    cancel.addEventListener('click', () => dialog.close());
    dialog.addEventListener('close', () => dialog.remove());
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      setText(error, '');
      for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
      ok.disabled = true;
      const label = ok.textContent;
      setText(ok, 'Working…');
      try {
        const keepOpen = await submit();
        if (keepOpen !== true && dialog.isConnected) dialog.close();
      } catch (e) {
        setText(error, e.message);
        if (e instanceof FormError && e.field) {
          e.field.setAttribute('aria-invalid', 'true');
          e.field.focus();
        }
      } finally {
        ok.disabled = false;
        setText(ok, label);
      }
    });
    document.body.append(dialog);
    dialog.showModal();
    const first = form.querySelector('input:not([type=checkbox]), textarea, select');
    if (first) first.focus();
    return dialog;
  }

  /** Asks a yes/no question in a dialog; resolves true on yes. */
  function confirmDialog(title, text, yesLabel) {
    return new Promise((resolve) => {
      let answered = false;
      const d = openDialog({
        id: 'confirm-dialog', title, body: [h('p', { text })], submitId: 'confirm-ok', submitLabel: yesLabel,
        danger: true,
        submit: async () => { answered = true; resolve(true); },
      });
      d.addEventListener('close', () => { if (!answered) resolve(false); });
    });
  }

  // ---------------------------------------------------------------- system page

  function systemPage(root) {
    const actions = [];
    if (isOwner()) {
      actions.push(
        h('button', { id: 'rename-button', type: 'button', class: 'btn admin-only owner-only', text: 'Rename…', onclick: openRename }),
        h('button', { id: 'merge-button', type: 'button', class: 'btn primary admin-only owner-only', text: 'Merge a system…', onclick: () => openMerge(null) }));
    }
    const { h1 } = pageFrame(root, '', actions);
    h1.id = 'system-name';
    const idLine = h('span', { class: 'muted mono small' });
    h1.after(idLine);

    const cards = h('div', { class: 'cards' });
    const card = (label) => {
      const value = h('div', { class: 'card-value' });
      const note = h('div', { class: 'card-note' });
      cards.append(h('div', { class: 'card' }, h('div', { class: 'card-label', text: label }), value, note));
      return { value, note };
    };
    const cServers = card('Servers online');
    const cCameras = card('Cameras recording');
    const cLicenses = card('Licenses used');
    const cTime = card('Time primary');

    const heads = ['Name', 'Status', 'Addresses', 'Uptime', 'Recording', 'Failover', 'Time', 'Route'];
    if (isAdmin()) heads.push('');
    const tbody = h('tbody');
    const table = h('table', { id: 'servers', class: 'data stack' },
      h('thead', {}, h('tr', {}, heads.map((t) => h('th', { text: t, scope: 'col' })))), tbody);
    const others = h('div', { id: 'other-systems', class: 'others' });
    const section = root.firstChild;
    section.append(cards,
      h('h2', { text: 'Servers' }), h('div', { class: 'table-wrap' }, table),
      h('h2', { text: 'Other systems on the network' }),
      h('p', { class: 'muted small', text: 'Servers that answer on this network but are not in this system (another system secret, another version).' }),
      others);

    function makeServer(sv) {
      const tr = h('tr', { class: 'server', dataset: { id: sv.id } });
      tr._c = {
        name: cell('name', 'Name'),
        status: cell('status', 'Status'),
        addresses: cell('addresses mono', 'Addresses'),
        uptime: cell('uptime num', 'Uptime'),
        recording: cell('recording num', 'Recording'),
        failover: cell('failover', 'Failover'),
        time: cell('time', 'Time'),
        route: cell('route', 'Route'),
      };
      tr.append(...Object.values(tr._c));
      if (isAdmin()) {
        const acts = cell('actions', '');
        acts.append(h('button', {
          type: 'button', class: 'btn small edit admin-only', text: 'Failover…', title: 'Failover and time settings of this server',
          onclick: () => openFailover(tr._item),
        }));
        if (isOwner() && sv.is_self) {
          acts.append(h('button', {
            type: 'button', class: 'btn small split admin-only owner-only', text: 'Split off…',
            title: 'Take this server out of the system into a new one', onclick: () => openSplit(tr._item),
          }));
        }
        tr.append(acts);
      }
      return tr;
    }

    function updateServer(tr, sv) {
      const s = S.system;
      const online = sv.status === 'online' || (sv.status !== 'offline' && sv.online === true);
      const state = online ? 'online' : 'offline';
      tr.className = `server ${state}`;
      const c = tr._c;
      const primary = sv.id === s.time_primary;
      fill(c.name, JSON.stringify([sv.name, sv.is_self, sv.link_key, sv.id]), () => [
        h('div', { class: 'strong', text: sv.name || shortId(sv.id) }),
        h('div', { class: 'sub' },
          h('span', { class: 'mono', text: shortId(sv.id), title: `server ${sv.id}` }),
          sv.is_self ? badge('this server', 'info', 'The server this page talks to') : null,
          sv.link_key ? h('span', { class: 'mono muted', text: ` key ${String(sv.link_key).slice(0, 12)}…`, title: `link key ${sv.link_key}` }) : null),
      ]);
      setText(c.status, state);
      fill(c.addresses, (sv.addresses || []).join('\n'), () =>
        (sv.addresses || []).length ? sv.addresses.map((a) => h('div', { text: a })) : h('span', { class: 'muted', text: '—' }));
      // Uptime from when the server's run began (a stable field: no event per second).
      c.uptime.dataset.since = online && sv.up_since_ms ? String(sv.up_since_ms) : '';
      setText(c.uptime, online && sv.up_since_ms ? fmtDuration((Date.now() - sv.up_since_ms) / 1000) : '—');
      setText(c.recording, String(sv.cameras_recording ?? 0));
      fill(c.failover, JSON.stringify([sv.failover_enabled, sv.max_cameras]), () => [
        sv.failover_enabled ? badge('on', 'ok') : badge('off', 'muted'),
        h('span', { class: 'small', text: ` max ${sv.max_cameras}` }),
      ]);
      const offset = sv.time_offset_ms;
      const bound = sv.time_error_bound_us;
      let timeText = '';
      if (sv.is_self) {
        const off = offset == null ? '' : `offset ${offset > 0 ? '+' : ''}${offset} ms`;
        const err = bound == null ? 'not synced yet' : `± ${fmtMicros(bound)}`;
        timeText = [off, err].filter(Boolean).join(' · ');
      }
      fill(c.time, JSON.stringify([primary, timeText, sv.time_priority]), () => [
        primary ? badge('★ primary', 'primary', 'The primary time server: every server follows its clock') : null,
        timeText ? h('div', { class: 'small', text: timeText }) : (!primary ? h('span', { class: 'muted', text: '—' }) : null),
        h('div', { class: 'muted small', text: `time priority ${sv.time_priority}` }),
      ]);
      let routeText = '—';
      if (sv.is_self) routeText = 'this server';
      else {
        const r = S.routes.find((x) => x.server === sv.id);
        if (r) routeText = r.via === sv.id ? `direct (${plural(r.hops, 'hop')})` : `${plural(r.hops, 'hop')} via ${serverName(r.via)}`;
        else if (!online) routeText = 'no route';
      }
      setText(c.route, routeText);
    }

    function makeOther(o) {
      const el = h('div', { class: 'other-system', dataset: { id: o.id } });
      el._c = { name: h('h3'), servers: h('p', { class: 'small' }), reason: h('p', { class: 'reason' }) };
      const act = isOwner()
        ? h('button', { type: 'button', class: 'btn merge admin-only owner-only', text: 'Merge…', onclick: () => openMerge(el._item) })
        : null;
      el.append(h('div', { class: 'other-text' }, el._c.name, el._c.servers, el._c.reason), act);
      return el;
    }

    function updateOther(el, o) {
      setText(el._c.name, o.name);
      const ids = (o.servers || []).map(shortId).join(', ');
      setText(el._c.servers, `${plural((o.servers || []).length, 'server')}${ids ? ': ' + ids : ''} · system ${shortId(o.id)}`);
      setText(el._c.reason, o.reason || '');
    }

    function update() {
      const s = S.system;
      if (!s) {
        setText(h1, 'Loading…');
        return;
      }
      setText(h1, s.name);
      setText(idLine, `system ${s.id}`);
      const online = s.servers.filter((x) => x.status === 'online').length;
      setText(cServers.value, `${online} / ${s.servers.length}`);
      cServers.value.className = `card-value ${online < s.servers.length ? 'warn-text' : ''}`;
      setText(cServers.note, online < s.servers.length ? `${s.servers.length - online} offline` : 'all online');
      const recording = s.servers.reduce((n, x) => n + (x.cameras_recording || 0), 0);
      setText(cCameras.value, S.cameras ? `${recording} / ${S.cameras.length}` : String(recording));
      setText(cCameras.note, S.cameras ? 'of the cameras' : '');
      const lic = s.licenses || { total: 0, used: 0 };
      setText(cLicenses.value, `${lic.used} / ${lic.total}`);
      cLicenses.value.className = `card-value ${lic.used > lic.total ? 'bad-text' : ''}`;
      setText(cLicenses.note, lic.used > lic.total ? `${lic.used - lic.total} short` : `${lic.total - lic.used} free`);
      setText(cTime.value, serverName(s.time_primary) || '—');
      setText(cTime.note, 'every server follows its clock');
      syncList(tbody, s.servers, (x) => x.id, makeServer, updateServer);
      syncList(others, s.other_systems || [], (x) => x.id, makeOther, updateOther,
        () => h('p', { class: 'muted empty', text: 'None seen.' }));
    }

    update();
    scheduleRoutes();
    const routesEvery = setInterval(scheduleRoutes, 15000);
    const uptimeEvery = setInterval(() => {
      for (const td of document.querySelectorAll('td.uptime[data-since]')) {
        if (td.dataset.since) setText(td, fmtDuration((Date.now() - Number(td.dataset.since)) / 1000));
      }
    }, 1000);
    return {
      update,
      leave() { clearInterval(routesEvery); clearInterval(uptimeEvery); },
    };
  }

  function openRename() {
    const name = h('input', { id: 'rename-name', maxlength: 200, autocomplete: 'off', value: S.system ? S.system.name : '' });
    openDialog({
      id: 'rename-dialog', title: 'Rename the system', submitId: 'rename-submit', submitLabel: 'Rename',
      body: [
        h('p', { text: 'Every server of the system takes the new name. Clients and servers find the system by its secret, not its name.' }),
        field('New name', name, `1 to ${SYSTEM_NAME_BYTES_MAX} characters.`),
      ],
      submit: async () => {
        const v = checkName(name, 'a name', SYSTEM_NAME_BYTES_MAX).trim();
        await api('POST', '/api/system/rename', { name: v });
        toast(`The system is now called “${v}”.`, 'ok');
      },
    });
  }

  /** Whether `url` names a server the way POST /api/merge accepts: https://HOST[:PORT], http://…, or IP:PORT. */
  function mergeUrlOk(url) {
    const host = '(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)';
    const port = '(:([0-9]{1,5}))?';
    if (new RegExp(`^https?://${host}${port}/?$`).test(url)) return true;
    return /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$/.test(url);
  }

  function openMerge(other) {
    const here = S.system ? S.system.name : 'this system';
    const there = other ? `“${other.name}”` : 'the other system';
    const url = h('input', { id: 'merge-url', type: 'text', inputmode: 'url', autocomplete: 'off', spellcheck: 'false', placeholder: 'https://192.168.1.20:7001' });
    const user = h('input', { id: 'merge-user', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false' });
    const password = h('input', { id: 'merge-password', type: 'password', autocomplete: 'off' });
    const keep = h('select', { id: 'merge-keep' },
      h('option', { value: 'local', text: `This system's (“${here}”)` }),
      h('option', { value: 'remote', text: `The other system's (${there})` }));
    const explain = h('p', { class: 'note' });
    const explainKeep = () => setText(explain, keep.value === 'local'
      ? `The merged system keeps the name “${here}”, this system's settings and its owner. ${other ? other.name : 'The other system'}'s servers, cameras, archive, licenses and users join it.`
      : `The merged system takes ${there}'s name, settings and owner. This system's servers, cameras, archive, licenses and users join it; your login here may change to the other system's.`);
    keep.addEventListener('change', explainKeep);
    explainKeep();
    const intro = other
      ? `${there} answers on this network (${other.reason || 'not this system'}). Enter the address of one of its servers and the login of that system's owner or an administrator: their password proves you may join it.`
      : 'Enter the address of any server of the other system (it need not be on this network) and the login of that system\'s owner or an administrator: their password proves you may join it.';
    openDialog({
      id: 'merge-dialog', title: other ? `Merge with “${other.name}”` : 'Merge a system', submitId: 'merge-submit', submitLabel: 'Merge',
      body: [
        h('p', { text: intro }),
        field('Server address', url, 'Its API: https://HOST:PORT, or the peer port as IP:PORT.'),
        h('div', { class: 'field-row' }, field('Its administrator', user), field('Password', password)),
        field('Whose name and settings to keep', keep),
        explain,
      ],
      submit: async () => {
        const u = url.value.trim();
        ensure(u !== '', 'Enter the address of a server of the other system.', url);
        ensure(mergeUrlOk(u), 'The address must look like https://HOST:PORT (or http://…), or IP:PORT.', url);
        ensure(user.value.trim() !== '', 'Enter the other system\'s administrator.', user);
        ensure(password.value !== '', 'Enter that administrator\'s password.', password);
        const answer = await api('POST', '/api/merge', { url: u, user: user.value.trim(), password: password.value, keep: keep.value });
        if (answer && answer.merged === false) throw new Error('The merge did not happen.');
        toast('Merged: the servers appear here as they join.', 'ok');
      },
    });
  }

  function openSplit(self) {
    const here = S.system ? S.system.name : 'the system';
    const name = h('input', { id: 'split-name', autocomplete: 'off' });
    openDialog({
      id: 'split-dialog', title: `Split “${self.name || shortId(self.id)}” off`, submitId: 'split-submit', submitLabel: 'Split off', danger: true,
      body: [
        h('p', { text: `This server leaves “${here}” and becomes the first server of a new system. It takes its own cameras, their archive and its licenses, and a copy of the users; the other servers forget it. Nothing is reset.` }),
        h('p', { class: 'note', text: 'This page talks to this server, so it shows the new system afterwards.' }),
        field('Name of the new system', name, `1 to ${SYSTEM_NAME_BYTES_MAX} characters.`),
      ],
      submit: async () => {
        const v = checkName(name, 'a name', SYSTEM_NAME_BYTES_MAX).trim();
        ensure(!S.system || v !== S.system.name, 'Choose a name other than the current system\'s.', name);
        await api('POST', '/api/split', { name: v });
        toast(`This server is now the system “${v}”.`, 'ok');
      },
    });
  }

  function openFailover(sv) {
    const enabled = h('input', { id: 'failover-enabled', type: 'checkbox', checked: !!sv.failover_enabled });
    const max = h('input', { id: 'failover-max', type: 'number', min: 0, max: MAX_CAMERAS_MAX, step: 1, value: String(sv.max_cameras) });
    const prio = h('input', { id: 'time-priority', type: 'number', min: 0, step: 1, value: String(sv.time_priority) });
    openDialog({
      id: 'failover-dialog', title: `Server “${sv.name || shortId(sv.id)}”`, submitId: 'failover-submit', submitLabel: 'Save',
      body: [
        h('label', { class: 'check' }, enabled, ' Take over cameras of servers that fail (failover)'),
        field('Most cameras it records', max, `0 to ${MAX_CAMERAS_MAX}; failover stops adding cameras at this number.`),
        field('Time priority', prio, 'When no primary time server is chosen, the online server with the highest priority becomes it.'),
      ],
      submit: async () => {
        const m = Number(max.value);
        ensure(max.value !== '' && Number.isInteger(m) && m >= 0 && m <= MAX_CAMERAS_MAX, `Most cameras must be a whole number from 0 to ${MAX_CAMERAS_MAX}.`, max);
        const p = Number(prio.value);
        ensure(prio.value !== '' && Number.isInteger(p) && p >= 0 && p <= 4294967295, 'Time priority must be a whole number of 0 or more.', prio);
        const change = {};
        if (enabled.checked !== sv.failover_enabled) change.failover_enabled = enabled.checked;
        if (m !== sv.max_cameras) change.max_cameras = m;
        if (p !== sv.time_priority) change.time_priority = p;
        if (!Object.keys(change).length) return;
        await api('PATCH', `/api/servers/${encodeURIComponent(sv.id)}`, change);
        toast('Server settings saved.', 'ok');
      },
    });
  }

  // ---------------------------------------------------------------- cameras page

  /** A camera's state in words and a colour class. */
  function cameraState(c) {
    if (!c.recording) return { text: 'not recording', kind: 'muted', title: 'Recording is off for this camera' };
    const st = c.status;
    if (st && st.state) {
      const kind = { recording: 'ok', connecting: 'busy', error: 'bad', stopped: 'muted' }[st.state] || 'muted';
      const text = st.state === 'error' ? `error: ${st.reason || 'unknown'}` : st.state;
      const last = st.last_frame_us ? `last frame ${fmtClock(st.last_frame_us / 1000)}` : '';
      return { text, kind, title: last };
    }
    if (!c.server) return { text: 'no recorder', kind: 'bad', title: 'No server records it: every server that could is offline, or the licenses ran out' };
    return { text: 'assigned', kind: 'ok-dim', title: `${serverName(c.server)} records it; its detailed status is known on that server` };
  }

  function camerasPage(root) {
    const actions = isAdmin()
      ? [h('button', { id: 'camera-add', type: 'button', class: 'btn primary admin-only', text: 'Add camera…', onclick: () => openCamera(null) })]
      : [];
    const { h1 } = pageFrame(root, 'Cameras', actions);
    const count = h('span', { class: 'muted small' });
    h1.after(count);
    const heads = ['Name', 'Status', 'Recorder', 'Preferred server', 'Priority', 'RTSP', ''];
    const tbody = h('tbody');
    const table = h('table', { id: 'cameras', class: 'data stack' },
      h('thead', {}, h('tr', {}, heads.map((t) => h('th', { text: t, scope: 'col' })))), tbody);
    root.firstChild.append(h('div', { class: 'table-wrap' }, table));

    function make(c) {
      const tr = h('tr', { class: 'camera', dataset: { id: c.id } });
      const link = h('a', { href: `#/camera/${encodeURIComponent(c.id)}`, class: 'strong' });
      tr._c = {
        link,
        name: cell('name', 'Name'),
        status: cell('status', 'Status'),
        recorder: cell('recorder', 'Recorder'),
        preferred: cell('preferred', 'Preferred'),
        priority: cell('priority', 'Priority'),
        rtsp: cell('rtsp mono', 'RTSP'),
      };
      tr._c.name.append(link, h('div', { class: 'sub mono muted', text: shortId(c.id), title: `camera ${c.id}` }));
      const acts = cell('actions', '');
      acts.append(h('a', { class: 'btn small watch', href: `#/camera/${encodeURIComponent(c.id)}`, text: 'Watch' }));
      if (isAdmin()) {
        acts.append(
          h('button', { type: 'button', class: 'btn small edit admin-only', text: 'Edit…', onclick: () => openCamera(tr._item) }),
          h('button', { type: 'button', class: 'btn small danger remove admin-only', text: 'Remove', onclick: () => removeCamera(tr._item) }));
      }
      tr.append(tr._c.name, tr._c.status, tr._c.recorder, tr._c.preferred, tr._c.priority, tr._c.rtsp, acts);
      return tr;
    }

    function updateRow(tr, c) {
      const k = tr._c;
      setText(k.link, c.name);
      const st = cameraState(c);
      setText(k.status, st.text);
      k.status.className = `status state-${st.kind}`;
      if (st.title) k.status.title = st.title; else k.status.removeAttribute('title');
      setText(k.recorder, c.server ? serverName(c.server) : '');
      k.recorder.title = c.server ? `server ${c.server}` : 'nobody records it now';
      setText(k.preferred, serverName(c.preferred_server));
      setText(k.priority, c.failover_priority);
      fill(k.rtsp, (c.rtsp_urls || []).join('\n'), () => (c.rtsp_urls || []).length
        ? c.rtsp_urls.map((u) => h('div', { text: u }))
        : h('span', { class: 'muted', text: '—' }));
    }

    function update() {
      if (!S.cameras) {
        setText(count, 'loading…');
        return;
      }
      setText(count, plural(S.cameras.length, 'camera'));
      const cams = S.cameras.slice().sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
      syncList(tbody, cams, (c) => c.id, make, updateRow,
        () => h('tr', { class: 'empty' }, h('td', { colspan: heads.length, text: isAdmin() ? 'No cameras yet: add one with “Add camera…”.' : 'No cameras yet.' })));
    }

    update();
    return { update, leave() {} };
  }

  function cameraUrlOk(u) {
    return /^(rtsps?|https?):\/\/\S+$/.test(u) && bytes(u) <= CAMERA_URL_BYTES_MAX && !hasControl(u);
  }

  function openCamera(cam) {
    const servers = S.system ? S.system.servers : [];
    const name = h('input', { id: 'camera-name', autocomplete: 'off', value: cam ? cam.name : '' });
    const url = h('input', { id: 'camera-url', type: 'text', inputmode: 'url', autocomplete: 'off', spellcheck: 'false', placeholder: 'rtsp://user:password@192.168.1.64:554/stream1', value: cam ? cam.url : '' });
    const secondary = h('input', { id: 'camera-secondary-url', type: 'text', inputmode: 'url', autocomplete: 'off', spellcheck: 'false', placeholder: 'optional: the low-resolution stream', value: cam ? cam.secondary_url || '' : '' });
    const server = h('select', { id: 'camera-server' },
      servers.map((s) => h('option', { value: s.id, text: `${s.name || shortId(s.id)}${s.is_self ? ' (this server)' : ''}${s.status === 'offline' ? ' — offline' : ''}` })));
    server.value = cam ? cam.preferred_server : (S.system ? S.system.server_id : '');
    const priority = h('select', { id: 'camera-priority' },
      [['high', 'High — moves first'], ['medium', 'Medium'], ['low', 'Low — moves last'], ['never', 'Never moves']]
        .map(([v, t]) => h('option', { value: v, text: t })));
    priority.value = cam ? cam.failover_priority : 'medium';
    const recording = h('input', { id: 'camera-recording', type: 'checkbox', checked: cam ? cam.recording : true });
    openDialog({
      id: 'camera-dialog', title: cam ? `Edit “${cam.name}”` : 'Add a camera', submitId: 'camera-submit', submitLabel: cam ? 'Save' : 'Add',
      body: [
        field('Name', name),
        field('Stream URL', url, 'rtsp://, rtsps:// or http(s)://, with the camera\'s user and password if it needs them.'),
        field('Secondary stream URL', secondary, 'Optional. The grid plays it instead of the main stream.'),
        h('div', { class: 'field-row' }, field('Preferred server', server), field('Failover priority', priority)),
        h('label', { class: 'check' }, recording, ' Record this camera'),
      ],
      submit: async () => {
        const n = checkName(name, 'a name', CAMERA_NAME_BYTES_MAX);
        const u = url.value.trim();
        ensure(u !== '', 'Enter the camera\'s stream URL.', url);
        ensure(cameraUrlOk(u), `The stream URL must be rtsp://, rtsps://, http:// or https://, without spaces, at most ${CAMERA_URL_BYTES_MAX} bytes.`, url);
        const s2 = secondary.value.trim();
        ensure(s2 === '' || cameraUrlOk(s2), 'The secondary stream URL must be rtsp://, rtsps://, http:// or https://, without spaces.', secondary);
        if (!cam) {
          const body = { name: n, url: u, failover_priority: priority.value, recording: recording.checked };
          if (s2) body.secondary_url = s2;
          if (server.value) body.server = server.value;
          await api('POST', '/api/cameras', body);
          toast(`Camera “${n}” added.`, 'ok');
          return;
        }
        const change = {};
        if (n !== cam.name) change.name = n;
        if (u !== cam.url) change.url = u;
        if (s2 !== (cam.secondary_url || '')) change.secondary_url = s2;
        if (server.value && server.value !== cam.preferred_server) change.server = server.value;
        if (priority.value !== cam.failover_priority) change.failover_priority = priority.value;
        if (recording.checked !== cam.recording) change.recording = recording.checked;
        if (!Object.keys(change).length) return;
        await api('PATCH', `/api/cameras/${encodeURIComponent(cam.id)}`, change);
        toast(`Camera “${n}” saved.`, 'ok');
      },
    });
  }

  async function removeCamera(cam) {
    const yes = await confirmDialog(`Remove “${cam.name}”?`,
      'The camera leaves the system and stops recording. Its recorded video stays on the servers until retention removes it.', 'Remove');
    if (!yes) return;
    await attempt(async () => {
      await api('DELETE', `/api/cameras/${encodeURIComponent(cam.id)}`);
      toast(`Camera “${cam.name}” removed.`, 'ok');
    });
  }

  // ---------------------------------------------------------------- video player

  function unsupportedText(codec, rtspUrls) {
    const c = String(codec || '');
    const name = /^(hvc1|hev1)/i.test(c) ? 'H.265' : /^(avc1|avc3)/i.test(c) ? 'H.264' : (c || 'this video');
    const how = (rtspUrls || []).length
      ? `use the RTSP URL ${rtspUrls.join(' or ')} in a player such as VLC`
      : 'play it over RTSP in a player such as VLC';
    return `This browser cannot decode ${name}${c ? ` (${c})` : ''}; ${how}.`;
  }

  /**
   * Plays one camera in a <video> through Media Source Extensions: live (latency kept low) or
   * from an archive position at a speed (continuing into live), reconnecting when the stream
   * breaks. `onChange(player)` hears every change of its mode or status.
   */
  class Player {
    constructor(video, { cameraId, stream = 0, onChange = () => {}, rtspUrls = () => [], transport = 'http' }) {
      this.video = video;
      this.transport = transport;
      this.cameraId = cameraId;
      this.stream = stream;
      this.onChange = onChange;
      this.rtspUrls = rtspUrls;
      this.gen = 0;
      this.mode = 'live';
      this.speed = 1;
      this.posMs = null;
      this.startUs = null;
      this.status = 'connecting…';
      this.kind = 'busy';
      this.retryMs = RETRY_MS_MIN;
      this.queue = [];
      this.queued = 0;
      this.onVideoError = () => {
        if (!this.sb || !video.error) return;
        this.lost(`the browser could not decode the video (${video.error.message || 'error ' + video.error.code})`);
      };
      video.addEventListener('error', this.onVideoError);
    }

    /** The system time of the frame shown, ms since the epoch; null before the first frame. */
    clockMs() {
      if (this.startUs == null || !this.sb || this.video.readyState < 2) return null;
      return this.startUs / 1000 + this.video.currentTime * 1000;
    }

    live() {
      this.open(null, 1);
    }

    at(posMs, speed) {
      this.open(posMs, speed);
    }

    stop() {
      this.gen += 1;
      this.teardown();
      this.video.removeEventListener('error', this.onVideoError);
      this.video.removeAttribute('src');
      this.video.load();
    }

    setStatus(status, kind) {
      this.status = status;
      this.kind = kind;
      this.onChange(this);
    }

    label() {
      return this.mode === 'live' ? 'live' : `archive ${this.speed}×`;
    }

    teardown() {
      clearInterval(this.tickTimer);
      clearTimeout(this.retryTimer);
      this.tickTimer = null;
      this.retryTimer = null;
      if (this.ac) this.ac.abort();
      this.ac = null;
      if (this.socket) this.socket.close();
      this.socket = null;
      this.sb = null;
      this.ms = null;
      this.queue = [];
      this.queued = 0;
      if (this.drained) this.drained();
      this.drained = null;
      if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
      this.objectUrl = null;
    }

    async open(posMs, speed) {
      this.teardown();
      const gen = ++this.gen;
      this.mode = posMs == null ? 'live' : 'archive';
      this.speed = this.mode === 'live' ? 1 : speed || 1;
      this.posMs = posMs;
      this.startUs = null;
      this.pendingSeekS = null;
      this.gotData = false;
      this.lastTime = -1;
      this.final = false;
      this.setStatus(this.kind === 'error' ? 'reconnecting…' : 'connecting…', 'busy');
      const ac = new AbortController();
      this.ac = ac;
      const q = new URLSearchParams();
      if (posMs != null) {
        q.set('pos', String(Math.round(posMs)));
        q.set('speed', String(this.speed));
      }
      if (this.stream) q.set('stream', String(this.stream));
      const qs = q.toString();
      const url = `/api/cameras/${encodeURIComponent(this.cameraId)}/video.mp4${qs ? '?' + qs : ''}`;
      if (this.transport === 'ws') {
        this.openSocket(gen, url.replace('/video.mp4', '/video.ws'));
        return;
      }
      let resp;
      try {
        resp = await fetch(url, { credentials: 'same-origin', cache: 'no-store', signal: ac.signal });
      } catch (e) {
        if (gen === this.gen) this.lost('cannot reach the server');
        return;
      }
      if (gen !== this.gen) {
        ac.abort();
        return;
      }
      if (!resp.ok) {
        const message = await errorText(resp);
        if (gen !== this.gen) return;
        if (resp.status === 401) {
          loggedOut(message);
          return;
        }
        if (resp.status === 404 && this.stream === 1) {
          // No secondary stream after all: the main one.
          this.stream = 0;
          this.open(posMs, speed);
          return;
        }
        // A request the server will never accept is not retried.
        this.lost(message, resp.status === 400 || resp.status === 403);
        return;
      }
      const codec = resp.headers.get('X-Hive-Codec') || '';
      const startUs = Number(resp.headers.get('X-Hive-Start-Us'));
      if (!(await this.attach(gen, codec, startUs, posMs))) {
        ac.abort();
        return;
      }
      this.read(gen, resp.body.getReader());
    }

    /** Sets up Media Source Extensions for `codec`; false if the page cannot play it. */
    async attach(gen, codec, startUs, posMs) {
      const mime = `video/mp4; codecs="${codec}"`;
      if (!window.MediaSource || !codec || !MediaSource.isTypeSupported(mime)) {
        this.lost(window.MediaSource ? unsupportedText(codec, this.rtspUrls()) : 'This browser has no Media Source Extensions to play video.', true);
        return false;
      }
      const ms = new MediaSource();
      this.ms = ms;
      this.objectUrl = URL.createObjectURL(ms);
      this.video.src = this.objectUrl;
      await new Promise((resolve) => ms.addEventListener('sourceopen', resolve, { once: true }));
      if (gen !== this.gen) return;
      let sb;
      try {
        sb = ms.addSourceBuffer(mime);
        sb.mode = 'segments';
      } catch (e) {
        this.lost(`the browser refused the video (${codec}): ${e.message}`, true);
        return false;
      }
      this.sb = sb;
      this.startUs = Number.isFinite(startUs) && startUs > 0 ? startUs : null;
      if (posMs != null && this.startUs != null) {
        // The stream starts at the keyframe before the position: skip to the position itself
        // once it is buffered.
        const s = (posMs - this.startUs / 1000) / 1000;
        if (s > 0.1) {
          this.pendingSeekS = s;
          this.pendingSince = performance.now();
        }
      }
      this.video.defaultPlaybackRate = this.speed;
      this.video.playbackRate = this.speed;
      sb.addEventListener('updateend', () => {
        if (gen === this.gen) this.appended();
      });
      this.tickTimer = setInterval(() => {
        if (gen === this.gen) this.tick();
      }, 500);
      return gen === this.gen;
    }

    /** Plays over a WebSocket (the grid: WebSockets do not count against the browser's six
     *  HTTP/1.1 connections per server). First a text message `{codec, start_us}`, then MP4. */
    openSocket(gen, path) {
      const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
      const ws = new WebSocket(`${scheme}//${location.host}${path}`);
      ws.binaryType = 'arraybuffer';
      this.socket = ws;
      let attached = null;
      ws.onmessage = async (m) => {
        if (gen !== this.gen) return;
        if (typeof m.data === 'string') {
          let hello = {};
          try { hello = JSON.parse(m.data); } catch (e) { /* a bad hello fails below */ }
          attached = this.attach(gen, hello.codec || '', Number(hello.start_us), this.posMs);
          if (!(await attached)) ws.close();
          return;
        }
        if (!attached || !(await attached) || gen !== this.gen) return;
        const value = new Uint8Array(m.data);
        // The socket cannot be paused: when the decoder is far behind, drop to catch up (the
        // picture repairs itself at the next keyframe).
        if (this.queued > QUEUE_BYTES_MAX) return;
        this.queue.push(value);
        this.queued += value.byteLength;
        this.pump();
      };
      ws.onclose = () => {
        if (gen === this.gen) this.lost(this.gotData ? 'the live stream ended' : 'the server refused the video (is the camera reachable?)');
      };
    }

    async read(gen, reader) {
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (gen !== this.gen) {
            reader.cancel().catch(() => {});
            return;
          }
          if (done) {
            this.lost(this.mode === 'live' ? 'the live stream ended' : 'the archive stream ended');
            return;
          }
          this.queue.push(value);
          this.queued += value.byteLength;
          this.pump();
          // Back-pressure: stop reading while the decoder is behind (the server then skips
          // to keyframes rather than queueing).
          while (this.queued > QUEUE_BYTES_MAX && gen === this.gen) {
            await new Promise((resolve) => { this.drained = resolve; });
          }
        }
      } catch (e) {
        if (gen === this.gen) this.lost('the connection to the server broke');
      }
    }

    /** Gives the queued bytes to the decoder when it is free. */
    pump() {
      const sb = this.sb;
      if (!sb || sb.updating || !this.ms || this.ms.readyState !== 'open') return;
      if (!this.queue.length) {
        this.trim(KEEP_BEHIND_S);
        return;
      }
      let data;
      if (this.queue.length === 1) data = this.queue[0];
      else {
        data = new Uint8Array(this.queued);
        let at = 0;
        for (const chunk of this.queue) {
          data.set(chunk, at);
          at += chunk.byteLength;
        }
      }
      this.queue = [];
      this.queued = 0;
      try {
        sb.appendBuffer(data);
      } catch (e) {
        if (e.name === 'QuotaExceededError') {
          this.queue.unshift(data);
          this.queued += data.byteLength;
          this.trim(5);
          const gen = this.gen;
          setTimeout(() => { if (gen === this.gen) this.pump(); }, 250);
        } else {
          this.lost(`the browser refused the video: ${e.message}`);
        }
      }
    }

    appended() {
      const v = this.video;
      if (!this.sb) return;
      const b = this.sb.buffered;
      if (!this.gotData && b.length) {
        this.gotData = true;
        this.retryMs = RETRY_MS_MIN;
        if (v.currentTime < b.start(0)) v.currentTime = b.start(0);
        this.setStatus(this.label(), 'ok');
      }
      if (this.pendingSeekS != null && b.length) {
        const end = b.end(b.length - 1);
        if (end >= this.pendingSeekS) {
          v.currentTime = this.pendingSeekS;
          this.pendingSeekS = null;
        } else if (performance.now() - this.pendingSince > 4000) {
          this.pendingSeekS = null;
        }
      }
      if (this.gotData && v.paused && !v.ended) v.play().catch(() => {});
      if (this.drained && this.queued <= QUEUE_BYTES_MAX) {
        const d = this.drained;
        this.drained = null;
        d();
      }
      this.pump();
    }

    /** Removes media more than `keepS` behind the played position. */
    trim(keepS) {
      const sb = this.sb;
      if (!sb || sb.updating) return;
      const b = sb.buffered;
      if (!b.length) return;
      const cut = this.video.currentTime - keepS;
      if (b.start(0) < cut - (keepS > 5 ? 5 : 0)) {
        try { sb.remove(b.start(0), cut); } catch (_) { /* busy; next tick */ }
      }
    }

    /** Every 500 ms: low latency live, jump over gaps, keep playing, live again at the end of the archive. */
    tick() {
      const v = this.video;
      const sb = this.sb;
      if (!sb || !this.gotData) return;
      const b = v.buffered;
      if (!b.length) return;
      const t = v.currentTime;
      const end = b.end(b.length - 1);
      if (this.mode === 'live' && end - t > LIVE_LAG_MAX_S) {
        v.currentTime = Math.max(b.start(b.length - 1), end - LIVE_LAG_TARGET_S);
      } else {
        // Stalled at a gap (or before the first range): on to the next range.
        let i = 0;
        while (i < b.length && b.end(i) <= t + 0.15) i += 1;
        if (i < b.length && b.start(i) > t + 0.01 && (t === this.lastTime || !this.inRange(b, t))) {
          v.currentTime = b.start(i) + 0.01;
        }
      }
      this.lastTime = v.currentTime;
      if (v.paused && !v.ended) v.play().catch(() => {});
      if (!this.queue.length) this.trim(KEEP_BEHIND_S);
      if (this.mode === 'archive') {
        const c = this.clockMs();
        if (c != null && c >= systemNow() - LIVE_AGAIN_MS) {
          this.mode = 'live';
          this.speed = 1;
          v.playbackRate = 1;
          this.setStatus('live', 'ok');
        }
      }
    }

    inRange(b, t) {
      for (let i = 0; i < b.length; i += 1) if (t >= b.start(i) && t < b.end(i)) return true;
      return false;
    }

    /** The stream broke: say why and, unless it cannot work, open it again where it was. */
    lost(reason, final = false) {
      const gen = this.gen;
      const clock = this.clockMs();
      this.teardown();
      this.final = final;
      if (final) {
        this.setStatus(reason, 'error');
        return;
      }
      const delay = this.retryMs;
      this.retryMs = Math.min(delay * 2, RETRY_MS_MAX);
      this.setStatus(`${reason}; trying again in ${Math.round(delay / 1000)} s`, 'error');
      this.retryTimer = setTimeout(() => {
        if (gen !== this.gen) return;
        if (this.mode === 'live') this.open(null, 1);
        else this.open(clock != null ? clock : this.posMs, this.speed);
      }, delay);
    }
  }

  // ---------------------------------------------------------------- timeline

  const TICK_STEPS_MS = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800]
    .map((s) => s * 1000);

  /**
   * The recorded ranges of a camera on a canvas, with the played position and now. Click or
   * drag-and-release to play from a time; wheel or buttons to zoom (5 min to 7 days);
   * horizontal wheel or shift+wheel to pan.
   */
  class Timeline {
    constructor(canvas, { cameraId, cursorMs, onPick, onView }) {
      this.canvas = canvas;
      this.cameraId = cameraId;
      this.cursorMs = cursorMs;
      this.onPick = onPick;
      this.onView = onView;
      this.spanMs = SPAN_MS_DEFAULT;
      this.endMs = systemNow() + this.spanMs * 0.1;
      this.ranges = [];
      this.fetched = null;
      this.touchedAt = 0;
      this.drag = null;
      this.hoverX = null;
      this.error = '';
      canvas.addEventListener('pointerdown', (e) => this.down(e));
      canvas.addEventListener('pointermove', (e) => this.move(e));
      canvas.addEventListener('pointerup', (e) => this.up(e));
      canvas.addEventListener('pointercancel', () => { this.drag = null; this.draw(); });
      canvas.addEventListener('pointerleave', () => { this.hoverX = null; this.draw(); });
      canvas.addEventListener('wheel', (e) => this.wheel(e), { passive: false });
      canvas.addEventListener('keydown', (e) => this.key(e));
      this.fetchEvery = setInterval(() => this.fetch(), ARCHIVE_REFRESH_MS);
      this.fetch();
    }

    stop() {
      clearInterval(this.fetchEvery);
      this.stopped = true;
    }

    get startMs() {
      return this.endMs - this.spanMs;
    }

    xAt(clientX) {
      const r = this.canvas.getBoundingClientRect();
      return Math.min(Math.max(clientX - r.left, 0), r.width);
    }

    msAt(x) {
      const w = this.canvas.clientWidth || 1;
      return this.startMs + (x / w) * this.spanMs;
    }

    touched() {
      this.touchedAt = performance.now();
    }

    changed() {
      this.onView(this);
      const f = this.fetched;
      if (!f || this.startMs < f.from || this.endMs > f.to || this.spanMs * 6 < f.to - f.from) this.fetch();
      this.draw();
    }

    zoom(factor, anchorMs) {
      const span = Math.min(Math.max(this.spanMs * factor, SPAN_MS_MIN), SPAN_MS_MAX);
      const anchor = anchorMs == null ? this.startMs + this.spanMs / 2 : anchorMs;
      const frac = (anchor - this.startMs) / this.spanMs;
      this.endMs = anchor - frac * span + span;
      this.spanMs = span;
      this.touched();
      this.changed();
    }

    /** Zooms around the played position when it is in view, else around the middle. */
    zoomStep(factor) {
      const c = this.cursorMs();
      this.zoom(factor, c != null && c >= this.startMs && c <= this.endMs ? c : null);
    }

    pan(ms) {
      this.endMs += ms;
      this.touched();
      this.changed();
    }

    /** Brings `ms` into view. */
    reveal(ms) {
      if (ms < this.startMs || ms > this.endMs) {
        this.endMs = ms + this.spanMs * 0.5;
        this.changed();
      }
    }

    down(e) {
      if (e.button !== 0) return;
      e.preventDefault();
      this.canvas.setPointerCapture(e.pointerId);
      const x = this.xAt(e.clientX);
      this.drag = { x0: x, x, moved: false };
      this.touched();
      this.draw();
    }

    move(e) {
      const x = this.xAt(e.clientX);
      this.hoverX = x;
      if (this.drag) {
        this.drag.x = x;
        if (Math.abs(x - this.drag.x0) > 3) this.drag.moved = true;
        this.touched();
      }
      this.draw();
    }

    up(e) {
      if (!this.drag) return;
      const x = this.xAt(e.clientX);
      this.drag = null;
      this.touched();
      this.onPick(this.snap(this.msAt(x)));
      this.draw();
    }

    /** A time picked in a gap plays from the next recording (or live when none follows). */
    snap(ms) {
      if (!this.fetched || ms < this.fetched.from || ms > this.fetched.to) return ms;
      const last = this.ranges.length - 1;
      for (let i = 0; i <= last; i += 1) {
        const r = this.ranges[i];
        const to = i === last && r.to_ms >= this.fetched.at - ARCHIVE_REFRESH_MS - 2000 ? Infinity : r.to_ms;
        if (ms < r.from_ms) return r.from_ms;
        if (ms <= to) return ms;
      }
      return Infinity;
    }

    wheel(e) {
      e.preventDefault();
      const w = this.canvas.clientWidth || 1;
      if (Math.abs(e.deltaX) > Math.abs(e.deltaY) || e.shiftKey) {
        const d = Math.abs(e.deltaX) > Math.abs(e.deltaY) ? e.deltaX : e.deltaY;
        this.pan((d / w) * this.spanMs);
      } else if (e.deltaY !== 0) {
        this.zoom(e.deltaY > 0 ? 1.25 : 0.8, this.msAt(this.xAt(e.clientX)));
      }
    }

    key(e) {
      const step = this.spanMs / 10;
      if (e.key === 'ArrowLeft') this.pan(-step);
      else if (e.key === 'ArrowRight') this.pan(step);
      else if (e.key === '+' || e.key === '=') this.zoomStep(0.5);
      else if (e.key === '-') this.zoomStep(2);
      else return;
      e.preventDefault();
    }

    async fetch() {
      if (this.fetching || this.stopped || document.hidden) return;
      const from = Math.floor(this.startMs - this.spanMs);
      const to = Math.ceil(this.endMs + this.spanMs);
      this.fetching = true;
      try {
        const a = await api('GET', `/api/cameras/${encodeURIComponent(this.cameraId)}/archive?from=${from}&to=${to}`);
        if (this.stopped) return;
        // Per server when the API says who recorded what (colours per server), else merged.
        this.ranges = (a && Array.isArray(a.by_server) && a.by_server.length) ? a.by_server
          : (a && Array.isArray(a.ranges)) ? a.ranges : [];
        this.fetched = { from, to, at: systemNow() };
        this.error = '';
      } catch (e) {
        this.error = e.message;
      } finally {
        this.fetching = false;
      }
      this.onView(this);
      this.draw();
    }

    /** The colour of a recording server: by its place in the system's list of servers. */
    colourIndex(server) {
      if (!server || !S.system) return 0;
      const i = S.system.servers.findIndex((s) => s.id === server);
      return (i < 0 ? 0 : i) % SERVER_COLOURS.length;
    }

    colourOf(server) {
      return server ? SERVER_COLOURS[this.colourIndex(server)] : RECORDED_COLOUR;
    }

    /** Keeps the played position in view while nobody handles the timeline. */
    follow() {
      if (this.drag || performance.now() - this.touchedAt < TIMELINE_HANDS_OFF_MS) return;
      const c = this.cursorMs();
      if (c == null) return;
      const margin = this.spanMs * 0.1;
      if (c > this.endMs - margin && c < this.endMs + this.spanMs) {
        this.endMs = c + margin;
        this.changed();
      } else if (c < this.startMs || c > this.endMs) {
        this.endMs = c + this.spanMs * 0.5;
        this.changed();
      }
    }

    draw() {
      const cv = this.canvas;
      const w = cv.clientWidth;
      const hgt = cv.clientHeight;
      if (!w || !hgt) return;
      const dpr = window.devicePixelRatio || 1;
      if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(hgt * dpr)) {
        cv.width = Math.round(w * dpr);
        cv.height = Math.round(hgt * dpr);
      }
      const g = cv.getContext('2d');
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      const start = this.startMs;
      const span = this.spanMs;
      const xOf = (ms) => ((ms - start) / span) * w;
      const now = systemNow();
      g.fillStyle = '#161b22';
      g.fillRect(0, 0, w, hgt);
      // The future.
      const nowX = xOf(now);
      if (nowX < w) {
        g.fillStyle = '#0d1117';
        g.fillRect(Math.max(0, nowX), 0, w - Math.max(0, nowX), hgt);
      }
      // Ticks and labels.
      const step = TICK_STEPS_MS.find((s) => (s / span) * w >= 80) || TICK_STEPS_MS[TICK_STEPS_MS.length - 1];
      const tz = new Date(start).getTimezoneOffset() * 60000;
      g.font = '11px system-ui, sans-serif';
      g.textBaseline = 'top';
      for (let t = Math.ceil((start - tz) / step) * step + tz; t <= start + span; t += step) {
        const x = Math.round(xOf(t)) + 0.5;
        const d = new Date(t);
        const midnight = d.getHours() === 0 && d.getMinutes() === 0 && d.getSeconds() === 0;
        g.strokeStyle = midnight ? '#6e7681' : '#30363d';
        g.beginPath();
        g.moveTo(x, 16);
        g.lineTo(x, hgt);
        g.stroke();
        let label;
        if (step >= 86400000 || (midnight && step >= 3600000)) label = `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
        else if (step < 60000) label = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
        else label = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
        g.fillStyle = midnight ? '#e6edf3' : '#8b949e';
        g.fillText(label, x + 3, 3);
      }
      // Recorded ranges; the newest grows to now while recording goes on.
      const bandY = 22;
      const bandH = hgt - bandY - 8;
      g.fillStyle = '#21262d';
      g.fillRect(0, bandY, w, bandH);
      const f = this.fetched;
      this.ranges.forEach((r, i) => {
        let to = r.to_ms;
        if (i === this.ranges.length - 1 && f && to >= f.at - ARCHIVE_REFRESH_MS - 2000) to = Math.max(to, now);
        const x1 = Math.max(0, xOf(r.from_ms));
        const x2 = Math.min(w, xOf(to));
        if (x2 < 0 || x1 > w) return;
        g.fillStyle = this.colourOf(r.server);
        g.fillRect(x1, bandY, Math.max(1, x2 - x1), bandH);
      });
      // Now.
      if (nowX >= 0 && nowX <= w) {
        g.strokeStyle = '#f85149';
        g.lineWidth = 1;
        g.beginPath();
        g.moveTo(Math.round(nowX) + 0.5, 14);
        g.lineTo(Math.round(nowX) + 0.5, hgt);
        g.stroke();
        g.fillStyle = '#f85149';
        g.textAlign = nowX > w - 30 ? 'right' : 'left';
        g.fillText('now', nowX + (nowX > w - 30 ? -3 : 3), hgt - 13);
        g.textAlign = 'left';
      }
      // The played position.
      const c = this.cursorMs();
      if (c != null) {
        const x = xOf(c);
        if (x >= 0 && x <= w) {
          g.strokeStyle = '#ffd33d';
          g.lineWidth = 2;
          g.beginPath();
          g.moveTo(x, 14);
          g.lineTo(x, hgt);
          g.stroke();
          g.fillStyle = '#ffd33d';
          g.beginPath();
          g.moveTo(x - 5, 12);
          g.lineTo(x + 5, 12);
          g.lineTo(x, 19);
          g.closePath();
          g.fill();
          g.lineWidth = 1;
        }
      }
      // Where a drag would play from, or where the pointer is.
      const px = this.drag ? this.drag.x : this.hoverX;
      if (px != null) {
        const ms = this.msAt(px);
        g.strokeStyle = this.drag ? '#ffffff' : 'rgba(255,255,255,0.45)';
        g.setLineDash([3, 3]);
        g.beginPath();
        g.moveTo(Math.round(px) + 0.5, bandY);
        g.lineTo(Math.round(px) + 0.5, hgt);
        g.stroke();
        g.setLineDash([]);
        const text = ms >= now ? 'live' : fmtClock(ms);
        const tw = g.measureText(text).width + 8;
        const tx = Math.min(Math.max(px - tw / 2, 0), w - tw);
        g.fillStyle = 'rgba(13,17,23,0.9)';
        g.fillRect(tx, bandY + 2, tw, 15);
        g.fillStyle = '#e6edf3';
        g.fillText(text, tx + 4, bandY + 4);
      }
      if (this.error) {
        g.fillStyle = '#f85149';
        g.fillText(`recorded ranges unavailable: ${this.error}`, 6, bandY + 4);
      }
    }
  }

  // ---------------------------------------------------------------- camera page

  function cameraPage(root, id) {
    const video = h('video', { id: 'live-video', class: 'main-video', muted: true, autoplay: true, playsinline: true });
    video.muted = true;
    video.playsInline = true;
    const message = h('div', { class: 'player-message', hidden: true });
    const status = h('span', { id: 'video-status', class: 'pill busy', role: 'status', text: 'connecting…' });
    const clock = h('span', { id: 'video-clock', class: 'clock', text: '—', title: 'System time of the frame shown' });
    const speedButtons = [1, 4, 16].map((n) => h('button', {
      id: `speed-${n}`, type: 'button', class: 'btn seg', text: `${n}×`, title: `Play the archive at ${n}× speed`,
      onclick: () => setSpeed(n),
    }));
    const liveButton = h('button', { id: 'live-button', type: 'button', class: 'btn live-button', title: 'Back to live video', onclick: () => goLive() },
      h('span', { class: 'live-dot', 'aria-hidden': 'true' }), 'Live');
    const zoomOut = h('button', { id: 'zoom-out', type: 'button', class: 'btn seg', text: '−', title: 'Zoom out (longer time)', 'aria-label': 'Zoom out' });
    const zoomIn = h('button', { id: 'zoom-in', type: 'button', class: 'btn seg', text: '+', title: 'Zoom in (shorter time)', 'aria-label': 'Zoom in' });
    const spanLabel = h('span', { id: 'timeline-span', class: 'muted small' });
    const canvas = h('canvas', { id: 'timeline', tabindex: 0, 'aria-label': 'Timeline of recorded video: click or drag to play from a time; wheel to zoom' });
    const legend = h('div', { id: 'timeline-legend', class: 'legend' });
    const title = h('h1', { id: 'camera-title', text: 'Camera' });
    const info = h('span', { class: 'muted small' });
    const rtsp = h('div', { class: 'rtsp-info small' });

    root.replaceChildren(h('section', { class: 'page camera-page' },
      h('div', { class: 'page-head' },
        h('div', { class: 'titles' }, h('a', { class: 'back', href: '#/cameras', text: '← Cameras' }), title, info)),
      h('div', { class: 'player' }, video, message),
      h('div', { class: 'controls' },
        h('div', { class: 'control-group' }, status, clock),
        h('div', { class: 'control-group' },
          h('div', { class: 'segmented', role: 'group', 'aria-label': 'Archive speed' }, speedButtons),
          liveButton),
        h('div', { class: 'control-group' },
          h('div', { class: 'segmented', role: 'group', 'aria-label': 'Timeline zoom' }, zoomOut, zoomIn), spanLabel)),
      h('div', { class: 'timeline-wrap' }, canvas),
      legend,
      rtsp));

    let chosenSpeed = 1;
    let legendSig = '';
    const player = new Player(video, {
      cameraId: id,
      onChange: showState,
      rtspUrls: () => { const c = cameraById(id); return c ? c.rtsp_urls || [] : []; },
    });
    const cursor = () => {
      const c = player.clockMs();
      if (c != null) return c;
      return player.mode === 'live' ? systemNow() : player.posMs;
    };
    const timeline = new Timeline(canvas, {
      cameraId: id,
      cursorMs: cursor,
      onPick: (ms) => playAt(ms),
      onView: showView,
    });
    zoomIn.addEventListener('click', () => timeline.zoomStep(0.5));
    zoomOut.addEventListener('click', () => timeline.zoomStep(2));

    function playAt(ms, speed) {
      const t = Number(ms);
      if (Number.isNaN(t) || t === -Infinity) return;
      if (speed != null && [1, 4, 16].includes(Number(speed))) chosenSpeed = Number(speed);
      if (t >= systemNow() - 1000) {
        goLive();
        return;
      }
      player.at(t, chosenSpeed);
      timeline.reveal(t);
      showState();
    }

    function goLive() {
      player.live();
      timeline.touchedAt = 0;
      timeline.reveal(systemNow());
      showState();
    }

    function setSpeed(n) {
      chosenSpeed = n;
      if (player.mode === 'archive') {
        const c = player.clockMs();
        player.at(c != null ? c : player.posMs, n);
      }
      showState();
    }

    function showState() {
      let text = player.status;
      let kind = player.kind;
      if (kind === 'ok') text = player.label();
      if (kind === 'ok' && player.mode === 'live' && chosenSpeed !== 1) text = `live (${chosenSpeed}× applies to the archive)`;
      setText(status, text);
      status.className = `pill ${kind}${player.mode === 'live' && kind === 'ok' ? ' live' : ''}`;
      const final = kind === 'error' && player.final;
      message.hidden = !final;
      setText(message, final ? player.status : '');
      for (const [i, n] of [1, 4, 16].entries()) {
        const active = player.mode === 'archive' ? player.speed === n : chosenSpeed === n;
        speedButtons[i].classList.toggle('active', active);
        speedButtons[i].setAttribute('aria-pressed', String(active));
      }
      liveButton.classList.toggle('active', player.mode === 'live');
      liveButton.setAttribute('aria-pressed', String(player.mode === 'live'));
    }

    function showView() {
      setText(spanLabel, `${fmtSpan(timeline.spanMs)} shown`);
      const servers = [...new Set(timeline.ranges.map((r) => r.server).filter(Boolean))];
      const sig = JSON.stringify([servers, servers.map(serverName)]);
      if (sig === legendSig) return;
      legendSig = sig;
      const item = (cls, text) => h('span', { class: 'legend-item' }, h('span', { class: `swatch ${cls}`, 'aria-hidden': 'true' }), text);
      const swatches = servers.length
        ? servers.map((s) => item(`c${timeline.colourIndex(s)}`, `recorded by ${serverName(s)}`))
        : [item('c0', 'recorded')];
      legend.replaceChildren(...swatches, item('gap', 'nothing recorded'), item('cursor', 'played position'), item('now', 'now'),
        h('span', { class: 'legend-help muted', text: 'Click or drag to play from a time · wheel or +/− to zoom · shift+wheel to pan' }));
    }

    function update() {
      const c = cameraById(id);
      if (!S.cameras) return;
      if (!c) {
        setText(title, 'Camera not found');
        setText(info, `There is no camera ${id} in this system (any more).`);
        return;
      }
      setText(title, c.name);
      document.title = `${c.name} · Hive`;
      const st = cameraState(c);
      setText(info, `${st.text}${c.server ? ` · recorded by ${serverName(c.server)}` : ''}`);
      fill(rtsp, JSON.stringify(c.rtsp_urls || []), () => (c.rtsp_urls || []).length
        ? [h('span', { class: 'muted', text: 'RTSP: ' }), c.rtsp_urls.map((u) => h('code', { text: u })),
          h('span', { class: 'muted', text: ' (add ?pos=<ms since epoch> for the archive, ?stream=1 for the secondary stream)' })]
        : h('span', { class: 'muted', text: 'No RTSP URL: nobody records this camera now.' }));
      showView();
    }

    const clockTimer = setInterval(() => {
      setText(clock, fmtClock(player.clockMs()));
      timeline.follow();
      timeline.draw();
    }, 250);
    const onResize = () => timeline.draw();
    window.addEventListener('resize', onResize);

    window.hive.current = {
      playAt,
      live: goLive,
      state: () => ({ mode: player.mode, speed: player.mode === 'live' ? 1 : player.speed, clock_ms: player.clockMs() }),
    };

    syncClock();
    player.live();
    update();
    showState();
    showView();
    timeline.draw();

    return {
      update(kind) {
        if (kind === 'cameras' || kind === 'system') update();
      },
      leave() {
        clearInterval(clockTimer);
        window.removeEventListener('resize', onResize);
        timeline.stop();
        player.stop();
        if (window.hive.current && window.hive.current.playAt === playAt) window.hive.current = null;
      },
    };
  }

  // ---------------------------------------------------------------- grid page


  function gridPage(root) {
    const note = h('p', { class: 'muted small' });
    const grid = h('div', { id: 'grid', class: 'video-grid' });
    pageFrame(root, 'Grid', [], note, grid);
    const limit = GRID_TILES_MAX;
    const tiles = new Map();

    function makeTile(c, stream, playing) {
      const video = h('video', { class: 'grid-video', dataset: { camera: c.id }, muted: true, autoplay: true, playsinline: true });
      video.muted = true;
      video.playsInline = true;
      const name = h('span', { class: 'tile-name' });
      const state = h('span', { class: 'tile-state' });
      const el = h('a', { class: 'tile', href: `#/camera/${encodeURIComponent(c.id)}`, title: 'Open this camera' },
        video, h('div', { class: 'tile-label' }, name, state));
      const tile = { el, video, name, state, stream, player: null };
      if (playing) {
        tile.player = new Player(video, {
          cameraId: c.id,
          stream,
          // Each tile over a WebSocket: they do not count against the browser's six
          // HTTP/1.1 connections to one server, so every tile plays.
          transport: 'ws',
          onChange: (p) => {
            setText(state, p.kind === 'ok' ? '' : p.status);
            el.classList.toggle('tile-error', p.kind === 'error');
          },
        });
        tile.player.live();
      } else {
        setText(state, `Not playing: the grid plays ${limit} cameras at once. Click to watch.`);
        el.classList.add('tile-idle');
      }
      return tile;
    }

    function update() {
      if (!S.cameras) {
        setText(note, 'Loading…');
        return;
      }
      const all = S.cameras.slice().sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
      const cams = all.slice(0, GRID_TILES_MAX);
      const parts = [];
      if (all.length > GRID_TILES_MAX) parts.push(`The first ${GRID_TILES_MAX} of ${all.length} cameras.`);
      parts.push('Click a camera to open it with its archive.');
      setText(note, cams.length ? parts.join(' ') : '');
      const keep = new Set();
      cams.forEach((c, i) => {
        const stream = c.secondary_url ? 1 : 0;
        const playing = i < limit;
        let t = tiles.get(c.id);
        if (t && (t.stream !== stream || !!t.player !== playing)) {
          if (t.player) t.player.stop();
          t.el.remove();
          t = null;
        }
        if (!t) {
          t = makeTile(c, stream, playing);
          tiles.set(c.id, t);
        }
        setText(t.name, c.name);
        keep.add(c.id);
        const want = grid.children[i];
        if (want !== t.el) grid.insertBefore(t.el, want || null);
      });
      for (const [cid, t] of tiles) {
        if (keep.has(cid)) continue;
        if (t.player) t.player.stop();
        t.el.remove();
        tiles.delete(cid);
      }
      for (const el of [...grid.children]) if (!cams.length || ![...tiles.values()].some((t) => t.el === el)) el.remove();
      if (!cams.length) {
        grid.append(h('p', { class: 'muted empty' }, 'No cameras yet. ', h('a', { href: '#/cameras', text: 'Add cameras' }), ' to see them here.'));
      }
      const n = cams.length;
      const cols = n <= 1 ? 1 : n <= 4 ? 2 : n <= 9 ? 3 : 4;
      grid.className = `video-grid cols-${cols} rows-${Math.max(1, Math.ceil(n / cols))}`;
    }

    update();
    return {
      update(kind) { if (kind === 'cameras') update(); },
      leave() {
        for (const t of tiles.values()) if (t.player) t.player.stop();
        tiles.clear();
      },
    };
  }

  // ---------------------------------------------------------------- licenses page

  /** The shortfall state (serde's externally tagged enum) as {kind, ...fields}. */
  function shortfall(state) {
    if (!state) return { kind: 'Within' };
    if (typeof state === 'string') return { kind: state };
    const kind = Object.keys(state)[0];
    return { kind, ...(state[kind] || {}) };
  }

  function licensesPage(root) {
    const total = h('div', { id: 'license-total', class: 'card-value', text: '…' });
    const used = h('div', { id: 'license-used', class: 'card-value', text: '…' });
    const free = h('div', { class: 'card-value', text: '…' });
    const warning = h('div', { id: 'license-warning', class: 'warning', role: 'status', hidden: true });
    const tbody = h('tbody');
    const table = h('table', { id: 'licenses', class: 'data stack' },
      h('thead', {}, h('tr', {}, ['Key', 'Channels', 'Server', 'Counts', 'License text'].map((t) => h('th', { text: t, scope: 'col' })))), tbody);
    let form = null;
    if (isAdmin()) {
      const key = h('textarea', { id: 'license-key', class: 'admin-only', rows: 3, spellcheck: 'false', autocomplete: 'off', placeholder: 'Paste a license key' });
      const error = h('p', { id: 'license-error', class: 'form-error', role: 'alert' });
      const add = h('button', { id: 'license-add', type: 'submit', class: 'btn primary admin-only', text: 'Add key' });
      form = h('form', { class: 'license-form admin-only', noValidate: true },
        h('h2', { text: 'Add a license key' }),
        h('p', { class: 'muted small', text: 'A key is bound to one server\'s hardware and counts while that server is in the system and online.' }),
        key, error, h('div', { class: 'dialog-actions' }, add));
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        setText(error, '');
        const text = key.value.trim();
        if (!text) {
          setText(error, 'Paste a license key first.');
          key.focus();
          return;
        }
        add.disabled = true;
        try {
          const k = await api('POST', '/api/licenses', { key: text });
          key.value = '';
          toast(`License key added: ${k && k.channels != null ? plural(k.channels, 'channel') : 'saved'}.`, 'ok');
          load();
        } catch (e) {
          setText(error, e.message);
        } finally {
          add.disabled = false;
        }
      });
    }
    pageFrame(root, 'Licenses', [],
      h('div', { class: 'cards' },
        h('div', { class: 'card' }, h('div', { class: 'card-label', text: 'Licensed channels' }), total),
        h('div', { class: 'card' }, h('div', { class: 'card-label', text: 'Cameras recording' }), used),
        h('div', { class: 'card' }, h('div', { class: 'card-label', text: 'Free' }), free)),
      warning,
      h('h2', { text: 'Keys' }),
      h('div', { class: 'table-wrap' }, table),
      form);

    let sig = '';
    let epoch = S.epoch;
    async function load() {
      try {
        const l = await api('GET', '/api/licenses');
        if (epoch !== S.epoch || !l) return;
        show(l);
      } catch (e) {
        if (e.code !== 'unauthorized') {
          warning.hidden = false;
          warning.className = 'warning bad';
          setText(warning, `The licenses could not be read: ${e.message}`);
        }
      }
    }

    function show(l) {
      setText(total, String(l.total));
      setText(used, String(l.used));
      setText(free, String(Math.max(0, l.total - l.used)));
      used.className = `card-value ${l.used > l.total ? 'bad-text' : ''}`;
      const st = shortfall(l.state);
      const short = Math.max(0, l.used - l.total);
      const stopped = (l.stopped_cameras || []).map((id) => { const c = cameraById(id); return c ? c.name : shortId(id); });
      let text = '';
      if (st.kind === 'Started') text = `${plural(l.used, 'camera')} record but only ${plural(l.total, 'channel is', 'channels are')} licensed (${short} short). The grace period starts now; add keys before it ends or the excess cameras stop recording.`;
      else if (st.kind === 'InGrace') text = `${short} license${short === 1 ? '' : 's'} short since ${fmtClock(st.since_ms)}. Every camera keeps recording until the grace period ends at ${fmtClock(st.ends_ms)}; add keys before then or ${short === 1 ? 'one camera stops' : `${short} cameras stop`} recording.`;
      else if (st.kind === 'Expired') text = `The grace period is over: ${plural(st.excess != null ? st.excess : short, 'camera')} beyond the licensed channels stopped recording (short since ${fmtClock(st.since_ms)}).`;
      else if (short > 0) text = `${short} license${short === 1 ? '' : 's'} short.`;
      if (stopped.length) text += ` Stopped: ${stopped.join(', ')}.`;
      warning.hidden = !text;
      warning.className = `warning ${st.kind === 'Expired' ? 'bad' : ''}`;
      setText(warning, text);
      const keys = (l.keys || []).slice().sort((a, b) => a.hardware_id.localeCompare(b.hardware_id) || a.id.localeCompare(b.id));
      syncList(tbody, keys, (k) => k.id, (k) => {
        const tr = h('tr', { class: 'license', dataset: { id: k.id } });
        tr._c = {
          id: cell('mono', 'Key'), channels: cell('num', 'Channels'), hw: cell('mono', 'Hardware'),
          counted: cell('', 'Counts'), text: cell('mono key-text', 'Key text'),
        };
        tr.append(...Object.values(tr._c));
        return tr;
      }, (tr, k) => {
        setText(tr._c.id, shortId(k.id));
        tr._c.id.title = k.id;
        setText(tr._c.channels, String(k.channels));
        // The server a key is bound to, by its hardware id.
        const server = ((S.system && S.system.servers) || []).find((sv) => sv.hardware_id === k.hardware_id);
        setText(tr._c.hw, server ? `${server.name} (${k.hardware_id})` : `${k.hardware_id} (no server of this system)`);
        fill(tr._c.counted, String(k.counted), () => k.counted
          ? badge('yes', 'ok', 'Signed by the vendor and bound to a server that is online')
          : badge('no', 'bad', 'Not counted: its server is offline or not in the system, or the key is not signed by the vendor'));
        setText(tr._c.text, k.key);
      }, () => h('tr', { class: 'empty' }, h('td', { colspan: 5, text: 'No license keys: no camera can record beyond the free channels.' })));
    }

    load();
    return {
      update(kind) {
        if (kind !== 'system' || !S.system) return;
        const s = JSON.stringify([S.system.licenses, S.system.servers.map((x) => x.status)]);
        if (s !== sig) {
          if (sig) load();
          sig = s;
        }
      },
      leave() { epoch = -1; },
    };
  }

  // ---------------------------------------------------------------- users page

  function usersPage(root) {
    const actions = [h('button', { id: 'password-button', type: 'button', class: 'btn', text: 'Change my password…', onclick: () => openPassword(null) })];
    if (isAdmin()) actions.unshift(h('button', { id: 'user-add', type: 'button', class: 'btn primary admin-only', text: 'Add user…', onclick: openAddUser }));
    pageFrame(root, 'Users', actions);
    const tbody = h('tbody');
    const heads = ['Name', 'Role', ''];
    const table = h('table', { id: 'users', class: 'data stack' },
      h('thead', {}, h('tr', {}, heads.map((t) => h('th', { text: t, scope: 'col' })))), tbody);
    root.firstChild.append(
      h('p', { class: 'muted small', text: 'Owners manage everything, including merges and other owners; administrators manage cameras, servers, licenses and users; viewers watch.' }),
      h('div', { class: 'table-wrap' }, table));
    let epoch = S.epoch;

    const manageable = (u) => isAdmin() && (isOwner() || u.role !== 'owner');

    function make(u) {
      const tr = h('tr', { class: 'user', dataset: { name: u.name, id: u.id } });
      tr._c = { name: cell('name', 'Name'), role: cell('role-cell', 'Role'), actions: cell('actions', '') };
      tr.append(tr._c.name, tr._c.role, tr._c.actions);
      return tr;
    }

    function updateRow(tr, u) {
      const me = S.session && u.name === S.session.name;
      fill(tr._c.name, JSON.stringify([u.name, me]), () => [h('span', { class: 'strong', text: u.name }), me ? badge('you', 'info') : null]);
      fill(tr._c.role, JSON.stringify([u.role, manageable(u), me]), () => {
        if (!manageable(u) || me) return h('span', { class: `role-tag role-${u.role}`, text: u.role });
        const sel = h('select', { class: 'role admin-only', 'aria-label': `Role of ${u.name}` },
          (isOwner() ? ['owner', 'admin', 'viewer'] : ['admin', 'viewer']).map((r) => h('option', { value: r, text: r })));
        sel.value = u.role;
        sel.addEventListener('change', async () => {
          const to = sel.value;
          const ok = await attempt(async () => {
            await api('PATCH', `/api/users/${encodeURIComponent(u.id)}`, { role: to });
            toast(`${u.name} is now ${to === 'admin' ? 'an' : 'a'} ${to}.`, 'ok');
            return true;
          });
          if (!ok) sel.value = tr._item.role;
          load();
        });
        return sel;
      });
      fill(tr._c.actions, JSON.stringify([manageable(u), me]), () => {
        const out = [];
        if (manageable(u) && !me) {
          out.push(h('button', { type: 'button', class: 'btn small admin-only', text: 'Set password…', onclick: () => openPassword(tr._item) }));
          out.push(h('button', { type: 'button', class: 'btn small danger remove admin-only', text: 'Remove', onclick: () => removeUser(tr._item) }));
        }
        return out;
      });
    }

    async function load() {
      try {
        const users = await api('GET', '/api/users');
        if (epoch !== S.epoch || !Array.isArray(users)) return;
        const order = { owner: 0, admin: 1, viewer: 2 };
        users.sort((a, b) => (order[a.role] - order[b.role]) || a.name.localeCompare(b.name));
        syncList(tbody, users, (u) => u.id, make, updateRow,
          () => h('tr', { class: 'empty' }, h('td', { colspan: 3, text: 'No users.' })));
      } catch (e) {
        if (e.code !== 'unauthorized') toast(`The users could not be read: ${e.message}`, 'error');
      }
    }

    function openAddUser() {
      const name = h('input', { id: 'user-name', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false' });
      const password = h('input', { id: 'user-password', type: 'password', autocomplete: 'new-password' });
      const roleSel = h('select', { id: 'user-role' },
        (isOwner() ? ['viewer', 'admin', 'owner'] : ['viewer', 'admin']).map((r) => h('option', { value: r, text: r })));
      openDialog({
        id: 'user-dialog', title: 'Add a user', submitId: 'user-submit', submitLabel: 'Add',
        body: [
          field('User name', name, `1 to ${USER_NAME_BYTES_MAX} characters, without “:”.`),
          field('Password', password, `At least ${PASSWORD_LEN_MIN} characters.`),
          field('Role', roleSel),
        ],
        submit: async () => {
          const n = checkName(name, 'a user name', USER_NAME_BYTES_MAX).trim();
          ensure(!n.includes(':'), 'A user name must not contain “:”.', name);
          ensure([...password.value].length >= PASSWORD_LEN_MIN, `The password must be at least ${PASSWORD_LEN_MIN} characters.`, password);
          await api('POST', '/api/users', { name: n, password: password.value, role: roleSel.value });
          toast(`User ${n} added.`, 'ok');
          load();
        },
      });
    }

    /** A new password for `user`, or for oneself when null (which ends this session). */
    function openPassword(user) {
      const self = !user;
      const pw = h('input', { id: 'password-new', type: 'password', autocomplete: 'new-password' });
      const again = h('input', { id: 'password-confirm', type: 'password', autocomplete: 'new-password' });
      openDialog({
        id: 'password-dialog', title: self ? 'Change my password' : `New password for ${user.name}`,
        submitId: 'password-submit', submitLabel: 'Change', adminOnly: !self,
        body: [
          h('p', { class: 'note', text: self ? 'Every session of yours ends, this one too: you log in again with the new password.' : `Every session of ${user.name} ends.` }),
          field('New password', pw, `At least ${PASSWORD_LEN_MIN} characters.`),
          field('New password again', again),
        ],
        submit: async () => {
          ensure([...pw.value].length >= PASSWORD_LEN_MIN, `The password must be at least ${PASSWORD_LEN_MIN} characters.`, pw);
          ensure(pw.value === again.value, 'The two passwords differ.', again);
          let target = user;
          if (self) {
            const users = await api('GET', '/api/users');
            target = (users || []).find((u) => u.name === S.session.name);
            ensure(target, 'Your account was not found.');
          }
          await api('PATCH', `/api/users/${encodeURIComponent(target.id)}`, { password: pw.value });
          if (self) {
            setTimeout(() => showLogin('Password changed: log in with the new one.'), 0);
          } else {
            toast(`Password of ${user.name} changed.`, 'ok');
          }
        },
      });
    }

    async function removeUser(u) {
      const yes = await confirmDialog(`Remove ${u.name}?`, `${u.name} can no longer log in, and their open sessions end.`, 'Remove');
      if (!yes) return;
      await attempt(async () => {
        await api('DELETE', `/api/users/${encodeURIComponent(u.id)}`);
        toast(`User ${u.name} removed.`, 'ok');
      });
      load();
    }

    load();
    const every = setInterval(load, 15000);
    return {
      update() {},
      leave() {
        clearInterval(every);
        epoch = -1;
      },
    };
  }

  // ---------------------------------------------------------------- for tests and scripts

  /** window.hive: the camera page's player, for tests and the browser console. */
  window.hive = {
    current: null,
    /** Plays the archive from `ms` (ms since the epoch) at the chosen (or given) speed. */
    playAt(ms, speed) {
      if (!this.current) return false;
      this.current.playAt(ms, speed);
      return true;
    },
    /** Back to live video. */
    live() {
      if (!this.current) return false;
      this.current.live();
      return true;
    },
    /** {mode: 'live'|'archive', speed, clock_ms} of the camera page (mode null elsewhere). */
    state() {
      return this.current ? this.current.state() : { mode: null, speed: null, clock_ms: null };
    },
  };

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
