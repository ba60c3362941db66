// The Services page: one namespace's services, searched and paged on the server (catalog/services), with
// counts per service; create and delete; a "recent changes" list so a new service shows even when it sorts
// onto another page.

import { NS, send, get } from '../api.js';
import { confirmButton, field, h, notice, replace, table, whenIdle } from '../dom.js';
import { parseMetadata } from '../format.js';
import { throttled, touches } from '../live.js';
import { canonical, currentNamespace, fetchNamespaces, namespaceSelect, rememberNamespace } from '../namespace.js';
import { go, href } from '../router.js';

const PAGE_SIZES = [10, 20, 50, 100];
const DEFAULT_PAGE_SIZE = 20;
const RECENT_MAX = 8;
let firstPageMarked = false;

/** The Services page. */
export class ServicesPage {
  constructor(ctx, params) {
    this.ctx = ctx;
    this.namespace = canonical(params.ns ?? currentNamespace());
    rememberNamespace(this.namespace);
    this.nameFilter = params.name || '';
    this.groupFilter = params.group || '';
    this.pageNo = Math.max(1, parseInt(params.page || '1', 10) || 1);
    this.pageSize = PAGE_SIZES.includes(Number(params.size)) ? Number(params.size) : DEFAULT_PAGE_SIZE;
    this.recent = [];
    this.build();
    this.refresh = throttled(() => this.load(), (error) => this.fail(error));
    this.unsubscribe = ctx.live.subscribe((batch) => this.follow(batch));
    this.refresh();
    this.loadNamespaces();
  }

  unmount() {
    this.unsubscribe();
  }

  build() {
    this.nsHolder = h('span', { class: 'ns-holder' });
    this.nameInput = h('input', { id: 'search-name', type: 'search', name: 'serviceName', value: this.nameFilter, placeholder: 'part of a name', autocomplete: 'off' });
    this.groupInput = h('input', { id: 'search-group', type: 'search', name: 'groupName', value: this.groupFilter, placeholder: 'part of a group', autocomplete: 'off' });
    const search = h('form', { class: 'search', role: 'search', onsubmit: (event) => { event.preventDefault(); this.search(); } },
      field('Service name', this.nameInput), field('Group', this.groupInput),
      h('button', { type: 'submit', id: 'search-button' }, 'Search'));
    this.createPanel = this.buildCreate();
    this.message = h('div', { class: 'message' });
    this.recentList = h('ul', { id: 'recent-changes', class: 'recent' });
    this.recentBox = h('div', { class: 'recent-box', hidden: true },
      h('h2', {}, 'Recent changes'), this.recentList);
    this.tableHolder = h('div', { class: 'table-holder' }, notice('info', 'Loading services…'));
    this.pager = h('nav', { class: 'pager', 'aria-label': 'pages' });
    this.root = h('section', { class: 'page', id: 'page-services' },
      h('div', { class: 'page-head' }, h('h1', {}, 'Services'),
        h('button', { type: 'button', id: 'create-service-toggle', onclick: () => this.toggleCreate() }, 'Create service')),
      h('div', { class: 'toolbar' }, field('Namespace', this.nsHolder), search),
      this.createPanel, this.message, this.recentBox, this.tableHolder, this.pager);
    replace(this.ctx.main, this.root);
  }

