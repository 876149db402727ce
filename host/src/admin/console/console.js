// The sluice console. Talks only to this host's admin JSON API, with the
// token in the Authorization header. Every text a tenant controls goes into
// the page as a text node or an attribute value (`el` below): never as HTML.
'use strict';

const TOKEN_KEY = 'sluice.token';
const REFRESH_MS = 5000;
const LOG_TAIL = 200;

let timer = null;
let logAfter = 0;

// ---- DOM helpers: text nodes and attributes only --------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function $(id) { return document.getElementById(id); }

function status(text) { $('status').textContent = text; }

// ---- the token ------------------------------------------------------------

// `#token=…` (never sent to the server) is taken once, then removed from
// the address bar and the history entry.
function takeFragmentToken() {
  const hash = location.hash;
  if (hash.startsWith('#token=')) {
    const token = decodeURIComponent(hash.slice('#token='.length));
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, '', location.pathname + location.search);
  }
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (timer) clearTimeout(timer);
  $('view').hidden = true;
  $('view').replaceChildren();
  $('sign-out').hidden = true;
  $('who').textContent = '';
  $('sign-in').hidden = false;
  $('sign-in-error').textContent = message || '';
  $('token').focus();
}

// ---- the API --------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const init = { method, headers: { Authorization: 'Bearer ' + token() }, cache: 'no-store' };
  if (body !== undefined) init.body = body;
  const response = await fetch(path, init);
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch (_) { json = null; }
  if (!response.ok) {
    const message = json && typeof json.error === 'string' ? json.error : text || response.statusText;
    if (response.status === 401 || (response.status === 403 && path === '/v1/tenants')) {
      signOut('The host refused this token (' + response.status + ' ' + message + ').');
    }
    throw new ApiError(response.status, message);
  }
  return { status: response.status, json };
}

const tenantPath = (t, rest) => '/v1/tenants/' + encodeURIComponent(t) + (rest || '');

// ---- formatting -----------------------------------------------------------

