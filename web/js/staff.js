// Staff pages over /ra/v1 (docs/ra.md): the RA officer enrols and issues,
// the hotline holds, the office finds a person, releases and terminates,
// the auditor reads the audit log.
import { h, clear, field, select, table, badge, messageBox } from './dom.js';
import { t } from './i18n.js';
import { call, query } from './api.js';
import { qrSvg } from './qr.js';

const PACKAGES = ['free', 'economical', 'practical', 'unlimited', 'unlimited-plus'];
const ID_TYPES = ['PNO', 'IDC', 'PAS', 'TIN'];
const METHODS = ['in-person', 'remote-video', 'eid'];
const REASONS = ['keyCompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation', 'privilegeWithdrawn'];

function input(name, attrs) {
  return h('input', Object.assign({ name }, attrs || {}));
}

function statusText(st) {
  return t(`status.${st}`);
}

// ---- RA officer: enrol, issue, activation data once ----------------------

function activationPanel(res) {
  const a = res.activation || {};
  const panel = h('section', { class: 'card activation', 'aria-labelledby': 'act-h', 'data-testid': 'activation' },
    h('h2', { id: 'act-h' }, t('enrol.activation')),
    h('p', {}, t('enrol.activation_once')),
    h('dl', {},
      h('dt', {}, t('enrol.serial')), h('dd', { class: 'mono', 'data-field': 'serial' }, res.serial),
      h('dt', {}, t('enrol.user_id')), h('dd', { class: 'mono', 'data-field': 'user_id' }, a.user_id),
      h('dt', {}, t('enrol.password')), h('dd', { class: 'mono', 'data-field': 'password' }, a.password)),
    h('p', {}, t('enrol.scan')),
    h('div', { class: 'qr' }, qrSvg(a.otpauth_uri || '', t('enrol.qr_label'))),
    h('p', { class: 'hint mono', 'data-field': 'otpauth_uri' }, a.otpauth_uri));
  const print = h('button', { type: 'button', class: 'secondary no-print' }, t('enrol.print'));
  print.addEventListener('click', () => window.print());
  const done = h('button', { type: 'button', class: 'no-print' }, t('enrol.done'));
  done.addEventListener('click', () => { clear(panel); panel.append(h('p', {}, t('enrol.cleared'))); });
  panel.append(h('div', { class: 'row' }, print, done));
  return panel;
}

export async function enrol(main) {
  const f = {
    given_name: input('given_name', { required: true, autocomplete: 'off' }),
    surname: input('surname', { required: true, autocomplete: 'off' }),
    country: input('country', { required: true, maxlength: 2, pattern: '[A-Z]{2}', value: 'BG' }),
    id_type: select('id_type', ID_TYPES, 'PNO'),
    national_id: input('national_id', { required: true, autocomplete: 'off' }),
    email: input('email', { type: 'email', required: true, autocomplete: 'off' }),
    phone: input('phone', { type: 'tel', required: true, autocomplete: 'off', placeholder: '+359...' }),
    package: select('package', PACKAGES, 'free'),
    document_type: input('document_type', { autocomplete: 'off' }),
    document_number: input('document_number', { autocomplete: 'off' }),
    method: select('method', METHODS.map((m) => [m, t(`method.${m}`)]), 'in-person'),
  };
  const msg = messageBox();
  const out = h('div');
  const form = h('form', { 'aria-label': t('page.enrol') },
    field(t('enrol.given_name'), f.given_name), field(t('enrol.surname'), f.surname),
    field(t('enrol.country'), f.country, t('enrol.country_hint')), field(t('enrol.id_type'), f.id_type),
    field(t('enrol.national_id'), f.national_id), field(t('enrol.email'), f.email),
    field(t('enrol.phone'), f.phone, t('enrol.phone_hint')), field(t('enrol.package'), f.package),
    h('fieldset', {}, h('legend', {}, t('enrol.evidence')),
      field(t('enrol.document_type'), f.document_type), field(t('enrol.document_number'), f.document_number),
      field(t('enrol.method'), f.method)),
    h('button', { type: 'submit' }, t('enrol.submit')), msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.show('');
    clear(out);
    const body = {};
    for (const k of ['given_name', 'surname', 'country', 'id_type', 'national_id', 'email', 'phone', 'package']) body[k] = f[k].value.trim();
    if (f.document_type.value.trim() || f.document_number.value.trim()) {
      body.identity_evidence = { document_type: f.document_type.value.trim(), document_number: f.document_number.value.trim(), method: f.method.value };
    }
    try {
      const r = await call('POST', '/ra/v1/subjects', { json: body });
      msg.show(t('enrol.enrolled', { id: r.subject_id }));
      const issue = h('button', { type: 'button' }, t('enrol.issue'));
      issue.addEventListener('click', async () => {
        issue.disabled = true;
        try {
          const res = await call('POST', `/ra/v1/subjects/${encodeURIComponent(r.subject_id)}/certificates`, { json: {} });
          clear(out);
          out.append(activationPanel(res));
          form.reset();
        } catch (e) {
          issue.disabled = false;
          msg.show(explainHere(e), 'error');
        }
      });
      out.append(issue);
    } catch (e) {
      msg.show(explainHere(e), 'error');
    }
  });
  main.append(form, out);
}

