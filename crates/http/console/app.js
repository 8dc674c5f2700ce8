// The Arctern web console: login, three views (overview, Kafka, AMQP) refreshed every few
// seconds from the management API, rolling charts kept in the page, and two actions
// (purge a queue, close a connection). Plain modules, no framework, no build step.

import { call, path, save, saved, forget, Unauthorized, ApiError } from './api.js';
import { h, table, section, bytes, num, rate, duration, yesNo } from './dom.js';
import { Series, lineChart } from './chart.js';

const params = new URLSearchParams(location.search);
// `?interval=1000` refreshes faster (tests use it); never below half a second.
const INTERVAL = Math.max(500, Number(params.get('interval')) || 5000);
const WINDOW = 10 * 60 * 1000;
const series = new Series(WINDOW);
const ui = { topic: null, group: null, user: null };

let timer = null;
let generation = 0;

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ login

function showLogin(message) {
  clearTimeout(timer);
  generation++;
  $('top').hidden = true;
  $('app').hidden = true;
  $('app').replaceChildren();
  $('login-view').hidden = false;
  const err = $('login-error');
  err.hidden = !message;
  err.textContent = message || '';
  $('login-user').focus();
}

async function onLogin(ev) {
  ev.preventDefault();
  const user = $('login-user').value;
  const password = $('login-password').value;
  save(user, password);
  const auth = saved();
  try {
    ui.user = await call('/api/whoami', { auth });
  } catch (e) {
    forget();
    if (e instanceof Unauthorized) showLogin('Login failed: wrong username or password.');
    else if (e instanceof ApiError && e.status === 403) showLogin('Login failed: this user may not use the management console (it needs the management, monitoring or administrator tag).');
    else showLogin(`Login failed: ${e.message}`);
    return;
  }
  $('login-password').value = '';
  enter();
}

function logout() {
  forget();
  ui.user = null;
  showLogin('');
}

function expired() {
  forget();
  showLogin('Your credentials were refused; log in again.');
}

function enter() {
  $('login-view').hidden = true;
  $('login-error').hidden = true;
  $('top').hidden = false;
  $('app').hidden = false;
  const tags = (ui.user.tags || []).join(', ');
  $('whoami').textContent = `${ui.user.name}${tags ? ` (${tags})` : ''}`;
  refresh();
}

// ------------------------------------------------------------------ refresh loop

function currentView() {
  const v = location.hash.replace(/^#\/?/, '').split('/')[0];
  return VIEWS[v] ? v : 'overview';
}

async function refresh() {
  clearTimeout(timer);
  const mine = ++generation;
  const view = currentView();
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === view);
  try {
    const content = await VIEWS[view]();
    if (mine !== generation) return;
    $('app').replaceChildren(...content.filter(Boolean));
    $('status').textContent = `updated ${new Date().toLocaleTimeString()}`;
    $('status').classList.remove('error');
  } catch (e) {
    if (mine !== generation) return;
    if (e instanceof Unauthorized) return expired();
    $('status').textContent = `refresh failed: ${e.message}`;
    $('status').classList.add('error');
  }
  if (mine === generation) timer = setTimeout(refresh, INTERVAL);
}

/** Fetches every path at once; a failing path gives `{error}` instead of failing the view. */
async function fetchAll(paths) {
  const results = await Promise.allSettled(Object.values(paths).map((p) => call(p)));
  const out = {};
  Object.keys(paths).forEach((k, i) => {
    const r = results[i];
    if (r.status === 'fulfilled') out[k] = r.value;
    else if (r.reason instanceof Unauthorized) throw r.reason;
    else out[k] = { error: r.reason };
  });
  return out;
}

function failed(x) {
  return !x || (x.error instanceof Error);
}

function unavailable(x) {
  return h('p', { class: 'muted' }, `Not available: ${x && x.error ? x.error.message : 'no data'}`);
}

function notice(text, kind = 'ok') {
  const n = $('notice');
  n.textContent = text;
  n.className = kind;
  n.hidden = false;
  clearTimeout(notice.timer);
  notice.timer = setTimeout(() => { n.hidden = true; }, kind === 'error' ? 30000 : 8000);
}

function confirmDialog(text) {
  const d = $('confirm');
  $('confirm-text').textContent = text;
  d.returnValue = '';
  d.showModal();
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
  });
}

