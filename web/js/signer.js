// Signer pages: certificates and their status (CSC credentials/list), the
// package and what is left (/api/v1/quota), usage history (/api/v1/history),
// the archive (/api/v1/documents, its own page), signing (CSC credentials/authorize with
// the one-time code, then signatures/signDoc), password change.
import { h, clear, field, select, table, badge, messageBox, download } from './dom.js';
import { t } from './i18n.js';
import { call } from './api.js';

let explainHere = (e) => e.message;
export function useExplain(fn) { explainHere = fn; }

const SHA256_OID = '2.16.840.1.101.3.4.2.1';
// format choice -> one signDoc document (CSC v2 signature_format and
// signed_envelope_property; "container" and "name" are our extensions,
// docs/csc.md) and the signed file's name. Every choice gives the signed
// document itself (DocumentWithSignature), never a detached signature.
const isXml = (n) => /\.xml$/i.test(n);
const FORMATS = {
  pades: { doc: () => ({ signature_format: 'P', signed_envelope_property: 'Certification' }), name: (n) => n.replace(/(\.pdf)?$/i, '-signed.pdf') },
  cades: { doc: () => ({ signature_format: 'C', signed_envelope_property: 'Attached' }), name: (n) => `${n}.p7m` },
  xades: {
    doc: (n) => ({ signature_format: 'X', signed_envelope_property: isXml(n) ? 'Enveloped' : 'Enveloping' }),
    name: (n) => (isXml(n) ? n.replace(/\.xml$/i, '-signed.xml') : `${n}.xml`),
  },
  asic: { doc: () => ({ signature_format: 'X', container: 'ASiC-E' }), name: (n) => `${n.replace(/\.[^.]*$/, '') || n}.asice` },
};
const LEVELS = ['Ades-B-B', 'Ades-B-T', 'Ades-B-LT', 'Ades-B-LTA'];

const CSC_STATUS = { valid: 'valid', suspended: 'on-hold', revoked: 'revoked', expired: 'expired' };

async function credentials() {
  const r = await call('POST', '/csc/v2/credentials/list', { json: { credInfo: true, certificates: 'single', certInfo: true } });
  let infos = r.credentialInfos;
  if (!Array.isArray(infos)) {
    infos = [];
    for (const id of r.credentialIDs || []) {
      infos.push(await call('POST', '/csc/v2/credentials/info', { json: { credentialID: id, certificates: 'single', certInfo: true } }));
    }
  }
  return infos;
}

function b64(bytes) {
  let s = '';
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) s += String.fromCharCode(...bytes.subarray(i, i + chunk));
  return btoa(s);
}

function unb64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function hex(buf) {
  return [...new Uint8Array(buf)].map((x) => x.toString(16).padStart(2, '0')).join('');
}

// CSC certInfo's validTo is a GeneralizedTime (YYYYMMDDHHMMSSZ)
function genTime(v) {
  const m = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(v);
  return m ? `${m[1]}-${m[2]}-${m[3]} ${m[4]}:${m[5]}:${m[6]} UTC` : v;
}

// the holder's name (CN) of a subject DN, else the DN
function holder(dn) {
  const m = /(?:^|,)\s*CN=((?:\\.|[^,\\])*)/.exec(dn);
  return m ? m[1].replace(/\\(.)/g, '$1') : dn;
}

async function section(main, title, id, fill) {
  const box = h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id }, title));
  main.append(box);
  try {
    await fill(box);
  } catch (e) {
    box.append(h('p', { class: 'error', role: 'alert' }, e.status === 404 ? t('me.not_available') : explainHere(e)));
  }
}

