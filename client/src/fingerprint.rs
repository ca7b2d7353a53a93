//! Fingerprints and safety numbers (docs/PROTOCOL.md §5): iterated SHA-512 (5200 hashes in all)
//! over the user name and both SPKIs, 30 decimal digits; a pair's safety number is the
//! two fingerprints, the bytewise-lower user name's first.

use sha2::{Digest as _, Sha512};

/// Total number of SHA-512 computations.
pub const FINGERPRINT_HASHES: usize = 5200;

/// The 30-digit fingerprint of one user's public keys (PROTOCOL.md §5.1).
pub fn fingerprint(username: &str, enc_spki: &[u8], sign_spki: &[u8]) -> String {
    let mut h = Sha512::new()
        .chain_update(b"securechat/v1/fp|")
        .chain_update(username.as_bytes())
        .chain_update(b"|")
        .chain_update(enc_spki)
        .chain_update(sign_spki)
        .finalize();
    for _ in 1..FINGERPRINT_HASHES {
        h = Sha512::new()
            .chain_update(h)
            .chain_update(enc_spki)
            .chain_update(sign_spki)
            .finalize();
    }
    let mut out = String::with_capacity(30);
    for chunk in h[..30].chunks_exact(5) {
        let n = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        out.push_str(&format!("{:05}", n % 100_000));
    }
    out
}

/// The 60-digit safety number of a conversation: the fingerprint of the user whose name
/// is bytewise lower comes first. Arguments are `(username, fingerprint)` pairs.
/// PROTOCOL.md §5.2.
pub fn safety_number(a: (&str, &str), b: (&str, &str)) -> String {
    let (first, second) = if a.0.as_bytes() <= b.0.as_bytes() {
        (a, b)
    } else {
        (b, a)
    };
    format!("{}{}", first.1, second.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_digits_and_stable() {
        let fp = fingerprint("alice", b"enc", b"sign");
        assert_eq!(fp.len(), 30);
        assert!(fp.bytes().all(|c| c.is_ascii_digit()));
        assert_eq!(fp, fingerprint("alice", b"enc", b"sign"));
        assert_ne!(fp, fingerprint("alicf", b"enc", b"sign"));
        assert_ne!(fp, fingerprint("alice", b"enC", b"sign"));
        assert_ne!(fp, fingerprint("alice", b"enc", b"sigN"));
    }

    #[test]
    fn matches_independent_computation() {
        // Computed with Python: hashlib.sha512 iterated as in PROTOCOL.md §5.1, for
        // username "alice", enc_spki b"enc", sign_spki b"sign".
        assert_eq!(fingerprint("alice", b"enc", b"sign"), ALICE_ENC_SIGN);
    }

    const ALICE_ENC_SIGN: &str = "070956528550986690658685912860";

    #[test]
    fn safety_number_orders_by_username_bytes() {
        let a = ("alice", "111111111111111111111111111111");
        let b = ("bob", "222222222222222222222222222222");
        let ab = safety_number(a, b);
        assert_eq!(ab.len(), 60);
        assert_eq!(ab, format!("{}{}", a.1, b.1));
        assert_eq!(safety_number(b, a), ab);
        // Bytewise: '-' (0x2d) < '.' (0x2e) < '0'..'9' < '_' (0x5f) < 'a'..'z'.
        let names = ["a-b", "a.b", "a0b", "a_b", "aab", "ab"];
        for (i, x) in names.iter().enumerate() {
            for y in &names[i + 1..] {
                let s = safety_number((y, "Y"), (x, "X"));
                assert_eq!(s, "XY", "{x} must come before {y}");
            }
        }
        // A prefix sorts first.
        assert_eq!(safety_number(("bobby", "2"), ("bob", "1")), "12");
    }
}
