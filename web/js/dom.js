// Building the page without markup strings: every text goes in as a text
// node (textContent), so data can never become HTML (docs/portal.md).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') {
      for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    } else if (k === 'class') {
      el.className = v;
    } else if (k === 'value') {
      el.value = v;
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of [children].flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

let seq = 0;
// A labelled input: label for=id, the input, an optional hint (aria-describedby).
export function field(label, input, hint) {
  const id = input.id || `f${++seq}`;
  input.id = id;
  const kids = [h('label', { for: id }, label), input];
  if (hint) {
    const hid = `${id}-hint`;
    input.setAttribute('aria-describedby', hid);
    kids.push(h('span', { class: 'hint', id: hid }, hint));
  }
  return h('div', { class: 'field' }, kids);
}

export function select(name, options, value) {
  const s = h('select', { name });
  for (const o of options) {
    const [v, text] = Array.isArray(o) ? o : [o, o];
    const opt = h('option', { value: v }, text);
    if (v === value) opt.selected = true;
    s.append(opt);
  }
  return s;
}

// A table in a region that scrolls sideways on a small screen; the region
// is focusable so keyboard users can scroll it too. stack: on a phone-sized
// screen each row becomes a block of "header: value" lines instead (the
// header text goes in data-label, shown by app.css).
export function table(headers, rows, label, stack) {
  if (stack) {
    for (const tr of rows) [...tr.children].forEach((td, i) => { if (headers[i]) td.dataset.label = headers[i]; });
  }
  return h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': label || headers.filter(Boolean).join(', ') },
    h('table', { class: stack ? 'stack' : null },
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows)));
}

export function badge(status, text) {
  return h('span', { class: `badge ${String(status).replace(/[^a-z-]/g, '')}`, 'data-status': status }, text);
}

// A message area for a form: role=alert for errors, status for the rest.
export function messageBox() {
  const box = h('div', { class: 'msg', 'aria-live': 'polite' });
  box.show = (text, kind) => {
    clear(box);
    if (text) box.append(h('p', { class: kind === 'error' ? 'error' : 'okmsg', role: kind === 'error' ? 'alert' : 'status' }, text));
  };
  return box;
}

export function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
