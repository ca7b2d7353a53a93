// An independent implementation of the docs/PROTOCOL.md formats on node:crypto (not Web Crypto),
// used to cross-check frontend/js/crypto.js.
import nodeCrypto from 'node:crypto';

export function refDeriveKeys(password, salt, iterations) {
  const master = nodeCrypto.pbkdf2Sync(Buffer.from(password.normalize('NFC'), 'utf8'), salt, iterations, 32, 'sha256');
  const hkdf = (info) => new Uint8Array(nodeCrypto.hkdfSync('sha256', master, Buffer.alloc(0), Buffer.from(info), 32));
  return { authKey: hkdf('securechat/v1/auth'), kek: hkdf('securechat/v1/wrap') };
}

export function refFingerprint(username, encSpki, signSpki) {
  const keys = Buffer.concat([encSpki, signSpki]);
  let h = nodeCrypto.createHash('sha512').update(Buffer.from(`securechat/v1/fp|${username}|`)).update(keys).digest();
  for (let i = 0; i < 5199; i++) h = nodeCrypto.createHash('sha512').update(h).update(keys).digest();
  let out = '';
  for (let c = 0; c < 6; c++) out += String(Number(h.readUIntBE(c * 5, 5) % 100000)).padStart(5, '0');
  return out;
}

export function refOpenBundle(kek, username, keyVersion, ivBytes, ctBytes) {
  const tag = ctBytes.subarray(ctBytes.length - 16);
  const body = ctBytes.subarray(0, ctBytes.length - 16);
  const d = nodeCrypto.createDecipheriv('aes-256-gcm', kek, ivBytes);
  d.setAAD(Buffer.from(`securechat/v1/keys|${username}|${keyVersion}`));
  d.setAuthTag(tag);
  return JSON.parse(Buffer.concat([d.update(body), d.final()]).toString('utf8'));
}

export function refVerifySelfSig(signSpki, sig, username, keyVersion, encSpki) {
  const key = nodeCrypto.createPublicKey({ key: Buffer.from(signSpki), format: 'der', type: 'spki' });
  const message = Buffer.concat([Buffer.from(`securechat/v1/self|${username}|${keyVersion}|`), encSpki, signSpki]);
  return nodeCrypto.verify('sha256', message, { key, dsaEncoding: 'ieee-p1363' }, sig);
}
