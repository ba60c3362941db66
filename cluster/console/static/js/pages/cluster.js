// The Cluster page: every member as this node sees it (console/cluster), and which member owns a service
// (operator/distro/server). Refreshed every second and a half.

import { CONSOLE, NS, get } from '../api.js';
import { field, h, notice, replace, table } from '../dom.js';
import { duration, yesNo } from '../format.js';
import { throttled } from '../live.js';
import { currentNamespace } from '../namespace.js';

const REFRESH_EVERY_MS = 1500;

function linkText(member) {
  if (member.self) return 'this node';
  const link = member.link;
  if (!link) return 'no link';
  const parts = [link.outbound ? 'sending' : 'not sending', link.inbound ? 'hearing' : 'not hearing'];
  if (link.queued) parts.push(`${link.queued} queued`);
  return parts.join(', ');
}

function linkClass(member) {
  if (member.self) return '';
  return member.link && member.link.outbound && member.link.inbound ? 'ok' : 'bad';
}

/** The Cluster page. */
export class ClusterPage {
  constructor(ctx) {
    this.ctx = ctx;
    this.message = h('div', { class: 'message' });
    this.members = h('div', { class: 'table-holder', id: 'members' }, notice('info', 'Loading members…'));
    this.summary = h('p', { class: 'muted', id: 'members-summary' });
    this.root = h('section', { class: 'page', id: 'page-cluster' },
      h('div', { class: 'page-head' }, h('h1', {}, 'Cluster members')),
      this.summary, this.message, this.members, this.ownerForm());
    replace(ctx.main, this.root);
    this.refresh = throttled(() => this.load(), (error) => replace(this.message, notice('error', `Could not load the members: ${error.message}`)));
    this.refresh();
    this.timer = setInterval(() => this.refresh(), REFRESH_EVERY_MS);
  }

  unmount() {
    clearInterval(this.timer);
  }

  async load() {
    const answer = await get(`${CONSOLE}/cluster`);
    replace(this.message);
    const rows = (answer.members || []).map((m) => h('tr', { class: 'member-row', dataset: { node: m.nodeId, address: m.address } },
      h('td', { class: 'mono' }, m.address, m.self ? h('span', { class: 'tag' }, 'this node') : null),
      h('td', {}, m.nodeId),
      h('td', { class: m.state === 'UP' ? 'ok' : 'bad' }, m.state === 'UP' ? 'up' : m.state.toLowerCase()),
      h('td', { class: m.ready ? 'ok' : 'warn' }, yesNo(m.ready)),
      h('td', { class: 'num' }, String(m.servicesOwned ?? 0)),
      h('td', { class: linkClass(m) }, linkText(m)),
      h('td', {}, m.version || '—'),
      h('td', { title: m.error || '' }, m.uptimeMs === null || m.uptimeMs === undefined ? '—' : duration(m.uptimeMs))));
    const members = answer.members || [];
    const up = members.filter((m) => m.state === 'UP').length;
    const ready = members.filter((m) => m.ready).length;
    this.summary.textContent = `${members.length} nodes: ${up} up, ${ready} ready, as ${answer.self} sees them.`;
    replace(this.members, table(['Address', 'Node id', 'State', 'Ready', 'Services owned', 'Peer link', 'Version', 'Uptime'],
      rows, { id: 'members-table', class: 'data' }));
  }

  ownerForm() {
    const namespace = h('input', { id: 'owner-namespace', name: 'namespaceId', value: currentNamespace() });
    const group = h('input', { id: 'owner-group', name: 'groupName', value: 'DEFAULT_GROUP' });
    const name = h('input', { id: 'owner-service', name: 'serviceName', required: true, autocomplete: 'off' });
    const result = h('p', { id: 'owner-result', role: 'status' });
    return h('form', { class: 'panel', id: 'owner-lookup', onsubmit: async (event) => {
      event.preventDefault();
      try {
        const answer = await get(`${NS}/operator/distro/server`, { namespaceId: namespace.value.trim(), groupName: group.value.trim(), serviceName: name.value.trim() });
        replace(result, `${name.value.trim()} is owned by `, h('strong', {}, answer.responsibleServer), '.');
      } catch (error) {
        replace(result, notice('error', error.message));
      }
    } },
    h('h2', {}, 'Which node owns a service?'),
    h('div', { class: 'fields' }, field('Namespace', namespace), field('Group', group), field('Service', name),
      h('button', { type: 'submit', class: 'primary', id: 'owner-button' }, 'Look up')),
    result);
  }
}
