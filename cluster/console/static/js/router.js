// Hash routes: #/services?ns=&name=&group=&page=&size=, #/service?ns=&group=&name=, #/namespaces, #/cluster,
// #/login. The page never reloads; a route change mounts another page module.

/** The current route: {page, params}. */
export function current() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [page, query = ''] = hash.split('?', 2);
  return { page: page || 'services', params: Object.fromEntries(new URLSearchParams(query)) };
}

/** The href of a route (values are URL-encoded, so any name is safe in it). */
export function href(page, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') query.append(name, String(value));
  }
  const text = query.toString();
  return `#/${page}${text ? `?${text}` : ''}`;
}

/** Go to a route (adds a history entry unless `replace`). */
export function go(page, params = {}, { replace = false } = {}) {
  const target = href(page, params);
  if (replace) {
    history.replaceState(null, '', target);
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  } else {
    location.hash = target;
  }
}
