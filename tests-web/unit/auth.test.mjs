// register() and signIn() end to end against an in-memory fake of the REST contract.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { frontendModule } from './paths.mjs';
import { refDeriveKeys, refOpenBundle, refVerifySelfSig, refFingerprint } from './reference.mjs';

const { Api } = await frontendModule('api.js');
const auth = await frontendModule('auth.js');
const pins = await frontendModule('pins.js');
const b64 = await frontendModule('b64.js');
const c = await frontendModule('crypto.js');

const ITER = 600000;

function json(status, body) {
  return new Response(body === undefined ? null : JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}
const error = (status, code, message) => json(status, { error: { code, message } });

function fakeServer() {
  const users = new Map();
  const sessions = new Map();
  const log = [];
  let n = 0;
  const server = {
    users,
    log,
    tamper: null,
    /** (answer) => answer: doctors the login answer */
    tamperLogin: null,
    fetch: async (url, init) => {
      const body = init.body ? JSON.parse(init.body) : undefined;
      log.push({ url, method: init.method, body });
      const bearer = init.headers.Authorization?.replace(/^Bearer /, '');
      const who = bearer && sessions.get(bearer);
      if (url === '/api/auth/register') {
        if (users.has(body.username)) return error(409, 'username_taken', 'username taken');
        users.set(body.username, { ...body, key_version: 1 });
        return json(201, { username: body.username, key_version: 1 });
      }
      if (url === '/api/auth/prelogin') {
        const u = users.get(body.username);
        return json(200, { kdf: u ? u.kdf : { alg: 'PBKDF2-SHA256', iterations: ITER, salt: b64.encode(new Uint8Array(16)) } });
      }
      if (url === '/api/auth/login') {
        const u = users.get(body.username);
        if (!u || u.auth_key !== body.auth_key) return error(401, 'invalid_credentials', 'invalid credentials');
        const access = `A${++n}`;
        sessions.set(access, body.username);
        const answer = { access_token: access, refresh_token: `R${n}`, expires_in: 900, key_version: u.key_version, key_bundle: u.key_bundle, kdf: u.kdf };
        return json(200, server.tamperLogin ? server.tamperLogin(answer) : answer);
      }
      if (url === '/api/keys/rotate') {
        if (!who) return error(401, 'unauthorized', 'no');
        const u = users.get(who);
        if (body.auth_key === undefined) return error(401, 'reauthentication_required', 'send auth_key');
        if (body.auth_key !== u.auth_key) return error(401, 'invalid_credentials', 'wrong');
        if (body.key_version !== u.key_version + 1) return error(409, 'key_version_conflict', 'no');
        const { enc_public_key, sign_public_key, key_bundle, self_sig } = body;
        Object.assign(u, { key_version: body.key_version, enc_public_key, sign_public_key, key_bundle, self_sig });
        return json(200, { username: who, key_version: u.key_version });
      }
      if (url === '/api/auth/password') {
        if (!who) return error(401, 'unauthorized', 'no');
        const u = users.get(who);
        if (body.auth_key !== u.auth_key) return error(401, 'invalid_credentials', 'wrong');
        Object.assign(u, { auth_key: body.new_auth_key, kdf: body.kdf, key_bundle: body.key_bundle });
        for (const [token, name] of [...sessions]) if (name === who && token !== bearer) sessions.delete(token);
        return json(200, { ok: true });
      }
      if (url === '/api/me' && init.method === 'DELETE') {
        if (!who) return error(401, 'unauthorized', 'no');
        if (body?.auth_key !== users.get(who).auth_key) return error(401, 'invalid_credentials', 'wrong');
        users.delete(who);
        return new Response(null, { status: 204 });
      }
      if (url === '/api/auth/logout') {
        if (!who) return error(401, 'unauthorized', 'no');
        sessions.delete(bearer);
        return new Response(null, { status: 204 });
      }
      const m = url.match(/^\/api\/users\/([^/]+)\/keys$/);
      if (m) {
        if (!who) return error(401, 'unauthorized', 'no');
        const u = users.get(decodeURIComponent(m[1]));
        if (!u) return error(404, 'not_found', 'no such user');
        let keys = {
          username: u.username,
          key_version: u.key_version,
          enc_public_key: u.enc_public_key,
          sign_public_key: u.sign_public_key,
          self_sig: u.self_sig,
          fingerprint: refFingerprint(u.username, b64.decode(u.enc_public_key), b64.decode(u.sign_public_key)),
        };
        if (server.tamper) keys = server.tamper(keys);
        return json(200, keys);
      }
      return error(404, 'not_found', url);
    },
  };
  server.sessions = sessions;
  return server;
}

test('register sends the PROTOCOL.md §6.1 body, then signs in and returns a storable session', async () => {
  const server = fakeServer();
  const steps = [];
  const session = await auth.register(new Api({ fetch: server.fetch }), {
    username: 'alice',
    password: 'correct horse battery',
    onProgress: (s) => steps.push(s),
  });
  assert.deepEqual(steps, ['keys', 'kdf', 'register', 'login']);

  const reg = server.log.find((l) => l.url === '/api/auth/register').body;
  assert.deepEqual(Object.keys(reg).sort(), ['auth_key', 'enc_public_key', 'kdf', 'key_bundle', 'self_sig', 'sign_public_key', 'username']);
  assert.deepEqual(Object.keys(reg.kdf).sort(), ['alg', 'iterations', 'salt']);
  assert.equal(reg.kdf.alg, 'PBKDF2-SHA256');
  assert.equal(reg.kdf.iterations, 600000);
  const salt = b64.decode(reg.kdf.salt);
  assert.equal(salt.length, 16);
  const { authKey, kek } = refDeriveKeys('correct horse battery', salt, 600000);
  assert.equal(reg.auth_key, b64.encode(authKey));
  const bundle = refOpenBundle(kek, 'alice', 1, b64.decode(reg.key_bundle.iv), b64.decode(reg.key_bundle.ct));
  assert.deepEqual(Object.keys(bundle), ['enc', 'sign']);
  const encSpki = b64.decode(reg.enc_public_key);
  const signSpki = b64.decode(reg.sign_public_key);
  assert.equal(b64.decode(reg.self_sig).length, 64);
  assert.ok(refVerifySelfSig(signSpki, b64.decode(reg.self_sig), 'alice', 1, encSpki));
  // the password-derived secrets are never sent, the password itself neither
  const everything = JSON.stringify(server.log);
  assert.ok(!everything.includes('correct horse'));
  assert.ok(!everything.includes(b64.encode(kek)));

  assert.equal(session.username, 'alice');
  assert.equal(session.key_version, 1);
  assert.equal(session.access_token, 'A1');
  assert.equal(session.refresh_token, 'R1');
  assert.equal(session.fingerprint, refFingerprint('alice', encSpki, signSpki));
  assert.equal(session.encPrivateKey.extractable, false);
  assert.equal(session.signPrivateKey.extractable, false);
  for (const [k, v] of Object.entries(session)) {
    assert.ok(!(v instanceof Uint8Array || v instanceof ArrayBuffer), `${k} holds raw bytes`);
  }
});

test('signIn: prelogin -> derive -> login -> unwrap -> verify; same fingerprint as at registration', async () => {
  const server = fakeServer();
  const first = await auth.register(new Api({ fetch: server.fetch }), { username: 'bob', password: 'twelve chars!!' });
  const session = await auth.signIn(new Api({ fetch: server.fetch }), { username: 'bob', password: 'twelve chars!!' });
  assert.equal(session.fingerprint, first.fingerprint);
  assert.deepEqual(
    server.log.slice(-3).map((l) => l.url),
    ['/api/auth/prelogin', '/api/auth/login', '/api/users/bob/keys'],
  );
});

test('wrong password -> "Wrong username or password"', async () => {
  const server = fakeServer();
  await auth.register(new Api({ fetch: server.fetch }), { username: 'carol', password: 'right password' });
  const err = await auth.signIn(new Api({ fetch: server.fetch }), { username: 'carol', password: 'wrong password' }).catch((e) => e);
  assert.ok(err instanceof auth.AuthError);
  assert.equal(err.message, 'Wrong username or password');
  assert.equal(auth.authErrorMessage(err), 'Wrong username or password');
});

test('after an accepted login, a bundle that does not decrypt is "not yours" (not "wrong password"), and the session is revoked', async () => {
  const server = fakeServer();
  await auth.register(new Api({ fetch: server.fetch }), { username: 'dave', password: 'right password' });
  await auth.register(new Api({ fetch: server.fetch }), { username: 'mallory', password: 'other password' });
  const doctored = [
    // another account's (well-formed) bundle
    (answer) => ({ ...answer, key_bundle: server.users.get('mallory').key_bundle }),
    // dave's own bundle with one byte flipped
    (answer) => {
      const ct = b64.decode(answer.key_bundle.ct);
      ct[0] ^= 1;
      return { ...answer, key_bundle: { iv: answer.key_bundle.iv, ct: b64.encode(ct) } };
    },
  ];
  for (const tamper of doctored) {
    server.tamperLogin = tamper;
    const before = server.sessions.size;
    const err = await auth.signIn(new Api({ fetch: server.fetch }), { username: 'dave', password: 'right password' }).catch((e) => e);
    assert.ok(err instanceof auth.AuthError);
    assert.equal(err.code, 'foreign_key_bundle');
    assert.equal(auth.authErrorMessage(err), auth.FOREIGN_BUNDLE);
    assert.match(auth.authErrorMessage(err), /^The server returned a key bundle that is not yours/);
    assert.notEqual(auth.authErrorMessage(err), auth.WRONG_CREDENTIALS);
    assert.equal(server.log.at(-1).url, '/api/auth/logout');
    assert.equal(server.sessions.size, before);
  }
});

test('rotateKeys proves the password: the request carries the auth_key login would send', async () => {
  const server = fakeServer();
  const PW = 'rotate me please';
  const session = await auth.register(new Api({ fetch: server.fetch }), { username: 'ruth', password: PW });
  const authKey = server.users.get('ruth').auth_key;
  const api = new Api({ fetch: server.fetch, tokens: session });
  const answer = await auth.rotateKeys(api, { session, password: PW });
  assert.deepEqual(answer, { username: 'ruth', key_version: 2 });
  const sent = server.log.findLast((l) => l.url === '/api/keys/rotate').body;
  assert.equal(sent.auth_key, authKey);
  assert.deepEqual(Object.keys(sent).sort(), ['auth_key', 'enc_public_key', 'key_bundle', 'key_version', 'prev_sig', 'self_sig', 'sign_public_key']);
  assert.ok(auth.isOwnRotation('ruth', 2));
  assert.ok(!auth.isOwnRotation('ruth', 3));
  assert.ok(!JSON.stringify(server.log).includes(PW));

  // a wrong password: refused by the server, keys unchanged, not marked as this page's rotation
  const now = await auth.signIn(new Api({ fetch: server.fetch }), { username: 'ruth', password: PW });
  const err = await auth
    .rotateKeys(new Api({ fetch: server.fetch, tokens: now }), { session: now, password: 'not the password' })
    .catch((e) => e);
  assert.equal(err.code, 'invalid_credentials');
  assert.equal(server.users.get('ruth').key_version, 2);
  assert.ok(!auth.isOwnRotation('ruth', 3));

  // replaceKeys: rotation, then a new session that holds the new keys
  const fresh = await auth.replaceKeys(new Api({ fetch: server.fetch, tokens: now }), { session: now, password: PW });
  assert.equal(fresh.key_version, 3);
  assert.notEqual(fresh.fingerprint, now.fingerprint);
  assert.notEqual(fresh.access_token, now.access_token);
  const u = server.users.get('ruth');
  assert.equal(fresh.fingerprint, refFingerprint('ruth', b64.decode(u.enc_public_key), b64.decode(u.sign_public_key)));
});

function memory() {
  const map = new Map();
  return { map, get: async (k) => map.get(k), put: async (k, v) => void map.set(k, structuredClone(v)) };
}

test('the KDF parameters of a name signed in with before are remembered; another salt or fewer rounds is refused', async () => {
  const server = fakeServer();
  const PW = 'salted password';
  const mem = memory();
  await auth.register(new Api({ fetch: server.fetch }), { username: 'sam', password: PW, iterations: 700000, kdfMemory: mem });
  const real = server.users.get('sam').kdf;
  assert.deepEqual(mem.map.get('sam'), real, 'registration remembers the parameters');
  mem.map.clear();
  // a failed sign-in remembers nothing; a good one does
  await auth.signIn(new Api({ fetch: server.fetch }), { username: 'sam', password: 'wrong password', kdfMemory: mem }).catch(() => {});
  assert.equal(mem.map.size, 0);
  await auth.signIn(new Api({ fetch: server.fetch }), { username: 'sam', password: PW, kdfMemory: mem });
  assert.deepEqual(mem.map.get('sam'), real);

  const attacks = [
    { ...real, salt: b64.encode(new Uint8Array(16).fill(7)) },
    { ...real, iterations: 600000 },
  ];
  for (const kdf of attacks) {
    server.users.get('sam').kdf = kdf;
    const calls = server.log.length;
    const err = await auth.signIn(new Api({ fetch: server.fetch }), { username: 'sam', password: PW, kdfMemory: mem }).catch((e) => e);
    assert.equal(err.code, 'kdf_changed', JSON.stringify(kdf));
    assert.match(auth.authErrorMessage(err), /other password-hashing parameters/);
    assert.deepEqual(server.log.slice(calls).map((l) => l.url), ['/api/auth/prelogin'], 'nothing derived is sent');
    // rotation checks the same memory
    const err2 = await auth
      .rotateKeys(new Api({ fetch: server.fetch }), { session: { username: 'sam', key_version: 1 }, password: PW, kdfMemory: mem })
      .catch((e) => e);
    assert.equal(err2.code, 'kdf_changed');
  }
  assert.deepEqual(mem.map.get('sam'), real, 'the remembered parameters are not overwritten');
  server.users.get('sam').kdf = real;
  await auth.signIn(new Api({ fetch: server.fetch }), { username: 'sam', password: PW, kdfMemory: mem });
  // another name is not affected
  await auth.register(new Api({ fetch: server.fetch }), { username: 'tess', password: PW });
  await auth.signIn(new Api({ fetch: server.fetch }), { username: 'tess', password: PW, kdfMemory: mem });
});

test('a directory that swaps a public key is refused', async () => {
  const server = fakeServer();
  await auth.register(new Api({ fetch: server.fetch }), { username: 'erin', password: 'right password' });
  const other = await c.generateIdentity();
  server.tamper = (k) => ({ ...k, enc_public_key: b64.encode(other.encSpki) });
  const before = server.sessions.size;
  const err = await auth.signIn(new Api({ fetch: server.fetch }), { username: 'erin', password: 'right password' }).catch((e) => e);
  assert.equal(err.code, 'key_mismatch');
  assert.equal(server.sessions.size, before);
  server.tamper = (k) => ({ ...k, self_sig: b64.encode(new Uint8Array(64)) });
  const err2 = await auth.signIn(new Api({ fetch: server.fetch }), { username: 'erin', password: 'right password' }).catch((e) => e);
  assert.equal(err2.code, 'bad_self_sig');
});

test('a downgraded KDF from prelogin is refused before anything is derived or sent', async () => {
  const server = fakeServer();
  server.users.set('frank', { kdf: { alg: 'PBKDF2-SHA256', iterations: 1000, salt: b64.encode(new Uint8Array(16)) } });
  const err = await auth.signIn(new Api({ fetch: server.fetch }), { username: 'frank', password: 'whatever password' }).catch((e) => e);
  assert.equal(err.code, 'weak_kdf');
  assert.equal(server.log.at(-1).url, '/api/auth/prelogin');
});

test('a taken name reads "That username is taken"', async () => {
  const server = fakeServer();
  await auth.register(new Api({ fetch: server.fetch }), { username: 'gina', password: 'right password' });
  const err = await auth.register(new Api({ fetch: server.fetch }), { username: 'gina', password: 'other password' }).catch((e) => e);
  assert.equal(auth.authErrorMessage(err), 'That username is taken');
});

test('a directory entry is checked: the fingerprint computed locally, the self-signature verified (pins.fetchDirectoryKeys)', async () => {
  const server = fakeServer();
  const me = await auth.register(new Api({ fetch: server.fetch }), { username: 'hank', password: 'right password' });
  const api = new Api({ fetch: server.fetch, tokens: me });
  const k = await pins.fetchDirectoryKeys(api, 'hank');
  assert.equal(k.fingerprint, me.fingerprint);
  assert.ok(k.selfSigValid);
  assert.ok(k.serverFingerprintMatches);
  server.tamper = (keys) => ({ ...keys, fingerprint: '0'.repeat(30) });
  assert.equal((await pins.fetchDirectoryKeys(api, 'hank')).serverFingerprintMatches, false);
  server.tamper = (keys) => ({ ...keys, self_sig: keys.self_sig.replace(/^./, (ch) => (ch === 'A' ? 'B' : 'A')) });
  assert.equal((await pins.fetchDirectoryKeys(api, 'hank')).selfSigValid, false);
});

test('client-side validation of user names and passwords', () => {
  assert.equal(auth.normalizeUsername('  Alice.B_9-  '), 'alice.b_9-');
  assert.equal(auth.normalizeUsername('\u212Aevin'), '\u212Aevin'); // no Unicode folding into ASCII
  assert.equal(auth.usernameProblem('alice'), null);
  for (const bad of ['al', 'a'.repeat(33), 'al ice', 'alice!', '\u212Aevin', 'ALICE']) assert.ok(auth.usernameProblem(bad), bad);
  assert.equal(auth.usernameProblem('a'.repeat(32)), null);
  assert.ok(auth.passwordProblem('short'));
  assert.ok(auth.passwordProblem('twelve chars', 'twelve charz').includes('match'));
  assert.equal(auth.passwordProblem('twelve chars', 'twelve chars'), null);
  assert.equal(auth.passwordProblem('twelve chars'), null);
});

// issue #17: change password and delete account
test('changePassword re-wraps the same keys under a new salt in one POST; the old password stops working, the new one signs in to the same keys', async () => {
  const server = fakeServer();
  const api = new Api({ fetch: server.fetch });
  const session = await auth.register(api, { username: 'alice', password: 'correct horse battery' });
  const before = server.users.get('alice');
  const oldSalt = before.kdf.salt;
  await assert.rejects(
    auth.changePassword(api, { session, password: 'not the password!', newPassword: 'a brand new password' }),
    (err) => err instanceof auth.AuthError && err.code === 'invalid_credentials',
  );
  assert.equal(server.users.get('alice').kdf.salt, oldSalt, 'a wrong password changes nothing');
  await assert.rejects(auth.changePassword(api, { session, password: 'correct horse battery', newPassword: 'short' }), (err) => err.code === 'weak_password');
  const sessionsBefore = server.sessions.size;
  const { kdf, indexKey } = await auth.changePassword(api, { session, password: 'correct horse battery', newPassword: 'a brand new password' });
  assert.notEqual(kdf.salt, oldSalt);
  assert.equal(indexKey.extractable, false);
  const post = server.log.filter((l) => l.url === '/api/auth/password');
  assert.equal(post.length, 1, 'a wrong password is refused at the throwaway sign-in, before any POST');
  assert.deepEqual(Object.keys(post[0].body).sort(), ['auth_key', 'kdf', 'key_bundle', 'new_auth_key', 'refresh_token']);
  assert.equal(post[0].body.refresh_token, api.tokens.refresh_token);
  assert.ok(server.sessions.size <= sessionsBefore, 'the throwaway sign-in does not outlive the change');
  assert.ok(!JSON.stringify(server.log).includes('a brand new password'));
  await assert.rejects(auth.signIn(new Api({ fetch: server.fetch }), { username: 'alice', password: 'correct horse battery' }), /Wrong username or password/);
  const again = await auth.signIn(new Api({ fetch: server.fetch }), { username: 'alice', password: 'a brand new password' });
  assert.equal(again.fingerprint, session.fingerprint, 'the same identity keys');
  assert.equal(again.key_version, 1);
});

test('deleteAccount sends the current auth key with DELETE /api/me and refuses a wrong password', async () => {
  const server = fakeServer();
  const api = new Api({ fetch: server.fetch });
  const session = await auth.register(api, { username: 'alice', password: 'correct horse battery' });
  await assert.rejects(auth.deleteAccount(api, { session, password: 'wrong password here' }), (err) => err.code === 'invalid_credentials');
  assert.ok(server.users.has('alice'));
  await auth.deleteAccount(api, { session, password: 'correct horse battery' });
  assert.equal(server.users.has('alice'), false);
});

test('the search index key is derived from the kek with its own info string, non-extractable', async () => {
  const kek = new Uint8Array(32).fill(7);
  const k1 = await c.deriveIndexKey(kek);
  assert.equal(k1.extractable, false);
  assert.deepEqual(k1.usages.sort(), ['decrypt', 'encrypt']);
  // the same kek gives the same key: what one encrypts, the other decrypts
  const k2 = await c.deriveIndexKey(kek);
  const iv = new Uint8Array(12);
  const ct = await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, k1, new Uint8Array([1, 2, 3]));
  assert.deepEqual(new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv }, k2, ct)), new Uint8Array([1, 2, 3]));
  // and it is not the kek itself used as an AES key
  const raw = await crypto.subtle.importKey('raw', kek, 'AES-GCM', false, ['decrypt']);
  await assert.rejects(crypto.subtle.decrypt({ name: 'AES-GCM', iv }, raw, ct));
});
