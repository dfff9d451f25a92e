// Calls to the public APIs (/ra/v1, /csc/v2, /api/v1) with the session
// cookie (HttpOnly: scripts never see the credential) and the session's
// CSRF token in X-QTSP-CSRF, which the server requires on every call that
// the cookie authenticates (docs/portal.md).
let csrf = null;

export function setCsrf(v) { csrf = v; }

export class ApiError extends Error {
  constructor(status, code, message, path) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || '';
    this.path = path;
  }
}

export async function call(method, path, opts = {}) {
  const headers = Object.assign({}, opts.headers);
  if (csrf && !headers.Authorization) headers['X-QTSP-CSRF'] = csrf;
  let body;
  if (opts.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.json);
  }
  let r;
  try {
    r = await fetch(path, { method, headers, body, credentials: 'same-origin', cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, 'network', e.message, path);
  }
  if (r.ok && opts.blob) return r.blob();
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!r.ok) {
    const code = data && typeof data.error === 'string' ? data.error : '';
    const msg = data && (data.message || data.error_description);
    throw new ApiError(r.status, code, typeof msg === 'string' ? msg : '', path);
  }
  return data;
}

export function query(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}
