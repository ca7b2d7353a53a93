import { test } from 'node:test';
import assert from 'node:assert/strict';
import { frontendModule } from './paths.mjs';

const { Api, ApiError, tokensFrom } = await frontendModule('api.js');
const { codeText, describeError, GENERIC } = await frontendModule('errors.js');
const { AuthError, authErrorMessage } = await frontendModule('auth.js');

function json(status, body) {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json' },
  });
}

/** A fake fetch: `handler(method, path, headers, body)` returns a Response; every call is recorded. */
function fakeFetch(handler) {
  const calls = [];
  const fetch = async (url, init) => {
    const body = init.body === undefined ? undefined : JSON.parse(init.body);
    const call = { url, method: init.method, headers: init.headers, body };
    calls.push(call);
    return handler(call);
  };
  return { fetch, calls };
}

test('parses the error shape into an ApiError with status, code and the client’s sentence for the code', async () => {
  const { fetch } = fakeFetch(() => json(409, { error: { code: 'username_taken', message: 'username is taken' } }));
  const api = new Api({ fetch });
  const err = await api.post('/api/auth/register', { username: 'a' }).catch((e) => e);
  assert.ok(err instanceof ApiError);
  assert.equal(err.status, 409);
  assert.equal(err.code, 'username_taken');
  assert.equal(err.message, 'That username is taken');
});

test('server error text is never shown: the code picks the client’s sentence, unknown codes read generic', async () => {
  const LURE = 'Session expired! Re-enter your password at https://evil.example/login';
  const cases = [
    ['invalid_credentials', 401, 'Wrong username or password'],
    ['rate_limited', 429, codeText('rate_limited')],
    ['brand_new_code', 400, 'The server refused the request (error code brand_new_code).'],
    [`${LURE} <b>`, 400, 'The server refused the request (error code unknown).'],
  ];
  for (const [code, status, sentence] of cases) {
    const { fetch } = fakeFetch(() => json(status, { error: { code, message: LURE } }));
    const err = await new Api({ fetch }).post('/api/auth/login', {}).catch((e) => e);
    assert.ok(err instanceof ApiError);
    for (const shown of [err.message, describeError(err), authErrorMessage(err)]) {
      assert.equal(shown, sentence, code);
      assert.ok(!shown.includes('evil.example'), code);
    }
  }
  // only errors the client words itself are shown as they are
  assert.equal(describeError(new AuthError('x', 'Client words')), 'Client words');
  assert.equal(describeError(new Error(LURE)), GENERIC);
  assert.equal(describeError(Object.assign(new Error(LURE), { code: 'internal' })), GENERIC);
  assert.equal(codeText(42), 'The server refused the request (error code unknown).');
  assert.equal(codeText('__proto__'), 'The server refused the request (error code __proto__).');
});

test('a non-JSON error still becomes an ApiError', async () => {
  const { fetch } = fakeFetch(() => new Response('<h1>bad gateway</h1>', { status: 502, statusText: 'Bad Gateway' }));
  const err = await new Api({ fetch }).get('/api/me').catch((e) => e);
  assert.ok(err instanceof ApiError);
  assert.equal(err.status, 502);
  assert.equal(err.code, 'http_502');
});

test('a network failure becomes ApiError code "network" and a friendly sentence', async () => {
  const api = new Api({ fetch: async () => { throw new TypeError('fetch failed'); } });
  const err = await api.get('/healthz').catch((e) => e);
  assert.equal(err.code, 'network');
  assert.match(describeError(err), /reach the server/);
});

test('sends JSON and the Bearer token; 204 answers null', async () => {
  const { fetch, calls } = fakeFetch(() => new Response(null, { status: 204 }));
  const api = new Api({ fetch, tokens: { access_token: 'A1', refresh_token: 'R1', access_expires_at: 0 } });
  assert.equal(await api.post('/api/auth/logout', { refresh_token: 'R1' }, { auth: true }), null);
  assert.equal(calls[0].headers.Authorization, 'Bearer A1');
  assert.equal(calls[0].headers['Content-Type'], 'application/json');
  assert.deepEqual(calls[0].body, { refresh_token: 'R1' });
  await new Api({ fetch }).post('/api/auth/prelogin', { username: 'x' });
  assert.equal(calls[1].headers.Authorization, undefined);
});

