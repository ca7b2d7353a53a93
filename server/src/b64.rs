//! Owns the wire encoding of binary values: base64url without padding. Decoding is strict —
//! padding, the standard alphabet and non-canonical trailing bits are all refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Decodes and insists on an exact length.
pub fn decode_len(text: &str, len: usize) -> Option<Vec<u8>> {
    decode(text).filter(|b| b.len() == len)
}

/// Whether `text` decodes (as strictly as [`decode`]), without keeping the bytes: it is
/// decoded a slice at a time into a buffer on the stack, so checking costs no allocation.
pub fn is_valid(text: &str) -> bool {
    // 1,024 characters (a multiple of 4) decode to at most 768 bytes, and every slice but
    // the last is a whole number of 4-character groups.
    let mut buf = [0u8; 768];
    text.as_bytes()
        .chunks(1024)
        .all(|chunk| URL_SAFE_NO_PAD.decode_slice(chunk, &mut buf).is_ok())
}

/// The number of bytes `text` decodes to if it is valid (meaningless otherwise).
pub fn decoded_len(text: &str) -> usize {
    text.len() / 4 * 3 + (text.len() % 4).saturating_sub(1)
}

/// Whether `text` is valid and decodes to exactly `len` bytes.
pub fn is_len(text: &str, len: usize) -> bool {
    decoded_len(text) == len && is_valid(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_refuses_padding_and_the_standard_alphabet() {
        assert_eq!(decode("AAE"), Some(vec![0, 1]));
        assert_eq!(decode("AAE="), None);
        assert_eq!(decode("+/8"), None);
        assert_eq!(decode("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(decode("AAF"), None, "non-canonical trailing bits");
    }

    #[test]
    fn checking_without_decoding_agrees_with_decoding() {
        let long = encode(vec![7u8; 2000]);
        let mut bad_middle = long.clone();
        bad_middle.replace_range(1500..1501, "+");
        for text in [
            "",
            "A",
            "AA",
            "AAE",
            "AAE=",
            "+/8",
            "-_8",
            "AAF",
            "AAAA",
            "AAAAA",
            long.as_str(),
            &long[..1027],
            &long[..1025],
            bad_middle.as_str(),
        ] {
            let decoded = decode(text);
            assert_eq!(is_valid(text), decoded.is_some(), "{text:?}");
            if let Some(bytes) = decoded {
                assert_eq!(decoded_len(text), bytes.len(), "{text:?}");
                assert!(is_len(text, bytes.len()));
                assert!(!is_len(text, bytes.len() + 1));
            }
        }
    }
}
