//! Writes testdata/crypto-vectors.json: deterministic inputs (seeded keys, fixed salt and
//! IV, a non-NFC password) and every value docs/PROTOCOL.md derives from them, for the
//! Rust client (tests/vectors.rs) and Web Crypto implementations to check. What each
//! entry pins: PROTOCOL.md §11.2.
//!
//! Run: `cargo run -p securechat-client --example gen_vectors [-- OUTPUT]`.

use anyhow::Context as _;
use p256::ecdsa::Signature;
use rand::{RngCore as _, SeedableRng as _};
use securechat_client::envelope::{open, seal_with, Reader, SealInputs};
use securechat_client::{
    b64, bundle::bundle_plaintext, derive_keys, fingerprint, kdf::normalize_password, prev_sig,
    rsa_oaep_decrypt, safety_number, self_sig, wrap_bundle_with_iv, Envelope, Identity,
    RegisterRequest,
};
use serde::Serialize;

#[derive(Serialize)]
struct Vectors {
    description: &'static str,
    password: String,
    password_nfc: String,
    salt: String,
    iterations: u32,
    auth_key: String,
    kek: String,
    username: String,
    key_version: u32,
    enc_pkcs8: String,
    sign_pkcs8: String,
    enc_spki: String,
    sign_spki: String,
    bundle_iv: String,
    bundle_plaintext: String,
    bundle_ct: String,
    self_sig: String,
    self_sig_other_s: String,
    fingerprint: String,
    register_request: RegisterRequest,
    peer: Peer,
    safety_number: String,
    rotation: Rotation,
    oaep: Oaep,
    message: Message,
}

#[derive(Serialize)]
struct Peer {
    username: String,
    enc_spki: String,
    sign_spki: String,
    fingerprint: String,
}

#[derive(Serialize)]
struct Rotation {
    new_version: u32,
    new_enc_spki: String,
    new_sign_spki: String,
    prev_sig: String,
}

#[derive(Serialize)]
struct Oaep {
    key: String,
    ct: String,
}

#[derive(Serialize)]
struct Message {
    description: &'static str,
    #[serde(flatten)]
    received: Sealed,
    note: Sealed,
}

/// One sealed envelope with the intermediate values that produced it (PROTOCOL.md §8.2–§8.4).
#[derive(Serialize)]
struct Sealed {
    key: String,
    plaintext: String,
    aad: String,
    k_list: String,
    signed: String,
    envelope: Envelope,
}

const MESSAGE_DESCRIPTION: &str = "Message envelopes (docs/PROTOCOL.md sections 8 and 11). The top level is a message from `peer` (bob) to \
the user (carol), signed with bob's key (verify with `peer.sign_spki`), which carol opens with `enc_pkcs8`; `note` is a note \
from carol to herself (one reader). `key` is K, `plaintext` the exact plaintext bytes (compact JSON), `aad` the AAD text, \
`k_list` the K_list text, `signed` the exact bytes `sig` signs. `ct` is reproducible from key, iv, plaintext and aad; \
`keys` values are randomized RSA-OAEP (decrypt them); `note.envelope.sig` is RFC 6979 deterministic (carol's key), \
the top-level one is verifiable only (bob's private key is not in this file).";

fn sealed(
    rng: &mut rand::rngs::StdRng,
    from: (&str, &Identity),
    to: (&str, &Identity),
    text: &str,
    sent_at: u64,
) -> anyhow::Result<Sealed> {
    let inputs = SealInputs::fresh_with(rng, sent_at);
    let (from_enc, to_enc) = (from.1.enc.to_public_key(), to.1.enc.to_public_key());
    let mut readers = vec![Reader {
        name: from.0,
        enc: &from_enc,
    }];
    if to.0 != from.0 {
        readers.push(Reader {
            name: to.0,
            enc: &to_enc,
        });
    }
    let plaintext = serde_json::to_string(&serde_json::json!({ "text": text }))?;
    let envelope = seal_with(
        rng,
        &inputs,
        from.0,
        &from.1.sign,
        to.0,
        &readers,
        plaintext.as_bytes(),
    )?;
    let opened = open(&envelope, to.0, to.1, &from.1.sign_spki()?)?;
    anyhow::ensure!(opened.text() == Some(text));
    Ok(Sealed {
        key: b64::encode(inputs.key),
        plaintext,
        aad: String::from_utf8(envelope.aad())?,
        k_list: String::from_utf8(envelope.keys.k_list())?,
        signed: b64::encode(envelope.signed_bytes()?),
        envelope,
    })
}

const DESCRIPTION: &str = "securechat v1 crypto test vectors (docs/PROTOCOL.md section 11). All binary values are base64url without padding. \
`password` is deliberately not NFC: implementations must NFC-normalize it (to `password_nfc`) before PBKDF2. \
ECDSA signatures are RFC 6979 deterministic here; Web Crypto signs with random k, so other implementations verify \
`self_sig` and `rotation.prev_sig` (and `self_sig_other_s`, the same signature with s replaced by n - s) rather than reproduce them. \
`rotation.prev_sig` is made with this user's sign key over the new keys, for `new_version`. \
`oaep.ct` is RSA-OAEP-SHA256 (MGF1-SHA256, empty label) of `oaep.key` under `enc_spki` (randomized: decrypt it, do not reproduce it). \
`safety_number` is the peer's fingerprint then the user's, because the peer's name is bytewise lower.";

