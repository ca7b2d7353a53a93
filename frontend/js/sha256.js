// Incremental SHA-256 (FIPS 180-4). Web Crypto's digest() only hashes a whole buffer at
// once, and a file of any size must be hashed in slices read one after another (uploads.js
// reads with File.slice, the download side hashes record by record), so this keeps the
// running state: new Sha256(), update(bytes) as often as needed, digest() -> Uint8Array(32).
// Runs unchanged in the browser and in Node >= 20. No dependencies.

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

const INIT = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

export class Sha256 {
  constructor() {
    this.h = new Uint32Array(INIT);
    this.w = new Uint32Array(64);
    this.block = new Uint8Array(64);
    this.fill = 0; // bytes waiting in `block`
    this.length = 0; // bytes hashed so far (a Number: exact up to 2^53)
    this.done = false;
  }

  /** Hashes 64-byte blocks of `bytes` from `offset`, `count` blocks. */
  compress(bytes, offset, count) {
    const w = this.w;
    const h = this.h;
    let h0 = h[0], h1 = h[1], h2 = h[2], h3 = h[3], h4 = h[4], h5 = h[5], h6 = h[6], h7 = h[7];
    for (let b = 0; b < count; b++) {
      let p = offset + b * 64;
      for (let t = 0; t < 16; t++, p += 4) {
        w[t] = (bytes[p] << 24) | (bytes[p + 1] << 16) | (bytes[p + 2] << 8) | bytes[p + 3];
      }
      for (let t = 16; t < 64; t++) {
        const x = w[t - 15];
        const y = w[t - 2];
        const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
        const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
        w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
      }
      let a = h0, bb = h1, c = h2, d = h3, e = h4, f = h5, g = h6, hh = h7;
      for (let t = 0; t < 64; t++) {
        const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        const ch = (e & f) ^ (~e & g);
        const t1 = (hh + S1 + ch + K[t] + w[t]) | 0;
        const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        const maj = (a & bb) ^ (a & c) ^ (bb & c);
        const t2 = (S0 + maj) | 0;
        hh = g;
        g = f;
        f = e;
        e = (d + t1) | 0;
        d = c;
        c = bb;
        bb = a;
        a = (t1 + t2) | 0;
      }
      h0 = (h0 + a) | 0;
      h1 = (h1 + bb) | 0;
      h2 = (h2 + c) | 0;
      h3 = (h3 + d) | 0;
      h4 = (h4 + e) | 0;
      h5 = (h5 + f) | 0;
      h6 = (h6 + g) | 0;
      h7 = (h7 + hh) | 0;
    }
    h[0] = h0; h[1] = h1; h[2] = h2; h[3] = h3; h[4] = h4; h[5] = h5; h[6] = h6; h[7] = h7;
  }

  /** Adds bytes (a Uint8Array, ArrayBuffer or other view). Returns this. */
  update(data) {
    if (this.done) throw new Error('sha256: update after digest');
    let bytes;
    if (data instanceof Uint8Array) bytes = data;
    else if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
    else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    else throw new TypeError('sha256: bytes expected');
    let i = 0;
    const n = bytes.length;
    this.length += n;
    if (this.fill) {
      const take = Math.min(64 - this.fill, n);
      this.block.set(bytes.subarray(0, take), this.fill);
      this.fill += take;
      i = take;
      if (this.fill < 64) return this;
      this.compress(this.block, 0, 1);
      this.fill = 0;
    }
    const whole = Math.floor((n - i) / 64);
    if (whole) {
      this.compress(bytes, i, whole);
      i += whole * 64;
    }
    if (i < n) {
      this.block.set(bytes.subarray(i), 0);
      this.fill = n - i;
    }
    return this;
  }

  /** The 32-byte digest; the hasher cannot be used afterwards. */
  digest() {
    if (this.done) throw new Error('sha256: digest called twice');
    this.done = true;
    const bits = this.length * 8;
    const tail = new Uint8Array(this.fill < 56 ? 64 : 128);
    tail.set(this.block.subarray(0, this.fill));
    tail[this.fill] = 0x80;
    const view = new DataView(tail.buffer);
    view.setUint32(tail.length - 8, Math.floor(bits / 0x100000000));
    view.setUint32(tail.length - 4, bits >>> 0);
    this.compress(tail, 0, tail.length / 64);
    const out = new Uint8Array(32);
    const outView = new DataView(out.buffer);
    for (let t = 0; t < 8; t++) outView.setUint32(t * 4, this.h[t]);
    return out;
  }
}

/** SHA-256 of one buffer (a convenience for tests and small inputs). */
export function sha256(bytes) {
  return new Sha256().update(bytes).digest();
}