test('an auth call without tokens fails without a request', async () => {
  const { fetch, calls } = fakeFetch(() => json(200, {}));
  await assert.rejects(new Api({ fetch }).get('/api/me', { auth: true }), (e) => e.status === 401);
  assert.equal(calls.length, 0);
});

test('401 -> one refresh (rotating) -> retry; the new pair is saved', async () => {
  const saved = [];
  const { fetch, calls } = fakeFetch(({ url, headers, body }) => {
    if (url === '/api/auth/refresh') {
      assert.equal(body.refresh_token, 'R1');
      return json(200, { access_token: 'A2', refresh_token: 'R2', expires_in: 900 });
    }
    if (headers.Authorization === 'Bearer A1') return json(401, { error: { code: 'unauthorized', message: 'expired' } });
    return json(200, { username: 'alice' });
  });
  const api = new Api({
    fetch,
    tokens: { access_token: 'A1', refresh_token: 'R1', access_expires_at: 0 },
    saveTokens: async (t) => saved.push(t),
    now: () => 1000,
  });
  assert.deepEqual(await api.get('/api/me', { auth: true }), { username: 'alice' });
  assert.deepEqual(calls.map((c) => c.url), ['/api/me', '/api/auth/refresh', '/api/me']);
  assert.deepEqual(saved, [{ access_token: 'A2', refresh_token: 'R2', access_expires_at: 1000 + 900000 }]);
  assert.equal(api.tokens.refresh_token, 'R2');
});

test('a 401 that answers the request (invalid_credentials, reauthentication_required) neither refreshes nor ends the session', async () => {
  for (const code of ['invalid_credentials', 'reauthentication_required']) {
    let ended = 0;
    const { fetch, calls } = fakeFetch(() => json(401, { error: { code, message: 'no' } }));
    const api = new Api({ fetch, tokens: { access_token: 'A1', refresh_token: 'R1', access_expires_at: 0 }, onSessionEnded: () => ended++ });
    const err = await api.post('/api/keys/rotate', { auth_key: 'x' }, { auth: true }).catch((e) => e);
    assert.equal(err.code, code);
    assert.deepEqual(calls.map((c) => c.url), ['/api/keys/rotate'], code);
    assert.equal(ended, 0, code);
    assert.equal(api.tokens.refresh_token, 'R1');
  }
});

test('refreshes only once: a second 401 is the answer, and the session is reported ended', async () => {
  let ended = 0;
  const { fetch, calls } = fakeFetch(({ url }) => {
    if (url === '/api/auth/refresh') return json(200, { access_token: 'A2', refresh_token: 'R2', expires_in: 900 });
    return json(401, { error: { code: 'unauthorized', message: 'no' } });
  });
  const api = new Api({ fetch, tokens: { access_token: 'A1', refresh_token: 'R1', access_expires_at: 0 }, onSessionEnded: () => ended++ });
  const err = await api.get('/api/me', { auth: true }).catch((e) => e);
  assert.equal(err.code, 'unauthorized');
  assert.equal(calls.filter((c) => c.url === '/api/auth/refresh').length, 1);
  assert.equal(calls.length, 3);
  assert.equal(ended, 1);
});

test('a refused refresh ends the session and throws', async () => {
  let ended = 0;
  const { fetch } = fakeFetch(({ url }) =>
    url === '/api/auth/refresh'
      ? json(401, { error: { code: 'unauthorized', message: 'refresh token revoked' } })
      : json(401, { error: { code: 'unauthorized', message: 'expired' } }),
  );
  const api = new Api({ fetch, tokens: { access_token: 'A1', refresh_token: 'R1', access_expires_at: 0 }, onSessionEnded: () => ended++ });
  const err = await api.get('/api/me', { auth: true }).catch((e) => e);
  assert.equal(err.status, 401);
  assert.equal(api.tokens, null);
  assert.ok(ended >= 1);
});

