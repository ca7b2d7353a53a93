//! Files over the real server: tus uploads (create, HEAD, PATCH with checksums and offsets,
//! DELETE, expiry), every limit refused before anything is stored, finalize and
//! `file_ready`, downloads with Range and verification, the files list, the scrubber, and
//! bytes a crash left past the acknowledged offset.

use std::path::PathBuf;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::Method;
use securechat_client::ws::ServerFrame;
use securechat_client::Session;
use serde_json::Value;
use sha2::Digest;

use crate::helpers::{spawn_app, spawn_app_with, TestApp};
use crate::relay::{connect, next_matching, none_of};

const RS: u64 = 1024;
const FILE_ID: &str = "0b7d3a4e-5f60-4c1d-9e2f-3a4b5c6d7e8f";

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A manifest envelope that passes the server's shape checks (the server never decrypts).
fn manifest(from: &str, to: &str) -> String {
    let mut keys = serde_json::Map::new();
    keys.insert(from.into(), b64url(&[3u8; 256]).into());
    keys.insert(to.into(), b64url(&[4u8; 256]).into());
    serde_json::json!({
        "v": 1, "id": uuid_v4(), "from": from, "to": to, "sent_at": 1764100000000u64,
        "iv": b64url(&[1u8; 12]), "ct": b64url(&[2u8; 64]), "keys": keys,
        "sig": b64url(&[5u8; 64])
    })
    .to_string()
}

fn uuid_v4() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex_string(&b);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn metadata(recipient: &str, record_size: u64, manifest: &str) -> String {
    format!(
        "recipient {},file_id {},record_size {},manifest {}",
        STANDARD.encode(recipient),
        STANDARD.encode(FILE_ID),
        STANDARD.encode(record_size.to_string()),
        STANDARD.encode(manifest)
    )
}

/// Ciphertext-like bytes of `len`.
pub(crate) fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_be_bytes()[1] ^ seed)
        .collect()
}

pub(crate) struct Tus<'a> {
    pub(crate) app: &'a TestApp,
}

impl Tus<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.app.client.base_url(), path)
    }

    fn req(&self, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.app
            .client
            .http()
            .request(method, self.url(path))
            .header("Tus-Resumable", "1.0.0")
            .bearer_auth(token)
    }

    async fn create_raw(&self, token: &str, length: u64, meta: &str) -> reqwest::Response {
        self.req(Method::POST, "/api/uploads", token)
            .header("Upload-Length", length.to_string())
            .header("Upload-Metadata", meta)
            .send()
            .await
            .expect("send")
    }

    /// Creates an upload from `from` to `to`; returns its Location.
    pub(crate) async fn create(&self, from: &Session, to: &str, length: u64) -> String {
        let r = self
            .create_raw(
                &from.access_token,
                length,
                &metadata(to, RS, &manifest(&from.username, to)),
            )
            .await;
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
        let loc = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
        assert!(loc.starts_with("/api/uploads/"), "{loc}");
        loc
    }

    pub(crate) async fn patch(
        &self,
        token: &str,
        loc: &str,
        offset: u64,
        bytes: Vec<u8>,
        checksum: Option<String>,
    ) -> reqwest::Response {
        let mut r = self
            .req(Method::PATCH, loc, token)
            .header("Upload-Offset", offset.to_string())
            .header("Content-Type", "application/offset+octet-stream");
        if let Some(c) = checksum {
            r = r.header("Upload-Checksum", c);
        }
        r.body(bytes).send().await.expect("send")
    }

    async fn head(&self, token: &str, loc: &str) -> reqwest::Response {
        self.req(Method::HEAD, loc, token)
            .send()
            .await
            .expect("send")
    }

    pub(crate) async fn offset(&self, token: &str, loc: &str) -> u64 {
        let r = self.head(token, loc).await;
        assert_eq!(r.status(), 200);
        r.headers()["upload-offset"]
            .to_str()
            .expect("text")
            .parse()
            .expect("number")
    }
}

pub(crate) fn sha256_header(bytes: &[u8]) -> String {
    format!("sha256 {}", STANDARD.encode(sha2::Sha256::digest(bytes)))
}

pub(crate) fn blob_path(app: &TestApp, loc: &str) -> PathBuf {
    let id = loc.rsplit('/').next().expect("id");
    app.config
        .storage
        .data_dir
        .join("blobs")
        .join(&id[..2])
        .join(id)
}

/// Every blob file under the data dir.
fn blob_files(app: &TestApp) -> Vec<PathBuf> {
    let root = app.config.storage.data_dir.join("blobs");
    let mut out = Vec::new();
    if let Ok(dirs) = std::fs::read_dir(root) {
        for d in dirs.flatten() {
            if let Ok(files) = std::fs::read_dir(d.path()) {
                out.extend(files.flatten().map(|f| f.path()));
            }
        }
    }
    out
}

pub(crate) async fn two_users(app: &TestApp) -> (Session, Session) {
    (
        app.register_and_login("alice").await,
        app.register_and_login("bob").await,
    )
}

pub(crate) async fn get(
    app: &TestApp,
    path: &str,
    token: &str,
    range: Option<&str>,
) -> reqwest::Response {
    let mut r = app
        .client
        .http()
        .get(format!("{}{}", app.client.base_url(), path))
        .bearer_auth(token);
    if let Some(range) = range {
        r = r.header("Range", range);
    }
    r.send().await.expect("send")
}

