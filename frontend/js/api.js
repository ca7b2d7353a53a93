// The REST client: JSON in and out, the one error shape {"error":{"code","message"}} turned
// into an ApiError, Bearer auth, and the rotating refresh token (docs/API-CONTRACT.md).
//
// Token handling: an access token that is known to be expired is refreshed before the call;
// a call that still gets 401 refreshes once and is retried once. Every refresh answer carries
// a new refresh token (the old one is dead), which is handed to `saveTokens` before anything
// else happens. Refreshes are single-flight inside a page and, through `withLock` (the Web
// Locks API in the browser), across tabs: a tab that finds a newer refresh token in storage
// uses it instead of spending a dead one.
//
// An ApiError's message is always the client's own sentence for the error code (errors.js):
// the server's `message` text is dropped, so no page can show it by accident.

import { codeText } from './errors.js';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/** Access tokens this close to expiry are refreshed before use. */
const EXPIRY_MARGIN_MS = 10000;

/** Tokens as stored: the refresh answer plus an absolute expiry. */
export function tokensFrom(answer, now = Date.now()) {
  if (!answer || typeof answer.access_token !== 'string' || typeof answer.refresh_token !== 'string') {
    throw new ApiError(0, 'invalid_response', 'The server sent an incomplete token answer');
  }
  const expiresIn = Number.isFinite(answer.expires_in) ? answer.expires_in : 0;
  return {
    access_token: answer.access_token,
    refresh_token: answer.refresh_token,
    access_expires_at: expiresIn > 0 ? now + expiresIn * 1000 : 0,
  };
}

