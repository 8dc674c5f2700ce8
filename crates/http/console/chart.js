// Rolling time series kept in the page, and SVG line charts drawn from them.

import { h } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';
const COLORS = ['#2b7bb9', '#e5743b', '#3a9d5d', '#b5408f', '#8c6d31', '#5b5ea6', '#c0392b', '#17a2b8'];

/** Samples per named series, trimmed to the last `windowMs`. */
export class Series {
  constructor(windowMs) {
    this.windowMs = windowMs;
    this.data = new Map();
    this.counters = new Map();
  }

  push(key, t, v) {
    if (typeof v !== 'number' || !isFinite(v)) return;
    let pts = this.data.get(key);
    if (!pts) this.data.set(key, (pts = []));
    pts.push([t, v]);
    while (pts.length && pts[0][0] < t - this.windowMs) pts.shift();
  }

  /** Per-second rate of a monotonically growing counter since its previous sample. */
  counterRate(key, t, counter) {
    if (typeof counter !== 'number' || !isFinite(counter)) return undefined;
    const prev = this.counters.get(key);
    this.counters.set(key, [t, counter]);
    if (!prev || t <= prev[0] || counter < prev[1]) return undefined;
    return ((counter - prev[1]) * 1000) / (t - prev[0]);
  }

  get(key) {
    return this.data.get(key) || [];
  }

  /** Drops series not in `keep` (objects that disappeared). */
  retain(prefix, keep) {
    for (const k of this.data.keys()) if (k.startsWith(prefix) && !keep.has(k)) this.data.delete(k);
  }
}

function el(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/**
 * A line chart of `lines` ([{label, points: [[t, v], ...]}]) over the last `windowMs`.
 * `format` turns an axis/legend value into text.
 */
export function lineChart({ title, lines, windowMs, format = String, id }) {
  const W = 640, H = 180, L = 56, R = 10, T = 10, B = 22;
  const now = Date.now();
  const t0 = now - windowMs;
  let max = 0;
  for (const l of lines) for (const [, v] of l.points) if (v > max) max = v;
  max = niceMax(max);
  const x = (t) => L + ((t - t0) / windowMs) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);

  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.appendChild(el('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }));
    const label = el('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' });
    label.textContent = format(v);
    svg.appendChild(label);
  }
  const mins = Math.round(windowMs / 60000);
  for (const [t, text] of [[t0, `−${mins} min`], [now, 'now']]) {
    const label = el('text', { x: x(t), y: H - 6, 'text-anchor': t === now ? 'end' : 'start', class: 'axis' });
    label.textContent = text;
    svg.appendChild(label);
  }
  lines.forEach((l, i) => {
    const pts = l.points.filter(([t]) => t >= t0);
    if (!pts.length) return;
    const color = COLORS[i % COLORS.length];
    if (pts.length === 1) {
      svg.appendChild(el('circle', { cx: x(pts[0][0]), cy: y(pts[0][1]), r: 2.5, fill: color }));
    } else {
      const d = pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
      svg.appendChild(el('polyline', { points: d, fill: 'none', stroke: color, 'stroke-width': 1.8 }));
    }
  });

  const legend = h('ul', { class: 'legend' }, lines.map((l, i) => {
    const last = l.points.length ? l.points[l.points.length - 1][1] : undefined;
    return h('li', {}, h('span', { class: 'swatch', style: null, dataset: { color: i % COLORS.length } }),
      l.label, ' ', h('b', {}, last === undefined ? '–' : format(last)));
  }));
  return h('figure', { class: 'chart-box', id }, h('figcaption', {}, title), svg, legend);
}
