// Admin: cluster status (the node set and replica moves, shard groups with leader and replicas)
// and this node's request rates from its Prometheus metrics, refreshed every 2 s.

import { api } from './api.js';
import { clear, h } from './dom.js';
import { nodeSet } from './nodes.js';

function parseRequests(text) {
  const byRoute = new Map();
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('tessera_http_requests_total{')) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    const route = /route="([^"]*)"/.exec(line)?.[1] || '?';
    const status = /status="([^"]*)"/.exec(line)?.[1] || '';
    const key = `${route}${status.startsWith('5') ? ' (5xx)' : ''}`;
    byRoute.set(key, (byRoute.get(key) || 0) + value);
    total += value;
  }
  return { byRoute, total };
}

export async function render(el) {
  const nodes = h('tbody');
  const groups = h('tbody');
  const rates = h('tbody');
  const summary = h('p', { id: 'cluster-summary' });
  const rateTotal = h('p', { id: 'rate-total' });
  const members = nodeSet();
  el.append(h('h1', null, 'Cluster'), summary, members.section,
    h('h2', null, 'Nodes'), h('table', { id: 'nodes', 'aria-label': 'Nodes' }, h('thead', null, h('tr', null, ['Node', 'HTTP', 'RPC', 'Status'].map((t) => h('th', null, t)))), nodes),
    h('h2', null, 'Shard groups'), h('table', { id: 'groups', 'aria-label': 'Shard groups' }, h('thead', null, h('tr', null, ['Group', 'Shard', 'Leader', 'Term', 'Voters', 'Replicas (state · applied)'].map((t) => h('th', null, t)))), groups),
    h('h2', null, 'Requests on this node'), rateTotal, h('table', { id: 'rates', 'aria-label': 'Request rates' }, h('thead', null, h('tr', null, ['Route', 'req/s', 'total'].map((t) => h('th', null, t)))), rates));
  let last = null;
  async function tick() {
    const [st, metrics] = await Promise.all([api('/api/v1/cluster'), fetch('/metrics').then((r) => r.text()), members.refresh()]);
    summary.textContent = `Served by node ${st.node} · ${st.shards} shards · replication ${st.replication} · placement v${st.placement_version}`;
    clear(nodes);
    for (const n of st.nodes) {
      nodes.append(h('tr', { dataset: { node: String(n.id), up: String(n.up) } }, h('td', null, n.id), h('td', null, n.http), h('td', null, n.rpc),
        h('td', null, h('span', { class: `badge ${n.up ? 'st-accepted' : 'st-rejected'}` }, n.up ? 'up' : 'down'))));
    }
    clear(groups);
    // A node that went down is still named leader by the survivors until they elect another:
    // say so instead of showing it as if it served.
    const down = new Set(st.nodes.filter((n) => !n.up).map((n) => n.id));
    const leader = (g) => (g.leader == null ? h('span', { class: 'error' }, 'none')
      : down.has(g.leader) ? h('span', { class: 'badge st-rejected', title: 'This node is down; a new leader is being elected' }, `${g.leader} (down, electing)`)
        : g.leader);
    for (const g of st.groups) {
      groups.append(h('tr', { dataset: { group: String(g.group), leader: String(g.leader ?? ''), leaderDown: String(down.has(g.leader)) } },
        h('td', null, g.group), h('td', null, g.shard ?? 'catalogue'), h('td', null, leader(g)),
        h('td', null, g.term ?? ''), h('td', null, (g.voters || []).join(', ')),
        h('td', null, Object.entries(g.replicas || {}).map(([id, r]) => `${id}: ${r.state} · ${r.applied ?? '-'}`).join('; '))));
    }
    const now = performance.now();
    const m = parseRequests(metrics);
    clear(rates);
    const rows = [...m.byRoute.entries()].map(([route, v]) => [route, last ? (v - (last.m.byRoute.get(route) || 0)) / ((now - last.t) / 1000) : 0, v])
      .sort((a, b) => b[1] - a[1] || b[2] - a[2]).slice(0, 15);
    for (const [route, rate, v] of rows) rates.append(h('tr', null, h('td', null, route), h('td', null, rate.toFixed(1)), h('td', null, v)));
    rateTotal.textContent = last ? `${((m.total - last.m.total) / ((now - last.t) / 1000)).toFixed(1)} requests/s in total` : 'measuring…';
    last = { m, t: now };
  }
  await tick();
  const timer = setInterval(() => tick().catch(() => {}), 2000);
  return () => clearInterval(timer);
}
