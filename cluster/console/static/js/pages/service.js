// The service page: settings (protect threshold, metadata), clusters (metadata), instances (pages/instances.js)
// and subscribers across the cluster. Follows the change feed; beats and subscribers are polled.

import { CONSOLE, NS, get, send } from '../api.js';
import { confirmButton, field, h, notice, replace, table, whenIdle } from '../dom.js';
import { metadataJson, metadataText, parseMetadata } from '../format.js';
import { throttled, touches } from '../live.js';
import { canonical } from '../namespace.js';
import { go, href } from '../router.js';
import { InstanceTable } from './instances.js';

const BEATS_EVERY_MS = 2000;
const SUBSCRIBERS_EVERY_MS = 3000;
const INSTANCE_PAGE_SIZE = 200;
const INSTANCES_SHOWN_MAX = 2000;

/** The service page. */
export class ServicePage {
  constructor(ctx, params) {
    this.ctx = ctx;
    this.service = { namespace: canonical(params.ns), group: params.group || 'DEFAULT_GROUP', name: params.name || '' };
    this.clusterEditors = new Map();
    this.build();
    this.refresh = throttled(() => this.load(), (error) => this.fail(error));
    this.followChanges = throttled(() => this.loadIfExists(), (error) => this.fail(error));
    this.refresh();
    this.follow();
    this.loadOwner();
  }

  /** Follow the change feed, and poll the beats, the subscribers and the "seconds ago" clock. */
  follow() {
    this.stopped = false;
    this.unsubscribe = this.ctx.live.subscribe((batch) => {
      if (touches(batch, this.service.namespace, this.service.group, this.service.name)) this.followChanges();
    });
    this.timers = [];
    this.every(BEATS_EVERY_MS, () => this.loadBeats());
    this.every(SUBSCRIBERS_EVERY_MS, () => this.loadSubscribers());
    this.timers.push(setInterval(() => this.instances.tick(), 1000));
  }

  unmount() {
    this.stopped = true; // a reload already on its way stops at its next step (the service may be deleted)
    this.unsubscribe();
    for (const timer of this.timers) clearInterval(timer);
  }

  every(ms, load) {
    load();
    this.timers.push(setInterval(load, ms));
  }

  params() {
    return { namespaceId: this.service.namespace, groupName: this.service.group, serviceName: this.service.name };
  }

  build() {
    const s = this.service;
    this.message = h('div', { class: 'message', id: 'service-message' });
    this.owner = h('span', { id: 'service-owner' }, '…');
    this.settings = h('div', { class: 'panel', id: 'service-settings' }, notice('info', 'Loading…'));
    this.clusters = h('div', { class: 'table-holder', id: 'clusters' });
    this.instances = new InstanceTable(s, () => this.refresh(), (node) => replace(this.message, node));
    this.subscribers = h('div', { class: 'table-holder', id: 'subscribers' }, notice('info', 'Loading subscribers…'));
    this.root = h('section', { class: 'page', id: 'page-service' },
      h('p', { class: 'crumbs' }, h('a', { href: href('services', { ns: s.namespace }) }, 'Services'), ' › ', s.group, ' › '),
      h('div', { class: 'page-head' }, h('h1', { id: 'service-name' }, s.name),
        confirmButton('Delete service', `Delete ${s.name} and everything in it?`, () => this.removeService())),
      h('p', { class: 'muted' }, `Namespace ${s.namespace} · group ${s.group} · owned by `, this.owner),
      this.message,
      h('h2', {}, 'Settings'), this.settings,
      h('h2', {}, 'Clusters'), this.clusters,
      h('h2', {}, 'Instances'), this.instances.root,
      h('h2', {}, 'Subscribers'), this.subscribers);
    replace(this.ctx.main, this.root);
  }

  async load() {
    if (this.stopped) return; // left the page, or deleting the service: nothing to show
    const detail = await get(`${NS}/catalog/service`, this.params());
    const service = detail.service || {};
    const clusters = detail.clusters || [];
    this.renderSettings(service);
    this.renderClusters(clusters);
    const instances = [];
    for (const cluster of clusters) {
      for (let pageNo = 1; instances.length < INSTANCES_SHOWN_MAX; pageNo += 1) {
        const answer = await get(`${NS}/catalog/instances`, { ...this.params(), clusterName: cluster.name, pageNo, pageSize: INSTANCE_PAGE_SIZE });
        const list = answer.list || [];
        instances.push(...list.map((i) => ({ ...i, clusterName: i.clusterName || cluster.name })));
        if (list.length < INSTANCE_PAGE_SIZE || pageNo * INSTANCE_PAGE_SIZE >= (answer.count || 0)) break;
      }
    }
    this.instances.setInstances(instances);
  }

  /** After a change: reload, unless the service is gone (asked of the list, which never answers 404). */
  async loadIfExists() {
    const s = this.service;
    const answer = await get(`${NS}/catalog/services`, {
      namespaceId: s.namespace, serviceNameParam: s.name, groupNameParam: s.group, pageNo: 1, pageSize: 100, withInstances: false,
    });
    if (this.stopped) return;
    const rows = answer.serviceList || [];
    const found = rows.some((row) => row.name === s.name && row.groupName === s.group);
    if (found || (answer.count || 0) > rows.length) {
      await this.load();
    } else {
      this.gone();
    }
  }

