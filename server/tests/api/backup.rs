//! `securechat backup` and `securechat restore`: a backup taken while messages are being
//! stored holds every message acknowledged before it began and restores to a database that
//! passes `PRAGMA integrity_check` and serves them; file blobs travel with their rows; and
//! every refusal (a non-empty target, a tampered backup, a running server, an existing
//! database without --force) changes nothing. The last test drives the real binary.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use securechat::backup::{self, Manifest, Refusal, Restored};
use securechat::Config;
use securechat_client::ws::WsClient;
use securechat_client::{b64, parse_enc_spki, seal_text, Client, Session};

use crate::files::{body, file_id_of, get, sha256_header, two_users, wait_for_state, Tus};
use crate::helpers::{spawn_app, spawn_app_with, test_config, PASSWORD};
use crate::relay::ack;

async fn take_backup(config: &Config, to: &Path) -> anyhow::Result<Manifest> {
    let (config, to) = (config.clone(), to.to_owned());
    tokio::task::spawn_blocking(move || backup::backup(&config, &to))
        .await
        .expect("backup task")
}

async fn restore(config: &Config, from: &Path, force: bool) -> anyhow::Result<Restored> {
    let (config, from) = (config.clone(), from.to_owned());
    tokio::task::spawn_blocking(move || backup::restore(&config, &from, force))
        .await
        .expect("restore task")
}

fn refusal(e: &anyhow::Error) -> &Refusal {
    e.downcast_ref::<Refusal>()
        .unwrap_or_else(|| panic!("not a refusal: {e:#}"))
}

/// Every file under `dir` (recursively) with its size and BLAKE3: to show that nothing
/// changed.
fn tree(dir: &Path) -> BTreeMap<PathBuf, (u64, String)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let bytes = std::fs::read(&p).expect("read");
                let hash = blake3::hash(&bytes).to_hex().to_string();
                out.insert(p, (bytes.len() as u64, hash));
            }
        }
    }
    out
}

/// Two backups of one server, `first` with alice only and `second` with alice and bob, and
/// a data dir (no server has run there, so nothing else touches its files) restored from
/// `second`.
struct TwoBackups {
    _dir: tempfile::TempDir,
    first: PathBuf,
    second: PathBuf,
    config: Config,
}

async fn two_backups() -> TwoBackups {
    let app = spawn_app().await;
    app.register("alice").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let first = dir.path().join("first");
    take_backup(&app.config, &first).await.expect("backup");
    app.register("bob").await;
    let second = dir.path().join("second");
    take_backup(&app.config, &second).await.expect("backup");
    let config = config_in(&dir.path().join("restored"));
    restore(&config, &second, false).await.expect("restore");
    TwoBackups {
        _dir: dir,
        first,
        second,
        config,
    }
}

fn integrity_check(db: &Path) -> String {
    rusqlite::Connection::open(db)
        .expect("open")
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}

/// Alice's socket and bob's encryption key: alice sends bob messages.
struct ToBob {
    alice: Session,
    enc: rsa::RsaPublicKey,
    ws: WsClient,
}

impl ToBob {
    async fn open(client: &Client, alice: Session) -> ToBob {
        let keys = client.keys(&alice.access_token, "bob").await.expect("keys");
        let enc = parse_enc_spki(&b64::decode(&keys.enc_public_key).expect("b64")).expect("rsa");
        let ws = client.connect_ws(&alice.access_token).await.expect("ws");
        ToBob { alice, enc, ws }
    }

    /// Sends `text` and waits for its ack; returns the message id.
    async fn send(&mut self, text: &str) -> String {
        let env = seal_text("alice", &self.alice.identity, "bob", &self.enc, text).expect("seal");
        self.ws.send_envelope(&env).await.expect("send");
        let (id, _) = ack(&mut self.ws).await;
        assert_eq!(id, env.id);
        id
    }
}

/// Every message id in `peer`'s conversation with `s`, oldest first, page by page.
async fn all_ids(client: &Client, s: &Session, peer: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let page = client
            .history(&s.access_token, peer, Some(after), None, Some(200))
            .await
            .expect("history");
        let Some(last) = page.messages.last() else {
            return ids;
        };
        after = last.seq;
        ids.extend(
            page.messages
                .iter()
                .map(|m| m.envelope.parse().expect("envelope").id),
        );
    }
}

