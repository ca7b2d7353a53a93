//! Password to keys (docs/PROTOCOL.md §2): NFC-normalize, PBKDF2-HMAC-SHA256 to a 32-byte master,
//! then HKDF-SHA256 (empty salt) with info `securechat/v1/auth` (the `auth_key` the server
//! sees) and `securechat/v1/wrap` (the `kek` that wraps the private-key bundle).

use hkdf::Hkdf;
use sha2::Sha256;
use unicode_normalization::UnicodeNormalization;

/// The only algorithm name in the `kdf` objects of v1.
pub const KDF_ALG: &str = "PBKDF2-SHA256";
/// The iteration count this client registers with (PROTOCOL.md §2.2).
pub const DEFAULT_ITERATIONS: u32 = 600_000;
/// The fewest iterations a prelogin answer may ask for (PROTOCOL.md §2.4), as in the
/// browser's `checkKdfParams`; [`crate::Client::with_min_kdf_iterations`] lowers it for
/// test servers.
pub const MIN_ITERATIONS: u32 = 600_000;
/// The most iterations a prelogin answer may ask for (so a server cannot hang the client).
pub const MAX_ITERATIONS: u32 = 10_000_000;
/// The length of a KDF salt.
pub const SALT_BYTES: usize = 16;
/// HKDF info for the authentication key.
pub const INFO_AUTH: &[u8] = b"securechat/v1/auth";
/// HKDF info for the key-encryption key.
pub const INFO_WRAP: &[u8] = b"securechat/v1/wrap";

/// The password as the KDF sees it: NFC, UTF-8 (PROTOCOL.md §2.1).
pub fn normalize_password(password: &str) -> String {
    password.nfc().collect()
}

/// Derive `(auth_key, kek)` from a password, a salt and an iteration count
/// (PROTOCOL.md §2.2–§2.3).
pub fn derive_keys(password: &str, salt: &[u8], iterations: u32) -> ([u8; 32], [u8; 32]) {
    let password = normalize_password(password);
    let mut master = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut master);
    // An empty HKDF salt is, by RFC 5869, the same as HashLen zero bytes; pass it
    // explicitly to mirror Web Crypto's `salt: new Uint8Array()`.
    let hk = Hkdf::<Sha256>::new(Some(&[]), &master);
    let mut auth_key = [0u8; 32];
    let mut kek = [0u8; 32];
    // 32 bytes is far below HKDF's 255 * 32 limit, so expand cannot fail.
    let ok = hk.expand(INFO_AUTH, &mut auth_key).is_ok() && hk.expand(INFO_WRAP, &mut kek).is_ok();
    debug_assert!(ok);
    master.fill(0);
    (auth_key, kek)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfc_and_decomposed_passwords_agree() {
        let composed = "Caf\u{e9} p\u{e4}ssw\u{f6}rd";
        let decomposed = "Cafe\u{301} pa\u{308}sswo\u{308}rd";
        assert_ne!(composed, decomposed);
        assert_eq!(normalize_password(decomposed), composed);
        assert_eq!(
            derive_keys(composed, b"0123456789abcdef", 2),
            derive_keys(decomposed, b"0123456789abcdef", 2)
        );
    }

    #[test]
    fn auth_key_and_kek_differ_and_depend_on_inputs() {
        let (a, k) = derive_keys("pw", b"salt-salt-salt-s", 3);
        assert_ne!(a, k);
        assert_ne!(derive_keys("pw", b"salt-salt-salt-t", 3).0, a);
        assert_ne!(derive_keys("pw", b"salt-salt-salt-s", 4).0, a);
        assert_ne!(derive_keys("pX", b"salt-salt-salt-s", 3).0, a);
    }

    #[test]
    fn pbkdf2_matches_rfc7914_vector() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256("passwd", "salt", 1, 64), first 32 bytes.
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"passwd", b"salt", 1, &mut out);
        assert_eq!(out[..8], [0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f]);
    }
}