function num(n) { return n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'); }
function rate(x) { return x >= 100 ? Math.round(x).toLocaleString('en-US') : x.toFixed(1); }
function bytes(n) {
  if (n === null || n === undefined) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
}
function ago(secs) {
  if (secs === null || secs === undefined) return '–';
  if (secs < 60) return secs + ' s ago';
  if (secs < 3600) return Math.floor(secs / 60) + ' min ago';
  return Math.floor(secs / 3600) + ' h ago';
}
function delay(ms) {
  if (ms === null || ms === undefined) return '';
  const s = Math.round(ms / 1000);
  if (Math.abs(s) < 120) return s + ' s behind';
  if (Math.abs(s) < 7200) return Math.round(s / 60) + ' min behind';
  if (Math.abs(s) < 172800) return Math.round(s / 3600) + ' h behind';
  return Math.round(s / 86400) + ' d behind';
}
function isoSecs(s) { return new Date(s * 1000).toISOString().replace('.000Z', 'Z'); }
function isoMs(ms) { return new Date(ms).toISOString().replace('.000Z', 'Z'); }

function stateCell(t) {
  const label = t.condition.replace('_', '-');
  return el('td', { class: 'state state-' + t.condition },
    label, t.operation ? ' (' + t.operation + ')' : null,
    t.reason ? el('span', { class: 'reason' }, t.reason) : null);
}

function sparkline(samples) {
  const w = 120, h = 28;
  const s = svg('svg', { class: 'spark', width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: 'img' });
  const values = samples.map((p) => p.events_per_sec);
  const title = svg('title', {});
  title.textContent = values.length
    ? `events/s over the last ${Math.round(values.length * 10 / 60)} min (max ${rate(Math.max(...values))})`
    : 'no history yet';
  s.append(title);
  if (values.length < 2) return s;
  const max = Math.max(...values, 1);
  const x = (i) => (i / (values.length - 1)) * (w - 2) + 1;
  const y = (v) => h - 2 - (v / max) * (h - 4);
  const points = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  s.append(svg('polygon', { class: 'area', points: `1,${h - 2} ${points} ${x(values.length - 1).toFixed(1)},${h - 2}` }));
  s.append(svg('polyline', { points }));
  return s;
}

// ---- the tenants page -----------------------------------------------------

async function tenantsPage() {
  const view = $('view');
  $('crumbs').replaceChildren('Tenants');
  const { json: tenants } = await api('GET', '/v1/tenants');
  const histories = await Promise.all(tenants.map((t) =>
    api('GET', tenantPath(t.tenant, '/history')).then((r) => r.json.samples, () => [])));
  const body = [el('h1', {}, 'Tenants')];
  if (tenants.length === 0) {
    body.push(el('p', { id: 'no-tenants', class: 'empty' },
      'No tenants are deployed on this host (or none this token may see).'));
  } else {
    const head = el('tr', {}, ['Tenant', 'State', 'Module', 'Deployed', 'Events/s', 'Last 15 min',
      'Records', 'Lag', 'Watermark', 'Bad rows', 'Late rows', 'Poisoned', 'Traps', 'Checkpoint']
      .map((h) => el('th', {}, h)));
    const rows = [];
    tenants.forEach((t, i) => {
      const c = t.counters, live = t.live;
      const link = el('a', { href: '?tenant=' + encodeURIComponent(t.tenant) }, t.tenant);
      const cp = live.last_checkpoint;
      rows.push(el('tr', { class: 'tenant', 'data-tenant': t.tenant },
        el('td', { class: 'name' }, link),
        stateCell(t),
        el('td', { class: 'module' }, t.module.name + ' ' + t.module.version,
          el('div', { class: 'hash', title: t.module.sha256 }, t.module.sha256.slice(0, 12))),
        el('td', { class: 'deployed' }, isoSecs(t.deployed_at)),
        el('td', { class: 'num eps' }, rate(live.events_per_sec)),
        el('td', { class: 'spark' }, sparkline(histories[i])),
        el('td', { class: 'num records' }, num(c.records_in)),
        el('td', { class: 'num lag' }, num(live.consumer_lag)),
        el('td', { class: 'watermark' }, live.watermark === null ? '–' : isoMs(live.watermark),
          el('div', { class: 'muted' }, delay(live.watermark_delay_ms))),
        el('td', { class: 'num bad' }, num(c.deserialization_errors)),
        el('td', { class: 'num late' }, num(c.late_dropped)),
        el('td', { class: 'num poisoned' }, num(c.poisoned)),
        el('td', { class: 'num traps' }, num(c.guest_traps)),
        el('td', { class: 'checkpoint' }, cp ? ago(live.checkpoint_age_secs) : '–',
          cp ? el('div', { class: 'muted' }, bytes(cp.bytes)) : null)));
      for (const p of t.partitions || []) {
        rows.push(el('tr', { class: 'partition', 'data-tenant': t.tenant, 'data-partition': p.partition },
          el('td', {}, '↳ partition ' + p.partition),
          el('td', {}, p.state === 'active' ? 'owned here' : 'standby'),
          el('td', { class: 'owner' }, p.owner === null ? 'not known yet' : p.owner),
          el('td', {}, 'generation ' + p.generation + ', ' + p.hosts + ' host(s) consuming'),
          el('td', {}), el('td', {}),
          el('td', { class: 'num' }, num(p.records_in)),
          el('td', { class: 'num' }, num(p.lag)),
          el('td', {}, p.watermark === null ? '–' : isoMs(p.watermark)),
          el('td', { colspan: 5 }, p.takeovers + ' takeovers, ' + p.losses + ' losses, ' + p.handovers + ' handovers')));
      }
    });
    body.push(el('table', { id: 'tenants' }, el('thead', {}, head), el('tbody', {}, rows)));
  }
  body.push(deployCard(null));
  const keep = $('deploy');
  view.replaceChildren(...body);
  // Keep a half-filled deploy form (its chosen files, its answer) across refreshes.
  if (keep) $('deploy').replaceWith(keep);
}

// ---- the tenant page ------------------------------------------------------

function kv(pairs) {
  return el('dl', { class: 'kv' }, pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

function manifestCard(m) {
  const windows = m.windows.length
    ? el('table', { id: 'windows' }, el('tr', {}, ['Window', 'Kind', 'Shape', 'Function'].map((h) => el('th', {}, h))),
      m.windows.map((w) => el('tr', {}, el('td', {}, w.name), el('td', {}, w.kind), el('td', {}, w.shape), el('td', {}, w.function))))
    : el('p', { class: 'empty' }, 'No windows.');
  const params = Object.entries(m.params);
  return el('section', { class: 'card', id: 'manifest' }, el('h2', {}, 'Manifest'),
    kv([
      ['Queue', m.queue + (m.partitions ? ' (' + m.partitions + ' partitions)' : '')],
      ['Exchange', m.exchange],
      ['Key', m.key.join(', ')],
      ['Event time', m.event_time + ' (out of order ' + m.max_out_of_orderness + ', lateness ' + m.allowed_lateness + ')'],
      ['Columns', m.columns.map((c) => c.name + ': ' + c.type + (c.optional ? '?' : '')).join(', ')],
      ['Alerts', m.alerts || 'none'],
      ['Limits', 'memory ' + bytes(m.limits.memory_bytes) + ', call budget ' + m.limits.call_budget + ', output ' + bytes(m.limits.max_output_bytes)],
      ['Batch jobs', m.batch_jobs.length ? m.batch_jobs.join(', ') : 'none'],
    ]),
    el('h2', {}, 'Windows'), windows,
    el('h2', {}, 'Params'),
    params.length
      ? el('table', { id: 'params' }, params.map(([k, v]) => el('tr', {}, el('td', { class: 'mono' }, k), el('td', { class: 'mono' }, v))))
      : el('p', { class: 'empty' }, 'No params.'));
}

function letterRow(k) {
  const l = k.letter;
  if (typeof l !== 'object' || l === null) {
    return el('tr', { class: 'letter' }, el('td', {}, isoSecs(k.at)), el('td', {}, '?'), el('td', {}, k.cut ? 'cut at 4 KiB' : ''), el('td', {}, ''), el('td', { class: 'mono' }, String(l)));
  }
  const pos = l.position ? l.position.source + ':' + l.position.line : '';
  const row = l.raw !== undefined ? l.raw : JSON.stringify(l.row || l.rows || l.key || {});
  return el('tr', { class: 'letter' }, el('td', {}, isoSecs(k.at)), el('td', {}, l.kind || ''),
    el('td', {}, l.reason || ''), el('td', { class: 'mono' }, pos), el('td', { class: 'mono row' }, row));
}

function lettersCard(letters) {
  return el('section', { class: 'card', id: 'dead-letters' }, el('h2', {}, 'Last dead letters'),
    letters.length
      ? el('table', {}, el('tr', {}, ['Confirmed', 'Kind', 'Reason', 'Position', 'Row'].map((h) => el('th', {}, h))), letters.map(letterRow))
      : el('p', { class: 'empty' }, 'No dead letters since this host started.'));
}

function logLine(e) {
  return el('li', { class: 'level-' + e.level, 'data-seq': e.seq },
    el('span', { class: 'src' }, isoMs(e.time) + ' ' + e.level + ' ' + e.source + ' '), e.message);
}

async function appendLogs(t) {
  const list = $('log');
  if (!list) return;
  const { json: page } = await api('GET', tenantPath(t, '/logs?after=' + logAfter + '&limit=1000'));
  logAfter = page.next;
  const empty = $('log-empty');
  if (page.entries.length && empty) empty.remove();
  list.append(...page.entries.map(logLine));
  while (list.children.length > LOG_TAIL) list.firstElementChild.remove();
  if (page.missed) list.append(el('li', { class: 'level-warn' }, page.missed + ' entries were evicted before they were read'));
  list.scrollTop = list.scrollHeight;
}

function triggersCard(t) {
  const b = t.batch_triggers;
  if (!b) {
    return el('section', { class: 'card', id: 'triggers' }, el('h2', {}, 'Batch-trigger runs'),
      el('p', { class: 'empty' }, 'No batch triggers in this run (none declared, or no Cassandra on this host).'));
  }
  const runs = b.recent.length
    ? el('table', { id: 'trigger-runs' },
      el('tr', {}, ['Ended', 'Job', 'Trigger', 'Range', 'Scope', 'Rows', 'Results', 'Took', 'Outcome'].map((h) => el('th', {}, h))),
      b.recent.map((r) => el('tr', { class: 'trigger-run' },
        el('td', {}, isoSecs(r.at)), el('td', {}, r.job), el('td', {}, r.trigger),
        el('td', {}, isoMs(r.from) + ' – ' + isoMs(r.to)), el('td', { class: 'mono' }, r.scope),
        el('td', { class: 'num' }, num(r.rows_in)), el('td', { class: 'num' }, num(r.results)),
        el('td', { class: 'num' }, r.took_ms + ' ms'),
        el('td', { class: r.error === null ? 'ok' : 'error' }, r.error === null ? 'stored' : r.error))))
    : el('p', { class: 'empty' }, 'No job has run yet in this run.');
  return el('section', { class: 'card', id: 'triggers' }, el('h2', {}, 'Batch-trigger runs'),
    kv([['Runs completed', num(b.runs)], ['Failed', num(b.failed)], ['Repeated alerts', num(b.repeated)], ['Dropped alerts', num(b.dropped)]]),
    runs);
}

function actionsCard(t) {
  const result = el('p', { id: 'action-result', role: 'status' });
  const paused = t.state === 'paused';
  const act = async (action) => {
    result.textContent = '';
    try {
      const { json } = await api('POST', tenantPath(t.tenant, '/' + action));
      result.textContent = t.tenant + ' is ' + json.condition.replace('_', '-') + '.';
      result.className = 'ok';
    } catch (e) {
      result.textContent = action + ' failed: ' + e.message;
      result.className = 'error';
    }
    refresh();
  };
  const pause = el('button', { id: 'pause', type: 'button', disabled: paused }, 'Pause');
  pause.addEventListener('click', () => act('pause'));
  const resume = el('button', { id: 'resume', type: 'button', disabled: !paused }, 'Resume');
  resume.addEventListener('click', () => act('resume'));
  const undeploy = el('button', { id: 'undeploy', type: 'button', class: 'danger' }, 'Undeploy…');
  const confirm = el('span', { id: 'undeploy-confirm', hidden: true },
    'Undeploy ', el('strong', {}, t.tenant), '? Its open windows fire, its state is deleted. ');
  const yes = el('button', { id: 'undeploy-yes', type: 'button', class: 'danger' }, 'Yes, undeploy');
  const no = el('button', { id: 'undeploy-no', type: 'button' }, 'Cancel');
  confirm.append(yes, ' ', no);
  undeploy.addEventListener('click', () => { confirm.hidden = false; undeploy.hidden = true; });
  no.addEventListener('click', () => { confirm.hidden = true; undeploy.hidden = false; });
  yes.addEventListener('click', async () => {
    yes.disabled = true;
    try {
      await api('DELETE', tenantPath(t.tenant));
      location.assign('./');
    } catch (e) {
      result.textContent = 'undeploy failed: ' + e.message;
      result.className = 'error';
      yes.disabled = false;
    }
  });
  return el('section', { class: 'card', id: 'actions' }, el('h2', {}, 'Actions'),
    el('div', { class: 'actions' }, pause, resume, undeploy, confirm), result);
}

function deployCard(tenant) {
  const name = el('input', { id: 'deploy-tenant', name: 'tenant', required: true, pattern: '[a-z0-9][a-z0-9_-]*', maxlength: 63, value: tenant || '' });
  if (tenant) name.readOnly = true;
  const manifest = el('input', { id: 'deploy-manifest', type: 'file', accept: '.toml', required: true });
  const module = el('input', { id: 'deploy-module', type: 'file', accept: '.wasm', required: true });
  const result = el('p', { id: 'deploy-result', role: 'alert' });
  const submit = el('button', { type: 'submit', id: 'deploy-submit' }, tenant ? 'Deploy this version' : 'Deploy');
  const form = el('form', { class: 'deploy' },
    el('label', { for: 'deploy-tenant' }, 'Tenant'), name,
    el('label', { for: 'deploy-manifest' }, 'Manifest (TOML)'), manifest,
    el('label', { for: 'deploy-module' }, 'Module (.wasm)'), module,
    el('span', {}), submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    result.textContent = 'Deploying…';
    result.className = 'muted';
    submit.disabled = true;
    const data = new FormData();
    data.append('manifest', manifest.files[0]);
    data.append('module', module.files[0]);
    try {
      const { status: code, json } = await api('PUT', tenantPath(name.value), data);
      result.textContent = code === 202
        ? 'Accepted: the previous version is still draining; the swap completes on its own.'
        : 'Deployed ' + json.tenant + ': ' + json.module.name + ' ' + json.module.version + '.';
      result.className = 'ok';
      refresh();
    } catch (e) {
      result.textContent = 'Refused (' + e.status + '): ' + e.message;
      result.className = 'error';
    } finally {
      submit.disabled = false;
    }
  });
  return el('section', { class: 'card', id: 'deploy' },
    el('h2', {}, tenant ? 'Deploy a new version' : 'Deploy a tenant'), form, result);
}

async function tenantPage(t) {
  const view = $('view');
  const home = el('a', { href: './' }, 'Tenants');
  $('crumbs').replaceChildren(home, ' / ', t);
  const [{ json: v }, { json: m }, { json: dl }, { json: h }] = await Promise.all([
    api('GET', tenantPath(t)), api('GET', tenantPath(t, '/manifest')),
    api('GET', tenantPath(t, '/dead-letters')), api('GET', tenantPath(t, '/history'))]);
  const c = v.counters, live = v.live;
  const summary = el('section', { class: 'card', id: 'summary' },
    el('h1', {}, el('span', { id: 'tenant-name' }, v.tenant), ' ', el('span', { id: 'tenant-state', class: 'state state-' + v.condition }, v.condition.replace('_', '-'))),
    v.reason ? el('p', { id: 'tenant-reason', class: 'reason' }, v.reason) : null,
    el('div', { class: 'grid2' },
      kv([
        ['Module', v.module.name + ' ' + v.module.version],
        ['SHA-256', el('span', { class: 'hash' }, v.module.sha256)],
        ['Deployed at', isoSecs(v.deployed_at)],
        ['Queue → exchange', v.queue + ' → ' + v.exchange],
        ['Events/s', rate(live.events_per_sec)],
        ['Last 15 min', sparkline(h.samples)],
        ['Consumer lag', num(live.consumer_lag) + ' (' + num(live.queue_depth) + ' ready)'],
        ['Watermark', live.watermark === null ? '–' : isoMs(live.watermark) + ' (' + delay(live.watermark_delay_ms) + ')'],
        ['Last checkpoint', live.last_checkpoint ? ago(live.checkpoint_age_secs) + ', ' + bytes(live.last_checkpoint.bytes) : '–'],
      ]),
      kv([
        ['Records in', num(c.records_in)], ['Bytes in', bytes(c.bytes_in)],
        ['Bad rows', num(c.deserialization_errors)], ['Late rows', num(c.late_dropped)],
        ['Future rows', num(c.future_dropped)], ['Over the key ceiling', num(c.limited)],
        ['Outputs', num(c.outputs)], ['Alerts', num(c.alerts)],
        ['Poisoned groups', num(c.poisoned)], ['Guest traps', num(c.guest_traps)],
      ])));
  const first = !$('log');
  if (first) {
    logAfter = 0;
    const log = el('section', { class: 'card', id: 'logs' }, el('h2', {}, 'Log tail'),
      el('p', { id: 'log-empty', class: 'empty' }, 'No log lines yet.'), el('ol', { id: 'log', class: 'log' }));
    view.replaceChildren(summary, actionsCard(v), manifestCard(m), lettersCard(dl.letters), log, triggersCard(v), deployCard(t));
  } else {
    // Refresh what changes; keep the log list, the forms and their state.
    $('summary').replaceWith(summary);
    $('dead-letters').replaceWith(lettersCard(dl.letters));
    $('triggers').replaceWith(triggersCard(v));
    $('manifest').replaceWith(manifestCard(m));
    const paused = v.state === 'paused';
    $('pause').disabled = paused;
    $('resume').disabled = !paused;
  }
  await appendLogs(t);
}

// ---- the loop -------------------------------------------------------------

async function refresh() {
  if (timer) clearTimeout(timer);
  if (!token()) return signOut('');
  const t = new URLSearchParams(location.search).get('tenant');
  try {
    if (t) await tenantPage(t); else await tenantsPage();
    status('Updated ' + new Date().toLocaleTimeString() + '; refreshes every ' + REFRESH_MS / 1000 + ' s.');
  } catch (e) {
    if (!token()) return;
    status('');
    const view = $('view');
    if (!view.querySelector('#load-error')) view.prepend(el('p', { id: 'load-error', class: 'error', role: 'alert' }));
    view.querySelector('#load-error').textContent = 'Could not load: ' + e.message;
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

function start() {
  takeFragmentToken();
  $('sign-in-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const value = $('token').value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $('token').value = '';
    show();
  });
  $('sign-out').addEventListener('click', () => signOut('Signed out.'));
  if (token()) show(); else signOut('');
}

function show() {
  $('sign-in').hidden = true;
  $('view').hidden = false;
  $('sign-out').hidden = false;
  $('who').textContent = 'signed in';
  refresh();
}

start();