let explainHere = (e) => e.message;
export function useExplain(fn) { explainHere = fn; }

// ---- hotline: find by national id + phone, hold ---------------------------

export async function hotline(main) {
  const nid = input('national_id', { required: true, autocomplete: 'off' });
  const phone = input('phone', { type: 'tel', required: true, autocomplete: 'off' });
  const verif = input('caller_verification', { required: true, autocomplete: 'off' });
  const msg = messageBox();
  const form = h('form', { 'aria-label': t('page.hotline') },
    h('p', { class: 'hint' }, t('hotline.intro')),
    field(t('enrol.national_id'), nid), field(t('enrol.phone'), phone),
    field(t('hotline.verification'), verif, t('hotline.verification_hint')),
    h('button', { type: 'submit', class: 'danger' }, t('hotline.hold')), msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.show('');
    try {
      const r = await call('POST', '/ra/v1/hotline/hold', {
        json: { national_id: nid.value.trim(), phone: phone.value.trim(), caller_verification: verif.value.trim() },
      });
      msg.show(r.held && r.held.length
        ? t('hotline.held', { n: r.held.length, serials: r.held.join(', '), until: r.hold_until })
        : t('hotline.none'));
    } catch (e) {
      msg.show(explainHere(e), 'error');
    }
  });
  main.append(form);
}

// ---- office: search, certificates, release, terminate --------------------

function terminateForm(serial, onDone) {
  const reason = select('reason', REASONS.map((r) => [r, t(`reason.${r}`)]), 'keyCompromise');
  const check = input('identity_check', { required: true, autocomplete: 'off' });
  const msg = messageBox();
  const form = h('form', { class: 'card', 'aria-label': t('office.terminate_title', { serial }) },
    h('h3', {}, t('office.terminate_title', { serial })),
    h('p', { class: 'hint' }, t('office.terminate_warning')),
    field(t('office.reason'), reason), field(t('office.identity_check'), check, t('office.identity_hint')),
    h('button', { type: 'submit', class: 'danger' }, t('office.terminate_confirm')), msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await call('POST', `/ra/v1/certificates/${encodeURIComponent(serial)}/terminate`, {
        json: { reason: reason.value, identity_check: check.value.trim() },
      });
      onDone(t('office.terminated', { serial }));
    } catch (e) {
      msg.show(explainHere(e), 'error');
    }
  });
  return form;
}

async function showCerts(box, subject) {
  clear(box);
  const msg = messageBox();
  box.append(h('h2', {}, t('office.certs_of', { name: `${subject.given_name} ${subject.surname}` })), msg);
  let r;
  try {
    r = await call('GET', `/ra/v1/subjects/${encodeURIComponent(subject.subject_id)}/certificates`);
  } catch (e) {
    msg.show(explainHere(e), 'error');
    return;
  }
  const forms = h('div');
  const refresh = (text) => showCerts(box, subject).then(() => box.querySelector('.msg').show(text));
  const rows = (r.certificates || []).map((c) => {
    const actions = h('td', {});
    if (c.status === 'on-hold') {
      const rel = h('button', { type: 'button', class: 'secondary' }, t('office.release'));
      rel.addEventListener('click', async () => {
        try {
          await call('POST', `/ra/v1/certificates/${encodeURIComponent(c.serial)}/release`, { json: {} });
          refresh(t('office.released', { serial: c.serial }));
        } catch (e) { msg.show(explainHere(e), 'error'); }
      });
      actions.append(rel, ' ');
    }
    if (c.status === 'valid' || c.status === 'on-hold') {
      const term = h('button', { type: 'button', class: 'danger' }, t('office.terminate'));
      term.addEventListener('click', () => {
        clear(forms);
        const fm = terminateForm(c.serial, refresh);
        forms.append(fm);
        fm.querySelector('select').focus();
      });
      actions.append(term);
    }
    return h('tr', { 'data-serial': c.serial },
      h('td', { class: 'mono' }, c.serial),
      h('td', {}, badge(c.status, statusText(c.status)), c.hold_until ? h('div', { class: 'hint' }, t('office.until', { time: c.hold_until })) : null,
        c.revocation_reason ? h('div', { class: 'hint' }, t(`reason.${c.revocation_reason}`)) : null),
      actions);
  });
  box.append(rows.length ? table([t('col.serial'), t('col.status'), t('col.actions')], rows) : h('p', {}, t('office.no_certs')), forms);
}