export async function overview(main) {
  await section(main, t('me.certificates'), 'certs-h', async (box) => {
    const infos = await credentials();
    if (!infos.length) { box.append(h('p', {}, t('me.no_certs'))); return; }
    box.append(table([t('col.status'), t('col.serial'), t('col.valid_to'), t('col.subject')], infos.map((c) => {
      const st = CSC_STATUS[c.cert && c.cert.status] || (c.cert && c.cert.status) || 'valid';
      return h('tr', { 'data-credential': c.credentialID },
        h('td', {}, badge(st, t(`status.${st}`))),
        h('td', { class: 'mono' }, (c.cert && c.cert.serialNumber) || c.credentialID),
        h('td', { class: 'mono' }, genTime((c.cert && c.cert.validTo) || '')),
        h('td', {}, holder((c.cert && c.cert.subjectDN) || '')));
    }), t('me.certificates'), true));
  });
  await section(main, t('me.package'), 'pkg-h', async (box) => {
    // GET /api/v1/quota: qtsp_usage_quota's object (sign/usage.h)
    const q = await call('GET', '/api/v1/quota');
    const unlimited = q.signatures_left === null || q.signatures_left === undefined;
    const left = unlimited ? t('me.unlimited')
      : (q.signatures ? t('me.left_of', { left: q.signatures_left, of: q.signatures }) : String(q.signatures_left));
    box.append(h('dl', { class: 'facts' },
      h('dt', {}, t('me.package_name')), h('dd', { 'data-field': 'package' }, q.package),
      h('dt', {}, t('me.left')), h('dd', { 'data-field': 'signatures_left', 'data-value': unlimited ? 'unlimited' : String(q.signatures_left) }, left),
      h('dt', {}, t('me.used')), h('dd', { 'data-field': 'used' }, String(q.used)),
      q.window_end && !q.ended ? [h('dt', {}, t('me.window_end')), h('dd', { class: 'mono', 'data-field': 'window_end' }, q.window_end)] : null,
      h('dt', {}, t('me.valid_until')), h('dd', { class: 'mono', 'data-field': 'valid_until' }, q.valid_until || t('me.no_end'))));
    if (q.ended) box.append(h('p', { class: 'error', role: 'alert', 'data-field': 'ended' }, t('me.package_ended')));
  });
  await section(main, t('me.history'), 'hist-h', async (box) => {
    const r = await call('GET', '/api/v1/history');
    const list = r.signings || [];
    if (!list.length) { box.append(h('p', {}, t('me.no_history'))); return; }
    const heads = [t('col.time'), t('col.credential'), t('col.hashes'), t('col.relying_party')];
    const row = (s) => h('tr', {},
      h('td', { class: 'mono' }, s.time), h('td', { class: 'mono' }, s.credential),
      h('td', {}, Array.isArray(s.hashes) ? String(s.hashes.length) : String(s.hashes)), h('td', {}, s.relying_party || t('me.package_paid')));
    const wrap = table(heads, list.map(row), t('me.history'), true);
    const msg = messageBox();
    box.append(wrap);
    const btn = more(wrap, '/api/v1/history', 'signings', r.next, row, heads, msg, 'history-more');
    if (btn) box.append(btn, msg);
  });
}

// A "More" button under a paged list (GET /api/v1/history and
// /api/v1/documents answer one page and a "next" cursor while more
// follow): each click fetches ?after=next and appends its rows; the
// button goes once the last page is in. null when there is no next.
function more(wrap, path, key, next, row, heads, msg, testid) {
  if (!next) return null;
  const tbody = wrap.querySelector('tbody');
  const btn = h('button', { type: 'button', class: 'secondary', 'data-testid': testid }, t('me.more'));
  btn.addEventListener('click', async () => {
    btn.disabled = true;
    msg.show('');
    try {
      const r = await call('GET', `${path}?after=${encodeURIComponent(next)}`);
      for (const tr of (r[key] || []).map(row)) {
        [...tr.children].forEach((td, i) => { if (heads[i]) td.dataset.label = heads[i]; });
        tbody.append(tr);
      }
      next = r.next;
      if (next) btn.disabled = false; else btn.remove();
    } catch (e) {
      btn.disabled = false;
      msg.show(explainHere(e), 'error');
    }
  });
  return btn;
}

