//! Writes testdata/file-vectors.json: file records sealed from fixed inputs (key, nonce,
//! file_id; several sizes at record sizes 1024 and 65536), record nonces and AADs, and a
//! manifest envelope from seeded identities, for client/tests/file_vectors.rs and
//! tests-web/unit/files.test.mjs to check byte for byte (DESIGN §8 "File records").
//!
//! Run: `cargo run -p securechat-client --example gen_file_vectors [-- OUTPUT]`.

use anyhow::Context as _;
use rand::SeedableRng as _;
use securechat_client::envelope::SealInputs;
use securechat_client::files::{
    cipher_size, record_aad, record_nonce, seal_manifest_with, tus_metadata, FileKey, Manifest,
    RecordSealer,
};
use securechat_client::{b64, Envelope, Identity};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

const DESCRIPTION: &str = "File records and a manifest (DESIGN §8 File records). Plaintext byte j of a file with seed s is (j * 31 + s) mod 256. Each file's ciphertext is the concatenation of its sealed records under file_key, nonce and file_id; ciphertext is given in full below 8 KiB, ciphertext_sha256 always. The manifest is sealed from sender to recipient with the given key, iv, id and sent_at; its plaintext is padded like a message.";

/// Files whose ciphertext is written out in full.
const FULL_BELOW: u64 = 8 * 1024;

#[derive(Serialize)]
struct Vectors {
    description: &'static str,
    file_id: String,
    file_key: String,
    nonce: String,
    files: Vec<File>,
    records: Vec<Record>,
    manifest: ManifestVector,
}

#[derive(Serialize)]
struct File {
    record_size: u32,
    size: u64,
    seed: u8,
    records: u64,
    cipher_size: u64,
    sha256: String,
    ciphertext_sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ciphertext: Option<String>,
}

#[derive(Serialize)]
struct Record {
    i: u32,
    last: bool,
    aad: String,
    nonce: String,
}

#[derive(Serialize)]
struct Holder {
    enc_pkcs8: String,
    sign_pkcs8: String,
    enc_spki: String,
    sign_spki: String,
}

#[derive(Serialize)]
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

fn plaintext(size: u64, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|j| (j.wrapping_mul(31).wrapping_add(u64::from(seed)) % 256) as u8)
        .collect()
}

fn holder(id: &Identity) -> anyhow::Result<Holder> {
    Ok(Holder {
        enc_pkcs8: b64::encode(id.enc_pkcs8()?),
        sign_pkcs8: b64::encode(id.sign_pkcs8()?),
        enc_spki: b64::encode(id.enc_spki()?),
        sign_spki: b64::encode(id.sign_spki()?),
    })
}

fn main() -> anyhow::Result<()> {
    let out_path = std::env::args().nth(1).unwrap_or_else(|| {
        format!(
            "{}/../testdata/file-vectors.json",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5ec_f11e_0014);
    let key = FileKey::generate_with(&mut rng);
    let file_id = "3f6c1a2b-8d4e-4f70-a1b2-c3d4e5f60718".to_owned();

    let mut files = Vec::new();
    let cases: [(u32, &[u64]); 2] = [
        (1024, &[0, 1, 1023, 1024, 1025, 3 * 1024 + 7, 4 * 1024]),
        (65536, &[0, 100, 65535, 65536, 65537, 2 * 65536 + 1]),
    ];
    for (record_size, sizes) in cases {
        for (k, &size) in sizes.iter().enumerate() {
            let seed = (k as u8).wrapping_mul(17).wrapping_add(5);
            let plain = plaintext(size, seed);
            let mut ct = Vec::new();
            let sealer = RecordSealer::new(&key, &file_id, size, record_size)?;
            let records = sealer.count();
            sealer.seal_stream(&mut plain.as_slice(), &mut ct)?;
            files.push(File {
                record_size,
                size,
                seed,
                records,
                cipher_size: cipher_size(size, record_size)?,
                sha256: b64::encode(Sha256::digest(&plain)),
                ciphertext_sha256: b64::encode(Sha256::digest(&ct)),
                ciphertext: (size < FULL_BELOW).then(|| b64::encode(&ct)),
            });
        }
    }

    let records = [
        (0u32, false),
        (1, false),
        (1, true),
        (255, true),
        (256, false),
        (0x0102_0304, true),
        (u32::MAX, true),
    ]
    .into_iter()
    .map(|(i, last)| Record {
        i,
        last,
        aad: String::from_utf8_lossy(&record_aad(&file_id, i, last)).into_owned(),
        nonce: b64::encode(record_nonce(&key.nonce, i)),
    })
    .collect();

    let sender = Identity::generate_with(&mut rng)?;
    let recipient = Identity::generate_with(&mut rng)?;
    let size = 3 * 1024 + 7;
    let plain = plaintext(size, 22);
    let sha: [u8; 32] = Sha256::digest(&plain).into();
    let manifest = Manifest::new(
        &file_id,
        "Grüße – photo 🏖.jpg",
        "image/jpeg",
        size,
        &sha,
        1024,
        &key,
    )?;
    let inputs = SealInputs::fresh_with(&mut rng, 1_764_100_000_000);
    let envelope = seal_manifest_with(
        &mut rng,
        &inputs,
        "alice",
        &sender,
        "bob",
        &recipient.enc.to_public_key(),
        &manifest,
    )?;
    let metadata = tus_metadata("bob", &file_id, 1024, &envelope)?;
    let vectors = Vectors {
        description: DESCRIPTION,
        file_id: file_id.clone(),
        file_key: b64::encode(key.key),
        nonce: b64::encode(key.nonce),
        files,
        records,
        manifest: ManifestVector {
            plaintext_json: String::from_utf8(manifest.to_json_bytes()?)?,
            cipher_size: manifest.cipher_size()?,
            plaintext: manifest,
            key: b64::encode(inputs.key),
            envelope,
            sender: holder(&sender)?,
            recipient: holder(&recipient)?,
            tus_metadata: metadata,
        },
    };
    let text = serde_json::to_string_pretty(&vectors)? + "\n";
    std::fs::write(&out_path, text).with_context(|| format!("writing {out_path}"))?;
    eprintln!("wrote {out_path}");
    Ok(())
}
