// The login page (only when the node runs with auth on). The token is kept for this tab only.

import { login } from '../api.js';
import { field, h, notice, replace } from '../dom.js';

/** The login page; `ctx.loggedIn()` is called after a successful login. */
export class LoginPage {
  constructor(ctx) {
    this.ctx = ctx;
    const username = h('input', { id: 'login-username', name: 'username', autocomplete: 'username', required: true, placeholder: 'nacos' });
    const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
    const status = h('div', { class: 'form-status', id: 'login-status' });
    const form = h('form', { class: 'panel login', id: 'login-form', onsubmit: async (event) => {
      event.preventDefault();
      replace(status, notice('info', 'Logging in…'));
      try {
        await login(username.value.trim(), password.value);
        password.value = '';
        ctx.loggedIn();
      } catch (error) {
        const text = error.status === 403 ? 'Wrong user name or password.' : `Could not log in: ${error.message}`;
        replace(status, notice('error', text));
        password.focus();
      }
    } },
    h('h1', {}, 'Log in'),
    h('p', { class: 'muted' }, 'This registry requires a user name and password.'),
    field('User name', username), field('Password', password), status,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', id: 'login-button' }, 'Log in')));
    replace(ctx.main, h('section', { class: 'page', id: 'page-login' }, form));
    username.focus();
  }

  unmount() {}
}
