//! A user's key pair set and the key encodings Web Crypto uses: RSA-OAEP-2048 (e=65537)
//! for key wrapping, ECDSA P-256 for signing; SPKI DER for public keys (rsaEncryption
//! OID; uncompressed P-256 point), PKCS#8 DER for private keys. Also RSA-OAEP-SHA256
//! (MGF1-SHA256, empty label) of a 32-byte key, as used by message envelopes.
//! The encodings: docs/PROTOCOL.md §1.6.

use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, EncodePublicKey as _,
};
use rand::rngs::OsRng;
use rsa::traits::PublicKeyParts as _;
use rsa::{BigUint, Oaep, RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;

use crate::{Error, Result};

/// RSA modulus size in bits.
pub const RSA_BITS: usize = 2048;

/// A user's private keys: `enc` unwraps message keys, `sign` signs.
#[derive(Clone)]
pub struct Identity {
    pub enc: RsaPrivateKey,
    pub sign: SigningKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

/// The public halves as SPKI DER, the bytes that are uploaded, signed and fingerprinted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKeys {
    pub enc_spki: Vec<u8>,
    pub sign_spki: Vec<u8>,
}

impl Identity {
    /// Fresh keys from the OS random source.
    pub fn generate() -> Result<Identity> {
        Self::generate_with(&mut OsRng)
    }

    /// Fresh keys from a given random source (a seeded one makes test vectors).
    pub fn generate_with<R: rand::CryptoRng + rand::RngCore>(rng: &mut R) -> Result<Identity> {
        let enc = RsaPrivateKey::new_with_exp(rng, RSA_BITS, &BigUint::from(65_537u32))
            .map_err(|e| Error::Crypto(format!("RSA key generation: {e}")))?;
        let sign = SigningKey::random(rng);
        Ok(Identity { enc, sign })
    }

    /// Import both private keys from PKCS#8 DER.
    pub fn from_pkcs8(enc_pkcs8: &[u8], sign_pkcs8: &[u8]) -> Result<Identity> {
        let enc = RsaPrivateKey::from_pkcs8_der(enc_pkcs8)
            .map_err(|e| Error::Crypto(format!("RSA PKCS#8: {e}")))?;
        check_rsa_public(&enc.to_public_key())?;
        let sign = SigningKey::from_pkcs8_der(sign_pkcs8)
            .map_err(|e| Error::Crypto(format!("P-256 PKCS#8: {e}")))?;
        Ok(Identity { enc, sign })
    }

    /// The RSA private key as PKCS#8 DER.
    pub fn enc_pkcs8(&self) -> Result<Vec<u8>> {
        let doc = self
            .enc
            .to_pkcs8_der()
            .map_err(|e| Error::Crypto(format!("RSA PKCS#8 export: {e}")))?;
        Ok(doc.as_bytes().to_vec())
    }

    /// The P-256 private key as PKCS#8 DER (with the public point, as Web Crypto exports).
    pub fn sign_pkcs8(&self) -> Result<Vec<u8>> {
        let doc = self
            .sign
            .to_pkcs8_der()
            .map_err(|e| Error::Crypto(format!("P-256 PKCS#8 export: {e}")))?;
        Ok(doc.as_bytes().to_vec())
    }

    /// The RSA public key as SPKI DER.
    pub fn enc_spki(&self) -> Result<Vec<u8>> {
        rsa_spki(&self.enc.to_public_key())
    }

    /// The P-256 public key as SPKI DER, uncompressed point.
    pub fn sign_spki(&self) -> Result<Vec<u8>> {
        p256_spki(self.sign.verifying_key())
    }

    /// Both public keys as SPKI DER.
    pub fn public_keys(&self) -> Result<PublicKeys> {
        Ok(PublicKeys {
            enc_spki: self.enc_spki()?,
            sign_spki: self.sign_spki()?,
        })
    }

    /// This identity's 30-digit fingerprint under `username`.
    pub fn fingerprint(&self, username: &str) -> Result<String> {
        let pk = self.public_keys()?;
        Ok(crate::fingerprint(username, &pk.enc_spki, &pk.sign_spki))
    }
}

/// SPKI DER of an RSA public key (rsaEncryption OID, NULL parameters).
pub fn rsa_spki(key: &RsaPublicKey) -> Result<Vec<u8>> {
    let doc = key
        .to_public_key_der()
        .map_err(|e| Error::Crypto(format!("RSA SPKI export: {e}")))?;
    Ok(doc.as_bytes().to_vec())
}

/// SPKI DER of a P-256 public key (id-ecPublicKey, prime256v1, uncompressed point).
pub fn p256_spki(key: &VerifyingKey) -> Result<Vec<u8>> {
    let doc = key
        .to_public_key_der()
        .map_err(|e| Error::Crypto(format!("P-256 SPKI export: {e}")))?;
    Ok(doc.as_bytes().to_vec())
}

fn check_rsa_public(key: &RsaPublicKey) -> Result<()> {
    if key.size() * 8 != RSA_BITS {
        return Err(Error::Crypto(format!(
            "RSA key is {} bits, expected {RSA_BITS}",
            key.size() * 8
        )));
    }
    if key.e() != &BigUint::from(65_537u32) {
        return Err(Error::Crypto("RSA public exponent is not 65537".into()));
    }
    Ok(())
}

/// Parse an RSA SPKI (rsaEncryption OID; 2048 bits, e=65537).
pub fn parse_enc_spki(spki: &[u8]) -> Result<RsaPublicKey> {
    let key = RsaPublicKey::from_public_key_der(spki)
        .map_err(|e| Error::Crypto(format!("RSA SPKI: {e}")))?;
    check_rsa_public(&key)?;
    Ok(key)
}

/// Parse a P-256 SPKI.
pub fn parse_sign_spki(spki: &[u8]) -> Result<VerifyingKey> {
    VerifyingKey::from_public_key_der(spki).map_err(|e| Error::Crypto(format!("P-256 SPKI: {e}")))
}

/// RSA-OAEP-SHA256 (MGF1-SHA256, empty label) of a 32-byte key: 256 bytes out.
pub fn rsa_oaep_encrypt(key: &RsaPublicKey, plaintext: &[u8; 32]) -> Result<Vec<u8>> {
    key.encrypt(&mut OsRng, Oaep::new::<Sha256>(), plaintext)
        .map_err(|e| Error::Crypto(format!("RSA-OAEP encrypt: {e}")))
}

/// Inverse of [`rsa_oaep_encrypt`]; the plaintext must be exactly 32 bytes.
pub fn rsa_oaep_decrypt(key: &RsaPrivateKey, ciphertext: &[u8]) -> Result<[u8; 32]> {
    let mut plain = key
        .decrypt(Oaep::new::<Sha256>(), ciphertext)
        .map_err(|e| Error::Crypto(format!("RSA-OAEP decrypt: {e}")))?;
    let out: Result<[u8; 32]> = plain.as_slice().try_into().map_err(|_| {
        Error::Crypto(format!(
            "RSA-OAEP plaintext is {} bytes, expected 32",
            plain.len()
        ))
    });
    plain.fill(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::test_identity;

    #[test]
    fn encodings_are_what_web_crypto_exports() {
        let id = test_identity(1);
        let enc = id.enc_spki().unwrap();
        let sign = id.sign_spki().unwrap();
        // rsaEncryption OID 1.2.840.113549.1.1.1 followed by NULL parameters.
        let rsa_alg = [
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05,
            0x00,
        ];
        assert_eq!(enc.len(), 294);
        assert_eq!(&enc[4..19], &rsa_alg);
        // id-ecPublicKey + prime256v1, then a BIT STRING holding 0x04 || X || Y.
        assert_eq!(sign.len(), 91);
        assert_eq!(
            &sign[..27],
            &[
                0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
                0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04
            ]
        );
        let pkcs8 = id.enc_pkcs8().unwrap();
        assert_eq!(&pkcs8[7..22], &rsa_alg);
        let back = Identity::from_pkcs8(&pkcs8, &id.sign_pkcs8().unwrap()).unwrap();
        assert_eq!(back.public_keys().unwrap(), id.public_keys().unwrap());
        assert_eq!(parse_sign_spki(&sign).unwrap(), *id.sign.verifying_key());
        assert_eq!(parse_enc_spki(&enc).unwrap(), id.enc.to_public_key());
    }

    #[test]
    fn oaep_round_trip() {
        let id = test_identity(2);
        let key = [7u8; 32];
        let ct = rsa_oaep_encrypt(&id.enc.to_public_key(), &key).unwrap();
        assert_eq!(ct.len(), 256);
        assert_eq!(rsa_oaep_decrypt(&id.enc, &ct).unwrap(), key);
        let mut bad = ct.clone();
        bad[100] ^= 1;
        assert!(rsa_oaep_decrypt(&id.enc, &bad).is_err());
        assert!(rsa_oaep_decrypt(&test_identity(3).enc, &ct).is_err());
    }
}
