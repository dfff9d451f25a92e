// Message files: /web/i18n/<lang>.json (English and Bulgarian). The chosen
// language is remembered in localStorage (a preference, never a secret).
const LANGS = ['en', 'bg'];
let messages = {};
let fallback = {};
let current = 'en';

async function load(lang) {
  const r = await fetch(`/web/i18n/${lang}.json`, { cache: 'no-cache' });
  if (!r.ok) throw new Error(`messages ${lang}: ${r.status}`);
  return r.json();
}

export function chosenLang() {
  const saved = localStorage.getItem('qtsp.lang');
  if (LANGS.includes(saved)) return saved;
  const nav = (navigator.language || 'en').slice(0, 2).toLowerCase();
  return LANGS.includes(nav) ? nav : 'en';
}

export async function setLang(lang) {
  if (!LANGS.includes(lang)) lang = 'en';
  if (!Object.keys(fallback).length) fallback = await load('en');
  messages = lang === 'en' ? fallback : await load(lang);
  current = lang;
  localStorage.setItem('qtsp.lang', lang);
  document.documentElement.lang = lang;
}

export function lang() { return current; }

// t('key', {name: 'x'}): the message with {name} replaced (plain text).
export function t(key, params) {
  let s = messages[key] ?? fallback[key] ?? key;
  for (const [k, v] of Object.entries(params || {})) s = s.split(`{${k}}`).join(String(v));
  return s;
}