/// A config for a fresh data dir under `dir` (a restore target).
fn config_in(dir: &Path) -> Config {
    test_config(dir.join("data"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_write_load_restores_every_message_acknowledged_before_it_began() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    app.register("bob").await;
    let mut to_bob = ToBob::open(&app.client, alice).await;

    // A client task sends one message after another, each after the last one's ack.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (acked, stop) = (acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let id = to_bob.send(&format!("message {i}")).await;
                acked.lock().expect("lock").push(id);
                i += 1;
            }
        })
    };
    let enough = |n: usize| {
        let acked = acked.clone();
        async move {
            for _ in 0..600 {
                if acked.lock().expect("lock").len() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("fewer than {n} messages were acknowledged in 30 s");
        }
    };
    enough(40).await;

    let before: Vec<String> = acked.lock().expect("lock").clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("backups/first");
    let started = std::time::Instant::now();
    let manifest = take_backup(&app.config, &target).await.expect("backup");
    println!(
        "{} messages acknowledged before the backup, {} during its {:?}",
        before.len(),
        acked.lock().expect("lock").len() - before.len(),
        started.elapsed()
    );
    // The writes go on after the backup: the server was never blocked.
    enough(before.len() + 20).await;
    stop.store(true, Ordering::SeqCst);
    sender.await.expect("sender");
    let sent: HashSet<String> = acked.lock().expect("lock").iter().cloned().collect();

    assert!(
        manifest.counts.messages >= before.len() as i64,
        "{manifest:?}"
    );
    assert_eq!(manifest.counts.users, 2);
    assert!(!manifest.secrets_included);

    let restored_dir = tempfile::tempdir().expect("tempdir");
    let config = config_in(restored_dir.path());
    let done = restore(&config, &target, false).await.expect("restore");
    assert!(done.moved_aside.is_none());
    assert_eq!(integrity_check(&config.database_path()), "ok");

    let restored = spawn_app_with(|c| *c = config.clone()).await;
    let bob_again = restored
        .client
        .login("bob", PASSWORD)
        .await
        .expect("bob signs in to the restored server");
    let ids = all_ids(&restored.client, &bob_again, "alice").await;
    let have: HashSet<&String> = ids.iter().collect();
    let missing: Vec<&String> = before.iter().filter(|id| !have.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged messages are missing",
        missing.len(),
        before.len()
    );
    assert_eq!(
        &ids[..before.len()],
        &before[..],
        "in the order they were sent"
    );
    assert!(ids.iter().all(|id| sent.contains(id)), "nothing else");
    assert_eq!(ids.len() as i64, manifest.counts.messages);
}