/// Waits until the upload at `loc` is a file in state `state`.
pub(crate) async fn wait_for_state(app: &TestApp, loc: &str, state: &str) {
    let id = loc.rsplit('/').next().expect("id").to_string();
    for _ in 0..200 {
        let s: Option<String> = app
            .sqlite()
            .query_row("SELECT state FROM files WHERE id = ?1", [&id], |r| r.get(0))
            .ok();
        if s.as_deref() == Some(state) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("upload {id} never became {state}");
}

pub(crate) fn file_id_of(loc: &str) -> String {
    loc.rsplit('/').next().expect("id").to_string()
}

#[tokio::test]
async fn options_advertises_tus_1_0_0_with_its_extensions_and_the_size_limit() {
    let app = spawn_app().await;
    let r = app
        .client
        .http()
        .request(
            Method::OPTIONS,
            format!("{}/api/uploads", app.client.base_url()),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["tus-version"], "1.0.0");
    assert_eq!(
        h["tus-extension"],
        "creation,creation-with-upload,checksum,expiration,termination"
    );
    assert_eq!(h["tus-max-size"], "1073741824");
    assert_eq!(h["tus-checksum-algorithm"], "sha1,sha256");
    assert!(h.get("tus-resumable").is_none());
}

#[tokio::test]
async fn an_upload_in_checksummed_patches_finalizes_and_both_parties_get_file_ready_once() {
    let app = spawn_app().await;
    let (alice, bob) = two_users(&app).await;
    let mut wa = connect(&app, &alice).await;
    let mut wb = connect(&app, &bob).await;
    let tus = Tus { app: &app };
    let data = body(3 * 1040 + 500, 9);
    let loc = tus.create(&alice, "bob", data.len() as u64).await;
    let (first, rest) = data.split_at(2 * 1040);
    let r = tus
        .patch(
            &alice.access_token,
            &loc,
            0,
            first.to_vec(),
            Some(sha256_header(first)),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["upload-offset"], "2080");
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    assert!(r.headers().contains_key("upload-expires"));
    let sha1 = format!("sha1 {}", STANDARD.encode(sha1_digest(rest)));
    let r = tus
        .patch(&alice.access_token, &loc, 2080, rest.to_vec(), Some(sha1))
        .await;
    assert_eq!(r.status(), 204, "{:?}", r.text().await);
    assert_eq!(r.headers()["upload-offset"], data.len().to_string());

    for ws in [&mut wa, &mut wb] {
        let file = next_matching(ws, |f| match f {
            ServerFrame::FileReady { file } => Some(file),
            _ => None,
        })
        .await;
        assert_eq!(file["id"], file_id_of(&loc));
        assert_eq!(file["file_id"], FILE_ID);
        assert_eq!(file["from"], "alice");
        assert_eq!(file["to"], "bob");
        assert_eq!(file["size"], data.len() as u64);
        assert_eq!(file["state"], "ready");
        assert!(file["server_ts"].as_i64().is_some_and(|t| t > 0));
        assert_eq!(file["manifest"]["from"], "alice");
    }
    none_of(&mut wb, Duration::from_millis(300), |f| {
        matches!(f, ServerFrame::FileReady { .. })
    })
    .await;

    // HEAD still answers on a finished upload; another PATCH does not.
    assert_eq!(
        tus.offset(&alice.access_token, &loc).await,
        data.len() as u64
    );
    let r = tus
        .patch(&alice.access_token, &loc, data.len() as u64, vec![1], None)
        .await;
    assert_eq!(r.status(), 409);

    // Both parties download the same bytes, with the BLAKE3 root as ETag.
    let path = format!("/api/files/{}", file_id_of(&loc));
    for s in [&alice, &bob] {
        let r = get(&app, &path, &s.access_token, None).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
        assert_eq!(r.headers()["accept-ranges"], "bytes");
        assert_eq!(
            r.headers()["etag"].to_str().expect("etag"),
            format!("\"{}\"", blake3::hash(&data).to_hex())
        );
        assert!(r.headers().get("content-disposition").is_none());
        assert_eq!(r.bytes().await.expect("body").to_vec(), data);
    }
    let r = get(&app, &path, &bob.access_token, Some("bytes=1000-2099")).await;
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 1000-2099/{}", data.len())
    );
    assert_eq!(r.bytes().await.expect("body").to_vec(), data[1000..2100]);
    let r = get(&app, &path, &bob.access_token, Some("bytes=999999-")).await;
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes */{}", data.len()),
        "a 416 names the length"
    );

    // The list shows it to both, newest first; the blob holds exactly the ciphertext.
    let r = get(
        &app,
        "/api/conversations/alice/files",
        &bob.access_token,
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.expect("json");
    assert_eq!(page["files"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["files"][0]["id"], file_id_of(&loc));
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(std::fs::read(blob_path(&app, &loc)).expect("blob"), data);
}

fn sha1_digest(bytes: &[u8]) -> Vec<u8> {
    use sha1::Digest as _;
    sha1::Sha1::digest(bytes).to_vec()
}

#[tokio::test]
async fn a_request_without_tus_resumable_gets_412_naming_the_version() {
    let app = spawn_app().await;
    let (alice, _) = two_users(&app).await;
    let r = app
        .client
        .http()
        .post(format!("{}/api/uploads", app.client.base_url()))
        .bearer_auth(&alice.access_token)
        .header("Upload-Length", "100")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 412);
    assert_eq!(r.headers()["tus-version"], "1.0.0");
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["code"], "unsupported_tus_version");
    assert_eq!(app.count("files"), 0);
}

