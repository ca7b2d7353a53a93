//! Owns the server's own secrets: the JWT signing key and the prelogin HMAC key. Each comes
//! from config or is generated once into the data dir as a file of mode 0600.
//!
//! Invariant: the server never starts with a signing secret shorter than 32 bytes or one
//! that is a known default or trivially guessable.

use std::io::Write;
use std::path::Path;

use rand::RngCore;

/// Reads the secret in `path`, or creates it with 32 random bytes (hex) if it doesn't exist.
pub fn load_or_create(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.exists() {
        check_mode(path)?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read secret file {}: {e}", path.display()))?;
        return Ok(text.trim().as_bytes().to_vec());
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let text = hex::encode(raw);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create secret file {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    tracing::info!(path = %path.display(), "generated a new secret");
    Ok(text.into_bytes())
}

#[cfg(unix)]
fn check_mode(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "secret file {} has mode {mode:o}; it must not be readable by group or others (chmod 600)",
            path.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

const KNOWN_DEFAULTS: &[&str] = &[
    "secret",
    "changeme",
    "change-me",
    "change_me",
    "your-secret-key",
    "your_secret_key",
    "supersecret",
    "jwt-secret",
    "jwt_secret",
    "securechat",
    "password",
    "0123456789",
    "abcdefghijklmnopqrstuvwxyz",
];

/// Refuses secrets an attacker could guess: too short, one repeated byte, or built from a
/// well-known placeholder.
pub fn check_strength(secret: &[u8]) -> anyhow::Result<()> {
    if secret.len() < 32 {
        anyhow::bail!(
            "the JWT secret is {} bytes; at least 32 are required",
            secret.len()
        );
    }
    if secret.iter().all(|b| *b == secret[0]) {
        anyhow::bail!("the JWT secret is one repeated character; use a random secret");
    }
    let lower = String::from_utf8_lossy(secret).to_ascii_lowercase();
    for known in KNOWN_DEFAULTS {
        let stripped = lower.replace(known, "");
        if stripped.len() * 2 < lower.len() {
            anyhow::bail!(
                "the JWT secret looks like a placeholder ({known:?}); use a random secret \
                 (e.g. `openssl rand -hex 32`)"
            );
        }
    }
    let distinct = {
        let mut seen = [false; 256];
        secret.iter().for_each(|b| seen[*b as usize] = true);
        seen.iter().filter(|s| **s).count()
    };
    if distinct < 8 {
        anyhow::bail!(
            "the JWT secret has only {distinct} distinct characters; use a random secret"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_and_placeholder_secrets_are_refused() {
        assert!(check_strength(b"short").is_err());
        assert!(check_strength(&[b'a'; 40]).is_err());
        assert!(check_strength(b"changemechangemechangemechangeme12").is_err());
        assert!(check_strength(b"your-secret-key-your-secret-key-123").is_err());
        assert!(check_strength(b"ababababababababababababababababab").is_err());
        assert!(check_strength(
            b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        )
        .is_ok());
    }

    #[test]
    fn a_generated_secret_is_private_and_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        let a = load_or_create(&path).expect("create");
        let b = load_or_create(&path).expect("read");
        assert_eq!(a, b);
        check_strength(&a).expect("strong");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
