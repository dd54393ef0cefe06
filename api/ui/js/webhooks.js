// Webhooks (managers): register an endpoint for task, save, job and quality events, see its
// signing secret once, and follow its deliveries (status, latency, attempts) in its log.

import { api } from './api.js';
import { clear, field, h, modal, toast } from './dom.js';

const EVENTS = [
  ['task.submitted', 'Task submitted'],
  ['task.accepted', 'Task accepted'],
  ['task.rejected', 'Task rejected'],
  ['annotation.saved', 'Annotations saved (batched)'],
  ['job.finished', 'Import/export finished'],
  ['job.failed', 'Import/export failed'],
  ['quality.below_threshold', 'Honeypot score below the review threshold'],
];

const when = (ms) => (ms ? new Date(ms).toLocaleString() : '');

export async function render(el) {
  el.append(h('h1', null, 'Webhooks'));
  const url = h('input', { type: 'url', id: 'webhook-url', size: 50, required: true, placeholder: 'https://receiver.example/tessera' });
  const set = h('input', { type: 'number', id: 'webhook-set', min: 1, placeholder: 'every set' });
  const boxes = EVENTS.map(([name, text]) => {
    const box = h('input', { type: 'checkbox', value: name, id: `event-${name.replace('.', '-')}` });
    return [box, h('label', { class: 'check', for: box.id }, box, ` ${text}`)];
  });
  const err = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'card', 'aria-label': 'New webhook' },
    h('h2', null, 'New webhook'),
    h('p', { class: 'muted' }, 'Deliveries are POSTed as JSON, signed with the header Tessera-Signature: t=<ms>,v1=<HMAC-SHA256 of "<t>.<body>">, retried with backoff, and never slow down the people working.'),
    h('div', { class: 'row' }, field('URL', url), field('Annotation set (empty: every set)', set)),
    h('fieldset', null, h('legend', null, 'Events'), boxes.map(([, label]) => label)),
    h('button', { type: 'submit', class: 'primary', id: 'webhook-create' }, 'Add webhook'), err);
  const tbody = h('tbody');
  const detail = h('section', { id: 'webhook-detail', 'aria-label': 'Delivery log', hidden: true });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    const events = boxes.filter(([b]) => b.checked).map(([b]) => b.value);
    const body = { url: url.value.trim(), events };
    if (set.value) body.annotation_set = Number(set.value);
    try {
      const hook = await api('/api/v1/webhooks', { json: body });
      await modal('Webhook added',
        h('div', null,
          h('p', null, 'Its signing secret is shown only now. Keep it with the receiver, which checks every delivery with it:'),
          h('p', null, h('code', { id: 'webhook-secret' }, hook.secret))),
        [{ text: 'Done', value: true, class: 'primary' }]);
      form.reset();
      await load();
    } catch (e2) { err.textContent = e2.message; }
  });

  async function load() {
    const r = await api('/api/v1/webhooks');
    clear(tbody);
    for (const w of r.items) {
      const open = h('button', { type: 'button', 'aria-label': `Deliveries of webhook ${w.id}` }, 'Deliveries');
      open.addEventListener('click', () => showLog(w.id).catch((e) => toast(e.message, 'error')));
      const remove = h('button', { type: 'button', class: 'danger', 'aria-label': `Delete webhook ${w.id}` }, 'Delete');
      remove.addEventListener('click', async () => {
        try {
          await api(`/api/v1/webhooks/${w.id}`, { method: 'DELETE' });
          detail.hidden = true;
          await load();
        } catch (e) { toast(e.message, 'error'); }
      });
      tbody.append(h('tr', { dataset: { webhook: String(w.id) } },
        h('td', null, `#${w.id}`), h('td', null, h('code', null, w.url)), h('td', null, w.annotation_set ? `#${w.annotation_set}` : 'every set'),
        h('td', null, w.events.join(', ')), h('td', { dataset: { col: 'queued' } }, String(w.queued)), h('td', null, String(w.dropped)), h('td', null, open, ' ', remove)));
    }
    if (!r.items.length) tbody.append(h('tr', null, h('td', { colspan: '7', class: 'muted' }, 'No webhooks yet.')));
  }

  async function showLog(id) {
    const w = await api(`/api/v1/webhooks/${id}`);
    clear(detail);
    detail.hidden = false;
    detail.append(h('h2', null, `Deliveries of webhook #${id}`),
      h('p', { class: 'muted' }, `${w.queued} waiting, ${w.dropped} dropped because the queue was full.`),
      h('table', { id: 'webhook-log', 'aria-label': `Delivery log of webhook ${id}` },
        h('thead', null, h('tr', null, ['When', 'Delivery', 'Event', 'Attempt', 'Node', 'Status', 'Latency', 'Outcome', 'Error'].map((t) => h('th', null, t)))),
        h('tbody', null, w.log.length
          ? w.log.map((l) => h('tr', { dataset: { outcome: l.outcome } },
            h('td', null, when(l.at_ms)), h('td', null, `${id}-${l.seq}`), h('td', null, l.event), h('td', null, String(l.attempt)),
            h('td', null, l.node ?? ''), h('td', { dataset: { col: 'status' } }, l.status ?? '—'), h('td', null, `${l.latency_ms} ms`),
            h('td', null, l.outcome), h('td', null, l.error || '')))
          : h('tr', null, h('td', { colspan: '9', class: 'muted' }, 'Nothing delivered yet.')))));
  }

  el.append(form, h('table', { id: 'webhooks', 'aria-label': 'Webhooks' },
    h('thead', null, h('tr', null, ['Webhook', 'URL', 'Set', 'Events', 'Waiting', 'Dropped', ''].map((t) => h('th', null, t)))), tbody), detail);
  await load();
}