  gone() {
    replace(this.message, notice('info', 'This service does not exist (any more).'));
    this.instances.setInstances([]);
  }

  async loadBeats() {
    try {
      this.instances.setBeats(await get(`${CONSOLE}/beats`, this.params()));
    } catch (error) {
      // The beats are a detail; the connection banner already says when the node is gone.
    }
  }

  async loadOwner() {
    try {
      const answer = await get(`${NS}/operator/distro/server`, this.params());
      this.owner.textContent = answer.responsibleServer || '?';
    } catch (error) {
      this.owner.textContent = '?';
    }
  }

  async loadSubscribers() {
    let answer;
    try {
      answer = await get(`${NS}/service/subscribers`, { ...this.params(), pageNo: 1, pageSize: 100, aggregation: true });
    } catch (error) {
      replace(this.subscribers, notice('error', `Could not load subscribers: ${error.message}`));
      return;
    }
    const subscribers = answer.subscribers || [];
    replace(this.subscribers, subscribers.length === 0 ? notice('info', 'Nobody subscribes to this service.')
      : table(['Address', 'Agent', 'App', 'Protocol'], subscribers.map((sub) => [
        sub.addrStr || `${sub.ip}:${sub.port}`, sub.agent || '—', sub.app || '—', sub.protocol || 'udp',
      ]), { id: 'subscribers-table', class: 'data' }));
    if ((answer.count || 0) > subscribers.length) {
      this.subscribers.append(notice('info', `Showing ${subscribers.length} of ${answer.count}.`));
    }
  }

  renderSettings(service) {
    whenIdle(this.settings, () => this.drawSettings(service));
  }

  drawSettings(service) {
    const threshold = h('input', { type: 'number', id: 'protect-threshold', name: 'protectThreshold', min: 0, max: 1, step: 0.01, value: service.protectThreshold ?? 0 });
    const metadata = h('textarea', { id: 'service-metadata', name: 'metadata', rows: 4, value: metadataJson(service.metadata) });
    const status = h('div', { class: 'form-status' });
    this.settingsForm = h('form', { onsubmit: async (event) => {
      event.preventDefault();
      try {
        await send('PUT', `${NS}/service`, { ...this.params(), protectThreshold: threshold.value || '0', metadata: JSON.stringify(parseMetadata(metadata.value)) });
        replace(status, notice('ok', 'Settings saved.'));
        document.activeElement?.blur();
        this.refresh();
      } catch (error) {
        replace(status, notice('error', error.message));
      }
    } },
    h('div', { class: 'fields' }, field('Protect threshold (0 to 1)', threshold)),
    field('Metadata (JSON object)', metadata), status,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'save-settings' }, 'Save settings')));
    replace(this.settings, this.settingsForm);
  }

  renderClusters(clusters) {
    whenIdle(this.clusters, () => this.drawClusters(clusters));
  }

  drawClusters(clusters) {
    if (!clusters.length) {
      replace(this.clusters, notice('info', 'No cluster yet: clusters appear with their first instance.'));
      return;
    }
    const rows = [];
    for (const cluster of clusters) {
      rows.push(h('tr', { class: 'cluster-row', dataset: { cluster: cluster.name } },
        h('td', {}, cluster.name), h('td', { class: 'metadata' }, metadataText(cluster.metadata)),
        h('td', { class: 'row-actions' }, h('button', { type: 'button', onclick: () => this.toggleClusterEditor(cluster, clusters) }, 'Edit'))));
      const editor = this.clusterEditors.get(cluster.name);
      if (editor) rows.push(h('tr', { class: 'editor-row' }, h('td', { colspan: 3 }, editor)));
    }
    replace(this.clusters, table(['Cluster', 'Metadata', ''], rows, { id: 'clusters-table', class: 'data' }));
  }

  toggleClusterEditor(cluster, clusters) {
    if (this.clusterEditors.has(cluster.name)) {
      this.clusterEditors.delete(cluster.name);
    } else {
      const metadata = h('textarea', { rows: 3, name: 'metadata', value: metadataJson(cluster.metadata) });
      const status = h('div', { class: 'form-status' });
      this.clusterEditors.set(cluster.name, h('form', { class: 'inline-editor', onsubmit: async (event) => {
        event.preventDefault();
        try {
          await send('PUT', `${NS}/cluster`, { ...this.params(), clusterName: cluster.name, metadata: JSON.stringify(parseMetadata(metadata.value)) });
          this.clusterEditors.delete(cluster.name);
          document.activeElement?.blur();
          replace(this.message, notice('ok', `Saved cluster ${cluster.name}.`));
          this.refresh();
        } catch (error) {
          replace(status, notice('error', error.message));
        }
      } }, field('Metadata (JSON object)', metadata), status,
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save cluster'))));
    }
    this.drawClusters(clusters);
  }

  async removeService() {
    this.unmount(); // stop following the service first: a reload racing the delete would find it gone
    try {
      await send('DELETE', `${NS}/service`, this.params());
      go('services', { ns: this.service.namespace });
    } catch (error) {
      this.follow();
      replace(this.message, notice('error', `Could not delete the service: ${error.message}`));
    }
  }

  fail(error) {
    if (error.status === 404) {
      this.gone();
      return;
    }
    replace(this.message, notice('error', `Could not load the service: ${error.message}`));
  }
}