#[tokio::test]
async fn a_wrong_checksum_gets_460_and_keeps_nothing_and_a_wrong_offset_gets_409() {
    let app = spawn_app().await;
    let (alice, _) = two_users(&app).await;
    let tus = Tus { app: &app };
    let data = body(4 * 1040, 1);
    let loc = tus.create(&alice, "bob", data.len() as u64).await;
    let first = &data[..1040];
    let r = tus
        .patch(
            &alice.access_token,
            &loc,
            0,
            first.to_vec(),
            Some(sha256_header(first)),
        )
        .await;
    assert_eq!(r.status(), 204);

    let next = &data[1040..2080];
    let r = tus
        .patch(
            &alice.access_token,
            &loc,
            1040,
            next.to_vec(),
            Some(sha256_header(b"other")),
        )
        .await;
    assert_eq!(r.status().as_u16(), 460);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["code"], "checksum_mismatch");
    assert_eq!(tus.offset(&alice.access_token, &loc).await, 1040);
    assert_eq!(
        std::fs::metadata(blob_path(&app, &loc))
            .expect("blob")
            .len(),
        1040
    );

    for wrong in [0, 2080] {
        let r = tus
            .patch(&alice.access_token, &loc, wrong, next.to_vec(), None)
            .await;
        assert_eq!(r.status(), 409, "offset {wrong}");
        let e: Value = r.json().await.expect("json");
        assert_eq!(e["error"]["code"], "offset_mismatch");
    }
    assert_eq!(tus.offset(&alice.access_token, &loc).await, 1040);

    // The wrong media type, a body past Upload-Length, an unknown algorithm.
    let r = tus
        .req(Method::PATCH, &loc, &alice.access_token)
        .header("Upload-Offset", "1040")
        .header("Content-Type", "application/octet-stream")
        .body(next.to_vec())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 415);
    let r = tus
        .patch(&alice.access_token, &loc, 1040, vec![0; 4 * 1040], None)
        .await;
    assert_eq!(r.status(), 400);
    let r = tus
        .patch(
            &alice.access_token,
            &loc,
            1040,
            next.to_vec(),
            Some("md5 AAAA".into()),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(tus.offset(&alice.access_token, &loc).await, 1040);
    assert_eq!(
        std::fs::metadata(blob_path(&app, &loc))
            .expect("blob")
            .len(),
        1040
    );

    // The right offset and checksum go through.
    let r = tus
        .patch(
            &alice.access_token,
            &loc,
            1040,
            next.to_vec(),
            Some(sha256_header(next)),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(tus.offset(&alice.access_token, &loc).await, 2080);
}

#[tokio::test]
async fn someone_who_is_not_the_uploader_gets_404_on_head_patch_delete_get_and_sees_nothing_listed()
{
    let app = spawn_app().await;
    let (alice, bob) = two_users(&app).await;
    let carol = app.register_and_login("carol").await;
    let tus = Tus { app: &app };
    let data = body(100, 3);
    let loc = tus.create(&alice, "bob", data.len() as u64).await;
    for s in [&bob, &carol] {
        assert_eq!(tus.head(&s.access_token, &loc).await.status(), 404);
        let r = tus
            .patch(&s.access_token, &loc, 0, data.clone(), None)
            .await;
        assert_eq!(r.status(), 404);
        let r = tus
            .req(Method::DELETE, &loc, &s.access_token)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 404);
    }
    assert_eq!(tus.offset(&alice.access_token, &loc).await, 0);
    let r = tus
        .patch(&alice.access_token, &loc, 0, data.clone(), None)
        .await;
    assert_eq!(r.status(), 204);
    wait_for_state(&app, &loc, "ready").await;
    let path = format!("/api/files/{}", file_id_of(&loc));
    let r = get(&app, &path, &carol.access_token, None).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        get(&app, &path, &bob.access_token, None).await.status(),
        200
    );
    let r = get(
        &app,
        "/api/conversations/alice/files",
        &carol.access_token,
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.expect("json");
    assert_eq!(page["files"], serde_json::json!([]));
    let r = get(
        &app,
        "/api/conversations/nobody/files",
        &bob.access_token,
        None,
    )
    .await;
    assert_eq!(r.status(), 404);
    // A malformed id is a 404 too, never a path on disk.
    let r = tus
        .head(&alice.access_token, "/api/uploads/..%2F..%2Fsecurechat.db")
        .await;
    assert_eq!(r.status(), 404);
    let r = get(&app, "/api/files/not-a-uuid", &alice.access_token, None).await;
    assert_eq!(r.status(), 404);
}

/// Asserts the request was refused with `status` and `code`, and nothing was stored.
async fn refused(app: &TestApp, r: reqwest::Response, status: u16, code: &str, rows: i64) {
    assert_eq!(r.status().as_u16(), status);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["code"], code);
    assert_eq!(app.count("files"), rows, "{code}: no row");
    assert_eq!(blob_files(app).len(), 0, "{code}: no blob");
}