  buildCreate() {
    const name = h('input', { id: 'create-name', name: 'serviceName', required: true, autocomplete: 'off' });
    const group = h('input', { id: 'create-group', name: 'groupName', value: 'DEFAULT_GROUP' });
    const threshold = h('input', { id: 'create-threshold', name: 'protectThreshold', type: 'number', min: 0, max: 1, step: 0.01, value: 0 });
    const metadata = h('textarea', { id: 'create-metadata', name: 'metadata', rows: 3, placeholder: '{"team": "orders"}' });
    const status = h('div', { class: 'form-status' });
    const form = h('form', { class: 'panel', id: 'create-service', hidden: true, onsubmit: async (event) => {
      event.preventDefault();
      try {
        await send('POST', `${NS}/service`, {
          namespaceId: this.namespace, groupName: group.value.trim() || 'DEFAULT_GROUP', serviceName: name.value.trim(),
          protectThreshold: threshold.value || '0', metadata: JSON.stringify(parseMetadata(metadata.value)),
        });
        replace(this.message, notice('ok', `Created ${name.value.trim()}.`));
        form.hidden = true;
        name.value = '';
        metadata.value = '';
        replace(status);
        this.refresh();
      } catch (error) {
        replace(status, notice('error', error.message));
      }
    } },
    h('h2', {}, 'Create a service'),
    h('div', { class: 'fields' }, field('Name', name), field('Group', group), field('Protect threshold (0 to 1)', threshold)),
    field('Metadata (JSON object)', metadata), status,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create'),
      h('button', { type: 'button', onclick: () => { form.hidden = true; } }, 'Cancel')));
    return form;
  }

  toggleCreate() {
    this.createPanel.hidden = !this.createPanel.hidden;
    if (!this.createPanel.hidden) this.createPanel.querySelector('input').focus();
  }

  async loadNamespaces() {
    try {
      const namespaces = await fetchNamespaces();
      replace(this.nsHolder, namespaceSelect(namespaces, this.namespace, (id) => this.switchNamespace(id)));
    } catch (error) {
      replace(this.nsHolder, h('span', { id: 'namespace-select' }, this.namespace));
    }
  }

  switchNamespace(id) {
    rememberNamespace(id);
    go('services', { ns: canonical(id), name: this.nameFilter, group: this.groupFilter, size: this.sizeParam() });
  }

  sizeParam() {
    return this.pageSize === DEFAULT_PAGE_SIZE ? undefined : this.pageSize;
  }

  search() {
    go('services', { ns: this.namespace, name: this.nameInput.value.trim(), group: this.groupInput.value.trim(), size: this.sizeParam() });
  }

  routeTo(pageNo, pageSize = this.pageSize) {
    go('services', { ns: this.namespace, name: this.nameFilter, group: this.groupFilter, page: pageNo > 1 ? pageNo : undefined, size: pageSize === DEFAULT_PAGE_SIZE ? undefined : pageSize });
  }

  async load() {
    const answer = await get(`${NS}/catalog/services`, {
      namespaceId: this.namespace, pageNo: this.pageNo, pageSize: this.pageSize,
      serviceNameParam: this.nameFilter, groupNameParam: this.groupFilter, hasIpCount: false, withInstances: false,
    });
    const count = Number(answer.count) || 0;
    const pages = Math.max(1, Math.ceil(count / this.pageSize));
    if (this.pageNo > pages) {
      this.routeTo(pages);
      return;
    }
    whenIdle(this.tableHolder, () => this.render(answer.serviceList || [], count, pages));
    if (!firstPageMarked) {
      firstPageMarked = true;
      performance.mark('console:services-first-page');
    }
  }

  render(services, count, pages) {
    const rows = services.map((s) => {
      const reached = s.triggerFlag === true || s.triggerFlag === 'true';
      const link = href('service', { ns: this.namespace, group: s.groupName, name: s.name });
      return h('tr', { class: 'service-row', dataset: { service: s.name, group: s.groupName } },
        h('td', {}, h('a', { class: 'service-link', href: link }, s.name)),
        h('td', {}, s.groupName),
        h('td', { class: 'num' }, String(s.clusterCount ?? 0)),
        h('td', { class: 'num' }, String(s.ipCount ?? 0)),
        h('td', { class: 'num' }, String(s.healthyInstanceCount ?? 0)),
        h('td', { class: reached ? 'warn' : '' }, reached ? 'reached' : 'no'),
        h('td', { class: 'row-actions' }, confirmButton('Delete', `Delete ${s.name}?`, () => this.remove(s))));
    });
    const filtered = this.nameFilter || this.groupFilter;
    replace(this.tableHolder, count === 0
      ? notice('info', filtered ? 'No service matches this search.' : 'No service in this namespace yet.')
      : table(['Service', 'Group', 'Clusters', 'Instances', 'Healthy', 'Threshold reached', ''], rows, { id: 'services-table', class: 'data' }));
    const sizeSelect = h('select', { id: 'page-size', 'aria-label': 'services per page', onchange: () => this.routeTo(1, Number(sizeSelect.value)) },
      PAGE_SIZES.map((size) => h('option', { value: size, selected: size === this.pageSize }, `${size} per page`)));
    replace(this.pager,
      h('button', { type: 'button', id: 'page-prev', disabled: this.pageNo <= 1, onclick: () => this.routeTo(this.pageNo - 1) }, 'Previous'),
      h('span', { id: 'page-info' }, `Page ${this.pageNo} of ${pages} · ${count} service${count === 1 ? '' : 's'}`),
      h('button', { type: 'button', id: 'page-next', disabled: this.pageNo >= pages, onclick: () => this.routeTo(this.pageNo + 1) }, 'Next'),
      sizeSelect);
  }

  async remove(service) {
    try {
      await send('DELETE', `${NS}/service`, { namespaceId: this.namespace, groupName: service.groupName, serviceName: service.name });
      replace(this.message, notice('ok', `Deleted ${service.name}.`));
      this.refresh();
    } catch (error) {
      replace(this.message, notice('error', `Could not delete ${service.name}: ${error.message}`));
    }
  }

  follow(batch) {
    if (!touches(batch, this.namespace)) return;
    for (const change of batch.changes) {
      if (change.namespaceId !== this.namespace) continue;
      this.recent = [change, ...this.recent.filter((c) => c.serviceName !== change.serviceName || c.groupName !== change.groupName)].slice(0, RECENT_MAX);
    }
    this.renderRecent();
    this.refresh();
  }

  renderRecent() {
    this.recentBox.hidden = this.recent.length === 0;
    replace(this.recentList, this.recent.map((c) => h('li', {},
      h('a', { class: 'service-link', href: href('service', { ns: this.namespace, group: c.groupName, name: c.serviceName }) }, c.serviceName),
      h('span', { class: 'muted' }, ` ${c.groupName}`))));
  }

  fail(error) {
    replace(this.message, notice('error', `Could not load services: ${error.message}`));
  }
}