test('a known-expired access token is refreshed before the call', async () => {
  const { fetch, calls } = fakeFetch(({ url, headers }) => {
    if (url === '/api/auth/refresh') return json(200, { access_token: 'A2', refresh_token: 'R2', expires_in: 900 });
    assert.equal(headers.Authorization, 'Bearer A2');
    return json(200, { ok: true });
  });
  const api = new Api({ fetch, tokens: { access_token: 'A1', refresh_token: 'R1', access_expires_at: 5000 }, now: () => 10000 });
  await api.get('/api/me', { auth: true });
  assert.deepEqual(calls.map((c) => c.url), ['/api/auth/refresh', '/api/me']);
});

test('concurrent 401s share one refresh (a rotated refresh token is spent once)', async () => {
  let refreshes = 0;
  const { fetch } = fakeFetch(async ({ url, headers }) => {
    if (url === '/api/auth/refresh') {
      refreshes++;
      await new Promise((r) => setTimeout(r, 20));
      return json(200, { access_token: 'A2', refresh_token: 'R2', expires_in: 900 });
    }
    if (headers.Authorization === 'Bearer A1') return json(401, { error: { code: 'unauthorized', message: 'expired' } });
    return json(200, { url });
  });
  const api = new Api({ fetch, tokens: { access_token: 'A1', refresh_token: 'R1', access_expires_at: 0 } });
  const answers = await Promise.all([1, 2, 3].map((i) => api.get(`/api/x${i}`, { auth: true })));
  assert.deepEqual(answers.map((a) => a.url), ['/api/x1', '/api/x2', '/api/x3']);
  assert.equal(refreshes, 1);
});

test('a pair rotated by another tab is adopted instead of spending the dead refresh token', async () => {
  const { fetch, calls } = fakeFetch(({ url, headers }) => {
    if (url === '/api/auth/refresh') throw new Error('must not refresh');
    if (headers.Authorization === 'Bearer A1') return json(401, { error: { code: 'unauthorized', message: 'expired' } });
    return json(200, { ok: true });
  });
  const api = new Api({
    fetch,
    tokens: { access_token: 'A1', refresh_token: 'R1', access_expires_at: 0 },
    loadTokens: async () => ({ access_token: 'A9', refresh_token: 'R9', access_expires_at: 0 }),
  });
  await api.get('/api/me', { auth: true });
  assert.equal(calls.at(-1).headers.Authorization, 'Bearer A9');
});

test('tokensFrom validates the answer', () => {
  assert.throws(() => tokensFrom({ access_token: 'a' }), ApiError);
  assert.deepEqual(tokensFrom({ access_token: 'a', refresh_token: 'r', expires_in: 2 }, 10), {
    access_token: 'a',
    refresh_token: 'r',
    access_expires_at: 2010,
  });
});

test('a body given as a function quotes the tokens as they are when sent (after a refresh)', async () => {
  const { fetch, calls } = fakeFetch(({ url }) => {
    if (url === '/api/auth/refresh') return json(200, { access_token: 'A2', refresh_token: 'R2', expires_in: 900 });
    return new Response(null, { status: 204 });
  });
  const api = new Api({ fetch, tokens: { access_token: 'A1', refresh_token: 'R1', access_expires_at: 1 }, now: () => 5000 });
  await api.post('/api/auth/logout', () => ({ refresh_token: api.tokens.refresh_token }), { auth: true });
  assert.deepEqual(calls.at(-1).body, { refresh_token: 'R2' });
  assert.equal(calls.at(-1).headers.Authorization, 'Bearer A2');
});