#[tokio::test]
async fn a_finished_files_blob_is_in_the_backup_and_downloads_after_restore_and_an_upload_resumes()
{
    let app = spawn_app().await;
    let (alice, _bob) = two_users(&app).await;
    let tus = Tus { app: &app };
    // A finished file.
    let data = body(3 * 1040 + 100, 3);
    let loc = tus.create(&alice, "bob", data.len() as u64).await;
    let r = tus
        .patch(
            &alice.access_token,
            &loc,
            0,
            data.clone(),
            Some(sha256_header(&data)),
        )
        .await;
    assert_eq!(r.status(), 204);
    wait_for_state(&app, &loc, "ready").await;
    // A finished file whose blob is gone, as if removed right after the snapshot.
    let other = body(500, 4);
    let gone = tus.create(&alice, "bob", other.len() as u64).await;
    let r = tus
        .patch(&alice.access_token, &gone, 0, other.clone(), None)
        .await;
    assert_eq!(r.status(), 204);
    wait_for_state(&app, &gone, "ready").await;
    let gone_id = file_id_of(&gone);
    std::fs::remove_file(
        app.config
            .storage
            .data_dir
            .join("blobs")
            .join(&gone_id[..2])
            .join(&gone_id),
    )
    .expect("remove blob");
    // An upload half way: its acknowledged bytes travel too.
    let partial = body(2 * 1040 + 100, 5);
    let up = tus.create(&alice, "bob", partial.len() as u64).await;
    let r = tus
        .patch(&alice.access_token, &up, 0, partial[..1040].to_vec(), None)
        .await;
    assert_eq!(r.status(), 204);

    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("bk");
    let manifest = take_backup(&app.config, &target).await.expect("backup");
    assert_eq!(manifest.dropped_files, 1, "{manifest:?}");
    assert_eq!(manifest.counts.files, 1);
    assert_eq!(manifest.counts.uploads, 1);
    let id = file_id_of(&loc);
    let copy = target.join("blobs").join(&id[..2]).join(&id);
    assert_eq!(std::fs::read(&copy).expect("blob in the backup"), data);
    let entry = manifest
        .blobs
        .iter()
        .find(|b| b.id == id)
        .expect("in the manifest");
    assert_eq!(entry.blake3, blake3::hash(&data).to_hex().as_str());
    assert_eq!(manifest.blobs.len(), 2);

    // A flipped byte in a blob is found before anything is restored.
    let restored_dir = tempfile::tempdir().expect("tempdir");
    let config = config_in(restored_dir.path());
    let mut flipped = data.clone();
    flipped[10] ^= 1;
    std::fs::write(&copy, &flipped).expect("tamper");
    let e = restore(&config, &target, false)
        .await
        .expect_err("tampered");
    assert!(matches!(refusal(&e), Refusal::BadBackup(..)), "{e:#}");
    assert!(!config.database_path().exists());
    std::fs::write(&copy, &data).expect("untamper");

    restore(&config, &target, false).await.expect("restore");
    let restored = spawn_app_with(|c| *c = config.clone()).await;
    let bob = restored.client.login("bob", PASSWORD).await.expect("bob");
    let r = get(
        &restored,
        &format!("/api/files/{id}"),
        &bob.access_token,
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("body").to_vec(), data);
    let r = get(
        &restored,
        &format!("/api/files/{gone_id}"),
        &bob.access_token,
        None,
    )
    .await;
    assert_eq!(r.status(), 404, "the row without a blob was left out");
    // The upload resumes where the backup left it, and finishes.
    let alice = restored
        .client
        .login("alice", PASSWORD)
        .await
        .expect("alice");
    let tus = Tus { app: &restored };
    assert_eq!(tus.offset(&alice.access_token, &up).await, 1040);
    let r = tus
        .patch(
            &alice.access_token,
            &up,
            1040,
            partial[1040..].to_vec(),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    wait_for_state(&restored, &up, "ready").await;
    let r = get(
        &restored,
        &format!("/api/files/{}", file_id_of(&up)),
        &bob.access_token,
        None,
    )
    .await;
    assert_eq!(r.bytes().await.expect("body").to_vec(), partial);
}

#[tokio::test]
async fn a_backup_into_a_directory_that_holds_anything_is_refused_and_writes_nothing() {
    let app = spawn_app().await;
    app.register("alice").await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), b"mine").expect("write");
    let before = tree(dir.path());
    let e = take_backup(&app.config, dir.path())
        .await
        .expect_err("not empty");
    assert!(matches!(refusal(&e), Refusal::TargetNotEmpty(_)), "{e:#}");
    assert_eq!(refusal(&e).exit_code(), 5);
    assert_eq!(tree(dir.path()), before);
    // An empty directory is fine.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    take_backup(&app.config, &empty).await.expect("backup");
    assert!(empty.join("manifest.json").exists());
}

#[tokio::test]
async fn a_tampered_or_unfinished_backup_is_refused_and_changes_nothing() {
    let b = two_backups().await;
    let data = b.config.storage.data_dir.clone();
    let before = tree(&data);

    // One byte flipped in the database copy.
    let db = b.first.join("securechat.db");
    let mut bytes = std::fs::read(&db).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&db, &bytes).expect("tamper");
    let e = restore(&b.config, &b.first, true)
        .await
        .expect_err("tampered");
    assert!(matches!(refusal(&e), Refusal::BadBackup(..)), "{e:#}");
    assert!(e.to_string().contains("BLAKE3"), "{e:#}");
    assert_eq!(refusal(&e).exit_code(), 3);
    assert_eq!(tree(&data), before, "the data dir is as it was");

    // No manifest: an unfinished backup, or not one at all.
    bytes[last] ^= 0x01;
    std::fs::write(&db, &bytes).expect("untamper");
    std::fs::remove_file(b.first.join("manifest.json")).expect("rm");
    let e = restore(&b.config, &b.first, true)
        .await
        .expect_err("no manifest");
    assert!(matches!(refusal(&e), Refusal::BadBackup(..)), "{e:#}");
    assert!(e.to_string().contains("manifest.json"), "{e:#}");
    assert_eq!(tree(&data), before);
    // The untouched second backup still restores.
    restore(&b.config, &b.second, true).await.expect("restore");
}

#[tokio::test]
async fn a_restore_while_a_server_uses_the_data_dir_is_refused_and_the_server_goes_on() {
    let app = spawn_app().await;
    let alice = app.register_and_login("alice").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("bk");
    take_backup(&app.config, &target).await.expect("backup");
    let e = restore(&app.config, &target, true)
        .await
        .expect_err("server running");
    assert!(matches!(refusal(&e), Refusal::ServerRunning(_)), "{e:#}");
    assert_eq!(refusal(&e).exit_code(), 4);
    assert!(app.client.me(&alice.access_token).await.is_ok());
    assert!(!app
        .config
        .storage
        .data_dir
        .join("securechat.db.restoring")
        .exists());
}