#[tokio::test]
async fn every_limit_is_refused_with_its_status_before_anything_is_stored() {
    let app = spawn_app_with(|c| {
        c.files.max_file_bytes = 10_000;
        c.files.quota_bytes = 15_000;
        c.files.max_uploads_in_flight = 2;
        c.files.max_patch_bytes = 2048;
    })
    .await;
    let (alice, _) = two_users(&app).await;
    let tus = Tus { app: &app };
    let meta = metadata("bob", RS, &manifest("alice", "bob"));
    let t = &alice.access_token;
    refused(
        &app,
        tus.create_raw(t, 10_001, &meta).await,
        413,
        "file_too_large",
        0,
    )
    .await;
    refused(
        &app,
        tus.create_raw(t, 16, &meta).await,
        400,
        "invalid_length",
        0,
    )
    .await;
    let r = tus
        .req(Method::POST, "/api/uploads", t)
        .header("Upload-Metadata", meta.clone())
        .send()
        .await
        .expect("send");
    refused(&app, r, 400, "invalid_length", 0).await;
    for bad in [
        metadata("bob", 512, &manifest("alice", "bob")),
        format!("recipient {}", STANDARD.encode("bob")),
        "recipient %%%".to_string(),
    ] {
        refused(
            &app,
            tus.create_raw(t, 100, &bad).await,
            400,
            "invalid_metadata",
            0,
        )
        .await;
    }
    let r = tus
        .create_raw(
            t,
            100,
            &metadata("nobody", RS, &manifest("alice", "nobody")),
        )
        .await;
    refused(&app, r, 400, "unknown_recipient", 0).await;
    for bad in [
        manifest("bob", "alice"),
        manifest("alice", "carol"),
        "{\"v\":1}".to_string(),
    ] {
        let r = tus.create_raw(t, 100, &metadata("bob", RS, &bad)).await;
        refused(&app, r, 400, "invalid_envelope", 0).await;
    }
    // A first body over max_patch_bytes is refused before the upload is created.
    let r = tus
        .req(Method::POST, "/api/uploads", t)
        .header("Upload-Length", "5000")
        .header("Upload-Metadata", meta.clone())
        .header("Content-Type", "application/offset+octet-stream")
        .body(vec![0u8; 4096])
        .send()
        .await
        .expect("send");
    refused(&app, r, 413, "patch_too_large", 0).await;

    tus.create(&alice, "bob", 9_000).await;
    refused(
        &app,
        tus.create_raw(t, 6_001, &meta).await,
        413,
        "quota_exceeded",
        1,
    )
    .await;
    let loc = tus.create(&alice, "bob", 6_000).await;
    refused(
        &app,
        tus.create_raw(t, 17, &meta).await,
        429,
        "too_many_uploads",
        2,
    )
    .await;

    // A PATCH over max_patch_bytes: 413, offset unchanged.
    let r = tus.patch(t, &loc, 0, vec![0u8; 3000], None).await;
    assert_eq!(r.status(), 413);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["code"], "patch_too_large");
    assert_eq!(tus.offset(t, &loc).await, 0);

    // DELETE frees the quota and the in-flight slot, and removes the blob.
    let r = tus.patch(t, &loc, 0, vec![0u8; 1040], None).await;
    assert_eq!(r.status(), 204);
    assert!(blob_path(&app, &loc).exists());
    let r = tus.req(Method::DELETE, &loc, t).send().await.expect("send");
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    assert!(!blob_path(&app, &loc).exists());
    assert_eq!(tus.head(t, &loc).await.status(), 404);
    tus.create(&alice, "bob", 6_000).await;

    let limits: Value = get(&app, "/api/files/limits", t, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(limits["may_send"], true);
    assert_eq!(limits["max_file_bytes"], 10_000);
    assert_eq!(limits["max_patch_bytes"], 2048);
    assert_eq!(limits["quota_bytes"], 15_000);
    assert_eq!(limits["used_bytes"], 15_000);
    assert_eq!(limits["max_uploads_in_flight"], 2);
    assert_eq!(limits["uploads_in_flight"], 2);
    assert_eq!(limits["upload_expiry_secs"], 86_400);
    assert_eq!(limits["retention_secs"], 0);
    assert_eq!(limits["record_size"], 65_536);
}

#[tokio::test]
async fn who_may_send_is_configurable_and_refused_with_403() {
    for (senders, admin_too) in [
        (securechat::config::Senders::Nobody, true),
        (securechat::config::Senders::Admins, false),
    ] {
        let app = spawn_app_with(|c| c.files.senders = senders).await;
        let (alice, bob) = two_users(&app).await;
        app.sqlite()
            .execute("UPDATE users SET is_admin = 1 WHERE username = 'bob'", [])
            .expect("admin");
        let tus = Tus { app: &app };
        let meta = metadata("bob", RS, &manifest("alice", "bob"));
        let r = tus.create_raw(&alice.access_token, 100, &meta).await;
        refused(&app, r, 403, "files_not_allowed", 0).await;
        let limits: Value = get(&app, "/api/files/limits", &alice.access_token, None)
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(limits["may_send"], false);
        let meta = metadata("alice", RS, &manifest("bob", "alice"));
        let r = tus.create_raw(&bob.access_token, 100, &meta).await;
        if admin_too {
            refused(&app, r, 403, "files_not_allowed", 0).await;
        } else {
            assert_eq!(r.status(), 201);
        }
    }
}

#[tokio::test]
async fn creation_with_upload_stores_the_first_bytes_and_answers_their_offset() {
    let app = spawn_app().await;
    let (alice, _) = two_users(&app).await;
    let tus = Tus { app: &app };
    let data = body(3000, 4);
    let r = tus
        .req(Method::POST, "/api/uploads", &alice.access_token)
        .header("Upload-Length", "3000")
        .header(
            "Upload-Metadata",
            metadata("bob", RS, &manifest("alice", "bob")),
        )
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Checksum", sha256_header(&data[..2080]))
        .body(data[..2080].to_vec())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["upload-offset"], "2080");
    let loc = r.headers()["location"].to_str().expect("loc").to_string();
    let r = tus
        .patch(&alice.access_token, &loc, 2080, data[2080..].to_vec(), None)
        .await;
    assert_eq!(r.status(), 204);
    wait_for_state(&app, &loc, "ready").await;
}

#[tokio::test]
async fn an_expired_upload_answers_410_and_is_removed_with_its_quota() {
    let app = spawn_app_with(|c| {
        c.files.upload_expiry_secs = 1;
        c.files.cleanup_interval_secs = 1;
        c.files.quota_bytes = 1000;
    })
    .await;
    let (alice, _) = two_users(&app).await;
    let tus = Tus { app: &app };
    let loc = tus.create(&alice, "bob", 1000).await;
    let r = tus
        .patch(&alice.access_token, &loc, 0, body(520, 1), None)
        .await;
    assert_eq!(r.status(), 204);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = tus.head(&alice.access_token, &loc).await;
    // Either still there and expired (410), or already removed by expire_uploads (404).
    assert!([410, 404].contains(&r.status().as_u16()), "{}", r.status());
    let r = tus
        .patch(&alice.access_token, &loc, 520, body(480, 1), None)
        .await;
    assert!([410, 404].contains(&r.status().as_u16()), "{}", r.status());
    for _ in 0..100 {
        if app.count("files") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.count("files"), 0);
    assert!(!blob_path(&app, &loc).exists());
    // The quota is free again.
    tus.create(&alice, "bob", 1000).await;
}

