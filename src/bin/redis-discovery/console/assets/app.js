// The redis-discovery console: one page, three hash routes (#/, #/service/NAME,
// #/events), live over Server-Sent Events. No framework and no build step.
// Every piece of registry data reaches the DOM as text (textContent or
// createElement), never as HTML: tags and names are whatever Redis holds.
'use strict';

(function () {
  // ---------------------------------------------------------------- state

  const TOKEN_KEY = 'redis-discovery-console-token';
  const EVENTS_CAP = 500;
  const INFO_EVERY_MS = 10000; // /api/info is polled: the stream does not say when Redis stops answering

  const state = {
    info: null,            // GET /api/info
    skewMs: 0,             // server clock minus ours, from each body's now_ms
    route: { view: 'services' },
    routeSeq: 0,           // bumps on each navigation: late answers for an old view are dropped
    services: null,        // last /api/services body
    sort: { key: 'name', dir: 1 },
    filter: '',            // services filter
    eventsFilter: '',
    service: null,         // last /api/services/{name} body for the shown service
    events: [],            // newest first, at most EVENTS_CAP
    liveDuringFetch: null, // registry events that arrive while /api/events is in flight
  };

  // ---------------------------------------------------------------- small helpers

  const $ = (sel, root) => (root || document).querySelector(sel);

  // Builds an element; `attrs` values are set as attributes (never as HTML),
  // children may be strings (text nodes) or nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'testid') node.dataset.testid = v;
      else if (k === 'text') node.textContent = v;
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  function svgEl(tag, attrs) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  // Typing fires `input`; a WebDriver clear() only `change`: listen to both.
  function onEdit(input, fn) {
    input.addEventListener('input', fn);
    input.addEventListener('change', fn);
  }

  // A fresh copy of a <template> from index.html.
  const template = (id) => document.getElementById(id).content.cloneNode(true);

  const serverNow = () => Date.now() + state.skewMs;

  // A fetch answer can arrive after a newer stream message: keep the newer.
  const isOlder = (body, shown) => !!shown && body.now_ms < shown.now_ms;

  function noteClock(body) {
    if (body && typeof body.now_ms === 'number') state.skewMs = body.now_ms - Date.now();
  }

  // "12s", "4m 05s", "3h 10m", "2d 4h"
  function formatSpan(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return s + 's';
    const m = Math.floor(s / 60);
    if (m < 60) return m + 'm ' + String(s % 60).padStart(2, '0') + 's';
    const h = Math.floor(m / 60);
    if (h < 24) return h + 'h ' + (m % 60) + 'm';
    return Math.floor(h / 24) + 'd ' + (h % 24) + 'h';
  }

  function formatAgo(ms) {
    if (ms === null || ms === undefined) return '—';
    const s = Math.max(0, Math.floor((serverNow() - ms) / 1000));
    if (s < 60) return s + 's ago';
    if (s < 3600) return Math.floor(s / 60) + 'm ago';
    if (s < 86400) return Math.floor(s / 3600) + 'h ago';
    return Math.floor(s / 86400) + 'd ago';
  }

  // Server time -> our local wall clock, for display.
  const localDate = (ms) => new Date(ms - state.skewMs);

  // "10:24:03" today, "Nov 29 10:24:03" before.
  function formatClock(ms) {
    const d = localDate(ms);
    const time = d.toLocaleTimeString([], { hour12: false });
    if (d.toDateString() === new Date().toDateString()) return time;
    return d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + time;
  }

  const serviceHref = (name) => '#/service/' + encodeURIComponent(name);

  // Puts one row per item in `tbody`, in order, reusing the row already there
  // for the same key: live updates then keep focus, open inputs and hover.
  function reconcileRows(tbody, items, keyOf, create, fill) {
    const existing = new Map([...tbody.children].map((tr) => [tr.dataset.key, tr]));
    items.forEach((item, i) => {
      const key = keyOf(item);
      let tr = existing.get(key);
      existing.delete(key);
      if (!tr) {
        tr = create(key);
        tr.dataset.key = key;
      }
      fill(tr, item);
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    });
    for (const tr of existing.values()) tr.remove();
  }

  // "12s ago" text that the ticker keeps current (data-ago-ms).
  function setAgo(node, ms, prefix) {
    const known = ms !== null && ms !== undefined;
    if (known) node.dataset.agoMs = ms; else delete node.dataset.agoMs;
    node.dataset.agoPrefix = prefix || '';
    node.title = known ? localDate(ms).toLocaleString() : '';
    node.textContent = known || !prefix ? (prefix || '') + formatAgo(ms) : '';
  }

  // ---------------------------------------------------------------- HTTP

  async function getJSON(path) {
    const res = await fetch(path, { headers: { Accept: 'application/json' }, cache: 'no-store' });
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON: reported below */ }
    if (!res.ok) {
      const err = new Error((body && body.error) || 'HTTP ' + res.status);
      err.status = res.status;
      throw err;
    }
    noteClock(body);
    return body;
  }

  // POST an action; resolves to {ok, status, body}, never throws.
  async function postAction(path, payload) {
    const headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
    const token = loadToken();
    if (token) headers.Authorization = 'Bearer ' + token;
    try {
      const res = await fetch(path, { method: 'POST', headers, body: JSON.stringify(payload || {}) });
      let body = null;
      try { body = await res.json(); } catch (_) { /* reported by status */ }
      return { ok: res.ok, status: res.status, body };
    } catch (e) {
      return { ok: false, status: 0, body: { error: 'the console did not answer (' + e.message + ')' } };
    }
  }

  // ---------------------------------------------------------------- header: info, token, messages

  function applyInfo(info) {
    state.info = info;
    $('[data-testid="read-only-banner"]').hidden = !info.read_only;
    document.body.classList.toggle('read-only', !!info.read_only); // hides the actions column
    $('#unreachable-banner').hidden = info.reachable !== false;
    const meta = $('#meta');
    meta.replaceChildren();
    const prefix = info.schema === 'hertz' ? null : info.prefix; // Hertz keys have no prefix
    const items = [['Redis', info.redis], ['prefix', prefix], ['schema', info.schema], ['version', info.version]];
    for (const [k, v] of items) {
      if (v === undefined || v === null) continue;
      meta.append(el('span', { class: 'meta-item' }, el('span', { class: 'meta-key', text: k }), ' ', el('span', { text: v })));
    }
    applyActionAvailability();
  }

  async function loadInfo() {
    try { applyInfo(await getJSON('/api/info')); } catch (_) { /* the stream's reconnect retries */ }
  }

  // The token lives in this tab's sessionStorage; where storage is refused
  // (some private modes) in memory until the page closes.
  let tokenInMemory = '';

  function loadToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { return tokenInMemory; }
  }

  function saveToken(value) {
    tokenInMemory = value;
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) { /* kept in memory */ }
  }

  function setupToken() {
    const input = $('[data-testid="token-input"]');
    input.value = loadToken();
    $('#token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const value = input.value.trim();
      saveToken(value);
      showMessage(value ? 'Token saved for this tab.' : 'Token cleared.', 'ok');
    });
  }

  function showMessage(text, kind) {
    const bar = $('#message-bar');
    $('[data-testid="action-message"]').textContent = text;
    bar.dataset.kind = kind;
    bar.hidden = false;
  }

  function setupMessageBar() {
    $('#message-close').addEventListener('click', () => { $('#message-bar').hidden = true; });
  }

  function setConnection(live) {
    const node = $('[data-testid="connection-status"]');
    node.textContent = live ? 'live' : 'reconnecting…';
    node.dataset.state = live ? 'live' : 'reconnecting';
  }

  // ---------------------------------------------------------------- routing

  function parseRoute() {
    const hash = location.hash.replace(/^#/, '');
    const m = /^\/service\/(.+)$/.exec(hash);
    if (m) {
      let name = m[1];
      try { name = decodeURIComponent(name); } catch (_) { /* keep it raw */ }
      return { view: 'service', name };
    }
    if (hash === '/events') return { view: 'events' };
    return { view: 'services' };
  }

  function navigate() {
    state.route = parseRoute();
    state.routeSeq += 1;
    state.service = null;
    for (const a of document.querySelectorAll('[data-nav]')) {
      const current = a.dataset.nav === state.route.view ||
        (a.dataset.nav === 'services' && state.route.view === 'service');
      if (current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    const view = $('#view');
    view.replaceChildren();
    if (state.route.view === 'service') buildServiceView(view, state.route.name);
    else if (state.route.view === 'events') buildEventsView(view);
    else buildServicesView(view);
    refreshView();
  }

  // Fetches what the current view shows; answers for a view left meanwhile are dropped.
  async function refreshView() {
    const seq = state.routeSeq;
    const route = state.route;
    try {
      if (route.view === 'services') {
        const body = await getJSON('/api/services');
        if (seq === state.routeSeq) applyServices(body);
      } else if (route.view === 'service') {
        const body = await getJSON('/api/services/' + encodeURIComponent(route.name));
        if (seq === state.routeSeq) applyService(body);
      } else {
        state.liveDuringFetch = [];
        const body = await getJSON('/api/events?limit=' + EVENTS_CAP);
        if (seq === state.routeSeq) applyEventList(body.events || []);
      }
    } catch (e) {
      if (seq !== state.routeSeq) return;
      if (route.view === 'service' && e.status === 404) showServiceMissing(e.message);
      else showViewError(e.message);
    }
  }

  function showViewError(text) {
    const box = $('#view-error');
    if (!box) return;
    box.textContent = 'Could not load: ' + text;
    box.hidden = false;
  }

  function clearViewError() {
    const box = $('#view-error');
    if (box) box.hidden = true;
  }

  // ---------------------------------------------------------------- services view

  // How each sortable column (th[data-sort]) orders services.
  const SORT_VALUE = {
    name: (s) => s.service,
    live: (s) => s.live,
    drained: (s) => s.drained,
    weight: (s) => s.total_weight,
    changed: (s) => s.last_change_ms,
  };

  function buildServicesView(view) {
    document.title = 'Services · redis-discovery console';
    view.append(template('tpl-services'));
    const filter = $('#services-filter');
    filter.value = state.filter;
    onEdit(filter, () => { state.filter = filter.value; renderServicesRows(); });
    for (const th of view.querySelectorAll('th[data-sort]')) {
      th.addEventListener('click', () => {
        const key = th.dataset.sort;
        state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
        renderServicesRows();
      });
    }
  }

  function applyServices(body) {
    if (isOlder(body, state.services)) return;
    state.services = body;
    if (state.route.view === 'services') renderServicesRows();
  }

  function sortedServices(list) {
    const value = SORT_VALUE[state.sort.key] || SORT_VALUE.name;
    const dir = state.sort.dir;
    return list.slice().sort((a, b) => {
      const va = value(a);
      const vb = value(b);
      if (va === vb) return a.service < b.service ? -1 : 1;
      if (va === null || va === undefined) return 1;   // unknown times last, either way
      if (vb === null || vb === undefined) return -1;
      return (va < vb ? -1 : 1) * dir;
    });
  }

  function renderServicesRows() {
    const tbody = $('#services-body');
    if (!tbody || !state.services) return;
    clearViewError();
    for (const th of document.querySelectorAll('th[data-sort]')) {
      const on = th.dataset.sort === state.sort.key;
      if (on) th.setAttribute('aria-sort', state.sort.dir > 0 ? 'ascending' : 'descending');
      else th.removeAttribute('aria-sort');
    }
    const all = state.services.services || [];
    const needle = state.filter.trim().toLowerCase();
    const shown = sortedServices(all.filter((s) => s.service.toLowerCase().includes(needle)));
    reconcileRows(tbody, shown, (s) => s.service, serviceRow, fillServiceRow);
    $('#services-count').textContent = needle ? shown.length + ' of ' + all.length : String(all.length);
    const empty = $('#services-empty');
    empty.hidden = shown.length > 0;
    empty.textContent = all.length === 0
      ? 'No services registered' + (state.info && state.info.schema !== 'hertz' ? ' under prefix ' + state.info.prefix : '') + '.'
      : 'No service matches “' + state.filter.trim() + '”.';
  }

  function serviceRow(name) {
    return el('tr', { 'data-service': name },
      el('td', { testid: 'svc-name', 'data-label': 'Service' }, el('a', { href: serviceHref(name), text: name })),
      el('td', { testid: 'svc-live', 'data-label': 'Live', class: 'num' }),
      el('td', { testid: 'svc-drained', 'data-label': 'Drained', class: 'num' }),
      el('td', { testid: 'svc-weight', 'data-label': 'Total weight', class: 'num' }),
      el('td', { testid: 'svc-changed', 'data-label': 'Last change', class: 'num muted' }));
  }

  function fillServiceRow(tr, s) {
    const [, live, drained, weight, changed] = tr.children;
    live.textContent = s.live;
    drained.textContent = s.drained;
    drained.classList.toggle('warn', s.drained > 0);
    weight.textContent = s.total_weight;
    setAgo(changed, s.last_change_ms);
  }

  // ---------------------------------------------------------------- service view

  function buildServiceView(view, name) {
    document.title = name + ' · redis-discovery console';
    view.append(template('tpl-service'));
    $('[data-testid="service-title"]').textContent = name;
  }

  // Unknown (yet): say so; a `service` event for it fills the view in later.
  function showServiceMissing(text) {
    const box = $('#view-error');
    if (!box) return;
    box.textContent = text + '. It appears here once an instance registers.';
    box.hidden = false;
    box.classList.add('soft');
    $('#service-body').hidden = true;
  }

  function applyService(body) {
    if (state.route.view !== 'service' || body.service !== state.route.name) return;
    if (isOlder(body, state.service)) return;
    state.service = body;
    clearViewError();
    $('#service-body').hidden = false;
    renderInstances(body.instances || []);
    renderChart(body.instances || []);
    renderPending(body.pending_overrides || []);
    setAgo($('#service-changed'), body.last_change_ms, 'changed ');
    applyActionAvailability();
  }

  // Rows are keyed by address and updated in place, so an open weight input
  // or a deregister confirmation survives the live updates.
  function renderInstances(instances) {
    reconcileRows($('#instances-body'), instances, (x) => x.addr, instanceRow, fillInstanceRow);
    $('#instances-empty').hidden = instances.length > 0;
    const live = instances.filter((x) => x.health !== 'drained').length;
    $('#instances-count').textContent = instances.length + ' listed' + (instances.length > live ? ', ' + (instances.length - live) + ' drained' : '');
  }

  function instanceRow(addr) {
    const tr = template('tpl-instance').firstElementChild;
    tr.dataset.addr = addr;
    tr.firstElementChild.textContent = addr;
    const panel = $('.inline-panel', tr);
    const close = () => { panel.hidden = true; panel.replaceChildren(); };
    panel.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') close(); });
    const on = (action, fn) => $('[data-action="' + action + '"]', tr).addEventListener('click', fn);
    on('drain', () => runAction(addr, 'drain'));
    on('undrain', () => runAction(addr, 'undrain'));
    on('weight', () => openWeightPanel(panel, addr, close));
    on('deregister', () => openConfirmPanel(panel, addr, close));
    return tr;
  }

  function fillInstanceRow(tr, inst) {
    const [, weightTd, tagsTd, leaseTd, healthTd] = tr.children;
    const weight = el('span', { testid: 'inst-weight', class: 'weight', text: inst.weight });
    const parts = [weight];
    if (inst.override) {
      const reg = inst.registered_weight !== null && inst.registered_weight !== undefined
        ? '; registered ' + inst.registered_weight : '';
      parts.push(' ', el('span', { testid: 'inst-override', class: 'override', text: '(override' + reg + ')' }));
    }
    weightTd.replaceChildren(...parts);

    const tags = Object.entries(inst.tags || {}).sort(([a], [b]) => (a < b ? -1 : 1));
    tagsTd.replaceChildren(...tags.map(([k, v]) => el('span', { class: 'tag', text: k + '=' + v })));
    if (!tags.length) tagsTd.append(el('span', { class: 'muted', text: '—' }));

    if (inst.lease_expires_ms === null || inst.lease_expires_ms === undefined) {
      delete leaseTd.dataset.leaseMs;
      leaseTd.textContent = 'none';
      leaseTd.title = 'no lease';
    } else {
      leaseTd.dataset.leaseMs = inst.lease_expires_ms;
      leaseTd.title = 'expires ' + localDate(inst.lease_expires_ms).toLocaleString();
      tickLease(leaseTd);
    }

    const health = inst.health === 'drained' ? 'drained' : 'live';
    healthTd.replaceChildren(el('span', { class: 'pill pill-' + health, text: health }));
    tr.classList.toggle('is-drained', health === 'drained');
  }

  function tickLease(td) {
    const left = Number(td.dataset.leaseMs) - serverNow();
    td.textContent = formatSpan(left);
    td.classList.toggle('warn', left < 5000);
  }

  // ---------------------------------------------------------------- actions

  function openWeightPanel(panel, addr, close) {
    const current = state.service && (state.service.instances || []).find((x) => x.addr === addr);
    panel.replaceChildren(template('tpl-weight-form'));
    const form = $('form', panel);
    const input = $('input', form);
    input.setAttribute('aria-label', 'New weight for ' + addr);
    input.value = current ? current.weight : '';
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const n = Number(input.value);
      if (input.value.trim() === '' || !Number.isFinite(n)) {
        showMessage('A weight is a whole number from 0 to 4294967295.', 'error');
        input.focus();
        return;
      }
      close();
      runAction(addr, 'weight', { weight: n });
    });
    $('[data-cancel]', form).addEventListener('click', close);
    panel.hidden = false;
    input.focus();
    input.select();
  }

  function openConfirmPanel(panel, addr, close) {
    panel.replaceChildren(template('tpl-confirm'));
    $('.confirm-text', panel).textContent = 'Remove ' + addr + ' now?';
    $('[data-testid="confirm-yes"]', panel).addEventListener('click', () => { close(); runAction(addr, 'deregister'); });
    $('[data-testid="confirm-no"]', panel).addEventListener('click', close);
    panel.hidden = false;
    $('[data-testid="confirm-no"]', panel).focus();
  }

  const ACTION_DONE = { drain: 'Drained', undrain: 'Undrained', weight: 'Set the weight of', deregister: 'Deregistered' };

  async function runAction(addr, action, payload) {
    const service = state.route.name;
    const path = '/api/services/' + encodeURIComponent(service) + '/instances/' + encodeURIComponent(addr) + '/' + action;
    const res = await postAction(path, payload);
    if (res.ok) {
      let text = ACTION_DONE[action] + ' ' + addr + (action === 'weight' ? ' to ' + payload.weight : '') + '.';
      if (res.body && res.body.registered === false) text += ' No instance at that address now: the override waits for it.';
      showMessage(text, 'ok');
    } else {
      const why = (res.body && res.body.error) || 'HTTP ' + res.status;
      showMessage('Refused: ' + why, 'error');
      if (res.status === 401 || why === 'wrong token') $('[data-testid="token-input"]').focus();
    }
    if (state.route.view === 'service' && state.route.name === service) refreshView();
  }

  // Read-only consoles disable every action; the Hertz schema has no overrides.
  function applyActionAvailability() {
    const info = state.info;
    const readOnly = !info || info.read_only;
    const noOverrides = info && info.overrides === false;
    for (const b of document.querySelectorAll('[data-action]')) {
      const needsOverrides = b.dataset.action !== 'deregister';
      const off = readOnly || (needsOverrides && noOverrides);
      b.disabled = off;
      b.title = readOnly ? 'Read-only console: started without --token'
        : off ? 'The Hertz schema has no overrides' : '';
    }
  }

  // ---------------------------------------------------------------- weight chart & pending overrides

  function renderChart(instances) {
    const box = $('#chart-box');
    const total = instances.reduce((sum, x) => sum + Math.max(0, x.weight), 0);
    const rowH = 26;
    const height = Math.max(1, instances.length) * rowH;
    const svg = svgEl('svg', { width: '100%', height, role: 'img', class: 'chart', 'data-testid': 'weight-chart' });
    const title = svgEl('title');
    title.textContent = 'How traffic splits by weight (total ' + total + ')';
    svg.append(title);
    instances.forEach((inst, i) => {
      const pct = total > 0 ? (Math.max(0, inst.weight) / total) * 100 : 0;
      const y = i * rowH;
      const g = svgEl('g', { class: 'bar' + (inst.weight > 0 ? '' : ' bar-off'), 'data-addr': inst.addr });
      const label = svgEl('text', { x: 0, y: y + 17, class: 'bar-label' });
      label.textContent = inst.addr;
      const pctText = svgEl('text', { x: '100%', y: y + 17, 'text-anchor': 'end', class: 'bar-pct' });
      pctText.textContent = (pct >= 10 || pct === 0 ? pct.toFixed(0) : pct.toFixed(1)) + '%';
      const tip = svgEl('title');
      tip.textContent = inst.addr + ': weight ' + inst.weight + ', ' + pct.toFixed(1) + '% of traffic';
      g.append(tip, label,
        svgEl('rect', { x: '42%', y: y + 6, width: '44%', height: 14, rx: 3, class: 'bar-track' }),
        svgEl('rect', { x: '42%', y: y + 6, width: (pct * 0.44).toFixed(2) + '%', height: 14, rx: 3, class: 'bar-fill' }),
        pctText);
      svg.append(g);
    });
    const parts = [svg];
    if (!instances.length) parts.push(el('p', { class: 'muted small', text: 'No instances: no traffic to split.' }));
    else if (total === 0) parts.push(el('p', { class: 'muted small', text: 'Every instance has weight 0: none gets traffic.' }));
    box.replaceChildren(...parts);
  }

  function describeOverride(o) {
    if (!o) return '';
    if (o.disabled) return 'disabled';
    if (typeof o.weight === 'number') return 'weight ' + o.weight;
    return 'override';
  }

  function renderPending(pending) {
    const list = $('#pending-list');
    if (state.info && state.info.overrides === false) {
      list.replaceChildren(el('li', { class: 'muted small', text: 'The Hertz schema has no overrides.' }));
      return;
    }
    if (!pending.length) {
      list.replaceChildren(el('li', { class: 'muted small', text: 'None.' }));
      return;
    }
    list.replaceChildren(...pending.map((p) => {
      const clear = el('button', { type: 'button', class: 'btn ghost small', 'data-action': 'pending-clear', text: 'Clear' });
      clear.title = 'Remove this override (undrain)';
      clear.addEventListener('click', () => runAction(p.addr, 'undrain'));
      return el('li', { 'data-addr': p.addr },
        el('span', { class: 'mono', text: p.addr }),
        el('span', { class: 'pill pill-override', text: describeOverride(p.override) }),
        clear);
    }));
  }

  // ---------------------------------------------------------------- events view

  function buildEventsView(view) {
    document.title = 'Events · redis-discovery console';
    view.append(template('tpl-events'));
    const filter = $('#events-filter');
    filter.value = state.eventsFilter;
    onEdit(filter, () => {
      state.eventsFilter = filter.value;
      for (const li of $('#events-list').children) applyEventFilter(li);
    });
  }

  // Hides an event's line unless its service, address or kind contains the filter text.
  function applyEventFilter(li) {
    const needle = state.eventsFilter.trim().toLowerCase();
    const d = li.dataset;
    li.hidden = !!needle && ![d.service, d.addr, d.event].some((v) => (v || '').toLowerCase().includes(needle));
  }

  // The fetched list, plus whatever the stream delivered while it was in flight.
  function applyEventList(events) {
    const fetched = new Set(events.map((e) => e.id));
    const live = (state.liveDuringFetch || []).filter((e) => !fetched.has(e.id));
    state.liveDuringFetch = null;
    state.events = live.concat(events).slice(0, EVENTS_CAP);
    const list = $('#events-list');
    if (!list) return;
    clearViewError();
    list.replaceChildren(...state.events.map(eventItem));
    $('#events-empty').hidden = state.events.length > 0;
  }

  function addEvent(ev) {
    if (state.liveDuringFetch) state.liveDuringFetch.unshift(ev);
    if (state.events.some((x) => x.id === ev.id)) return;
    state.events.unshift(ev);
    if (state.events.length > EVENTS_CAP) state.events.length = EVENTS_CAP;
    const list = $('#events-list');
    if (!list) return;
    list.prepend(eventItem(ev));
    while (list.children.length > EVENTS_CAP) list.lastElementChild.remove();
    $('#events-empty').hidden = true;
  }

  function eventItem(ev) {
    const kind = String(ev.event);
    const time = el('time', { class: 'ev-time mono' });
    if (Number.isFinite(ev.at_ms)) {
      time.dateTime = localDate(ev.at_ms).toISOString();
      time.textContent = formatClock(ev.at_ms);
      time.title = localDate(ev.at_ms).toLocaleString();
    }
    const li = el('li', { 'data-event': kind, 'data-service': ev.service, 'data-addr': ev.addr },
      el('span', { class: 'badge badge-' + kind.replace(/[^a-z]/g, ''), text: kind }),
      el('a', { class: 'ev-service', href: serviceHref(ev.service), text: ev.service }),
      el('span', { class: 'ev-addr mono', text: ev.addr }),
      ev.source === 'console' ? el('span', { class: 'ev-source', title: 'seen by the console in a read; no event announced it', text: 'seen by console' }) : null,
      time);
    applyEventFilter(li);
    return li;
  }

  // ---------------------------------------------------------------- live stream

  let retryMs = 1000;

  function connect() {
    const stream = new EventSource('/api/stream');
    stream.onopen = () => { retryMs = 1000; };
    stream.onerror = () => {
      setConnection(false);
      // EventSource retries by itself unless the server refused it (e.g. 503): then we do.
      if (stream.readyState === EventSource.CLOSED) {
        setTimeout(connect, retryMs);
        retryMs = Math.min(retryMs * 2, 30000);
      }
    };
    const on = (name, fn) => stream.addEventListener(name, (msg) => {
      let data = null;
      try { data = JSON.parse(msg.data); } catch (_) { return; }
      noteClock(data);
      fn(data);
    });
    on('hello', (data) => {
      setConnection(true);
      if (state.info) applyInfo(Object.assign({}, state.info, { read_only: !!data.read_only }));
      loadInfo();
      refreshView();
    });
    on('services', applyServices);
    on('service', applyService);
    on('registry', addEvent);
    on('resync', () => { loadInfo(); refreshView(); });
  }

  // ---------------------------------------------------------------- clock tick

  // Once a second: "12s ago" texts and lease countdowns, from the skew-corrected clock.
  function tick() {
    for (const node of document.querySelectorAll('[data-ago-ms]')) {
      node.textContent = (node.dataset.agoPrefix || '') + formatAgo(Number(node.dataset.agoMs));
    }
    for (const td of document.querySelectorAll('[data-lease-ms]')) tickLease(td);
  }

  // ---------------------------------------------------------------- start

  function start() {
    setupToken();
    setupMessageBar();
    window.addEventListener('hashchange', navigate);
    navigate();
    loadInfo();
    connect();
    setInterval(tick, 1000);
    setInterval(loadInfo, INFO_EVERY_MS);
  }

  start();
})();