#[tokio::test]
async fn a_restore_onto_an_existing_database_needs_force_and_moves_the_old_one_aside() {
    let b = two_backups().await;
    let data = b.config.storage.data_dir.clone();
    let before = tree(&data);

    let e = restore(&b.config, &b.first, false)
        .await
        .expect_err("has a database");
    assert!(matches!(refusal(&e), Refusal::HasDatabase(_)), "{e:#}");
    assert_eq!(refusal(&e).exit_code(), 5);
    assert_eq!(tree(&data), before);

    let done = restore(&b.config, &b.first, true).await.expect("forced");
    let aside = done.moved_aside.expect("the old database moved aside");
    let old = rusqlite::Connection::open(aside.join("securechat.db")).expect("old");
    let bob_there: i64 = old
        .query_row(
            "SELECT count(*) FROM users WHERE username = 'bob'",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(bob_there, 1, "the old database is kept whole");
    drop(old);
    let app = spawn_app_with(|c| *c = b.config.clone()).await;
    assert!(app.client.login("alice", PASSWORD).await.is_ok());
    let e = app
        .client
        .login("bob", PASSWORD)
        .await
        .expect_err("bob came after the first backup");
    assert!(e.is_api(401, "invalid_credentials"), "{e}");
}

/// The real binary: `backup` beside a running server (private modes, no secrets, exit 5 on
/// a used target), `restore` refused with exit 4 while it runs and 5 onto its database,
/// then a restore into a new data dir that serves the messages; that server makes its own
/// JWT secret, so an old access token is refused and the refresh token still works.
#[cfg(unix)]
#[tokio::test]
async fn the_backup_and_restore_commands_work_beside_a_running_server_with_their_exit_codes() {
    use std::os::unix::fs::PermissionsExt;

    use crate::binary::{securechat, sigterm_and_wait, start, succeeded};
    use crate::helpers::ITERATIONS;

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = start(&data, &[]);
    let client = securechat_client::Client::new(&server.base)
        .expect("client")
        .with_min_kdf_iterations(ITERATIONS);
    for name in ["alice", "bob"] {
        client
            .register(name, PASSWORD, ITERATIONS)
            .await
            .expect("register");
    }
    let alice = client.login("alice", PASSWORD).await.expect("login");
    let mut to_bob = ToBob::open(&client, alice.clone()).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(to_bob.send(&format!("m{i}")).await);
    }

    let bk = dir.path().join("backups").join("one");
    let out = securechat(&data)
        .arg("backup")
        .arg(&bk)
        .output()
        .expect("run");
    succeeded(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("backup written"));
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&bk), 0o700);
    for f in ["securechat.db", "manifest.json"] {
        assert_eq!(mode(&bk.join(f)), 0o600, "{f}");
    }
    let names: Vec<String> = std::fs::read_dir(&bk)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("secret") || n.contains("key")),
        "{names:?}"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bk.join("manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["format_version"], 1);
    assert_eq!(manifest["counts"]["messages"], 5);
    assert_eq!(manifest["secrets_included"], false);

    let again = securechat(&data)
        .arg("backup")
        .arg(&bk)
        .output()
        .expect("run");
    assert_eq!(again.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not an empty directory"));

    let running = securechat(&data)
        .arg("restore")
        .arg(&bk)
        .arg("--force")
        .output()
        .expect("run");
    assert_eq!(running.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&running.stderr).contains("stop it before restoring"));
    let (status, _) = sigterm_and_wait(server);
    assert!(status.success());
    let onto = securechat(&data)
        .arg("restore")
        .arg(&bk)
        .output()
        .expect("run");
    assert_eq!(onto.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&onto.stderr).contains("--force"));

    let fresh = dir.path().join("fresh");
    let out = securechat(&fresh)
        .arg("restore")
        .arg(&bk)
        .output()
        .expect("run");
    succeeded(&out);
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&fresh.join("securechat.db")), 0o600);
    let server = start(&fresh, &[]);
    let client = securechat_client::Client::new(&server.base)
        .expect("client")
        .with_min_kdf_iterations(ITERATIONS);
    let e = client
        .me(&alice.access_token)
        .await
        .expect_err("signed by the old secret");
    assert!(e.is_api(401, "unauthorized"), "{e}");
    let pair = client
        .refresh(&alice.refresh_token)
        .await
        .expect("the session survives");
    assert!(client.me(&pair.access_token).await.is_ok());
    let bob = client.login("bob", PASSWORD).await.expect("bob");
    let ids = all_ids(&client, &bob, "alice").await;
    assert_eq!(ids, sent);
    let (status, _) = sigterm_and_wait(server);
    assert!(status.success());
}