function sizeText(n) {
  if (typeof n !== 'number') return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

// The archive (GET /api/v1/documents, GET /api/v1/documents/{id}): the
// signer's own signed documents, kept 10 years, each downloadable byte
// for byte.
export async function documents(main) {
  const msg = messageBox();
  main.append(h('p', { class: 'hint' }, t('docs.intro')), msg);
  let list, next;
  try {
    const r = await call('GET', '/api/v1/documents');
    list = r.documents || [];
    next = r.next;
  } catch (e) {
    main.append(h('p', { class: 'error', role: 'alert' }, e.status === 404 ? t('me.not_available') : explainHere(e)));
    return;
  }
  if (!list.length) { main.append(h('p', { 'data-testid': 'no-documents' }, t('me.no_documents'))); return; }
  const heads = [t('col.name'), t('col.format'), t('col.signed_at'), t('col.size'), t('col.sha256'), t('col.actions')];
  const row = (d) => {
    const name = d.name || `${d.id}${/pades/i.test(d.format || '') ? '.pdf' : ''}`;
    const dl = h('button', { type: 'button', class: 'secondary', 'aria-label': t('docs.download', { name }) }, t('me.download'));
    dl.addEventListener('click', async () => {
      msg.show('');
      try {
        download(await call('GET', `/api/v1/documents/${encodeURIComponent(d.id)}`, { blob: true }), name);
      } catch (e) {
        msg.show(explainHere(e), 'error');
      }
    });
    return h('tr', { 'data-document': d.id },
      h('td', {}, name), h('td', {}, [d.format, d.level].filter(Boolean).join(' ')),
      h('td', { class: 'mono' }, d.signed_at), h('td', { 'data-size': d.size }, sizeText(d.size)),
      h('td', { class: 'mono', title: d.sha256 }, d.sha256 ? `${d.sha256.slice(0, 16)}…` : ''), h('td', {}, dl));
  };
  const wrap = table(heads, list.map(row), t('me.archive'), true);
  main.append(wrap);
  const btn = more(wrap, '/api/v1/documents', 'documents', next, row, heads, msg, 'documents-more');
  if (btn) main.append(btn);
}

export async function sign(main) {
  const msg = messageBox();
  let infos = [];
  try {
    infos = await credentials();
  } catch (e) {
    main.append(h('p', { class: 'error', role: 'alert' }, explainHere(e)));
    return;
  }
  if (!infos.length) { main.append(h('p', {}, t('me.no_certs'))); return; }
  const cred = select('credential', infos.map((c) => [c.credentialID, `${(c.cert && c.cert.serialNumber) || c.credentialID} (${t(`status.${CSC_STATUS[c.cert && c.cert.status] || 'valid'}`)})`]));
  const files = h('input', { type: 'file', name: 'files', multiple: true, required: true });
  const format = select('format', Object.keys(FORMATS).map((k) => [k, t(`format.${k}`)]), 'pades');
  const level = select('level', LEVELS.map((l) => [l, l.replace('Ades-', '')]), 'Ades-B-B');
  const otp = h('input', { name: 'otp', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: 6, required: true });
  const hashes = h('ul', { class: 'mono', 'aria-live': 'polite', 'data-testid': 'hashes' });
  const results = h('div');
  let picked = [];
  files.addEventListener('change', async () => {
    clear(hashes);
    picked = [];
    for (const f of files.files) {
      const bytes = new Uint8Array(await f.arrayBuffer());
      const digest = await crypto.subtle.digest('SHA-256', bytes);
      picked.push({ name: f.name, bytes, digest: new Uint8Array(digest) });
      hashes.append(h('li', {}, `${f.name}: SHA-256 ${hex(digest)}`));
    }
    if (picked.length && picked.every((p) => /\.pdf$/i.test(p.name))) format.value = 'pades';
  });
  const form = h('form', { 'aria-label': t('page.sign') },
    field(t('sign.credential'), cred), field(t('sign.files'), files, t('sign.files_hint')), hashes,
    field(t('sign.format'), format), field(t('sign.level'), level),
    field(t('sign.otp'), otp, t('sign.otp_hint')),
    h('button', { type: 'submit' }, t('sign.submit')), msg, results);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.show('');
    clear(results);
    if (!picked.length) { msg.show(t('sign.no_files'), 'error'); return; }
    const info = infos.find((c) => c.credentialID === cred.value) || {};
    const algo = (info.key && Array.isArray(info.key.algo) && info.key.algo[0]) || '1.2.840.10045.4.3.2';
    const fm = FORMATS[format.value];
    try {
      const auth = await call('POST', '/csc/v2/credentials/authorize', {
        json: {
          credentialID: cred.value, numSignatures: picked.length, hashAlgorithmOID: SHA256_OID,
          hashes: picked.map((p) => b64(p.digest)), OTP: otp.value.trim(),
        },
      });
      otp.value = '';
      const r = await call('POST', '/csc/v2/signatures/signDoc', {
        json: {
          credentialID: cred.value, SAD: auth.SAD,
          documents: picked.map((p) => Object.assign({
            document: b64(p.bytes), conformance_level: level.value, signAlgo: algo, name: p.name,
          }, fm.doc(p.name))),
        },
      });
      const out = r.DocumentWithSignature || [];
      msg.show(t('sign.done', { n: out.length }));
      out.forEach((d, i) => {
        const name = fm.name(picked[i].name);
        const btn = h('button', { type: 'button', 'data-testid': 'signed-download' }, t('sign.download', { name }));
        btn.addEventListener('click', () => download(new Blob([unb64(d)]), name));
        results.append(btn, ' ');
      });
      if (out.length) results.append(h('p', { class: 'hint' }, t('sign.archived'), ' ', h('a', { href: '#/documents' }, t('page.documents'))));
    } catch (e) {
      msg.show(explainHere(e), 'error');
    }
  });
  main.append(form);
}

// The password change ends every access token of the signer (docs/csc.md),
// this session's too: the page logs out and asks for the new password.
export async function password(main, app) {
  const oldp = h('input', { type: 'password', name: 'old_password', autocomplete: 'current-password', required: true });
  const newp = h('input', { type: 'password', name: 'new_password', autocomplete: 'new-password', required: true, minlength: 12 });
  const again = h('input', { type: 'password', name: 'again', autocomplete: 'new-password', required: true });
  const msg = messageBox();
  const form = h('form', { 'aria-label': t('page.password') },
    field(t('password.old'), oldp), field(t('password.new'), newp, t('password.hint')), field(t('password.again'), again),
    h('button', { type: 'submit' }, t('password.submit')), msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (newp.value !== again.value) { msg.show(t('password.mismatch'), 'error'); return; }
    try {
      await call('POST', '/api/v1/password', { json: { old_password: oldp.value, new_password: newp.value } });
      form.reset();
      try { await call('DELETE', '/portal/v1/session'); } catch { /* ended with the tokens */ }
      app.setSession(null);
      app.flash(t('password.changed'));
      app.go('#/login');
    } catch (e) {
      msg.show(explainHere(e), 'error');
    }
  });
  main.append(form);
}
