// The portal's shell: session, navigation by #hash, language, log out.
import { h, clear } from './dom.js';
import { t, setLang, chosenLang, lang } from './i18n.js';
import { call, setCsrf, ApiError } from './api.js';
import * as staff from './staff.js';
import * as signer from './signer.js';
import * as login from './login.js';

const state = { session: null, flash: '' };

// A message for the next page shown (e.g. the log-in page after a password change).
function flash(text) { state.flash = text; }
function takeFlash() { const f = state.flash; state.flash = ''; return f; }


// Pages: hash -> [title key, render, who may see it]
const PAGES = {
  '#/login': ['page.login', login.render, () => true],
  '#/enrol': ['page.enrol', staff.enrol, (s) => hasRole(s, 'ra-officer')],
  '#/hotline': ['page.hotline', staff.hotline, (s) => hasRole(s, 'hotline')],
  '#/office': ['page.office', staff.office, (s) => hasRole(s, 'office') || hasRole(s, 'ra-officer')],
  '#/audit': ['page.audit', staff.audit, (s) => hasRole(s, 'auditor')],
  '#/me': ['page.me', signer.overview, (s) => s && s.kind === 'signer'],
  '#/sign': ['page.sign', signer.sign, (s) => s && s.kind === 'signer'],
  '#/documents': ['page.documents', signer.documents, (s) => s && s.kind === 'signer'],
  '#/password': ['page.password', signer.password, (s) => s && s.kind === 'signer'],
};

function hasRole(s, role) {
  return !!s && s.kind === 'operator' && s.roles.split(',').includes(role);
}

function firstPage(s) {
  for (const [hash, [, , allowed]] of Object.entries(PAGES)) if (hash !== '#/login' && allowed(s)) return hash;
  return '#/login';
}

export function session() { return state.session; }

export function setSession(s) {
  state.session = s;
  setCsrf(s ? s.csrf : null);
}

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

// An API failure in plain words for the person in front of the page.
export function explain(err) {
  if (!(err instanceof ApiError)) return t('err.generic');
  const m = (err.message || '').toLowerCase();
  if (err.status === 0) return t('err.network');
  if (err.status === 429 && /archive/.test(m)) return t('err.archive_full');
  if (err.status === 429 || err.code === 'quota_exceeded' || err.code === 'quota') return t('err.quota');
  if (/suspend|on.hold|held/.test(m)) return t('err.held');
  if (/revoked/.test(m)) return t('err.revoked');
  if (/otp|one-time|totp|code/.test(m) && /replay|already used|reused/.test(m)) return t('err.otp_replayed');
  if (/locked/.test(m)) return t('err.locked');
  if (/otp|one-time|totp/.test(m)) return t('err.otp_wrong');
  if (/inactivity|session has ended|not logged in|session is not valid/.test(m)) {
    setSession(null);
    return t('err.session_ended');
  }
  if (err.status === 401) return t('err.unauthorised');
  if (err.status === 403) return t('err.forbidden');
  if (err.status === 404) return t('err.not_found');
  if (err.status === 409) return t('err.state', { detail: err.message });
  if (err.status === 400) return t('err.invalid', { detail: err.message });
  if (err.status === 413) return t('err.too_big');
  if (err.status === 503) return t('err.busy');
  return t('err.generic');
}

function renderChrome() {
  const s = state.session;
  const nav = clear(document.getElementById('nav'));
  for (const [hash, [key, , allowed]] of Object.entries(PAGES)) {
    if (hash === '#/login' || !allowed(s)) continue;
    const a = h('a', { href: hash }, t(key));
    if (location.hash === hash) a.setAttribute('aria-current', 'page');
    nav.append(a);
  }
  document.getElementById('who').textContent = s ? t('who', { name: s.name }) : '';
  const out = document.getElementById('logout');
  out.hidden = !s;
  out.textContent = t('logout');
  document.getElementById('lang-label').textContent = t('language');
  document.querySelector('.skip').textContent = t('skip');
  document.getElementById('brand').textContent = t('brand');
}

async function route() {
  const s = state.session;
  let hash = location.hash || '#/login';
  if (!PAGES[hash] || !PAGES[hash][2](s)) hash = s ? firstPage(s) : '#/login';
  if (hash === '#/login' && s) hash = firstPage(s);
  if (location.hash !== hash) {
    history.replaceState(null, '', hash);
  }
  const [key, render] = PAGES[hash];
  document.title = `${t(key)} — ${t('brand')}`;
  renderChrome();
  const main = clear(document.getElementById('main'));
  main.append(h('h1', {}, t(key)));
  try {
    await render(main, { session: s, go, explain, setSession, flash, takeFlash });
  } catch (e) {
    main.append(h('p', { class: 'error', role: 'alert' }, explain(e)));
    if (!state.session) go('#/login');
  }
}

async function logout() {
  try { await call('DELETE', '/portal/v1/session'); } catch { /* gone already */ }
  setSession(null);
  go('#/login');
}

async function start() {
  staff.useExplain(explain);
  signer.useExplain(explain);
  await setLang(chosenLang());
  const sel = document.getElementById('lang');
  sel.value = lang();
  sel.addEventListener('change', async () => { await setLang(sel.value); route(); });
  document.getElementById('logout').addEventListener('click', logout);
  try {
    setSession(await call('GET', '/portal/v1/session'));
  } catch {
    setSession(null);
  }
  window.addEventListener('hashchange', route);
  await route();
  document.body.dataset.ready = '1';
}

start();
