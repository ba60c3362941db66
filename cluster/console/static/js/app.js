// The console's entry point: asks the node whether auth is on, draws the header, and mounts one page per
// hash route (router.js). The change feed (live.js) runs while a logged-in page is open.

import { ApiError, CONSOLE, ConnectionLost, get, logout, on, session } from './api.js';
import { h, notice, replace } from './dom.js';
import { Live, sleep } from './live.js';
import { ClusterPage } from './pages/cluster.js';
import { LoginPage } from './pages/login.js';
import { NamespacesPage } from './pages/namespaces.js';
import { ServicePage } from './pages/service.js';
import { ServicesPage } from './pages/services.js';
import * as router from './router.js';

const PAGES = { services: ServicesPage, service: ServicePage, namespaces: NamespacesPage, cluster: ClusterPage, login: LoginPage };
const NAV = [['services', 'Services'], ['namespaces', 'Namespaces'], ['cluster', 'Cluster']];

const main = document.getElementById('main');
const banner = document.getElementById('connection-banner');
const nav = document.getElementById('nav');
const nodeInfo = document.getElementById('node-info');
const live = new Live(banner);
let mounted = null;
let afterLogin = null;

const ctx = {
  main,
  live,
  loggedIn() {
    live.start();
    drawHeader();
    const next = afterLogin || router.href('services');
    afterLogin = null;
    location.hash = next;
  },
};

async function serverState() {
  for (let waitMs = 500; ; waitMs = Math.min(waitMs * 2, 4000)) {
    try {
      return await get(`${CONSOLE}/server/state`);
    } catch (error) {
      if (!(error instanceof ConnectionLost) && !(error instanceof ApiError)) throw error;
      await sleep(waitMs);
    }
  }
}

function drawHeader(state = ctx.state) {
  const page = router.current().page;
  const loggedIn = !session.authEnabled || Boolean(session.token);
  replace(nav, loggedIn ? NAV.map(([id, label]) => h('a', {
    href: router.href(id), id: `nav-${id}`, class: page === id || (id === 'services' && page === 'service') ? 'active' : '',
  }, label)) : []);
  replace(nodeInfo,
    h('span', { class: 'muted' }, `${state.nodeId} · ${state.address} · v${state.version}`),
    session.authEnabled && session.token ? h('button', { type: 'button', id: 'logout', onclick: logOut }, 'Log out') : null);
}

function logOut() {
  logout();
  live.stop();
  router.go('login');
}

function route() {
  const { page, params } = router.current();
  const needsLogin = session.authEnabled && !session.token;
  if (needsLogin && page !== 'login') {
    afterLogin = location.hash && !location.hash.startsWith('#/login') ? location.hash : null;
    router.go('login', {}, { replace: true });
    return;
  }
  if (page === 'login' && !needsLogin) {
    router.go('services', {}, { replace: true });
    return;
  }
  if (mounted) mounted.unmount();
  mounted = null;
  drawHeader();
  const Page = PAGES[page] || ServicesPage;
  try {
    mounted = new Page(ctx, params);
  } catch (error) {
    replace(main, notice('error', `This page failed: ${error.message}`));
    throw error;
  }
  document.title = `${page === 'service' ? params.name : page[0].toUpperCase() + page.slice(1)} · Distro registry`;
  if (!needsLogin) live.start();
}

async function boot() {
  ctx.state = await serverState();
  session.authEnabled = ctx.state.auth_enabled === 'true';
  on('login', () => {
    if (!session.authEnabled) return;
    logout();
    live.stop();
    afterLogin = location.hash;
    router.go('login', {}, { replace: true });
  });
  window.addEventListener('hashchange', route);
  route();
  document.documentElement.dataset.console = 'ready'; // for tests and scripts: the modules loaded and ran
}

boot();