function stat(label, value, id) {
  return h('div', { class: 'stat', id }, h('div', { class: 'stat-value' }, value), h('div', { class: 'stat-label' }, label));
}

function detailsRate(obj, key) {
  const d = obj && obj[`${key}_details`];
  return d && typeof d.rate === 'number' ? d.rate : undefined;
}

/** A rate: the API's `<key>_details.rate`, else computed from the counter's samples. */
function sampledRate(seriesKey, now, obj, key) {
  const fromCounter = series.counterRate(seriesKey, now, obj ? obj[key] : undefined);
  const r = detailsRate(obj, key);
  return r !== undefined ? r : fromCounter;
}

// ------------------------------------------------------------------ overview

async function overview() {
  const d = await fetchAll({
    overview: '/api/overview',
    nodes: '/api/nodes',
    alarms: '/api/health/checks/alarms',
    cluster: '/api/kafka/cluster',
    topics: '/api/kafka/topics',
    groups: '/api/kafka/groups',
  });
  const now = Date.now();
  const ov = failed(d.overview) ? {} : d.overview;
  const totals = ov.object_totals || {};
  // RabbitMQ leaves queue_totals empty while there are no queues.
  const q = { messages: 0, messages_ready: 0, messages_unacknowledged: 0, ...(ov.queue_totals || {}) };
  const ms = ov.message_stats || {};
  const topics = failed(d.topics) ? [] : d.topics;
  const groups = failed(d.groups) ? [] : d.groups;
  const partitions = topics.reduce((s, t) => s + (t.partitions || 0), 0);
  const totalLag = groups.reduce((s, g) => s + (g.total_lag || 0), 0);

  series.push('ov:publish', now, sampledRate('ov:publish:c', now, ms, 'publish'));
  series.push('ov:deliver', now, sampledRate('ov:deliver:c', now, ms, 'deliver_get'));
  if (!failed(d.overview)) {
    series.push('ov:ready', now, q.messages_ready);
    series.push('ov:unacked', now, q.messages_unacknowledged);
    series.push('ov:connections', now, totals.connections ?? 0);
  }
  series.push('ov:lag', now, failed(d.groups) ? undefined : totalLag);

  // Alarms: 200 {status: ok}, or 503 {status: failed, alarms: [...]}.
  let alarms;
  if (!failed(d.alarms)) {
    alarms = h('p', { class: 'ok', id: 'alarms-ok' }, 'No alarms in effect.');
  } else if (d.alarms.error instanceof ApiError && d.alarms.error.body && d.alarms.error.body.status === 'failed') {
    const list = d.alarms.error.body.alarms || [];
    alarms = h('div', { id: 'alarms-active' },
      h('p', { class: 'error' }, d.alarms.error.body.reason || 'Resource alarm in effect.'),
      table([{ label: 'Node' }, { label: 'Resource' }],
        list.map((a) => ({ cells: [a.node, a.resource], attrs: { class: 'bad' } }))));
  } else {
    alarms = unavailable(d.alarms);
  }

  const nodes = failed(d.nodes) ? unavailable(d.nodes) : table(
    [{ label: 'Node' }, { label: 'Running' }, { label: 'Uptime', num: true }, { label: 'Memory used', num: true },
      { label: 'Memory limit', num: true }, { label: 'Disk free', num: true }, { label: 'Disk free limit', num: true },
      { label: 'File descriptors', num: true }],
    d.nodes.map((n) => ({
      attrs: { class: n.mem_alarm || n.disk_free_alarm || n.running === false ? 'bad' : null, dataset: { node: n.name } },
      cells: [n.name, yesNo(n.running), duration(n.uptime), bytes(n.mem_used), bytes(n.mem_limit),
        bytes(n.disk_free), bytes(n.disk_free_limit), n.fd_total ? `${num(n.fd_used)} / ${num(n.fd_total)}` : num(n.fd_used)],
    })));

  let kafkaNodes;
  if (failed(d.cluster)) kafkaNodes = unavailable(d.cluster);
  else {
    const c = d.cluster;
    kafkaNodes = h('div', {},
      h('p', {}, 'Cluster id ', h('code', {}, c.cluster_id ?? '–'), ' · controller ',
        h('b', { id: 'kafka-controller' }, c.controller === undefined || c.controller === null || c.controller < 0 ? 'none' : String(c.controller))),
      table([{ label: 'Node id', num: true }, { label: 'Host' }, { label: 'Port', num: true }, { label: 'Rack' }, { label: 'Alive' }, { label: 'Role' }],
        (c.nodes || []).map((n) => ({
          attrs: { class: n.alive === false ? 'bad' : null },
          cells: [n.node_id, n.host, n.port, n.rack ?? '–', yesNo(n.alive), n.node_id === c.controller ? 'controller' : ''],
        }))));
  }

  const listeners = (ov.listeners || []).map((l) => ({ cells: [l.protocol, l.ip_address, l.port, l.node] }));
  const fmtRate = (v) => rate(v);

  return [
    h('h1', {}, 'Overview', ov.cluster_name ? h('span', { class: 'muted' }, ` · ${ov.cluster_name}`) : null),
    h('div', { class: 'stats' },
      stat('Connections', num(totals.connections), 'stat-connections'),
      stat('Channels', num(totals.channels)),
      stat('Queues', num(totals.queues), 'stat-queues'),
      stat('Consumers', num(totals.consumers)),
      stat('Messages queued', failed(d.overview) ? '–' : num(q.messages), 'stat-messages'),
      stat('Published', num(ms.publish)),
      stat('Kafka topics', failed(d.topics) ? '–' : num(topics.length), 'stat-topics'),
      stat('Kafka partitions', failed(d.topics) ? '–' : num(partitions)),
      stat('Consumer groups', failed(d.groups) ? '–' : num(groups.length)),
      stat('Consumer lag', failed(d.groups) ? '–' : num(totalLag), 'stat-lag')),
    h('div', { class: 'charts' },
      lineChart({ title: 'AMQP message rates', windowMs: WINDOW, format: fmtRate, id: 'chart-rates',
        lines: [{ label: 'publish', points: series.get('ov:publish') }, { label: 'deliver/get', points: series.get('ov:deliver') }] }),
      lineChart({ title: 'Queued messages', windowMs: WINDOW, format: num, id: 'chart-queued',
        lines: [{ label: 'ready', points: series.get('ov:ready') }, { label: 'unacked', points: series.get('ov:unacked') }] }),
      lineChart({ title: 'Connections and Kafka consumer lag', windowMs: WINDOW, format: num, id: 'chart-conns',
        lines: [{ label: 'connections', points: series.get('ov:connections') }, { label: 'total lag', points: series.get('ov:lag') }] })),
    section('Alarms', alarms),
    section('Nodes', nodes, ov.rabbitmq_version ? h('p', { class: 'muted' }, `RabbitMQ-compatible version ${ov.rabbitmq_version}`) : null),
    section('Kafka cluster', kafkaNodes),
    section('Listeners', table([{ label: 'Protocol' }, { label: 'Address' }, { label: 'Port', num: true }, { label: 'Node' }], listeners)),
  ];
}