#[tokio::test]
async fn bytes_past_the_acknowledged_offset_are_cut_back_on_head_and_at_restart() {
    let app = spawn_app().await;
    let (alice, _) = two_users(&app).await;
    let tus = Tus { app: &app };
    let data = body(5000, 2);
    let loc = tus.create(&alice, "bob", data.len() as u64).await;
    let r = tus
        .patch(&alice.access_token, &loc, 0, data[..1040].to_vec(), None)
        .await;
    assert_eq!(r.status(), 204);
    // What a crash mid-PATCH leaves: bytes written, offset never committed.
    let path = blob_path(&app, &loc);
    let mut junk = std::fs::read(&path).expect("blob");
    junk.extend_from_slice(&[0xee; 700]);
    std::fs::write(&path, &junk).expect("write");
    assert_eq!(tus.offset(&alice.access_token, &loc).await, 1040);
    assert_eq!(std::fs::metadata(&path).expect("blob").len(), 1040);

    std::fs::write(&path, &junk).expect("write");
    let app = app.restart().await;
    assert_eq!(std::fs::metadata(&path).expect("blob").len(), 1040);
    let alice = app
        .client
        .login("alice", crate::helpers::PASSWORD)
        .await
        .expect("login");
    let tus = Tus { app: &app };
    let r = tus
        .patch(&alice.access_token, &loc, 1040, data[1040..].to_vec(), None)
        .await;
    assert_eq!(r.status(), 204);
    wait_for_state(&app, &loc, "ready").await;
    let r = get(
        &app,
        &format!("/api/files/{}", file_id_of(&loc)),
        &alice.access_token,
        None,
    )
    .await;
    assert_eq!(r.bytes().await.expect("body").to_vec(), data);
}

