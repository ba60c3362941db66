// The Namespaces page: list, create, edit (name and description) and delete, through console/namespaces.

import { CONSOLE, send } from '../api.js';
import { confirmButton, field, h, notice, replace, table, whenIdle } from '../dom.js';
import { throttled } from '../live.js';
import { PUBLIC, fetchNamespaces, rememberNamespace } from '../namespace.js';
import { href } from '../router.js';

const REFRESH_EVERY_MS = 2000;

/** The Namespaces page. */
export class NamespacesPage {
  constructor(ctx) {
    this.ctx = ctx;
    this.editing = new Map();
    this.message = h('div', { class: 'message', id: 'namespaces-message' });
    this.list = h('div', { class: 'table-holder' }, notice('info', 'Loading namespaces…'));
    this.root = h('section', { class: 'page', id: 'page-namespaces' },
      h('div', { class: 'page-head' }, h('h1', {}, 'Namespaces')),
      this.createForm(), this.message, this.list);
    replace(ctx.main, this.root);
    this.refresh = throttled(() => this.load(), (error) => replace(this.message, notice('error', `Could not load namespaces: ${error.message}`)));
    this.refresh();
    this.timer = setInterval(() => this.refresh(), REFRESH_EVERY_MS);
  }

  unmount() {
    clearInterval(this.timer);
  }

  createForm() {
    const id = h('input', { id: 'namespace-id', name: 'customNamespaceId', placeholder: 'generated when empty', autocomplete: 'off' });
    const name = h('input', { id: 'namespace-name', name: 'namespaceName', required: true, autocomplete: 'off' });
    const desc = h('input', { id: 'namespace-desc', name: 'namespaceDesc', autocomplete: 'off' });
    const form = h('form', { class: 'panel', id: 'create-namespace', onsubmit: async (event) => {
      event.preventDefault();
      try {
        const created = await send('POST', `${CONSOLE}/namespaces`, { customNamespaceId: id.value.trim(), namespaceName: name.value.trim(), namespaceDesc: desc.value.trim() });
        if (created === false) {
          replace(this.message, notice('error', `Could not create the namespace: the id ${id.value.trim()} is taken or not allowed (letters, digits, _ and -).`));
          return;
        }
        replace(this.message, notice('ok', `Created namespace ${name.value.trim()}.`));
        id.value = '';
        name.value = '';
        desc.value = '';
        this.refresh();
      } catch (error) {
        replace(this.message, notice('error', `Could not create the namespace: ${error.message}`));
      }
    } },
    h('h2', {}, 'Create a namespace'),
    h('div', { class: 'fields' }, field('ID', id), field('Name', name), field('Description', desc),
      h('button', { type: 'submit', class: 'primary', id: 'create-namespace-button' }, 'Create')));
    return form;
  }

  async load() {
    this.namespaces = await fetchNamespaces();
    whenIdle(this.list, () => this.render());
  }

  render() {
    const namespaces = this.namespaces || [];
    const live = new Set(namespaces.map((n) => n.id));
    for (const key of [...this.editing.keys()]) if (!live.has(key)) this.editing.delete(key);
    const rows = [];
    for (const ns of namespaces) {
      rows.push(h('tr', { class: 'namespace-row', dataset: { namespace: ns.id } },
        h('td', {}, h('a', { href: href('services', { ns: ns.id }), onclick: () => rememberNamespace(ns.id) }, ns.name)),
        h('td', { class: 'mono' }, ns.id),
        h('td', {}, ns.description || '—'),
        h('td', { class: 'row-actions' }, ns.id === PUBLIC ? h('span', { class: 'muted' }, 'built in') : [
          h('button', { type: 'button', onclick: () => this.toggleEditor(ns) }, 'Edit'), ' ',
          confirmButton('Delete', `Delete namespace ${ns.name}?`, () => this.remove(ns)),
        ])));
      const editor = this.editing.get(ns.id);
      if (editor) rows.push(h('tr', { class: 'editor-row' }, h('td', { colspan: 4 }, editor)));
    }
    replace(this.list, table(['Name', 'ID', 'Description', ''], rows, { id: 'namespaces-table', class: 'data' }));
  }

  toggleEditor(ns) {
    if (this.editing.has(ns.id)) {
      this.editing.delete(ns.id);
    } else {
      const name = h('input', { name: 'namespaceShowName', value: ns.name, required: true });
      const desc = h('input', { name: 'namespaceDesc', value: ns.description });
      this.editing.set(ns.id, h('form', { class: 'inline-editor', onsubmit: async (event) => {
        event.preventDefault();
        try {
          await send('PUT', `${CONSOLE}/namespaces`, { namespace: ns.id, namespaceShowName: name.value.trim(), namespaceDesc: desc.value.trim() });
          this.editing.delete(ns.id);
          replace(this.message, notice('ok', `Saved namespace ${name.value.trim()}.`));
        } catch (error) {
          replace(this.message, notice('error', `Could not save the namespace: ${error.message}`));
        }
        document.activeElement?.blur();
        this.refresh();
      } }, h('div', { class: 'fields' }, field('Name', name), field('Description', desc),
        h('button', { type: 'submit', class: 'primary' }, 'Save'),
        h('button', { type: 'button', onclick: () => { this.editing.delete(ns.id); this.render(); } }, 'Cancel'))));
    }
    this.render();
  }

  async remove(ns) {
    try {
      await send('DELETE', `${CONSOLE}/namespaces`, { namespaceId: ns.id });
      replace(this.message, notice('ok', `Deleted namespace ${ns.name}.`));
    } catch (error) {
      replace(this.message, notice('error', `Could not delete the namespace: ${error.message}`));
    }
    this.refresh();
  }
}
