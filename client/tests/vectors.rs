//! Recomputes every deterministic value of testdata/crypto-vectors.json from its inputs
//! and checks the rest (signatures verify, ciphertexts decrypt). What each entry pins:
//! docs/PROTOCOL.md §11.2; the steps: §11.3.

use securechat_client::bundle::bundle_plaintext;
use securechat_client::envelope::{message_aad, open};
use securechat_client::kdf::normalize_password;
use securechat_client::{
    b64, derive_keys, fingerprint, prev_sig, rsa_oaep_decrypt, safety_number, self_sig,
    unwrap_bundle, verify_prev_sig, verify_self_sig, wrap_bundle_with_iv, Identity, KeyBundle,
    RegisterRequest,
};
use securechat_client::{disclose, Envelope, Error, Reason};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vectors {
    #[allow(dead_code)]
    description: String,
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
    register_request: serde_json::Value,
    peer: Peer,
    safety_number: String,
    rotation: Rotation,
    oaep: Oaep,
    message: Message,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    #[allow(dead_code)]
    description: String,
    key: String,
    plaintext: String,
    aad: String,
    k_list: String,
    signed: String,
    envelope: serde_json::Value,
    note: Sealed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sealed {
    key: String,
    plaintext: String,
    aad: String,
    k_list: String,
    signed: String,
    envelope: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Peer {
    username: String,
    enc_spki: String,
    sign_spki: String,
    fingerprint: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotation {
    new_version: u32,
    new_enc_spki: String,
    new_sign_spki: String,
    prev_sig: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Oaep {
    key: String,
    ct: String,
}

fn load() -> Vectors {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/crypto-vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("read crypto-vectors.json");
    assert!(
        text.is_ascii(),
        "the vectors file escapes non-ASCII characters"
    );
    serde_json::from_str(&text).expect("parse crypto-vectors.json")
}

fn d(text: &str) -> Vec<u8> {
    b64::decode(text).expect("strict base64url")
}

// PROTOCOL.md §2, §3, §4, §5, §6.1, §11
#[test]
fn vectors_recompute() {
    let v = load();

    // Password and KDF. PROTOCOL.md §2.1–§2.3
    assert_ne!(v.password, v.password_nfc, "the password must exercise NFC");
    assert_eq!(normalize_password(&v.password), v.password_nfc);
    let salt = d(&v.salt);
    assert_eq!(salt.len(), 16);
    let (auth_key, kek) = derive_keys(&v.password, &salt, v.iterations);
    assert_eq!(b64::encode(auth_key), v.auth_key);
    assert_eq!(b64::encode(kek), v.kek);
    assert_eq!(
        derive_keys(&v.password_nfc, &salt, v.iterations),
        (auth_key, kek)
    );

    // Keys and their encodings. PROTOCOL.md §1.6, §3.1
    let id = Identity::from_pkcs8(&d(&v.enc_pkcs8), &d(&v.sign_pkcs8)).unwrap();
    assert_eq!(b64::encode(id.enc_pkcs8().unwrap()), v.enc_pkcs8);
    assert_eq!(b64::encode(id.sign_pkcs8().unwrap()), v.sign_pkcs8);
    let pk = id.public_keys().unwrap();
    assert_eq!(b64::encode(&pk.enc_spki), v.enc_spki);
    assert_eq!(b64::encode(&pk.sign_spki), v.sign_spki);

    // Key bundle. PROTOCOL.md §3.2–§3.3
    let iv: [u8; 12] = d(&v.bundle_iv).try_into().unwrap();
    let plain = bundle_plaintext(&id).unwrap();
    assert_eq!(String::from_utf8(plain).unwrap(), v.bundle_plaintext);
    let bundle = wrap_bundle_with_iv(&kek, &v.username, v.key_version, &id, &iv).unwrap();
    assert_eq!(bundle.iv, v.bundle_iv);
    assert_eq!(bundle.ct, v.bundle_ct);
    let file_bundle = KeyBundle {
        iv: v.bundle_iv.clone(),
        ct: v.bundle_ct.clone(),
    };
    let back = unwrap_bundle(&kek, &v.username, v.key_version, &file_bundle).unwrap();
    assert_eq!(back.public_keys().unwrap(), pk);
    assert!(unwrap_bundle(&kek, &v.username, v.key_version + 1, &file_bundle).is_err());

    // Self-signature: RFC 6979 makes ours reproducible; both S forms verify. PROTOCOL.md §4.1, §1.6
    let sig = self_sig(
        &id.sign,
        &v.username,
        v.key_version,
        &pk.enc_spki,
        &pk.sign_spki,
    );
    assert_eq!(b64::encode(sig), v.self_sig);
    for s in [&v.self_sig, &v.self_sig_other_s] {
        verify_self_sig(
            &v.username,
            v.key_version,
            &pk.enc_spki,
            &pk.sign_spki,
            &d(s),
        )
        .unwrap();
    }
    assert_ne!(v.self_sig, v.self_sig_other_s);

    // Fingerprints and safety number. PROTOCOL.md §5.1–§5.2
    assert_eq!(
        fingerprint(&v.username, &pk.enc_spki, &pk.sign_spki),
        v.fingerprint
    );
    assert_eq!(v.fingerprint.len(), 30);
    let peer_fp = fingerprint(
        &v.peer.username,
        &d(&v.peer.enc_spki),
        &d(&v.peer.sign_spki),
    );
    assert_eq!(peer_fp, v.peer.fingerprint);
    let sn = safety_number(
        (&v.username, &v.fingerprint),
        (&v.peer.username, &v.peer.fingerprint),
    );
    assert_eq!(sn, v.safety_number);
    assert!(v.peer.username.as_bytes() < v.username.as_bytes());
    assert_eq!(sn, format!("{}{}", v.peer.fingerprint, v.fingerprint));

    // Registration body. PROTOCOL.md §6.1
    let req = RegisterRequest::build_with(&v.username, &v.password, v.iterations, &id, &salt, &iv)
        .unwrap();
    assert_eq!(serde_json::to_value(&req).unwrap(), v.register_request);
    assert_eq!(req.auth_key, v.auth_key);
    assert_eq!(req.key_bundle, file_bundle);

    // Rotation. PROTOCOL.md §4.2
    let r = &v.rotation;
    let (new_enc, new_sign) = (d(&r.new_enc_spki), d(&r.new_sign_spki));
    let psig = prev_sig(&id.sign, &v.username, r.new_version, &new_enc, &new_sign);
    assert_eq!(b64::encode(psig), r.prev_sig);
    verify_prev_sig(
        &pk.sign_spki,
        &v.username,
        r.new_version,
        &new_enc,
        &new_sign,
        &psig,
    )
    .unwrap();

    // RSA-OAEP. PROTOCOL.md §1.6, §8.3
    let key = rsa_oaep_decrypt(&id.enc, &d(&v.oaep.ct)).unwrap();
    assert_eq!(b64::encode(key), v.oaep.key);
}

/// Everything about one vector envelope that can be recomputed without the signer's
/// private key; returns the parsed envelope. PROTOCOL.md §8.1–§8.6
#[allow(clippy::unwrap_used)] // test helper
fn check_sealed(
    s: &Sealed,
    reader: &str,
    reader_id: &Identity,
    signer_spki: &[u8],
    expect_from: &str,
    expect_to: &str,
) -> Envelope {
    use aes_gcm::aead::{Aead as _, Payload};
    use aes_gcm::{Aes256Gcm, KeyInit as _, Nonce};

    // Field order on the wire is the documented one.
    let order: Vec<&str> = s
        .envelope
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    let env: Envelope = serde_json::from_value(s.envelope.clone()).expect("strict envelope");
    let compact = env.to_json().unwrap();
    assert!(compact.starts_with(r#"{"v":1,"id":""#), "{compact}");
    let positions: Vec<usize> = [
        "\"v\":",
        "\"id\":",
        "\"from\":",
        "\"to\":",
        "\"sent_at\":",
        "\"iv\":",
        "\"ct\":",
        "\"keys\":",
        "\"sig\":",
    ]
    .iter()
    .map(|f| compact.find(f).unwrap())
    .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "field order in {compact}"
    );
    assert_eq!(sorted.len(), 9);
    assert_eq!(
        (env.from.as_str(), env.to.as_str()),
        (expect_from, expect_to)
    );
    env.check_shape().unwrap();

    assert_eq!(
        s.aad.as_bytes(),
        message_aad(&env.id, &env.from, &env.to, env.sent_at)
    );
    assert_eq!(
        s.aad,
        format!(
            "securechat/v1/msg|{}|{}|{}|{}",
            env.id, env.from, env.to, env.sent_at
        )
    );
    assert_eq!(s.k_list.as_bytes(), env.keys.k_list());
    assert_eq!(d(&s.signed), env.signed_bytes().unwrap());
    env.verify(signer_spki).unwrap();

    // K unwraps from the reader's entry; ct is AES-GCM(K, iv, plaintext, aad) exactly.
    let key = rsa_oaep_decrypt(&reader_id.enc, &d(env.keys.get(reader).unwrap())).unwrap();
    assert_eq!(b64::encode(key), s.key);
    let iv: [u8; 12] = d(&env.iv).try_into().unwrap();
    let ct = Aes256Gcm::new((&key).into())
        .encrypt(
            &Nonce::from(iv),
            Payload {
                msg: s.plaintext.as_bytes(),
                aad: s.aad.as_bytes(),
            },
        )
        .unwrap();
    assert_eq!(b64::encode(ct), env.ct);

    let opened = open(&env, reader, reader_id, signer_spki).unwrap();
    assert_eq!(
        serde_json::to_string(&opened.plaintext).unwrap(),
        s.plaintext
    );
    // Not for anyone else; not under another signer.
    assert!(open(&env, "dave", reader_id, signer_spki).is_err());
    env
}

// PROTOCOL.md §8, §11.2 (`message`, `message.note`)
#[test]
fn message_vectors() {
    let v = load();
    let id = Identity::from_pkcs8(&d(&v.enc_pkcs8), &d(&v.sign_pkcs8)).unwrap();
    let m = &v.message;
    let received = Sealed {
        key: m.key.clone(),
        plaintext: m.plaintext.clone(),
        aad: m.aad.clone(),
        k_list: m.k_list.clone(),
        signed: m.signed.clone(),
        envelope: m.envelope.clone(),
    };
    let env = check_sealed(
        &received,
        &v.username,
        &id,
        &d(&v.peer.sign_spki),
        &v.peer.username,
        &v.username,
    );
    assert_eq!(env.keys.names().collect::<Vec<_>>(), ["bob", "carol"]);
    assert!(!m.plaintext.is_ascii(), "the message text exercises UTF-8");
    // Carol's own key does not verify bob's signature.
    let e = env.verify(&d(&v.sign_spki)).unwrap_err();
    assert!(matches!(e, Error::Verification(_)), "{e}");

    // The note to self: one reader, and carol's signature is reproducible (RFC 6979).
    let note = check_sealed(
        &m.note,
        &v.username,
        &id,
        &d(&v.sign_spki),
        &v.username,
        &v.username,
    );
    assert_eq!(note.keys.len(), 1);
    let sig = securechat_client::sig::sign_raw(&id.sign, &d(&m.note.signed));
    assert_eq!(b64::encode(sig), note.sig);
}

// API-CONTRACT.md "Report body": what carol discloses when she reports bob's message is
// exactly the vector's K and plaintext bytes.
#[test]
fn reporting_the_vector_message_discloses_its_key_and_exact_plaintext() {
    let v = load();
    let id = Identity::from_pkcs8(&d(&v.enc_pkcs8), &d(&v.sign_pkcs8)).unwrap();
    let env: Envelope = serde_json::from_value(v.message.envelope.clone()).unwrap();
    let body = disclose(
        &env,
        &v.username,
        &id,
        &d(&v.peer.sign_spki),
        Reason::Illegal,
    )
    .unwrap();
    assert_eq!(body.message_id, env.id);
    assert_eq!(body.key, v.message.key);
    assert_eq!(d(&body.plaintext), v.message.plaintext.as_bytes());
    assert_eq!(body.reason, Reason::Illegal);
}
