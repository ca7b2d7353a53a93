//! Recomputes testdata/file-vectors.json (client/examples/gen_file_vectors.rs) from its
//! inputs: every file's ciphertext, the record nonces and AADs, the manifest's ciphertext
//! and tus metadata; and opens what can be opened. tests-web/unit/files.test.mjs checks
//! the same file from JS.
#![allow(clippy::unwrap_used)] // test helpers

use securechat_client::envelope::{pad, SealInputs};
use securechat_client::files::{
    open_manifest, record_aad, record_nonce, seal_manifest_with, tus_metadata, FileKey, Manifest,
    RecordOpener, RecordSealer,
};
use securechat_client::{b64, Envelope, Identity};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

#[derive(Deserialize)]
struct Vectors {
    file_id: String,
    file_key: String,
    nonce: String,
    files: Vec<File>,
    records: Vec<Record>,
    manifest: ManifestVector,
}

#[derive(Deserialize)]
struct File {
    record_size: u32,
    size: u64,
    seed: u8,
    records: u64,
    cipher_size: u64,
    sha256: String,
    ciphertext_sha256: String,
    ciphertext: Option<String>,
}

#[derive(Deserialize)]
struct Record {
    i: u32,
    last: bool,
    aad: String,
    nonce: String,
}

#[derive(Deserialize)]
struct Holder {
    enc_pkcs8: String,
    sign_pkcs8: String,
    enc_spki: String,
    sign_spki: String,
}

#[derive(Deserialize)]
struct ManifestVector {
    plaintext: Manifest,
    plaintext_json: String,
    key: String,
    cipher_size: u64,
    envelope: Envelope,
    sender: Holder,
    recipient: Holder,
    tus_metadata: String,
}

fn vectors() -> Vectors {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/file-vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn plaintext(size: u64, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|j| (j.wrapping_mul(31).wrapping_add(u64::from(seed)) % 256) as u8)
        .collect()
}

#[test]
fn every_vector_file_seals_to_the_same_ciphertext_and_opens() {
    let v = vectors();
    let key = FileKey::from_b64(&v.file_key, &v.nonce).unwrap();
    assert!(v.files.iter().any(|f| f.record_size == 1024));
    assert!(v.files.iter().any(|f| f.record_size == 65536));
    for f in &v.files {
        let plain = plaintext(f.size, f.seed);
        assert_eq!(b64::encode(Sha256::digest(&plain)), f.sha256);
        let sealer = RecordSealer::new(&key, &v.file_id, f.size, f.record_size).unwrap();
        assert_eq!(sealer.count(), f.records);
        let mut ct = Vec::new();
        sealer.seal_stream(&mut plain.as_slice(), &mut ct).unwrap();
        assert_eq!(ct.len() as u64, f.cipher_size);
        assert_eq!(
            b64::encode(Sha256::digest(&ct)),
            f.ciphertext_sha256,
            "size {}",
            f.size
        );
        if let Some(full) = &f.ciphertext {
            assert_eq!(&b64::encode(&ct), full);
        }
        let mut out = Vec::new();
        RecordOpener::new(&key, &v.file_id, f.size, f.record_size)
            .unwrap()
            .open_stream(&mut ct.as_slice(), &mut out)
            .unwrap();
        assert_eq!(out, plain);
    }
}

#[test]
fn vector_record_nonces_and_aads_are_rebuilt() {
    let v = vectors();
    let nonce: [u8; 12] = b64::decode_array(&v.nonce).unwrap();
    assert!(v.records.len() >= 5);
    for r in &v.records {
        assert_eq!(record_aad(&v.file_id, r.i, r.last), r.aad.as_bytes());
        assert_eq!(b64::encode(record_nonce(&nonce, r.i)), r.nonce);
    }
}

#[test]
fn the_vector_manifest_opens_for_both_parties_and_reseals_to_the_same_ciphertext() {
    let v = vectors();
    let m = &v.manifest;
    let id = |h: &Holder| {
        Identity::from_pkcs8(
            &b64::decode(&h.enc_pkcs8).unwrap(),
            &b64::decode(&h.sign_pkcs8).unwrap(),
        )
        .unwrap()
    };
    let sender = id(&m.sender);
    let recipient = id(&m.recipient);
    assert_eq!(
        b64::encode(recipient.enc_spki().unwrap()),
        m.recipient.enc_spki
    );
    let sender_spki = b64::decode(&m.sender.sign_spki).unwrap();
    let fid = &m.plaintext.file_id;
    let opened = open_manifest(
        &m.envelope,
        "bob",
        &recipient,
        &sender_spki,
        fid,
        m.cipher_size,
    )
    .unwrap();
    assert_eq!(opened, m.plaintext);
    let opened = open_manifest(
        &m.envelope,
        "alice",
        &sender,
        &sender_spki,
        fid,
        m.cipher_size,
    )
    .unwrap();
    assert_eq!(opened, m.plaintext);
    assert_eq!(
        String::from_utf8(m.plaintext.to_json_bytes().unwrap()).unwrap(),
        m.plaintext_json
    );
    assert_eq!(
        pad(m.plaintext_json.clone().into_bytes()).len() + 16,
        b64::decode(&m.envelope.ct).unwrap().len()
    );
    let inputs = SealInputs {
        id: m.envelope.id.clone(),
        sent_at: m.envelope.sent_at,
        key: b64::decode_array(&m.key).unwrap(),
        iv: b64::decode_array(&m.envelope.iv).unwrap(),
    };
    let resealed = seal_manifest_with(
        &mut rand::rngs::OsRng,
        &inputs,
        "alice",
        &sender,
        "bob",
        &recipient.enc.to_public_key(),
        &m.plaintext,
    )
    .unwrap();
    assert_eq!(resealed.ct, m.envelope.ct);
    assert!(resealed.verify(&sender_spki).is_ok());
    assert_eq!(
        tus_metadata("bob", fid, 1024, &m.envelope).unwrap(),
        m.tus_metadata
    );
    let _ = &m.sender.enc_spki;
}
