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
}
