// Log in: a signer with the activation user id and password (CSC
// auth/login), staff with their operator token. Either way the credential
// goes to /portal/v1/session, which keeps it in an HttpOnly cookie.
import { h, field, messageBox } from './dom.js';
import { t } from './i18n.js';
import { call } from './api.js';

function b64utf8(s) {
  return btoa(String.fromCharCode(...new TextEncoder().encode(s)));
}

export async function render(main, app) {
  const user = h('input', { name: 'user', autocomplete: 'username', required: true });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const smsg = messageBox();
  const signerForm = h('form', { 'aria-labelledby': 'signer-h' },
    field(t('login.user'), user), field(t('login.password'), pass),
    h('button', { type: 'submit' }, t('login.submit')), smsg);
  signerForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    smsg.show('');
    try {
      const tok = await call('POST', '/csc/v2/auth/login', {
        headers: { Authorization: `Basic ${b64utf8(`${user.value}:${pass.value}`)}` },
        json: { rememberMe: false },
      });
      const s = await call('POST', '/portal/v1/session', { json: { kind: 'signer', user: user.value, token: tok.access_token } });
      pass.value = '';
      app.setSession(s);
      app.go('#/me');
    } catch (e) {
      smsg.show(e.status === 401 ? t('err.login') : app.explain(e), 'error');
    }
  });

  const token = h('input', { name: 'token', type: 'password', autocomplete: 'off', required: true });
  const omsg = messageBox();
  const staffForm = h('form', { 'aria-labelledby': 'staff-h' },
    field(t('login.token'), token, t('login.token_hint')),
    h('button', { type: 'submit' }, t('login.submit')), omsg);
  staffForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    omsg.show('');
    try {
      const s = await call('POST', '/portal/v1/session', { json: { kind: 'operator', token: token.value } });
      token.value = '';
      app.setSession(s);
      app.go('#/');
    } catch (e) {
      omsg.show(e.status === 401 ? t('err.token') : app.explain(e), 'error');
    }
  });

  const note = app.takeFlash();
  if (note) main.append(h('p', { class: 'okmsg', role: 'status', 'data-testid': 'flash' }, note));
  main.append(h('div', { class: 'cards' },
    h('section', { class: 'card' }, h('h2', { id: 'signer-h' }, t('login.signer')), signerForm),
    h('section', { class: 'card' }, h('h2', { id: 'staff-h' }, t('login.staff')), staffForm)));
}