// ------------------------------------------------------------------ Kafka

function pickTopic(name) {
  ui.topic = ui.topic === name ? null : name;
  refresh();
}

function pickGroup(id) {
  ui.group = ui.group === id ? null : id;
  refresh();
}

async function kafka() {
  const paths = { topics: '/api/kafka/topics', groups: '/api/kafka/groups' };
  if (ui.topic !== null) paths.topic = path('/api/kafka/topics', ui.topic);
  if (ui.group !== null) paths.group = path('/api/kafka/groups', ui.group);
  const d = await fetchAll(paths);
  const now = Date.now();

  let topicsView;
  if (failed(d.topics)) topicsView = unavailable(d.topics);
  else {
    const topics = [...d.topics].sort((a, b) => a.name.localeCompare(b.name));
    topicsView = table(
      [{ label: 'Topic' }, { label: 'Internal' }, { label: 'Partitions', num: true }, { label: 'Replication factor', num: true },
        { label: 'Under-replicated', num: true }, { label: 'Offline', num: true }],
      topics.map((t) => ({
        attrs: {
          class: [t.offline_partitions > 0 ? 'bad' : t.under_replicated_partitions > 0 ? 'warn' : null, ui.topic === t.name ? 'selected' : null].filter(Boolean).join(' ') || null,
          dataset: { topic: t.name },
        },
        cells: [h('button', { type: 'button', class: 'link', onclick: () => pickTopic(t.name) }, t.name), yesNo(t.internal),
          num(t.partitions), num(t.replication_factor), num(t.under_replicated_partitions), num(t.offline_partitions)],
      })), 'No topics');
  }

  let topicView = null;
  if (ui.topic !== null) {
    if (failed(d.topic)) topicView = section(`Topic ${ui.topic}`, unavailable(d.topic));
    else {
      const t = d.topic;
      const parts = t.partitions || [];
      const hw = parts.reduce((s, p) => s + (p.high_watermark || 0), 0);
      series.push(`topic-in:${t.name}`, now, series.counterRate(`topic-hw:${t.name}`, now, hw));
      const configs = Object.entries(t.configs || {}).sort(([a], [b]) => a.localeCompare(b));
      topicView = section(`Topic ${t.name}`,
        h('div', { class: 'charts' }, lineChart({ title: `Messages in to ${t.name}`, windowMs: WINDOW, format: rate, id: 'chart-topic-in',
          lines: [{ label: 'messages/s', points: series.get(`topic-in:${t.name}`) }] })),
        h('div', { id: 'partitions' }, table(
          [{ label: 'Partition', num: true }, { label: 'Leader', num: true }, { label: 'Replicas' }, { label: 'In-sync replicas' },
            { label: 'Under-replicated' }, { label: 'Log start', num: true }, { label: 'High watermark', num: true }, { label: 'Size', num: true }],
          parts.map((p) => ({
            attrs: {
              class: p.leader === undefined || p.leader === null || p.leader < 0 ? 'bad' : p.under_replicated ? 'warn' : null,
              dataset: { partition: p.partition, underReplicated: p.under_replicated ? 'true' : 'false' },
            },
            cells: [p.partition, p.leader === null || p.leader < 0 ? 'none' : p.leader, (p.replicas || []).join(', '), (p.isr || []).join(', '),
              yesNo(p.under_replicated), num(p.log_start_offset), num(p.high_watermark), bytes(p.size_bytes)],
          })))),
        configs.length ? h('details', {}, h('summary', {}, `Configs (${configs.length})`),
          table([{ label: 'Name' }, { label: 'Value' }], configs.map(([k, v]) => ({ cells: [k, typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)] })))) : null);
    }
  }

  let groupsView;
  let lagChart = null;
  if (failed(d.groups)) groupsView = unavailable(d.groups);
  else {
    const groups = [...d.groups].sort((a, b) => a.group_id.localeCompare(b.group_id));
    const keep = new Set();
    for (const g of groups) {
      keep.add(`lag:${g.group_id}`);
      series.push(`lag:${g.group_id}`, now, g.total_lag);
    }
    series.retain('lag:', keep);
    // The eight groups with the most lag now get a line each.
    const top = [...groups].sort((a, b) => (b.total_lag || 0) - (a.total_lag || 0)).slice(0, 8);
    lagChart = lineChart({ title: 'Consumer group lag (messages)', windowMs: WINDOW, format: num, id: 'chart-lag',
      lines: top.map((g) => ({ label: g.group_id, points: series.get(`lag:${g.group_id}`) })) });
    groupsView = table(
      [{ label: 'Group' }, { label: 'State' }, { label: 'Protocol type' }, { label: 'Members', num: true }, { label: 'Total lag', num: true }],
      groups.map((g) => ({
        attrs: { class: ui.group === g.group_id ? 'selected' : null, dataset: { group: g.group_id } },
        cells: [h('button', { type: 'button', class: 'link', onclick: () => pickGroup(g.group_id) }, g.group_id), g.state, g.protocol_type || '–',
          num(g.members), h('span', { class: 'lag' }, num(g.total_lag))],
      })), 'No consumer groups');
  }

  let groupView = null;
  if (ui.group !== null) {
    if (failed(d.group)) groupView = section(`Group ${ui.group}`, unavailable(d.group));
    else {
      const g = d.group;
      const offsets = [...(g.offsets || [])].sort((a, b) => a.topic.localeCompare(b.topic) || a.partition - b.partition);
      groupView = section(`Group ${g.group_id}`,
        h('p', {}, `State ${g.state} · protocol ${g.protocol || '–'} (${g.protocol_type || '–'}) · coordinator ${g.coordinator ?? '–'}`),
        h('h3', {}, 'Lag per partition'),
        h('div', { id: 'group-offsets' }, table(
          [{ label: 'Topic' }, { label: 'Partition', num: true }, { label: 'Committed offset', num: true }, { label: 'Log end offset', num: true }, { label: 'Lag', num: true }],
          offsets.map((o) => ({
            attrs: { class: o.lag > 0 ? 'lagging' : null, dataset: { topic: o.topic, partition: o.partition } },
            cells: [o.topic, o.partition, num(o.committed_offset), num(o.log_end_offset), num(o.lag)],
          })), 'No committed offsets')),
        h('h3', {}, 'Members'),
        table([{ label: 'Member' }, { label: 'Client id' }, { label: 'Host' }, { label: 'Assigned partitions' }],
          (g.members || []).map((m) => ({
            cells: [m.member_id, m.client_id, m.client_host,
              (m.assignments || []).map((a) => `${a.topic}-${a.partition}`).join(', ') || '–'],
          })), 'No members'));
    }
  }

  return [
    h('h1', {}, 'Kafka'),
    h('div', { class: 'charts' }, lagChart),
    section('Topics', h('div', { id: 'topics' }, topicsView)),
    topicView,
    section('Consumer groups', h('div', { id: 'groups' }, groupsView)),
    groupView,
  ];
}

