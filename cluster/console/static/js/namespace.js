// The namespace the pages work in: remembered for this tab, switched from the Services page.

import { CONSOLE, get } from './api.js';
import { h } from './dom.js';

const NAMESPACE_KEY = 'distro.console.namespace';
export const PUBLIC = 'public';

/** The namespace id to use as a parameter and to compare with the change feed ("" means public). */
export function canonical(id) {
  return id ? id : PUBLIC;
}

/** The namespace this tab works in. */
export function currentNamespace() {
  return canonical(sessionStorage.getItem(NAMESPACE_KEY) || '');
}

/** Remember the namespace this tab works in. */
export function rememberNamespace(id) {
  sessionStorage.setItem(NAMESPACE_KEY, canonical(id));
}

/** Every namespace: [{id, name, description, raw}], public first. */
export async function fetchNamespaces() {
  const answer = await get(`${CONSOLE}/namespaces`);
  const rows = Array.isArray(answer) ? answer : (answer && answer.data) || [];
  const list = rows.map((row) => ({
    id: canonical(row.namespace),
    name: row.namespaceShowName || canonical(row.namespace),
    description: row.namespaceDesc ?? row.namespaceDescription ?? '',
    raw: row,
  }));
  if (!list.some((n) => n.id === PUBLIC)) list.unshift({ id: PUBLIC, name: PUBLIC, description: '', raw: {} });
  return list;
}

/** A <select> of namespaces (names shown as text). */
export function namespaceSelect(namespaces, selected, onchange, id = 'namespace-select') {
  const select = h('select', { id, name: 'namespace', onchange: () => onchange(select.value) },
    namespaces.map((n) => h('option', { value: n.id, selected: n.id === selected }, n.name === n.id ? n.id : `${n.name} (${n.id})`)));
  select.value = selected;
  return select;
}