/// JSON text with every non-ASCII character written as \uXXXX (surrogate pairs beyond the
/// BMP), so that the decomposed password is visible to a reader. Non-ASCII characters only
/// occur inside JSON strings, where such escapes are valid.
fn ascii_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

fn other_s(sig: &[u8; 64]) -> anyhow::Result<[u8; 64]> {
    let parsed = Signature::from_slice(sig)?;
    let (r, s) = parsed.split_scalars();
    let flipped = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes())?;
    Ok(flipped.to_bytes().into())
}

fn main() -> anyhow::Result<()> {
    let out_path = std::env::args().nth(1).unwrap_or_else(|| {
        format!(
            "{}/../testdata/crypto-vectors.json",
            env!("CARGO_MANIFEST_DIR")
        )
    });

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5ec_c4a7_0001);
    let password = "Cafe\u{301} pa\u{308}sswo\u{308}rd \u{1f511}".to_owned();
    let password_nfc = normalize_password(&password);
    anyhow::ensure!(
        password != password_nfc,
        "the vector password must not be NFC"
    );
    let mut salt = [0u8; 16];
    rng.fill_bytes(&mut salt);
    let mut iv = [0u8; 12];
    rng.fill_bytes(&mut iv);
    let iterations = 1000;
    let username = "carol".to_owned();
    let key_version = 1;

    let id = Identity::generate_with(&mut rng)?;
    let peer = Identity::generate_with(&mut rng)?;
    let rotated = Identity::generate_with(&mut rng)?;
    let mut oaep_key = [0u8; 32];
    rng.fill_bytes(&mut oaep_key);

    // PROTOCOL.md §2.1–§2.3
    let (auth_key, kek) = derive_keys(&password, &salt, iterations);
    let pk = id.public_keys()?;
    // PROTOCOL.md §3.2–§3.3
    let bundle = wrap_bundle_with_iv(&kek, &username, key_version, &id, &iv)?;
    // PROTOCOL.md §4.1
    let sig = self_sig(
        &id.sign,
        &username,
        key_version,
        &pk.enc_spki,
        &pk.sign_spki,
    );
    // PROTOCOL.md §5.1, then the §6.1 registration body
    let fp = fingerprint(&username, &pk.enc_spki, &pk.sign_spki);
    let register_request =
        RegisterRequest::build_with(&username, &password, iterations, &id, &salt, &iv)?;

    let peer_name = "bob".to_owned();
    let peer_pk = peer.public_keys()?;
    let peer_fp = fingerprint(&peer_name, &peer_pk.enc_spki, &peer_pk.sign_spki);
    // PROTOCOL.md §5.2
    let sn = safety_number((&username, &fp), (&peer_name, &peer_fp));

    let new_pk = rotated.public_keys()?;
    let new_version = 2;
    // PROTOCOL.md §4.2
    let psig = prev_sig(
        &id.sign,
        &username,
        new_version,
        &new_pk.enc_spki,
        &new_pk.sign_spki,
    );
    // Seeded OAEP padding, so that regenerating the file changes nothing. PROTOCOL.md §1.6
    let oaep_ct =
        id.enc
            .to_public_key()
            .encrypt(&mut rng, rsa::Oaep::new::<sha2::Sha256>(), &oaep_key)?;
    anyhow::ensure!(rsa_oaep_decrypt(&id.enc, &oaep_ct)? == oaep_key);

    // Message envelopes (PROTOCOL.md §8): drawn after every value above, so those stay as
    // they were.
    let received = sealed(
        &mut rng,
        (&peer_name, &peer),
        (&username, &id),
        "Gr\u{fc}\u{df}e, carol \u{1f44b}",
        1_764_100_000_000,
    )?;
    let note = sealed(
        &mut rng,
        (&username, &id),
        (&username, &id),
        "note to self",
        1_764_100_000_123,
    )?;

    let vectors = Vectors {
        description: DESCRIPTION,
        password,
        password_nfc,
        salt: b64::encode(salt),
        iterations,
        auth_key: b64::encode(auth_key),
        kek: b64::encode(kek),
        username: username.clone(),
        key_version,
        enc_pkcs8: b64::encode(id.enc_pkcs8()?),
        sign_pkcs8: b64::encode(id.sign_pkcs8()?),
        enc_spki: b64::encode(&pk.enc_spki),
        sign_spki: b64::encode(&pk.sign_spki),
        bundle_iv: bundle.iv,
        bundle_plaintext: String::from_utf8(bundle_plaintext(&id)?)?,
        bundle_ct: bundle.ct,
        self_sig: b64::encode(sig),
        self_sig_other_s: b64::encode(other_s(&sig)?),
        fingerprint: fp,
        register_request,
        peer: Peer {
            username: peer_name,
            enc_spki: b64::encode(&peer_pk.enc_spki),
            sign_spki: b64::encode(&peer_pk.sign_spki),
            fingerprint: peer_fp,
        },
        safety_number: sn,
        rotation: Rotation {
            new_version,
            new_enc_spki: b64::encode(&new_pk.enc_spki),
            new_sign_spki: b64::encode(&new_pk.sign_spki),
            prev_sig: b64::encode(psig),
        },
        oaep: Oaep {
            key: b64::encode(oaep_key),
            ct: b64::encode(oaep_ct),
        },
        message: Message {
            description: MESSAGE_DESCRIPTION,
            received,
            note,
        },
    };
    let text = ascii_json(&serde_json::to_string_pretty(&vectors)?) + "\n";
    std::fs::write(&out_path, text).with_context(|| format!("writing {out_path}"))?;
    eprintln!("wrote {out_path}");
    Ok(())
}
