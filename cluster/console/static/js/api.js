// Talking to the node that served the page: the same public API every client uses.
// With auth on, the access token lives in this tab's sessionStorage (never a cookie, so another site cannot
// ride it) and goes out as the `accessToken` parameter, as Nacos's console sends it.

const TOKEN_KEY = 'distro.console.token';
const AUTH_TEXTS = new Set(['user not found!', 'token invalid!', 'token expired!']);

/** The API answered with an error status; `text` is its body (Nacos's message). */
export class ApiError extends Error {
  constructor(status, text) {
    super(text || `HTTP ${status}`);
    this.status = status;
    this.text = text;
  }

  /** True when the answer means "log in (again)". */
  get needsLogin() {
    return this.status === 403 && AUTH_TEXTS.has(this.text.trim());
  }
}

/** The node could not be reached at all (it is down, or the network is). */
export class ConnectionLost extends Error {}

const listeners = { connection: [], login: [] };

/** Subscribe to `connection` (called with true/false) or `login` (a token became invalid) events. */
export function on(event, callback) {
  listeners[event].push(callback);
}

function emit(event, value) {
  for (const callback of listeners[event]) callback(value);
}

let connected = true;

function setConnected(value) {
  if (value !== connected) {
    connected = value;
    emit('connection', value);
  }
}

export const session = {
  authEnabled: false,
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
};

function withToken(params) {
  const out = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null) out.append(name, String(value));
  }
  const token = session.token;
  if (session.authEnabled && token) out.append('accessToken', token);
  return out;
}

async function call(method, path, params = {}, { signal } = {}) {
  const query = withToken(params);
  const init = { method, signal, cache: 'no-store', credentials: 'omit', headers: { Accept: 'application/json, text/plain' } };
  let url = path;
  if (method === 'GET') {
    if ([...query].length) url += `?${query}`;
  } else {
    init.body = query;
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    setConnected(false);
    throw new ConnectionLost(`cannot reach ${location.host}`);
  }
  setConnected(true);
  const text = await response.text();
  if (!response.ok) {
    const failure = new ApiError(response.status, text);
    if (failure.needsLogin) emit('login', failure);
    throw failure;
  }
  const type = response.headers.get('Content-Type') || '';
  return type.includes('json') ? JSON.parse(text) : text;
}

/** GET `path` with `params`: the parsed JSON (or text). */
export function get(path, params, options) {
  return call('GET', path, params, options);
}

/** POST/PUT/DELETE `path` with `params` as a form body: the answer (Nacos answers `ok`). */
export function send(method, path, params) {
  return call(method, path, params);
}

/** Log in; keeps the token for this tab. */
export async function login(username, password) {
  const answer = await call('POST', '/nacos/v1/auth/login', { username, password });
  const token = answer && answer.accessToken;
  if (!token) throw new ApiError(500, 'the login answer carried no token');
  session.token = token;
  return answer;
}

/** Forget the token. */
export function logout() {
  session.token = null;
}

export const NS = '/nacos/v1/ns';
export const CONSOLE = '/nacos/v1/console';
