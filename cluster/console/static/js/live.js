// Keeping open pages current: one long poll on console/changes tells the page which services changed.
// When the node cannot be reached the banner says so, and the loop retries (0.5 s, doubling up to 4 s) until
// it answers again; then the page reloads what it shows.

import { ApiError, CONSOLE, ConnectionLost, get, on } from './api.js';

const POLL_TIMEOUT_MS = 20000;
const MIN_GAP_MS = 250;
const RETRY_MS = 1000;

/** The change feed. `subscribe(callback)`: callback({complete, changes}) after each change batch. */
export class Live {
  constructor(banner) {
    this.banner = banner;
    this.feed = null;
    this.revision = null;
    this.callbacks = new Set();
    this.running = false;
    this.paused = false;
    on('connection', (up) => this.showConnection(up));
  }

  subscribe(callback) {
    this.callbacks.add(callback);
    return () => this.callbacks.delete(callback);
  }

  showConnection(up) {
    this.banner.hidden = up;
    if (!up) this.banner.textContent = `Lost the connection to ${location.host}. Reconnecting…`;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.loop();
  }

  stop() {
    this.running = false;
  }

  async loop() {
    let backoffMs = 500;
    while (this.running) {
      const started = Date.now();
      try {
        const answer = await get(`${CONSOLE}/changes`, {
          feed: this.feed ?? undefined,
          revision: this.revision ?? undefined,
          timeoutMs: this.revision === null ? 0 : POLL_TIMEOUT_MS,
        });
        const first = this.revision === null;
        const moved = answer.feed !== this.feed || answer.revision !== this.revision;
        this.feed = answer.feed;
        this.revision = answer.revision;
        const reconnected = backoffMs > 500;
        backoffMs = 500;
        if (!first && (moved || reconnected)) {
          this.notify({ complete: answer.complete && !reconnected, changes: answer.changes });
        }
        const gap = Date.now() - started;
        if (gap < MIN_GAP_MS) await sleep(MIN_GAP_MS - gap);
      } catch (error) {
        if (error instanceof ApiError && error.needsLogin) {
          this.running = false;
          return;
        }
        if (!(error instanceof ConnectionLost) && !(error instanceof ApiError)) throw error;
        await sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 4000);
      }
    }
  }

  notify(batch) {
    for (const callback of [...this.callbacks]) {
      try {
        callback(batch);
      } catch (error) {
        console.warn('a page failed to follow a change', error);
      }
    }
  }
}

/** A promise resolved after `ms` milliseconds. */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Does a batch touch a service in `namespace` (and `group`, `name` when given)? An incomplete batch
 * touches everything. */
export function touches(batch, namespace, group, name) {
  if (!batch.complete) return true;
  return batch.changes.some((c) => c.namespaceId === namespace
    && (group === undefined || c.groupName === group)
    && (name === undefined || c.serviceName === name));
}

/** Wrap `refresh` so that calls closer than `gapMs` are merged and never overlap. A failure goes to
 * `onError` (pages show it) instead of becoming an unhandled rejection; when the node was unreachable or
 * still starting (503), the refresh runs again a second later. */
export function throttled(refresh, onError, gapMs = 300) {
  let running = false;
  let again = false;
  let last = 0;
  const run = async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      do {
        again = false;
        const wait = last + gapMs - Date.now();
        if (wait > 0) await sleep(wait);
        last = Date.now();
        try {
          await refresh();
        } catch (error) {
          onError(error);
          if (error instanceof ConnectionLost || (error instanceof ApiError && error.status === 503)) {
            setTimeout(run, RETRY_MS);
          }
        }
      } while (again);
    } finally {
      running = false;
    }
  };
  return run;
}
