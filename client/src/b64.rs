//! base64url without padding ("b64"), the encoding of every binary value on the wire
//! (docs/PROTOCOL.md §1.1). Decoding is strict: padding, the standard alphabet (`+`, `/`),
//! whitespace and non-canonical trailing bits are all rejected.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Encode bytes as base64url without padding.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decode strict base64url without padding.
pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(text)
}

/// Decode strict base64url into exactly `N` bytes.
pub fn decode_array<const N: usize>(text: &str) -> crate::Result<[u8; N]> {
    let bytes = decode(text)?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| crate::Error::Decode(format!("expected {N} bytes, got {len}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_alphabet() {
        let bytes: Vec<u8> = (0u8..=255).collect();
        let text = encode(&bytes);
        assert!(!text.contains('=') && !text.contains('+') && !text.contains('/'));
        assert_eq!(decode(&text).unwrap(), bytes);
        assert_eq!(encode([0xfb, 0xff]), "-_8");
        assert_eq!(decode("-_8").unwrap(), vec![0xfb, 0xff]);
    }

    #[test]
    fn rejects_padding() {
        assert!(decode("-_8=").is_err());
        assert!(decode("YQ==").is_err());
        assert!(decode("YQ").is_ok());
        assert!(decode("YWI=").is_err());
    }

    #[test]
    fn rejects_standard_alphabet() {
        assert!(decode("+/8").is_err());
        assert!(decode("ab+c").is_err());
        assert!(decode("ab/c").is_err());
    }

    #[test]
    fn rejects_whitespace_and_trailing_bits() {
        assert!(decode("YW I").is_err());
        assert!(decode("YWI\n").is_err());
        // "YR" decodes to 'a' with non-zero trailing bits: not canonical.
        assert!(decode("YR").is_err());
        // A single leftover symbol is never valid.
        assert!(decode("YWJjZ").is_err());
    }

    #[test]
    fn decode_array_checks_length() {
        assert_eq!(decode_array::<2>("-_8").unwrap(), [0xfb, 0xff]);
        assert!(decode_array::<3>("-_8").is_err());
    }
}
