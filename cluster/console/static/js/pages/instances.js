// The instance table of the service page: every instance of every cluster, its health, weight, state,
// metadata and time since its last beat, with edit, offline/online and deregister in place.

import { NS, send } from '../api.js';
import { confirmButton, field, h, notice, replace, table, whenIdle } from '../dom.js';
import { duration, metadataJson, metadataText, parseMetadata, yesNo } from '../format.js';

/** The key the console and console/beats use for an instance. */
export function instanceKey(instance) {
  return `${instance.clusterName}/${instance.ip}:${instance.port}`;
}

/** The instance table; `service` is {namespace, group, name}; `onChanged` reloads the page's data. */
export class InstanceTable {
  constructor(service, onChanged, onMessage) {
    this.service = service;
    this.onChanged = onChanged;
    this.onMessage = onMessage;
    this.instances = [];
    this.beats = { nowMs: null, fetchedAt: 0, beats: {} };
    this.editors = new Map();
    this.agoCells = new Map();
    this.root = h('div', { class: 'table-holder', id: 'instances' }, notice('info', 'Loading instances…'));
  }

  setInstances(instances) {
    this.instances = instances;
    whenIdle(this.root, () => this.render());
  }

  setBeats(answer) {
    this.beats = { nowMs: answer.nowMs, fetchedAt: Date.now(), beats: answer.beats || {} };
    this.tick();
  }

  /** Since the last beat, as a text (the page calls this every second). */
  agoText(instance) {
    const last = this.beats.beats[instanceKey(instance)] ?? instance.lastBeat;
    if (!Number.isFinite(last) || this.beats.nowMs === null) return '—';
    return `${duration(this.beats.nowMs - last + (Date.now() - this.beats.fetchedAt))} ago`;
  }

  tick() {
    for (const [key, cell] of this.agoCells) {
      const instance = this.instances.find((i) => instanceKey(i) === key);
      if (instance) cell.textContent = this.agoText(instance);
    }
  }

  render() {
    this.agoCells.clear();
    const live = new Set(this.instances.map(instanceKey));
    for (const key of [...this.editors.keys()]) if (!live.has(key)) this.editors.delete(key);
    if (!this.instances.length) {
      replace(this.root, notice('info', 'This service has no instances.'));
      return;
    }
    const rows = [];
    for (const instance of this.instances) {
      rows.push(this.row(instance));
      const editor = this.editors.get(instanceKey(instance));
      if (editor) rows.push(h('tr', { class: 'editor-row' }, h('td', { colspan: 10 }, editor)));
    }
    replace(this.root, table(
      ['Address', 'Cluster', 'Health', 'Weight', 'Enabled', 'Ephemeral', 'Metadata', 'Last beat', ''],
      rows, { id: 'instances-table', class: 'data' }));
  }

  row(instance) {
    const key = instanceKey(instance);
    const ago = h('td', { class: 'last-beat' }, this.agoText(instance));
    this.agoCells.set(key, ago);
    const enabled = instance.enabled !== false;
    return h('tr', { class: 'instance-row', dataset: { key, ip: instance.ip, port: instance.port, cluster: instance.clusterName } },
      h('td', { class: 'address' }, `${instance.ip}:${instance.port}`),
      h('td', {}, instance.clusterName),
      h('td', { class: instance.healthy ? 'ok' : 'bad' }, instance.healthy ? 'healthy' : 'unhealthy'),
      h('td', { class: 'num weight' }, String(instance.weight)),
      h('td', { class: enabled ? '' : 'warn' }, enabled ? 'yes' : 'offline'),
      h('td', {}, yesNo(instance.ephemeral !== false)),
      h('td', { class: 'metadata' }, metadataText(instance.metadata)),
      ago,
      h('td', { class: 'row-actions' },
        h('button', { type: 'button', class: 'edit-instance', onclick: () => this.toggleEditor(instance) }, 'Edit'), ' ',
        h('button', { type: 'button', class: 'toggle-instance', onclick: () => this.write(instance, { enabled: !enabled }, enabled ? 'Took it offline' : 'Brought it online') },
          enabled ? 'Take offline' : 'Bring online'), ' ',
        confirmButton('Deregister', `Deregister ${instance.ip}:${instance.port}?`, () => this.deregister(instance), { class: 'danger deregister-instance' })));
  }

  toggleEditor(instance) {
    const key = instanceKey(instance);
    if (this.editors.has(key)) this.editors.delete(key);
    else this.editors.set(key, this.editor(instance));
    this.render();
  }

  editor(instance) {
    const weight = h('input', { type: 'number', name: 'weight', class: 'edit-weight', min: 0, max: 10000, step: 'any', value: instance.weight });
    const enabled = h('input', { type: 'checkbox', name: 'enabled', class: 'edit-enabled', checked: instance.enabled !== false });
    const metadata = h('textarea', { name: 'metadata', class: 'edit-metadata', rows: 4, value: metadataJson(instance.metadata) });
    const status = h('div', { class: 'form-status' });
    const key = instanceKey(instance);
    return h('form', { class: 'inline-editor', onsubmit: async (event) => {
      event.preventDefault();
      let parsed;
      try {
        parsed = parseMetadata(metadata.value);
      } catch (error) {
        replace(status, notice('error', error.message));
        return;
      }
      const done = await this.write(instance, { weight: weight.value, enabled: enabled.checked, metadata: parsed }, 'Saved', status);
      if (done) {
        this.editors.delete(key);
        this.render();
      }
    } },
    h('div', { class: 'fields' }, field('Weight', weight), field('Enabled', enabled)),
    field('Metadata (JSON object)', metadata), status,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary save-instance' }, 'Save'),
      h('button', { type: 'button', onclick: () => { this.editors.delete(key); this.render(); } }, 'Cancel')));
  }

  /** PUT instance with the full set of fields (the given ones changed); true when it worked. */
  async write(instance, changes, done, status) {
    const next = { weight: instance.weight, enabled: instance.enabled !== false, metadata: instance.metadata || {}, ...changes };
    try {
      await send('PUT', `${NS}/instance`, {
        namespaceId: this.service.namespace, groupName: this.service.group, serviceName: this.service.name,
        clusterName: instance.clusterName, ip: instance.ip, port: instance.port, ephemeral: true,
        weight: next.weight, enabled: next.enabled, metadata: JSON.stringify(next.metadata),
      });
      this.onMessage(notice('ok', `${done}: ${instance.ip}:${instance.port}.`));
      this.onChanged();
      return true;
    } catch (error) {
      const message = notice('error', `Could not change ${instance.ip}:${instance.port}: ${error.message}`);
      if (status) replace(status, message);
      else this.onMessage(message);
      return false;
    }
  }

  async deregister(instance) {
    try {
      await send('DELETE', `${NS}/instance`, {
        namespaceId: this.service.namespace, groupName: this.service.group, serviceName: this.service.name,
        clusterName: instance.clusterName, ip: instance.ip, port: instance.port, ephemeral: true,
      });
      this.onMessage(notice('ok', `Deregistered ${instance.ip}:${instance.port}.`));
      this.onChanged();
    } catch (error) {
      this.onMessage(notice('error', `Could not deregister ${instance.ip}:${instance.port}: ${error.message}`));
    }
  }
}