// ------------------------------------------------------------------ AMQP

async function purge(q) {
  const ok = await confirmDialog(`Purge all ready messages from queue "${q.name}" in vhost "${q.vhost}"? This cannot be undone.`);
  if (!ok) return;
  try {
    await call(path('/api/queues', q.vhost, q.name, 'contents'), { method: 'DELETE' });
    notice(`Queue "${q.name}" purged.`);
  } catch (e) {
    if (e instanceof Unauthorized) return expired();
    notice(`Purge of "${q.name}" failed: ${e.message}`, 'error');
  }
  refresh();
}

async function closeConnection(c) {
  const ok = await confirmDialog(`Close connection "${c.name}" (user ${c.user ?? '–'})? The client sees it closed by the broker.`);
  if (!ok) return;
  try {
    // RabbitMQ sends X-Reason to the client in connection.close.
    await call(path('/api/connections', c.name), { method: 'DELETE', headers: { 'X-Reason': 'Closed via the Arctern web console' } });
    notice(`Connection "${c.name}" closed.`);
  } catch (e) {
    if (e instanceof Unauthorized) return expired();
    notice(`Closing "${c.name}" failed: ${e.message}`, 'error');
  }
  refresh();
}

async function amqp() {
  const d = await fetchAll({
    vhosts: '/api/vhosts',
    queues: '/api/queues',
    exchanges: '/api/exchanges',
    connections: '/api/connections',
  });
  const now = Date.now();
  const queues = failed(d.queues) ? [] : [...d.queues].sort((a, b) => a.vhost.localeCompare(b.vhost) || a.name.localeCompare(b.name));

  let publish = 0, deliver = 0, ready = 0, unacked = 0, havePublish = false, haveDeliver = false;
  const rates = new Map();
  for (const q of queues) {
    const key = `${q.vhost}\u0000${q.name}`;
    const st = q.message_stats || {};
    const p = sampledRate(`q-pub:${key}`, now, st, 'publish');
    const g = sampledRate(`q-del:${key}`, now, st, 'deliver_get');
    rates.set(key, [p, g]);
    if (p !== undefined) { publish += p; havePublish = true; }
    if (g !== undefined) { deliver += g; haveDeliver = true; }
    ready += q.messages_ready || 0;
    unacked += q.messages_unacknowledged || 0;
  }
  if (!failed(d.queues)) {
    series.push('amqp:publish', now, havePublish ? publish : 0);
    series.push('amqp:deliver', now, haveDeliver ? deliver : 0);
    series.push('amqp:ready', now, ready);
    series.push('amqp:unacked', now, unacked);
  }

  const vhostsView = failed(d.vhosts) ? unavailable(d.vhosts) : table(
    [{ label: 'Vhost' }, { label: 'Messages', num: true }, { label: 'Ready', num: true }, { label: 'Unacked', num: true }],
    d.vhosts.map((v) => ({ attrs: { dataset: { vhost: v.name } }, cells: [v.name, num(v.messages), num(v.messages_ready), num(v.messages_unacknowledged)] })));

  const queuesView = failed(d.queues) ? unavailable(d.queues) : table(
    [{ label: 'Vhost' }, { label: 'Queue' }, { label: 'Type' }, { label: 'State' }, { label: 'Ready', num: true }, { label: 'Unacked', num: true },
      { label: 'Total', num: true }, { label: 'Consumers', num: true }, { label: 'Publish', num: true }, { label: 'Deliver/get', num: true }, { label: '' }],
    queues.map((q) => {
      const [p, g] = rates.get(`${q.vhost}\u0000${q.name}`);
      return {
        attrs: { dataset: { vhost: q.vhost, queue: q.name } },
        cells: [q.vhost, q.name, q.type || 'classic', q.state || '–',
          h('span', { class: 'ready' }, num(q.messages_ready)), h('span', { class: 'unacked' }, num(q.messages_unacknowledged)),
          num(q.messages), num(q.consumers), rate(p), rate(g),
          h('button', { type: 'button', class: 'danger small', onclick: () => purge(q) }, 'Purge')],
      };
    }), 'No queues');

  const exchangesView = failed(d.exchanges) ? unavailable(d.exchanges) : table(
    [{ label: 'Vhost' }, { label: 'Exchange' }, { label: 'Type' }, { label: 'Durable' }, { label: 'Auto-delete' }, { label: 'Internal' }],
    [...d.exchanges].sort((a, b) => a.vhost.localeCompare(b.vhost) || a.name.localeCompare(b.name)).map((x) => ({
      attrs: { dataset: { vhost: x.vhost, exchange: x.name } },
      cells: [x.vhost, x.name === '' ? '(AMQP default)' : x.name, x.type, yesNo(x.durable), yesNo(x.auto_delete), yesNo(x.internal)],
    })), 'No exchanges');

  const connectionsView = failed(d.connections) ? unavailable(d.connections) : table(
    [{ label: 'Connection' }, { label: 'User' }, { label: 'Vhost' }, { label: 'Protocol' }, { label: 'Client' }, { label: 'Channels', num: true },
      { label: 'State' }, { label: '' }],
    [...d.connections].sort((a, b) => a.name.localeCompare(b.name)).map((c) => {
      const cp = c.client_properties || {};
      // The name the client gave itself (RabbitMQ's user_provided_name).
      const named = c.user_provided_name || cp.connection_name;
      return {
        attrs: { dataset: { connection: c.name } },
        cells: [[c.name, named ? h('div', { class: 'muted' }, named) : null], c.user ?? '–', c.vhost ?? '–', c.protocol ?? '–', [cp.product, cp.version].filter(Boolean).join(' ') || '–',
          num(c.channels), c.state ?? '–',
          h('button', { type: 'button', class: 'danger small', onclick: () => closeConnection(c) }, 'Close')],
      };
    }), 'No connections');

  return [
    h('h1', {}, 'AMQP'),
    h('div', { class: 'charts' },
      lineChart({ title: 'Message rates (all queues)', windowMs: WINDOW, format: rate, id: 'chart-amqp-rates',
        lines: [{ label: 'publish', points: series.get('amqp:publish') }, { label: 'deliver/get', points: series.get('amqp:deliver') }] }),
      lineChart({ title: 'Queued messages (all queues)', windowMs: WINDOW, format: num, id: 'chart-amqp-queued',
        lines: [{ label: 'ready', points: series.get('amqp:ready') }, { label: 'unacked', points: series.get('amqp:unacked') }] })),
    section('Queues', h('div', { id: 'queues' }, queuesView)),
    section('Connections', h('div', { id: 'connections' }, connectionsView)),
    section('Exchanges', h('div', { id: 'exchanges' }, exchangesView)),
    section('Virtual hosts', h('div', { id: 'vhosts' }, vhostsView)),
  ];
}

const VIEWS = { overview, kafka, amqp };

// ------------------------------------------------------------------ start

$('login-form').addEventListener('submit', onLogin);
$('logout').addEventListener('click', logout);
window.addEventListener('hashchange', () => { if (ui.user) refresh(); });

(async () => {
  if (!saved()) return showLogin('');
  try {
    ui.user = await call('/api/whoami');
    enter();
  } catch (e) {
    if (e instanceof Unauthorized) expired();
    else { forget(); showLogin(`Cannot reach the node: ${e.message}`); }
  }
})();