async function parseBody(response) {
  if (response.status === 204) return null;
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * A 401 about the access token (`unauthorized`, or no error body). Other 401 codes answer the
 * request itself (`invalid_credentials`, `reauthentication_required` for a password proof):
 * they neither refresh the tokens nor end the session.
 */
function tokenRefused(response, body) {
  if (response.status !== 401) return false;
  const code = body && typeof body === 'object' ? body.error?.code : undefined;
  return typeof code !== 'string' || code === 'unauthorized';
}

/** Seconds from a `Retry-After: <seconds>` header (429, 503), capped at an hour; else 0. */
function retryAfterSecs(response) {
  const v = Number.parseInt(response.headers?.get?.('Retry-After') ?? '', 10);
  return Number.isSafeInteger(v) && v > 0 ? Math.min(v, 3600) : 0;
}

function errorFrom(response, body) {
  const err = body && typeof body === 'object' ? body.error : undefined;
  if (err && typeof err.code === 'string') {
    const e = new ApiError(response.status, err.code, codeText(err.code));
    const wait = retryAfterSecs(response);
    if (wait) {
      e.retryAfterSecs = wait;
      if (err.code === 'rate_limited') e.message = `${codeText(err.code)} (about ${wait} s)`;
    }
    return e;
  }
  return new ApiError(
    response.status,
    `http_${response.status}`,
    `The server answered ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`,
  );
}

export class Api {
  /**
   * @param {object} options
   * @param {string} [options.baseUrl]  '' in the browser (same origin)
   * @param {Function} [options.fetch]
   * @param {object|null} [options.tokens]  {access_token, refresh_token, access_expires_at}
   * @param {Function} [options.saveTokens]  async (tokens) => void, called with every rotated pair
   * @param {Function} [options.loadTokens]  async () => tokens|null, the stored pair (other tabs may have rotated it)
   * @param {Function} [options.withLock]  async (fn) => fn(), serializes refreshes across tabs
   * @param {Function} [options.onSessionEnded]  called when the session is definitely dead (refresh refused)
   * @param {Function} [options.now]
   */
  constructor(options = {}) {
    this.baseUrl = options.baseUrl ?? '';
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.tokens = options.tokens ?? null;
    this.saveTokens = options.saveTokens ?? null;
    this.loadTokens = options.loadTokens ?? null;
    this.withLock = options.withLock ?? ((fn) => fn());
    this.onSessionEnded = options.onSessionEnded ?? null;
    this.now = options.now ?? Date.now;
    this.refreshing = null;
  }

  setTokens(tokens) {
    this.tokens = tokens;
  }

  get(path, options) {
    return this.request('GET', path, options);
  }

  post(path, body, options) {
    return this.request('POST', path, { ...options, body });
  }

  put(path, body, options) {
    return this.request('PUT', path, { ...options, body });
  }

  /** DELETE, with an optional JSON body (DELETE /api/me carries the auth key). 204 answers null. */
  del(path, options) {
    return this.request('DELETE', path, options);
  }

  /**
   * One call. `auth: true` sends the access token (refreshing it as needed). `body` may be a
   * function, evaluated at each send (so a body that quotes the tokens sees refreshed ones).
   */
  async request(method, path, { body, auth = false } = {}) {
    if (auth) {
      if (!this.tokens) throw new ApiError(401, 'unauthorized', 'You are not signed in');
      if (this.tokens.access_expires_at && this.now() >= this.tokens.access_expires_at - EXPIRY_MARGIN_MS) {
        await this.refresh();
      }
    }
    let response = await this.send(method, path, body, auth);
    let parsed = await parseBody(response);
    if (auth && tokenRefused(response, parsed)) {
      await this.refresh(this.tokens?.access_token);
      response = await this.send(method, path, body, auth);
      parsed = await parseBody(response);
    }
    if (!response.ok) {
      const err = errorFrom(response, parsed);
      if (auth && tokenRefused(response, parsed)) this.ended();
      throw err;
    }
    if (parsed === undefined) throw new ApiError(response.status, 'invalid_response', 'The server sent a response that is not JSON');
    return parsed;
  }

  /**
   * A request whose answer the caller reads itself (tus uploads and file downloads: headers,
   * binary bodies): the access token is sent and refreshed as in request(), and a 401 about
   * the token is refreshed and sent once more. `body` is sent as is (bytes, never JSON);
   * `signal` aborts it (the AbortError is thrown unchanged). Returns the Response, whatever
   * its status; a network failure throws ApiError('network').
   */
  async raw(method, path, { headers = {}, body, signal } = {}) {
    if (!this.tokens) throw new ApiError(401, 'unauthorized', 'You are not signed in');
    if (this.tokens.access_expires_at && this.now() >= this.tokens.access_expires_at - EXPIRY_MARGIN_MS) {
      await this.refresh();
    }
    const once = async () => {
      try {
        return await this.fetch(this.baseUrl + path, {
          method,
          headers: { ...headers, Authorization: `Bearer ${this.tokens.access_token}` },
          body,
          signal,
          credentials: 'same-origin',
          cache: 'no-store',
          redirect: 'error',
        });
      } catch (cause) {
        if (cause?.name === 'AbortError') throw cause;
        const err = new ApiError(0, 'network', codeText('network'));
        err.cause = cause;
        throw err;
      }
    };
    let response = await once();
    if (response.status === 401) {
      const parsed = await parseBody(response.clone()).catch(() => undefined);
      if (tokenRefused(response, parsed)) {
        await this.refresh(this.tokens?.access_token);
        response = await once();
        if (response.status === 401) this.ended();
      }
    }
    return response;
  }

  /** The ApiError of a non-2xx Response from raw() (its `code`, the client's own sentence). */
  static async errorOf(response) {
    const parsed = await parseBody(response).catch(() => undefined);
    return errorFrom(response, parsed);
  }

  async send(method, path, body, auth) {
    if (typeof body === 'function') body = body();
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (auth) headers.Authorization = `Bearer ${this.tokens.access_token}`;
    try {
      return await this.fetch(this.baseUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
        cache: 'no-store',
        redirect: 'error',
      });
    } catch (cause) {
      const err = new ApiError(0, 'network', codeText('network'));
      err.cause = cause;
      throw err;
    }
  }

  /**
   * Spends the refresh token for a new pair. `staleAccess` is the access token a 401 came back
   * for: if the tokens changed meanwhile (another call refreshed them) nothing is spent.
   */
  refresh(staleAccess) {
    if (!this.refreshing) {
      this.refreshing = this.withLock(() => this.refreshLocked(staleAccess)).finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  async refreshLocked(staleAccess) {
    if (this.loadTokens) {
      const stored = await this.loadTokens();
      if (!stored) {
        this.tokens = null;
        this.ended();
        throw new ApiError(401, 'unauthorized', 'You have been signed out');
      }
      if (this.tokens && stored.refresh_token !== this.tokens.refresh_token) {
        this.tokens = stored; // another tab rotated them already
        return;
      }
    }
    if (!this.tokens) throw new ApiError(401, 'unauthorized', 'You are not signed in');
    if (staleAccess !== undefined && staleAccess !== this.tokens.access_token) return;
    const response = await this.send('POST', '/api/auth/refresh', { refresh_token: this.tokens.refresh_token }, false);
    const parsed = await parseBody(response);
    if (!response.ok) {
      const err = errorFrom(response, parsed);
      if (response.status === 401 || response.status === 400) {
        this.tokens = null;
        this.ended();
      }
      throw err;
    }
    const tokens = tokensFrom(parsed, this.now());
    this.tokens = tokens;
    if (this.saveTokens) await this.saveTokens(tokens);
  }

  ended() {
    if (this.onSessionEnded) {
      try {
        this.onSessionEnded();
      } catch {
        // a listener's failure must not hide the API error
      }
    }
  }
}

/** Whether GET /api/features lists the plugin `name` (e.g. 'admin_logs') as compiled in and enabled. */
export async function featureEnabled(api, name) {
  const answer = await api.get('/api/features');
  const plugins = Array.isArray(answer?.plugins) ? answer.plugins : [];
  return plugins.some((p) => p?.name === name && p.enabled === true);
}
