// The manager's dashboard of an annotation set: task states, images annotated, per-task progress,
// charts of shapes per label, per annotator and per day. Every 5 s it reads the set's statistics
// (one request) and reads tasks and their progress again only when those changed: an idle
// dashboard costs one request per interval, whatever the size of the set.

import { all, api } from './api.js';
import { clear, h, progressBar, stateBadge } from './dom.js';
import { barChart, dayChart } from './charts.js';
import { PROGRESS_BUDGET, taskProgress } from './set.js';

const STATES = ['new', 'in_progress', 'submitted', 'in_review', 'accepted', 'rejected', 'archived'];

export async function renderDashboard(el, set) {
  const ac = new AbortController();
  const box = h('div', { id: 'dashboard' });
  el.append(box);
  const colors = Object.fromEntries(set.labels.map((l) => [l.name, l.color]));
  let shown = null;
  async function draw() {
    const st = await api(`/api/v1/annotation-sets/${set.id}/stats`);
    const seen = JSON.stringify(st);
    if (seen === shown) return;
    const tasks = await all(`/api/v1/annotation-sets/${set.id}/tasks`);
    let budget = PROGRESS_BUDGET / 4; // refreshed every few seconds: a smaller budget
    const progress = await Promise.all(tasks.map((t) => {
      const fallback = { done: t.state === 'accepted' ? t.image_count : 0, total: t.image_count };
      if (budget < t.image_count) return fallback;
      budget -= t.image_count;
      return taskProgress(t.id, ac.signal).catch(() => fallback);
    }));
    clear(box);
    box.append(h('div', { class: 'stats', id: 'state-counts' },
      h('div', { class: 'stat' }, h('b', { id: 'images-annotated' }, `${st.images.annotated} / ${st.images.total}`), 'images annotated'),
      h('div', { class: 'stat' }, h('b', { id: 'shapes-total' }, st.shapes.total), 'shapes'),
      STATES.map((s) => h('div', { class: 'stat', dataset: { state: s } }, h('b', null, st.tasks[s] || 0), stateBadge(s)))));
    box.append(h('div', { class: 'card' }, h('strong', null, 'Images annotated'), progressBar(st.images.annotated, st.images.total, 'images annotated')));
    box.append(h('div', { class: 'charts' },
      barChart('Shapes per label', Object.entries(st.shapes.by_label).map(([label, v]) => ({ label, value: v.total, color: colors[label] }))),
      barChart('Shapes per annotator', Object.entries(st.annotators).map(([label, a]) => ({ label, value: a.shapes }))),
      barChart('Active minutes per annotator', Object.entries(st.annotators).map(([label, a]) => ({ label, value: Math.round(a.active_ms / 6000) / 10 }))),
      dayChart('Shapes per day', Object.entries(st.days).map(([day, d]) => ({ day, value: Math.max(0, d.shapes) })))));
    box.append(h('h2', null, 'Tasks'), h('table', { id: 'task-progress', 'aria-label': 'Task progress' },
      h('thead', null, h('tr', null, ['Task', 'State', 'Assignee', 'Images annotated'].map((t) => h('th', null, t)))),
      h('tbody', null, tasks.map((t, i) => h('tr', null, h('td', null, `#${t.id}`), h('td', null, stateBadge(t.state)), h('td', null, t.assignee || 'pool'),
        h('td', null, progressBar(progress[i].done, progress[i].total, `task ${t.id}`)))))));
    shown = seen;
  }
  await draw();
  const timer = setInterval(() => { if (!document.hidden) draw().catch(() => {}); }, 5000);
  return () => { clearInterval(timer); ac.abort(); };
}
