//! Owns access tokens: HS256 JWTs per RFC 8725 — algorithm pinned, `iss`, `aud`, `sub`,
//! `exp`, `jti` and `typ` required and checked.
//!
//! Invariant: a token is accepted only if every one of those checks passes; which check
//! failed is logged at debug level and never told to the caller.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const ACCESS_TYP: &str = "access";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The username.
    pub sub: String,
    /// The user's row id.
    pub uid: i64,
    /// The session this token belongs to; revoking it kills the token.
    pub sid: String,
    pub jti: String,
    pub typ: String,
    pub iat: u64,
    pub exp: u64,
}

pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    ttl_secs: u64,
}

impl Jwt {
    pub fn new(secret: &[u8], issuer: &str, ttl_secs: u64) -> Jwt {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[issuer]);
        validation.set_required_spec_claims(&["iss", "aud", "sub", "exp"]);
        validation.leeway = 5;
        validation.validate_exp = true;
        Jwt {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
            ttl_secs,
        }
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// Issues an access token for `username` (id `uid`) in session `sid`.
    pub fn issue(
        &self,
        username: &str,
        uid: i64,
        sid: &str,
        now_secs: u64,
    ) -> anyhow::Result<String> {
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.issuer.clone(),
            sub: username.to_owned(),
            uid,
            sid: sid.to_owned(),
            jti: uuid::Uuid::new_v4().to_string(),
            typ: ACCESS_TYP.into(),
            iat: now_secs,
            exp: now_secs + self.ttl_secs,
        };
        Ok(encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// Verifies signature, algorithm, issuer, audience, expiry and type.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        match decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) if data.claims.typ == ACCESS_TYP && !data.claims.jti.is_empty() => {
                Some(data.claims)
            }
            Ok(_) => {
                tracing::debug!("token refused: wrong typ or empty jti");
                None
            }
            Err(e) => {
                tracing::debug!(reason = %e, "token refused");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    const SECRET: &[u8] = b"0f1e2d3c4b5a69788796a5b4c3d2e1f0aa55";

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
    }

    #[test]
    fn a_fresh_token_verifies() {
        let jwt = Jwt::new(SECRET, "securechat", 60);
        let t = jwt.issue("alice", 1, "s1", now()).expect("issue");
        let c = jwt.verify(&t).expect("valid");
        assert_eq!((c.sub.as_str(), c.uid, c.sid.as_str()), ("alice", 1, "s1"));
    }

    #[test]
    fn forged_tokens_are_refused() {
        let jwt = Jwt::new(SECRET, "securechat", 60);
        let t = jwt.issue("alice", 1, "s1", now()).expect("issue");
        let parts: Vec<&str> = t.split('.').collect();
        // alg: none
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(jwt
            .verify(&format!("{none_header}.{}.", parts[1]))
            .is_none());
        // edited payload, original signature
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        claims["sub"] = "mallory".into();
        let edited = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json"));
        assert!(jwt
            .verify(&format!("{}.{edited}.{}", parts[0], parts[2]))
            .is_none());
        // another secret, another issuer/audience, expired
        let other = Jwt::new(b"another-secret-another-secret-1234567", "securechat", 60);
        assert!(jwt
            .verify(&other.issue("alice", 1, "s1", now()).expect("i"))
            .is_none());
        let foreign = Jwt::new(SECRET, "elsewhere", 60);
        assert!(jwt
            .verify(&foreign.issue("alice", 1, "s1", now()).expect("i"))
            .is_none());
        assert!(jwt
            .verify(&jwt.issue("alice", 1, "s1", now() - 3600).expect("i"))
            .is_none());
    }

    #[test]
    fn a_token_of_another_type_is_refused() {
        let jwt = Jwt::new(SECRET, "securechat", 60);
        let claims = Claims {
            iss: "securechat".into(),
            aud: "securechat".into(),
            sub: "alice".into(),
            uid: 1,
            sid: "s".into(),
            jti: "j".into(),
            typ: "refresh".into(),
            iat: now(),
            exp: now() + 60,
        };
        let t = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("encode");
        assert!(jwt.verify(&t).is_none());
    }
}
