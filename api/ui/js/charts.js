// Small SVG charts drawn by the app: horizontal bars and a daily column chart.

import { h, s } from './dom.js';

/** Horizontal bars: rows of {label, value, color?}. */
export function barChart(title, rows, { unit = '' } = {}) {
  const W = 420;
  const rowH = 24;
  const left = 120;
  const H = Math.max(1, rows.length) * rowH + 10;
  const max = Math.max(1, ...rows.map((r) => r.value));
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title}: ${rows.map((r) => `${r.label} ${r.value}`).join(', ') || 'no data'}` });
  rows.forEach((r, i) => {
    const y = 5 + i * rowH;
    const w = ((W - left - 50) * r.value) / max;
    svg.append(
      s('text', { x: left - 6, y: y + 15, 'text-anchor': 'end' }, r.label.length > 16 ? `${r.label.slice(0, 15)}…` : r.label),
      s('rect', { x: left, y: y + 3, width: Math.max(1, w), height: rowH - 8, fill: r.color || '#3a7bd5', rx: 2 }, s('title', null, `${r.label}: ${r.value}${unit}`)),
      s('text', { x: left + w + 5, y: y + 15 }, `${r.value}${unit}`));
  });
  if (!rows.length) svg.append(s('text', { x: 10, y: 18 }, 'no data yet'));
  return h('figure', { class: 'chart card', 'data-chart': title }, h('figcaption', null, h('strong', null, title)), svg);
}

/** Columns per day: rows of {day: 'YYYY-MM-DD', value}. */
export function dayChart(title, rows) {
  const W = 420;
  const H = 180;
  const pad = { l: 34, r: 8, t: 10, b: 34 };
  const max = Math.max(1, ...rows.map((r) => r.value));
  const n = Math.max(1, rows.length);
  const cw = Math.min(60, (W - pad.l - pad.r) / n);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title}: ${rows.map((r) => `${r.day} ${r.value}`).join(', ') || 'no data'}` });
  const y = (v) => pad.t + (H - pad.t - pad.b) * (1 - v / max);
  svg.append(s('line', { x1: pad.l, y1: y(0), x2: W - pad.r, y2: y(0), stroke: '#888' }),
    s('text', { x: pad.l - 4, y: y(max) + 4, 'text-anchor': 'end' }, max), s('text', { x: pad.l - 4, y: y(0) + 4, 'text-anchor': 'end' }, 0));
  rows.forEach((r, i) => {
    const x = pad.l + i * cw;
    svg.append(s('rect', { x: x + cw * 0.15, y: y(r.value), width: cw * 0.7, height: y(0) - y(r.value), fill: '#2a9d8f' }, s('title', null, `${r.day}: ${r.value}`)));
    if (n <= 14 || i % Math.ceil(n / 7) === 0) svg.append(s('text', { x: x + cw / 2, y: H - pad.b + 14, 'text-anchor': 'middle' }, r.day.slice(5)));
  });
  if (!rows.length) svg.append(s('text', { x: pad.l + 10, y: 40 }, 'no data yet'));
  return h('figure', { class: 'chart card', 'data-chart': title }, h('figcaption', null, h('strong', null, title)), svg);
}
