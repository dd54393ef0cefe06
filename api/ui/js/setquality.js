// A set's Quality page for its reviewers (who may not open the manager's set pages): the same
// figures, ground truth list and consensus overlay as the set's Quality tab, reached from the
// review queue. The policy shown is the one the quality report carries.

import { api } from './api.js';
import { h } from './dom.js';

export async function render(el, [id]) {
  const report = await api(`/api/v1/annotation-sets/${id}/quality`);
  el.append(h('p', null, h('a', { href: '/review', 'data-link': true }, '← Review')),
    h('h1', null, `Quality of annotation set #${id}`));
  const { render: quality } = await import('./quality.js');
  return quality(el, { id: Number(id), quality: report.policy });
}
