// Building the page safely: every piece of registry data becomes a text node or a property, never markup.
// No script of the console hands a string to an HTML parser (no HTML-string properties, no document writes,
// no eval); tests/console/test_assets.py checks every file for the APIs that would.

/**
 * Create an element. `props`: `class`, `text`, `value`, `checked`, `disabled`, `hidden`, `dataset`,
 * `on<event>` listeners, and any other attribute (set with setAttribute, so as a string, never parsed).
 * Children: nodes, strings and numbers (as text nodes), arrays of those; null/undefined/false are skipped.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name === 'text') el.textContent = String(value);
    else if (name === 'value') el.value = String(value);
    else if (name === 'checked') el.checked = Boolean(value);
    else if (name === 'disabled') el.disabled = Boolean(value);
    else if (name === 'hidden') el.hidden = Boolean(value);
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (name === 'href') el.setAttribute('href', safeHref(value));
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

/** Only in-page links (`#/...`) and same-origin paths are ever put in an href. */
function safeHref(value) {
  const text = String(value);
  return text.startsWith('#') || (text.startsWith('/') && !text.startsWith('//')) ? text : '#';
}

/** Append children (see h) to a node. */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace every child of `parent` with `children`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/** A form field: a label around its text and its control. */
export function field(label, control, hint) {
  return h('label', { class: 'field' }, h('span', { class: 'field-label' }, label), control,
    hint ? h('span', { class: 'hint' }, hint) : null);
}

/** A table with a header row; `rows` are arrays of cells (nodes or text) or <tr> elements. */
export function table(headers, rows, props = {}) {
  return h('table', props,
    h('thead', {}, h('tr', {}, headers.map((head) => h('th', { scope: 'col' }, head)))),
    h('tbody', {}, rows.map((row) => (row instanceof Node ? row : h('tr', {}, row.map((cell) => h('td', {}, cell)))))));
}

/** A short message shown in a page (`kind`: info, error, ok). */
export function notice(kind, text) {
  return h('p', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
}

/** A button that asks "sure?" in place (no native dialog) before running `action`. While it asks, the
 * holder is marked `data-asking` (see `busy`); when the question closes it fires a bubbling `settled` event. */
export function confirmButton(label, question, action, props = {}) {
  const holder = h('span', { class: 'confirm' });
  const settle = () => {
    delete holder.dataset.asking;
    holder.dispatchEvent(new Event('settled', { bubbles: true }));
  };
  const ask = () => {
    holder.dataset.asking = '1';
    replace(holder,
      h('span', { class: 'confirm-question' }, question), ' ',
      h('button', { type: 'button', class: 'danger', onclick: () => { reset(); action(); settle(); } }, 'Yes'), ' ',
      h('button', { type: 'button', onclick: () => { reset(); settle(); } }, 'No'));
  };
  const reset = () => replace(holder, h('button', { type: 'button', class: 'danger', onclick: ask, ...props }, label));
  reset();
  return holder;
}

/** True while a person is busy inside `root` (in a field or a form, or answering a confirmButton): a page
 * then holds back a re-render that would throw their work away, and renders on `settled` or blur. */
export function busy(root) {
  const active = document.activeElement;
  const editing = active && root.contains(active)
    && (['INPUT', 'TEXTAREA', 'SELECT'].includes(active.tagName) || active.closest('form'));
  return Boolean(editing || root.querySelector('[data-asking]'));
}

/** Render with `draw` now, or, while `root` is busy, once it is not (on `settled` or when focus leaves). */
export function whenIdle(root, draw) {
  if (!busy(root)) {
    draw();
    return;
  }
  if (root.pendingDraw) {
    root.pendingDraw = draw;
    return;
  }
  root.pendingDraw = draw;
  const later = () => {
    if (busy(root)) return;
    root.removeEventListener('settled', later);
    root.removeEventListener('focusout', soon);
    const pending = root.pendingDraw;
    root.pendingDraw = null;
    // a focusout's deferred call can still arrive after 'settled' has drawn: nothing is pending then
    if (pending) pending();
  };
  const soon = () => setTimeout(later, 0);
  root.addEventListener('settled', later);
  root.addEventListener('focusout', soon);
}
