// The manager's dashboard of an annotation set: task states, images annotated, per-task progress,
// charts of shapes per label, per annotator and per day, the review figures per annotator and
// per reviewer, and the quality figures per annotator. Every 5 s it reads the set's statistics
// (one request) and reads tasks, their progress, the review statistics and the quality report
// again only when those changed (or, for quality, while images wait for a recompute): an idle
// dashboard costs one request per interval, whatever the size of the set. (Every event the
// review statistics count — submit, review, accept, reject — moves a task between states, which
// changes the counts by state; moves of several tasks within one interval that cancel out exactly
// are seen at the next change, the same limit the task list has.)

import { all, api } from './api.js';
import { clear, h, progressBar, stateBadge } from './dom.js';
import { barChart, dayChart } from './charts.js';
import { PROGRESS_BUDGET, taskProgress } from './set.js';
import { annotatorTable } from './quality.js';

const STATES = ['new', 'in_progress', 'submitted', 'in_review', 'accepted', 'rejected', 'archived'];

export async function renderDashboard(el, set) {
  const ac = new AbortController();
  const box = h('div', { id: 'dashboard' });
  el.append(box);
  const colors = Object.fromEntries(set.labels.map((l) => [l.name, l.color]));
  let shown = null;
  let qualityPending = false;
  const qualitySection = (quality) => h('section', { id: 'dashboard-quality', 'aria-label': 'Quality' },
    h('h2', null, 'Quality'),
    h('p', { class: 'muted' }, 'Honeypot scores and agreement with the consensus; ground truth and the least agreed images are on the ',
      h('a', { href: `/sets/${set.id}/quality`, 'data-link': true }, 'Quality'), ' tab.'),
    annotatorTable(quality));
  async function draw() {
    const st = await api(`/api/v1/annotation-sets/${set.id}/stats`);
    const seen = JSON.stringify(st);
    if (seen === shown) {
      // Quality figures are recomputed in the background after the saves the statistics
      // counted: while some are pending, read them again.
      if (qualityPending) {
        const quality = await api(`/api/v1/annotation-sets/${set.id}/quality`);
        box.querySelector('#dashboard-quality')?.replaceWith(qualitySection(quality));
        qualityPending = quality.pending > 0;
      }
      return;
    }
    const [tasks, review, quality] = await Promise.all([
      all(`/api/v1/annotation-sets/${set.id}/tasks`),
      api(`/api/v1/annotation-sets/${set.id}/review-stats`),
      api(`/api/v1/annotation-sets/${set.id}/quality`),
    ]);
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
    box.append(reviewSection(review));
    box.append(qualitySection(quality));
    qualityPending = quality.pending > 0;
    shown = seen;
  }
  await draw();
  const timer = setInterval(() => { if (!document.hidden) draw().catch(() => {}); }, 5000);
  return () => { clearInterval(timer); ac.abort(); };
}

// A duration in ms for a table cell; '—' when there is none (no samples yet).
function fmtDuration(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms > 0 && ms < 500) return '< 1 s';
  if (ms < 60_000) return `${Math.round(ms / 1000)} s`;
  if (ms < 3_600_000) return `${Math.round(ms / 6000) / 10} min`;
  return `${Math.round(ms / 360_000) / 10} h`;
}

function fmtRate(rate) {
  return rate === null || rate === undefined ? '—' : `${Math.round(rate * 100)} %`;
}

// One table: `cols` are [key, heading, format]; every cell carries data-col so tests (and
// people inspecting the page) find a figure by name, every row data-<kind> with the user.
function figuresTable(id, label, kind, rows, cols) {
  return h('table', { id, 'aria-label': label },
    h('thead', null, h('tr', null, cols.map(([, heading]) => h('th', null, heading)))),
    h('tbody', null, rows.length
      ? rows.map((r) => h('tr', { dataset: { [kind]: r[kind] } },
        cols.map(([key, , fmt]) => h('td', { dataset: { col: key } }, fmt ? fmt(r[key]) : String(r[key])))))
      : h('tr', null, h('td', { colspan: String(cols.length) }, 'Nothing reviewed or submitted yet'))));
}

// The "Review" section: per annotator and per reviewer (GET …/review-stats; the rules of who a
// rejection or a rework counts for are in domain/src/review_stats.rs).
function reviewSection(review) {
  return h('section', { id: 'review-stats', 'aria-label': 'Review' },
    h('h2', null, 'Review'),
    h('h3', null, 'Annotators'),
    figuresTable('review-annotators', 'Review per annotator', 'annotator', review.annotators, [
      ['annotator', 'Annotator'],
      ['tasks_submitted', 'Tasks submitted'],
      ['accepted', 'Accepted'],
      ['rejected', 'Rejected'],
      ['rejection_rate', 'Rejection rate', fmtRate],
      ['reworks', 'Reworks'],
      ['rework_median_ms', 'Rework time (median)', fmtDuration],
      ['rework_total_ms', 'Rework time (total)', fmtDuration],
      ['first_submission_median_ms', 'Time to first submission (median)', fmtDuration],
      ['awaiting_review', 'Awaiting review'],
    ]),
    h('h3', null, 'Reviewers'),
    figuresTable('review-reviewers', 'Review per reviewer', 'reviewer', review.reviewers, [
      ['reviewer', 'Reviewer'],
      ['tasks_reviewed', 'Tasks reviewed'],
      ['accepted', 'Accepted'],
      ['rejected', 'Rejected'],
      ['in_review', 'In review'],
      ['review_median_ms', 'Review time (median)', fmtDuration],
    ]));
}