#[tokio::test]
async fn a_flipped_byte_is_never_served_as_good_and_the_file_is_marked_damaged() {
    let app = spawn_app().await;
    let (alice, bob) = two_users(&app).await;
    let tus = Tus { app: &app };
    let data = body(600_000, 5);
    let loc = tus.create(&alice, "bob", data.len() as u64).await;
    assert_eq!(
        tus.patch(&alice.access_token, &loc, 0, data.clone(), None)
            .await
            .status(),
        204
    );
    wait_for_state(&app, &loc, "ready").await;
    let path = blob_path(&app, &loc);
    let mut bytes = std::fs::read(&path).expect("blob");
    bytes[123_456] ^= 1;
    std::fs::write(&path, &bytes).expect("write");

    let url = format!("/api/files/{}", file_id_of(&loc));
    let r = get(&app, &url, &bob.access_token, None).await;
    assert_eq!(r.status(), 200);
    let got = r.bytes().await;
    assert!(
        got.is_err() || got.is_ok_and(|b| b.len() < data.len()),
        "a full bad body was served"
    );
    wait_for_state(&app, &loc, "damaged").await;
    let r = get(&app, &url, &bob.access_token, None).await;
    assert_eq!(r.status(), 409);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["code"], "file_damaged");
    let list: Value = get(
        &app,
        "/api/conversations/bob/files",
        &alice.access_token,
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(list["files"][0]["state"], "damaged");
    let metrics = app
        .client
        .request(securechat_client::Method::GET, "/metrics", None, None)
        .await
        .expect("metrics")
        .text();
    assert!(
        metrics.contains("securechat_files_damaged_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_scrubber_finds_a_flipped_byte_and_marks_the_file_damaged() {
    let app = spawn_app_with(|c| c.files.scrub_interval_secs = 1).await;
    let (alice, _) = two_users(&app).await;
    let tus = Tus { app: &app };
    let data = body(3000, 6);
    let good = tus.create(&alice, "bob", data.len() as u64).await;
    assert_eq!(
        tus.patch(&alice.access_token, &good, 0, data.clone(), None)
            .await
            .status(),
        204
    );
    let bad = tus.create(&alice, "bob", data.len() as u64).await;
    assert_eq!(
        tus.patch(&alice.access_token, &bad, 0, data.clone(), None)
            .await
            .status(),
        204
    );
    wait_for_state(&app, &good, "ready").await;
    wait_for_state(&app, &bad, "ready").await;
    let path = blob_path(&app, &bad);
    let mut bytes = std::fs::read(&path).expect("blob");
    bytes[10] ^= 0x80;
    std::fs::write(&path, &bytes).expect("write");
    wait_for_state(&app, &bad, "damaged").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let state: String = app
        .sqlite()
        .query_row(
            "SELECT state FROM files WHERE id = ?1",
            [file_id_of(&good)],
            |r| r.get(0),
        )
        .expect("row");
    assert_eq!(state, "ready");
    let metrics = app
        .client
        .request(securechat_client::Method::GET, "/metrics", None, None)
        .await
        .expect("metrics")
        .text();
    assert!(
        metrics.contains("securechat_files_damaged_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("securechat_files_uploads_finished_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("securechat_files_received_bytes_total 6000"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_files_list_pages_newest_first_with_a_cursor() {
    let app = spawn_app().await;
    let (alice, bob) = two_users(&app).await;
    let tus = Tus { app: &app };
    let mut locs = Vec::new();
    for i in 0..3u8 {
        let (from, to) = if i == 1 {
            (&bob, "alice")
        } else {
            (&alice, "bob")
        };
        let r = tus
            .create_raw(
                &from.access_token,
                100,
                &metadata(to, RS, &manifest(&from.username, to)),
            )
            .await;
        let loc = r.headers()["location"].to_str().expect("loc").to_string();
        assert_eq!(
            tus.patch(&from.access_token, &loc, 0, body(100, i), None)
                .await
                .status(),
            204
        );
        wait_for_state(&app, &loc, "ready").await;
        locs.push(file_id_of(&loc));
    }
    let p1: Value = get(
        &app,
        "/api/conversations/bob/files?limit=2",
        &alice.access_token,
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    let ids: Vec<&str> = p1["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert_eq!(ids, [locs[2].as_str(), locs[1].as_str()]);
    let cursor = p1["next_cursor"].as_str().expect("cursor");
    let p2: Value = get(
        &app,
        &format!("/api/conversations/bob/files?limit=2&before={cursor}"),
        &alice.access_token,
        None,
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(p2["files"][0]["id"], locs[0].as_str());
    assert_eq!(p2["files"].as_array().map(Vec::len), Some(1));
    assert_eq!(p2["next_cursor"], Value::Null);
    let r = get(
        &app,
        "/api/conversations/bob/files?limit=0",
        &alice.access_token,
        None,
    )
    .await;
    assert_eq!(r.status(), 400);
}

// --- kill -9 of the real binary ------------------------------------------------------------

fn kill_9(server: &mut crate::binary::Running) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let _ = server.child.wait();
}

async fn tus_request(
    base: &str,
    method: Method,
    path: &str,
    token: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(token)
        .header("Tus-Resumable", "1.0.0");
    for (k, v) in headers {
        r = r.header(*k, v.clone());
    }
    if let Some(b) = body {
        r = r
            .header("Content-Type", "application/offset+octet-stream")
            .body(b);
    }
    r.send().await.expect("send")
}

async fn login_pair(base: &str) -> (securechat_client::Client, Session, Session) {
    let client = securechat_client::Client::new(base)
        .expect("client")
        .with_min_kdf_iterations(crate::helpers::ITERATIONS);
    for name in ["alice", "bob"] {
        client
            .register(name, crate::helpers::PASSWORD, crate::helpers::ITERATIONS)
            .await
            .expect("register");
    }
    let alice = client
        .login("alice", crate::helpers::PASSWORD)
        .await
        .expect("login");
    let bob = client
        .login("bob", crate::helpers::PASSWORD)
        .await
        .expect("login");
    (client, alice, bob)
}

fn blob_in(data_dir: &std::path::Path, loc: &str) -> PathBuf {
    let id = file_id_of(loc);
    data_dir.join("blobs").join(&id[..2]).join(&id)
}

#[tokio::test]
async fn kill_9_in_the_middle_of_a_patch_resumes_from_the_last_acknowledged_offset() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let mut server = crate::binary::start(&data_dir, &[]);
    let (_, alice, _) = login_pair(&server.base).await;
    // Over 3 MiB: the hash state holds merged subtrees by the end.
    let data = body(3 * 1024 * 1024 + 500, 8);
    let meta = metadata("bob", RS, &manifest("alice", "bob"));
    let r = tus_request(
        &server.base,
        Method::POST,
        "/api/uploads",
        &alice.access_token,
        &[
            ("Upload-Length", data.len().to_string()),
            ("Upload-Metadata", meta),
        ],
        None,
    )
    .await;
    assert_eq!(r.status(), 201);
    let loc = r.headers()["location"].to_str().expect("loc").to_string();
    let acked = 1040 * 1100;
    let r = tus_request(
        &server.base,
        Method::PATCH,
        &loc,
        &alice.access_token,
        &[("Upload-Offset", "0".into())],
        Some(data[..acked].to_vec()),
    )
    .await;
    assert_eq!(r.status(), 204);

    // Half of the next PATCH's body is on its way when the server dies.
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let next = 1040 * 1000;
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Tus-Resumable: 1.0.0\r\nUpload-Offset: {acked}\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {next}\r\n\r\n",
        alice.access_token
    );
    sock.write_all(head.as_bytes()).await.expect("write");
    sock.write_all(&data[acked..acked + next / 2])
        .await
        .expect("write");
    sock.flush().await.expect("flush");
    let blob = blob_in(&data_dir, &loc);
    for _ in 0..100 {
        if std::fs::metadata(&blob).map(|m| m.len()).unwrap_or(0) > acked as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill_9(&mut server);
    drop(sock);

    let server = crate::binary::start(&data_dir, &[]);
    // The bytes past the acknowledged offset were cut at start-up.
    assert_eq!(std::fs::metadata(&blob).expect("blob").len(), acked as u64);
    let client = securechat_client::Client::new(&server.base)
        .expect("client")
        .with_min_kdf_iterations(crate::helpers::ITERATIONS);
    let alice = client
        .login("alice", crate::helpers::PASSWORD)
        .await
        .expect("login");
    let bob = client
        .login("bob", crate::helpers::PASSWORD)
        .await
        .expect("login");
    let r = tus_request(
        &server.base,
        Method::HEAD,
        &loc,
        &alice.access_token,
        &[],
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["upload-offset"], acked.to_string());
    let r = tus_request(
        &server.base,
        Method::PATCH,
        &loc,
        &alice.access_token,
        &[("Upload-Offset", acked.to_string())],
        Some(data[acked..].to_vec()),
    )
    .await;
    assert_eq!(r.status(), 204);
    let url = format!("{}/api/files/{}", server.base, file_id_of(&loc));
    let mut got = None;
    for _ in 0..200 {
        let r = reqwest::Client::new()
            .get(&url)
            .bearer_auth(&bob.access_token)
            .send()
            .await
            .expect("send");
        if r.status() == 200 {
            assert_eq!(
                r.headers()["etag"].to_str().expect("etag"),
                format!("\"{}\"", blake3::hash(&data).to_hex())
            );
            got = Some(r.bytes().await.expect("body").to_vec());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        got.as_deref() == Some(&data[..]),
        "the download is the uploaded bytes"
    );
    let mut server = server;
    kill_9(&mut server);
}

#[tokio::test]
async fn kill_9_in_the_middle_of_finalize_still_finalizes_once_with_one_file_ready_per_party() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let slow = [("SECURECHAT_FILES__FINALIZE_DELAY_MS", "1500")];
    let mut server = crate::binary::start(&data_dir, &slow);
    let (_, alice, _) = login_pair(&server.base).await;
    let data = body(5000, 7);
    let r = tus_request(
        &server.base,
        Method::POST,
        "/api/uploads",
        &alice.access_token,
        &[
            ("Upload-Length", data.len().to_string()),
            (
                "Upload-Metadata",
                metadata("bob", RS, &manifest("alice", "bob")),
            ),
        ],
        None,
    )
    .await;
    let loc = r.headers()["location"].to_str().expect("loc").to_string();
    let r = tus_request(
        &server.base,
        Method::PATCH,
        &loc,
        &alice.access_token,
        &[("Upload-Offset", "0".into())],
        Some(data.clone()),
    )
    .await;
    assert_eq!(r.status(), 204);
    // finalize_upload is running now, inside its delay: kill it there.
    tokio::time::sleep(Duration::from_millis(400)).await;
    kill_9(&mut server);
    let db = rusqlite::Connection::open(data_dir.join("securechat.db")).expect("db");
    let state: String = db
        .query_row("SELECT state FROM files", [], |r| r.get(0))
        .expect("row");
    assert_eq!(
        state, "uploading",
        "the kill came before finalize committed"
    );
    drop(db);

    // The restarted server runs the orphaned finalize (after the same delay, so both
    // parties are connected by then).
    let mut server = crate::binary::start(&data_dir, &slow);
    let client = securechat_client::Client::new(&server.base)
        .expect("client")
        .with_min_kdf_iterations(crate::helpers::ITERATIONS);
    let alice = client
        .login("alice", crate::helpers::PASSWORD)
        .await
        .expect("login");
    let bob = client
        .login("bob", crate::helpers::PASSWORD)
        .await
        .expect("login");
    let mut wa = client.connect_ws(&alice.access_token).await.expect("ws");
    let mut wb = client.connect_ws(&bob.access_token).await.expect("ws");
    for ws in [&mut wa, &mut wb] {
        let file = next_matching(ws, |f| match f {
            ServerFrame::FileReady { file } => Some(file),
            _ => None,
        })
        .await;
        assert_eq!(file["id"], file_id_of(&loc));
        assert_eq!(file["state"], "ready");
    }
    for ws in [&mut wa, &mut wb] {
        none_of(ws, Duration::from_millis(500), |f| {
            matches!(f, ServerFrame::FileReady { .. })
        })
        .await;
    }
    let db = rusqlite::Connection::open(data_dir.join("securechat.db")).expect("db");
    let (state, finalizes): (String, i64) = db
        .query_row(
            "SELECT (SELECT state FROM files), \
             (SELECT count(*) FROM jobs WHERE kind = 'finalize_upload' AND state = 'done')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("row");
    assert_eq!((state.as_str(), finalizes), ("ready", 1));
    kill_9(&mut server);
}

#[tokio::test]
async fn a_dropped_patch_keeps_whole_records_and_a_concurrent_patch_gets_409() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().await;
    let (alice, _) = two_users(&app).await;
    let tus = Tus { app: &app };
    let data = body(20 * 1040, 3);
    let loc = tus.create(&alice, "bob", data.len() as u64).await;
    let addr = app
        .client
        .base_url()
        .trim_start_matches("http://")
        .to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
        alice.access_token,
        data.len()
    );
    sock.write_all(head.as_bytes()).await.expect("write");
    // 3.5 records arrive, then the connection stalls...
    sock.write_all(&data[..3 * 1040 + 520])
        .await
        .expect("write");
    sock.flush().await.expect("flush");
    let path = blob_path(&app, &loc);
    for _ in 0..100 {
        if std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) >= 3 * 1040 + 520 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...while it runs, a second PATCH of the same upload is turned away.
    let r = tus
        .patch(&alice.access_token, &loc, 0, data[..1040].to_vec(), None)
        .await;
    assert_eq!(r.status(), 409);
    // ...and then it drops: the three whole records are kept, the half one is not.
    drop(sock);
    let mut offset = 0;
    for _ in 0..100 {
        offset = tus.offset(&alice.access_token, &loc).await;
        if offset > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(offset, 3 * 1040);
    assert_eq!(std::fs::metadata(&path).expect("blob").len(), 3 * 1040);
    let r = tus
        .patch(
            &alice.access_token,
            &loc,
            offset,
            data[3 * 1040..].to_vec(),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    wait_for_state(&app, &loc, "ready").await;
    let r = get(
        &app,
        &format!("/api/files/{}", file_id_of(&loc)),
        &alice.access_token,
        None,
    )
    .await;
    assert_eq!(r.bytes().await.expect("body").to_vec(), data);
}

#[tokio::test]
async fn a_file_past_retention_is_purged_with_its_blob_and_its_quota() {
    let app = spawn_app_with(|c| {
        c.files.retention_secs = 1;
        c.files.cleanup_interval_secs = 1;
        c.files.quota_bytes = 1000;
    })
    .await;
    let (alice, bob) = two_users(&app).await;
    let tus = Tus { app: &app };
    let loc = tus.create(&alice, "bob", 1000).await;
    let r = tus
        .patch(&alice.access_token, &loc, 0, body(1000, 4), None)
        .await;
    assert_eq!(r.status(), 204);
    wait_for_state(&app, &loc, "ready").await;
    let path = blob_path(&app, &loc);
    assert!(path.exists());
    for _ in 0..100 {
        if app.count("files") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.count("files"), 0);
    assert!(!path.exists());
    let r = get(
        &app,
        &format!("/api/files/{}", file_id_of(&loc)),
        &bob.access_token,
        None,
    )
    .await;
    assert_eq!(r.status(), 404);
    tus.create(&alice, "bob", 1000).await;
}

#[tokio::test]
async fn an_upload_of_several_mib_in_many_patches_hashes_to_blake3_of_its_bytes() {
    let app = spawn_app().await;
    let (alice, bob) = two_users(&app).await;
    let tus = Tus { app: &app };
    let data = body(2 * 1024 * 1024 + 700_001, 12);
    let loc = tus.create(&alice, "bob", data.len() as u64).await;
    let mut offset = 0;
    for chunk in data.chunks(1040 * 300) {
        let r = tus
            .patch(
                &alice.access_token,
                &loc,
                offset as u64,
                chunk.to_vec(),
                None,
            )
            .await;
        assert_eq!(r.status(), 204);
        offset += chunk.len();
    }
    wait_for_state(&app, &loc, "ready").await;
    let r = get(
        &app,
        &format!("/api/files/{}", file_id_of(&loc)),
        &bob.access_token,
        None,
    )
    .await;
    assert_eq!(
        r.headers()["etag"].to_str().expect("etag"),
        format!("\"{}\"", blake3::hash(&data).to_hex())
    );
    assert_eq!(r.bytes().await.expect("body").to_vec(), data);
}

#[cfg(feature = "rate-limit")]
#[tokio::test]
async fn a_patch_over_the_upload_rate_gets_429_with_retry_after_and_keeps_nothing() {
    let app = crate::helpers::spawn_app_with(|c| {
        let t: toml::Table =
            toml::from_str("upload_bytes_per_account = { burst = 3000, per_secs = 60 }")
                .expect("toml");
        c.plugins.0.insert("rate_limit".into(), t);
    })
    .await;
    let (alice, _) = two_users(&app).await;
    let tus = Tus { app: &app };
    let data = body(4 * 1040, 3);
    let loc = tus.create(&alice, "bob", data.len() as u64).await;
    let first = &data[..2080];
    let r = tus
        .patch(&alice.access_token, &loc, 0, first.to_vec(), None)
        .await;
    assert_eq!(r.status(), 204, "within the rate");
    let r = tus
        .patch(&alice.access_token, &loc, 2080, data[2080..].to_vec(), None)
        .await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some(), "Retry-After");
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["error"]["code"], "rate_limited");
    assert_eq!(tus.offset(&alice.access_token, &loc).await, 2080);
    assert_eq!(
        std::fs::metadata(blob_path(&app, &loc))
            .expect("blob")
            .len(),
        2080,
        "no byte of the refused PATCH kept"
    );
}

#[cfg(feature = "rate-limit")]
/// The creation request of `len` first bytes from `from` to `to`.
async fn create_with_body(
    tus: &Tus<'_>,
    from: &Session,
    to: &str,
    total: u64,
    len: usize,
) -> reqwest::Response {
    tus.req(Method::POST, "/api/uploads", &from.access_token)
        .header("Upload-Length", total.to_string())
        .header(
            "Upload-Metadata",
            metadata(to, RS, &manifest(&from.username, to)),
        )
        .header("Content-Type", "application/offset+octet-stream")
        .body(body(len, 9))
        .send()
        .await
        .expect("send")
}

#[cfg(feature = "rate-limit")]
/// A PATCH of `bytes` in chunked transfer encoding (no Content-Length); the status code.
async fn chunked_patch(app: &TestApp, token: &str, loc: &str, offset: u64, bytes: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = app
        .client
        .base_url()
        .trim_start_matches("http://")
        .to_string();
    let mut s = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Tus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\n\
         Content-Type: application/offset+octet-stream\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n{:x}\r\n",
        bytes.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(bytes).await.expect("write");
    s.write_all(b"\r\n0\r\n\r\n").await.expect("write");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.expect("read");
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line")
}

#[cfg(feature = "rate-limit")]
#[tokio::test]
async fn upload_bytes_are_limited_per_account_in_creation_bodies_and_chunked_patches_too() {
    let app = spawn_app_with(|c| {
        let t: toml::Table =
            toml::from_str("upload_bytes_per_account = { burst = 4096, per_secs = 3600 }")
                .expect("toml");
        c.plugins.0.insert("rate_limit".into(), t);
    })
    .await;
    let (alice, bob) = two_users(&app).await;
    let tus = Tus { app: &app };

    // 3000 bytes in the creation request are charged: 1096 remain for alice.
    let r = create_with_body(&tus, &alice, "bob", 10_000, 3000).await;
    assert_eq!(r.status(), 201);
    let loc = r.headers()["location"].to_str().expect("loc").to_string();
    let r = tus
        .patch(&alice.access_token, &loc, 3000, body(2000, 1), None)
        .await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["tus-resumable"], "1.0.0");
    assert_eq!(
        tus.offset(&alice.access_token, &loc).await,
        3000,
        "a refused PATCH keeps nothing"
    );

    // A creation body over what is left creates no upload at all.
    let r = create_with_body(&tus, &alice, "bob", 10_000, 2000).await;
    assert_eq!(r.status(), 429);
    let limits = get(&app, "/api/files/limits", &alice.access_token, None).await;
    let limits: Value = limits.json().await.expect("json");
    assert_eq!(limits["uploads_in_flight"], 1);

    // Bob's budget is his own; a chunked body, of unknown length, is charged as a full PATCH.
    let r = create_with_body(&tus, &bob, "alice", 10_000, 100).await;
    assert_eq!(r.status(), 201);
    let bob_loc = r.headers()["location"].to_str().expect("loc").to_string();
    assert_eq!(
        chunked_patch(&app, &bob.access_token, &bob_loc, 100, &body(100, 2)).await,
        429
    );
    assert_eq!(tus.offset(&bob.access_token, &bob_loc).await, 100);
}