export async function office(main) {
  const by = select('by', [['national_id', t('office.by_national_id')], ['name', t('office.by_name')], ['email', t('office.by_email')], ['phone', t('office.by_phone')]], 'national_id');
  const value = input('q', { required: true, autocomplete: 'off' });
  const msg = messageBox();
  const results = h('div');
  const certs = h('div');
  const form = h('form', { role: 'search', 'aria-label': t('office.search') },
    field(t('office.search_by'), by), field(t('office.value'), value),
    h('button', { type: 'submit' }, t('office.search')), msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.show('');
    clear(results);
    clear(certs);
    try {
      const r = await call('GET', query('/ra/v1/subjects', { [by.value]: value.value.trim() }));
      const list = r.subjects || [];
      if (!list.length) { msg.show(t('office.nobody')); return; }
      results.append(table([t('col.name'), t('col.national_id'), t('col.phone'), t('col.package'), ''],
        list.map((s) => {
          const open = h('button', { type: 'button', class: 'secondary' }, t('office.open'));
          open.addEventListener('click', () => showCerts(certs, s));
          return h('tr', {},
            h('td', {}, `${s.given_name} ${s.surname}`),
            h('td', { class: 'mono' }, `${s.id_type || ''}${s.country}-${s.national_id}`),
            h('td', { class: 'mono' }, s.phone), h('td', {}, s.package), h('td', {}, open));
        })));
    } catch (e) {
      msg.show(explainHere(e), 'error');
    }
  });
  main.append(form, results, certs);
}

// ---- auditor: the audit log with filters ---------------------------------

export async function audit(main) {
  const f = {
    since: input('since', { placeholder: '2026-01-01T00:00:00Z', autocomplete: 'off' }),
    until: input('until', { placeholder: '2026-12-31T23:59:59Z', autocomplete: 'off' }),
    event: input('event', { placeholder: 'cert.', autocomplete: 'off' }),
    actor: input('actor', { placeholder: 'operator:olga', autocomplete: 'off' }),
    serial: input('serial', { autocomplete: 'off' }),
  };
  const msg = messageBox();
  const out = h('div');
  let next = null;
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, t('audit.more'));
  const tbody = h('tbody');
  const load = async (cursor) => {
    const params = {};
    for (const [k, el] of Object.entries(f)) params[k] = el.value.trim();
    params.cursor = cursor || '';
    const r = await call('GET', query('/ra/v1/audit', params));
    for (const rec of r.records || []) {
      tbody.append(h('tr', {},
        h('td', { class: 'mono' }, rec.seq), h('td', { class: 'mono' }, rec.time), h('td', {}, rec.actor),
        h('td', { class: 'mono' }, rec.event), h('td', { class: 'mono' }, JSON.stringify(rec.details))));
    }
    next = r.next || null;
    more.hidden = !next;
    return (r.records || []).length;
  };
  const form = h('form', { role: 'search', 'aria-label': t('page.audit') },
    field(t('audit.since'), f.since, t('audit.time_hint')), field(t('audit.until'), f.until),
    field(t('audit.event'), f.event, t('audit.event_hint')), field(t('audit.actor'), f.actor), field(t('audit.serial'), f.serial),
    h('button', { type: 'submit' }, t('audit.show')), msg);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    msg.show('');
    clear(tbody);
    clear(out);
    try {
      const n = await load(null);
      out.append(h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': t('page.audit') }, h('table', {},
        h('thead', {}, h('tr', {}, [t('col.seq'), t('col.time'), t('col.actor'), t('col.event'), t('col.details')].map((x) => h('th', { scope: 'col' }, x)))),
        tbody)), more);
      if (!n) msg.show(t('audit.none'));
    } catch (e) {
      msg.show(explainHere(e), 'error');
    }
  });
  more.addEventListener('click', async () => {
    try { await load(next); } catch (e) { msg.show(explainHere(e), 'error'); }
  });
  main.append(form, out);
}
