//! Owns what a user name is: lower-case `[a-z0-9_.-]{3,32}`, checked once when a name
//! enters the server and carried as a [`Username`] from then on.
//!
//! Invariant: a `Username` value is always a valid name; the only way to make one is
//! [`Username::parse`]. This module depends on nothing else in the crate, so every domain
//! can use it without importing another domain.

use std::fmt;

/// A user name that passed [`Username::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

/// Why a text is not a user name (maps to the API code `invalid_username`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("usernames are 3 to 32 characters of a-z, 0-9, '_', '.' and '-'")]
pub struct InvalidUsername;

impl Username {
    pub const MIN_LEN: usize = 3;
    pub const MAX_LEN: usize = 32;

    /// Accepts `text` if it is a valid name, exactly as given (no case folding, no trimming).
    pub fn parse(text: &str) -> Result<Username, InvalidUsername> {
        if Self::is_valid(text) {
            Ok(Username(text.to_owned()))
        } else {
            Err(InvalidUsername)
        }
    }

    /// Whether `text` is a valid name, for callers that only need the answer (a lookup of
    /// a name that cannot exist answers "not found" without asking the database).
    pub fn is_valid(text: &str) -> bool {
        (Self::MIN_LEN..=Self::MAX_LEN).contains(&text.len())
            && text.bytes().all(Self::is_name_byte)
    }

    /// Whether `b` may appear in a name (also what a directory search may contain).
    pub fn is_name_byte(b: u8) -> bool {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Username {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_of_three_to_thirty_two_allowed_bytes_parses_as_given() {
        for ok in ["abc", "a.b-c_d", "user123", &"z".repeat(32)] {
            assert_eq!(
                Username::parse(ok).map(Username::into_string),
                Ok(ok.to_owned())
            );
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "ab",
            "Alice",
            "al ice",
            "al/ice",
            "ålice",
            " alice",
            "alice\n",
            &"z".repeat(33),
        ] {
            assert_eq!(Username::parse(bad), Err(InvalidUsername), "{bad:?}");
            assert!(!Username::is_valid(bad));
        }
    }
}
