// Admin: the cluster's node set — each node's state and the groups it holds now and once the
// moves are done, the replica moves to go and under way with an ETA, and adding, removing or
// decommissioning a node (GET/POST /api/v1/cluster/nodes, DELETE /api/v1/cluster/nodes/{id}).

import { api } from './api.js';
import { clear, field, h, toast } from './dom.js';

/** The node-set section; `refresh()` reloads it (the cluster page calls it every 2 s). */
export function nodeSet() {
  const rows = h('tbody');
  const moves = h('p', { id: 'moves', role: 'status' });
  const running = h('ul', { id: 'moves-running' });
  const id = h('input', { id: 'add-node-id', type: 'number', min: 1, required: true });
  const http = h('input', { id: 'add-node-http', required: true, placeholder: '10.0.0.4:8080', autocomplete: 'off' });
  const rpc = h('input', { id: 'add-node-rpc', required: true, placeholder: '10.0.0.4:9080', autocomplete: 'off' });
  const err = h('p', { class: 'error', role: 'alert', id: 'add-node-error' });
  const form = h('form', { class: 'card', 'aria-label': 'Add a node' }, h('h3', null, 'Add a node'),
    h('p', { class: 'muted' }, 'Start it first: its [[node]] entry in cluster.toml, a certificate from `tessera ca --id N`, then `tessera run --id N`. About 1/N of the replicas move to it.'),
    h('div', { class: 'row' }, field('Id', id), field('HTTP address', http), field('RPC address', rpc),
      h('button', { type: 'submit', class: 'primary' }, 'Add node')), err);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    err.textContent = '';
    try {
      await api('/api/v1/cluster/nodes', { json: { id: Number(id.value), http: http.value.trim(), rpc: rpc.value.trim() } });
      toast(`Node ${id.value} added; replicas are moving to it`, 'ok');
      form.reset();
      await refresh();
    } catch (e2) { err.textContent = e2.message; }
  });
  async function remove(node, decommission) {
    const what = decommission
      ? `Decommission node ${node.id}? Its replicas are rebuilt from the other nodes without asking it (for a machine that is gone).`
      : `Remove node ${node.id}? Its replicas move to the other nodes first; it serves until they have.`;
    if (!confirm(what)) return;
    try {
      await api(`/api/v1/cluster/nodes/${node.id}${decommission ? '?decommission=true' : ''}`, { method: 'DELETE' });
      toast(`Node ${node.id} is leaving`, 'ok');
    } catch (e) { toast(e.message, 'error'); }
    await refresh();
  }
  async function refresh() {
    const set = await api('/api/v1/cluster/nodes');
    clear(rows);
    for (const n of set.nodes) {
      const actions = n.state === 'leaving' ? [] : [
        h('button', { type: 'button', onclick: () => remove(n, false) }, 'Remove'), ' ',
        h('button', { type: 'button', class: 'danger', onclick: () => remove(n, true) }, 'Decommission'),
      ];
      rows.append(h('tr', { dataset: { node: String(n.id), state: n.state } },
        h('td', null, n.id), h('td', null, h('span', { class: `badge ${n.state === 'active' ? 'st-accepted' : 'st-in_review'}` }, n.state)),
        h('td', null, n.up ? 'up' : 'down'), h('td', null, `${n.holds} → ${n.target}`), h('td', null, ...actions)));
    }
    const m = set.moves;
    moves.textContent = m.to_go.length === 0
      ? `No replica to move · node set v${set.members_version}, placement v${set.placement_version}`
      : `${m.to_go.length} group(s) to move, ${m.running.length} moving now (at most ${m.limit ?? '?'} at once), ${m.done} done${m.eta_s != null ? ` · about ${m.eta_s} s to go` : ''}`;
    moves.dataset.toGo = String(m.to_go.length);
    clear(running);
    for (const r of m.running) {
      running.append(h('li', null, `group ${r.group}: ${r.from.join(', ')} → ${r.to.join(', ')} for ${(r.elapsed_ms / 1000).toFixed(1)} s${r.retries ? ` (${r.retries} retries)` : ''}`));
    }
  }
  const section = h('section', { 'aria-label': 'Node set' }, h('h2', null, 'Node set'), moves, running,
    h('table', { id: 'node-set', 'aria-label': 'Node set' }, h('thead', null, h('tr', null, ['Node', 'State', 'Answers', 'Groups (now → target)', ''].map((t) => h('th', null, t)))), rows),
    form);
  return { section, refresh };
}
