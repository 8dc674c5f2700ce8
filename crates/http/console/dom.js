// Small DOM helpers. Every value from the API goes in as text (textContent), never as
// HTML: queue, topic and client names are chosen by whoever connects to the broker.

/** h('td', {class: 'num'}, 'text', childNode, ...) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** A table: columns [{label, num?}], rows of {cells: [...], attrs: {...}}. */
export function table(columns, rows, empty = 'None') {
  const head = h('tr', {}, columns.map((c) => h('th', { class: c.num ? 'num' : null }, c.label)));
  const body = rows.length
    ? rows.map((r) => h('tr', r.attrs || {}, r.cells.map((cell, i) =>
        h('td', { class: columns[i] && columns[i].num ? 'num' : null }, cell))))
    : [h('tr', {}, h('td', { colspan: columns.length, class: 'muted' }, empty))];
  return h('table', {}, h('thead', {}, head), h('tbody', {}, body));
}

export function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', {}, title), ...children);
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

export function bytes(n) {
  if (typeof n !== 'number' || !isFinite(n)) return '–';
  let i = 0;
  while (Math.abs(n) >= 1024 && i < UNITS.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + UNITS[i];
}

export function num(n) {
  if (typeof n !== 'number' || !isFinite(n)) return '–';
  return n.toLocaleString('en-US');
}

export function rate(n) {
  if (typeof n !== 'number' || !isFinite(n)) return '–';
  return (n >= 100 ? n.toFixed(0) : n.toFixed(1)) + '/s';
}

export function duration(ms) {
  if (typeof ms !== 'number' || !isFinite(ms)) return '–';
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hr = Math.floor(s / 3600); s -= hr * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${hr}h`;
  if (hr) return `${hr}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

export function yesNo(b) {
  return b === undefined || b === null ? '–' : (b ? 'yes' : 'no');
}
