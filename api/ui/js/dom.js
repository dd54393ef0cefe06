// Tiny DOM helpers: h() builds elements without innerHTML, so user data is never parsed as HTML.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'style' && typeof v === 'object') Object.assign(el.style, v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k in el && typeof v !== 'string') el[k] = v;
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, v);
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

const SVG = 'http://www.w3.org/2000/svg';
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, v);
  for (const c of children.flat()) if (c != null) el.append(c instanceof Node ? c : String(c));
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

let toastSeq = 0;
export function toast(message, kind = 'info', ms = 4000) {
  const box = document.getElementById('toasts');
  const t = h('div', { class: `toast ${kind}`, id: `toast-${++toastSeq}` }, message);
  box.append(t);
  setTimeout(() => t.remove(), ms);
}

/** A labelled form field: <label>text <input ...></label>. */
export function field(label, control, hint) {
  const l = h('label', { class: 'field' }, h('span', null, label), control);
  return hint ? h('div', null, l, h('small', { class: 'muted' }, hint)) : l;
}

export function fmtBytes(n) {
  if (n == null) return '';
  const u = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

export function fmtTime(ms) {
  return ms ? new Date(ms).toLocaleString() : '';
}

export function progressBar(value, max, label) {
  const pct = max > 0 ? Math.min(100, Math.round((value / max) * 100)) : 0;
  return h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': String(max), 'aria-valuenow': String(value), 'aria-label': label || 'progress' },
    h('div', { class: 'bar', style: { width: `${pct}%` } }),
    h('span', { class: 'progress-text' }, `${value} / ${max}`));
}

export function setProgress(el, value, max) {
  const pct = max > 0 ? Math.min(100, Math.round((value / max) * 100)) : 0;
  el.setAttribute('aria-valuenow', String(value));
  el.setAttribute('aria-valuemax', String(max));
  el.querySelector('.bar').style.width = `${pct}%`;
  el.querySelector('.progress-text').textContent = `${value} / ${max}`;
}

/** A modal <dialog>; resolves with the value passed to close(). */
export function modal(title, body, buttons) {
  return new Promise((resolve) => {
    const dlg = h('dialog', { class: 'modal', 'aria-label': title });
    const done = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    dlg.append(h('h2', null, title), body,
      h('div', { class: 'actions' }, buttons.map((b) => h('button', { type: 'button', class: b.class || '', onclick: () => done(b.value) }, b.text))));
    dlg.addEventListener('cancel', (e) => { e.preventDefault(); done(undefined); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

export function stateBadge(state) {
  return h('span', { class: `badge st-${state}` }, String(state).replace('_', ' '));
}
