// The management API client: basic auth from sessionStorage (gone when the tab closes),
// `credentials: 'omit'` so the browser never pops its own login dialog on a 401 (the
// Fetch standard only prompts for requests that include credentials).

const KEY = 'arctern.console.auth';

export class Unauthorized extends Error {}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.reason || body.error)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export function saved() {
  const v = sessionStorage.getItem(KEY);
  return v ? JSON.parse(v) : null;
}

export function save(user, password) {
  // btoa only takes Latin-1; encode the UTF-8 bytes first.
  const bin = Array.from(new TextEncoder().encode(`${user}:${password}`), (b) => String.fromCharCode(b)).join('');
  sessionStorage.setItem(KEY, JSON.stringify({ user, token: btoa(bin) }));
}

export function forget() {
  sessionStorage.removeItem(KEY);
}

/** GET/DELETE/... `path`; JSON body or null. Throws Unauthorized on 401, ApiError otherwise. */
export async function call(path, { method = 'GET', headers = {}, body, auth } = {}) {
  const creds = auth || saved();
  // RabbitMQ answers a DELETE that carries `Accept: application/json` with 406 (its
  // DELETE handlers produce no body), so only reads ask for JSON.
  const h = method === 'GET' ? { Accept: 'application/json', ...headers } : { ...headers };
  if (creds) h.Authorization = `Basic ${creds.token}`;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const resp = await fetch(path, {
    method,
    headers: h,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'omit',
    cache: 'no-store',
  });
  if (resp.status === 401) throw new Unauthorized('not authorized');
  const text = await resp.text();
  let json = null;
  if (text) {
    try { json = JSON.parse(text); } catch { json = { reason: text }; }
  }
  if (!resp.ok) throw new ApiError(resp.status, json);
  return json;
}

/** `/api/queues/%2F/name`: every path segment percent-encoded (the default vhost is "/"). */
export function path(...segments) {
  return segments.map((s, i) => (i === 0 ? s : encodeURIComponent(s))).join('/');
}
