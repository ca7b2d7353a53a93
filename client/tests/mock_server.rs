//! The HTTP client and the CLI against a small in-memory stand-in of the server that
//! follows docs/API-CONTRACT.md (hand-rolled HTTP/1.1 on tokio). It checks what a real
//! server must check of the client's bodies (strict b64, self_sig, prev_sig, versions),
//! so these tests pin the client's side of the contract until the real server exists.

// The whole file is test code, its stand-in server included.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use securechat_client::{
    b64, derive_keys, fingerprint, parse_enc_spki, verify_prev_sig, verify_self_sig, Client, Error,
    Identity, KeyBundle, Method, RegisterRequest, RotateRequest,
};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone)]
struct KeyVersion {
    version: u32,
    enc: String,
    sign: String,
    self_sig: String,
    bundle: KeyBundle,
    changed_at: i64,
    prev_sig: Option<String>,
}

struct User {
    kdf: Value,
    auth_key: String,
    keys: Vec<KeyVersion>,
}

#[derive(Default)]
struct State {
    users: HashMap<String, User>,
    /// access token -> (user, refresh token)
    access: HashMap<String, (String, String)>,
    /// live refresh token -> user
    refresh: HashMap<String, String>,
    counter: u64,
    /// Directory lies: publish this identity's keys for every user.
    swap_keys: Option<Identity>,
}

type Shared = Arc<Mutex<State>>;

fn err(status: u16, code: &str) -> (u16, Value) {
    (
        status,
        json!({"error": {"code": code, "message": code.replace('_', " ")}}),
    )
}

fn b64_len(v: &Value, n: usize) -> Option<Vec<u8>> {
    let bytes = b64::decode(v.as_str()?).ok()?;
    (n == 0 || bytes.len() == n).then_some(bytes)
}

fn check_keys(
    username: &str,
    version: u32,
    body: &Value,
) -> Result<(Vec<u8>, Vec<u8>), (u16, Value)> {
    let enc = b64_len(&body["enc_public_key"], 0).ok_or_else(|| err(400, "invalid_key"))?;
    let sign = b64_len(&body["sign_public_key"], 0).ok_or_else(|| err(400, "invalid_key"))?;
    parse_enc_spki(&enc).map_err(|_| err(400, "invalid_key"))?;
    let sig = b64_len(&body["self_sig"], 64).ok_or_else(|| err(400, "invalid_signature"))?;
    verify_self_sig(username, version, &enc, &sign, &sig)
        .map_err(|_| err(400, "invalid_signature"))?;
    let bundle: KeyBundle = serde_json::from_value(body["key_bundle"].clone())
        .map_err(|_| err(400, "invalid_request"))?;
    b64_len(&json!(bundle.iv), 12).ok_or_else(|| err(400, "invalid_request"))?;
    Ok((enc, sign))
}

fn issue(st: &mut State, user: &str) -> (String, String) {
    st.counter += 1;
    let (a, r) = (format!("at-{}", st.counter), format!("rt-{}", st.counter));
    st.access.insert(a.clone(), (user.to_owned(), r.clone()));
    st.refresh.insert(r.clone(), user.to_owned());
    (a, r)
}

fn keys_json(st: &State, name: &str, k: &KeyVersion) -> Value {
    let (enc, sign, sig) = match &st.swap_keys {
        Some(id) => {
            let pk = id.public_keys().unwrap();
            let sig =
                securechat_client::self_sig(&id.sign, name, k.version, &pk.enc_spki, &pk.sign_spki);
            (
                b64::encode(pk.enc_spki),
                b64::encode(pk.sign_spki),
                b64::encode(sig),
            )
        }
        None => (k.enc.clone(), k.sign.clone(), k.self_sig.clone()),
    };
    let fp = fingerprint(
        name,
        &b64::decode(&enc).unwrap(),
        &b64::decode(&sign).unwrap(),
    );
    json!({"key_version": k.version, "enc_public_key": enc, "sign_public_key": sign,
           "self_sig": sig, "fingerprint": fp})
}

fn handle(
    st: &Shared,
    method: &str,
    target: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let mut st = st.lock().unwrap();
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => return err(400, "invalid_json"),
        }
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let me = token.and_then(|t| st.access.get(t).map(|(u, _)| u.clone()));
    match (method, path) {
        ("POST", "/api/auth/prelogin") => {
            let name = body["username"].as_str().unwrap_or_default();
            let kdf = match st.users.get(name) {
                Some(u) => u.kdf.clone(),
                None => {
                    let salt = &Sha256::digest(name.as_bytes())[..16];
                    json!({"alg": "PBKDF2-SHA256", "iterations": 1000, "salt": b64::encode(salt)})
                }
            };
            (200, json!({"kdf": kdf}))
        }
        ("POST", "/api/auth/register") => {
            let Ok(req) = serde_json::from_value::<RegisterRequest>(body.clone()) else {
                return err(400, "invalid_request");
            };
            if b64_len(&json!(req.auth_key), 32).is_none() {
                return err(400, "invalid_auth_key");
            }
            if req.kdf.iterations < 1000 {
                return err(400, "weak_kdf");
            }
            if b64_len(&json!(req.kdf.salt), 16).is_none() {
                return err(400, "invalid_kdf");
            }
            if let Err(e) = check_keys(&req.username, 1, &body) {
                return e;
            }
            if st.users.contains_key(&req.username) {
                return err(409, "username_taken");
            }
            let kv = KeyVersion {
                version: 1,
                enc: req.enc_public_key,
                sign: req.sign_public_key,
                self_sig: req.self_sig,
                bundle: req.key_bundle,
                changed_at: 1,
                prev_sig: None,
            };
            let user = User {
                kdf: serde_json::to_value(&req.kdf).unwrap(),
                auth_key: req.auth_key,
                keys: vec![kv],
            };
            st.users.insert(req.username.clone(), user);
            (201, json!({"username": req.username, "key_version": 1}))
        }
        ("POST", "/api/auth/login") => {
            let name = body["username"].as_str().unwrap_or_default().to_owned();
            let ok = st
                .users
                .get(&name)
                .is_some_and(|u| body["auth_key"] == json!(u.auth_key));
            if !ok {
                return err(401, "invalid_credentials");
            }
            let (a, r) = issue(&mut st, &name);
            let u = &st.users[&name];
            let k = u.keys.last().unwrap();
            (
                200,
                json!({"access_token": a, "refresh_token": r, "expires_in": 900,
                         "key_version": k.version, "key_bundle": k.bundle, "kdf": u.kdf}),
            )
        }
        ("POST", "/api/auth/refresh") => {
            let Some(user) = body["refresh_token"]
                .as_str()
                .and_then(|t| st.refresh.remove(t))
            else {
                return err(401, "unauthorized");
            };
            let (a, r) = issue(&mut st, &user);
            (
                200,
                json!({"access_token": a, "refresh_token": r, "expires_in": 900}),
            )
        }
        (_, p) if p.starts_with("/api/") && !p.starts_with("/api/auth/") && me.is_none() => {
            err(401, "unauthorized")
        }
        ("POST", "/api/auth/logout") | ("POST", "/api/auth/logout-all") => {
            let Some(user) = me else {
                return err(401, "unauthorized");
            };
            let all = path.ends_with("-all");
            let t = token.unwrap_or_default().to_owned();
            let own_refresh = st
                .access
                .get(&t)
                .map(|(_, r)| r.clone())
                .unwrap_or_default();
            st.access
                .retain(|k, (u, _)| !(k == &t || (all && u == &user)));
            let given = body["refresh_token"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            st.refresh
                .retain(|k, u| !(k == &own_refresh || k == &given || (all && u == &user)));
            (204, Value::Null)
        }
        ("GET", "/api/me") => {
            let user = me.unwrap_or_default();
            let v = st.users[&user].keys.last().unwrap().version;
            (
                200,
                json!({"username": user, "key_version": v, "is_admin": false, "created_at": 1}),
            )
        }
        ("GET", "/api/users") => {
            let q = query.strip_prefix("query=").unwrap_or_default();
            let q = q.split('&').next().unwrap_or_default();
            let mut names: Vec<_> = st
                .users
                .keys()
                .filter(|n| n.starts_with(q))
                .cloned()
                .collect();
            names.sort();
            let users: Vec<_> = names
                .iter()
                .map(|n| json!({"username": n, "key_version": st.users[n].keys.last().unwrap().version}))
                .collect();
            (200, json!({"users": users, "next_cursor": null}))
        }
        ("GET", p) if p.starts_with("/api/users/") => {
            let rest = &p["/api/users/".len()..];
            let (name, what) = rest.split_once('/').unwrap_or((rest, ""));
            let Some(u) = st.users.get(name) else {
                return err(404, "not_found");
            };
            match what {
                "keys" => {
                    let mut v = keys_json(&st, name, u.keys.last().unwrap());
                    v["username"] = json!(name);
                    (200, v)
                }
                "key-changes" => {
                    let changes: Vec<_> = u
                        .keys
                        .iter()
                        .map(|k| {
                            let mut v = keys_json(&st, name, k);
                            v["changed_at"] = json!(k.changed_at);
                            v["prev_sig"] = json!(k.prev_sig);
                            v
                        })
                        .collect();
                    (200, json!({"username": name, "changes": changes}))
                }
                _ => err(404, "not_found"),
            }
        }
        ("POST", "/api/keys/rotate") => {
            let user = me.unwrap_or_default();
            let Ok(req) = serde_json::from_value::<RotateRequest>(body.clone()) else {
                return err(400, "invalid_request");
            };
            match &req.auth_key {
                None => return err(401, "reauthentication_required"),
                Some(k) if *k != st.users[&user].auth_key => {
                    return err(401, "invalid_credentials")
                }
                Some(_) => {}
            }
            let current = st.users[&user].keys.last().unwrap().clone();
            if req.key_version != current.version + 1 {
                return err(409, "key_version_conflict");
            }
            let (enc, sign) = match check_keys(&user, req.key_version, &body) {
                Ok(k) => k,
                Err(e) => return e,
            };
            let prev = b64_len(&json!(req.prev_sig), 64).unwrap_or_default();
            let old_sign = b64::decode(&current.sign).unwrap();
            if verify_prev_sig(&old_sign, &user, req.key_version, &enc, &sign, &prev).is_err() {
                return err(400, "invalid_signature");
            }
            let kv = KeyVersion {
                version: req.key_version,
                enc: req.enc_public_key,
                sign: req.sign_public_key,
                self_sig: req.self_sig,
                bundle: req.key_bundle,
                changed_at: i64::from(req.key_version),
                prev_sig: Some(req.prev_sig),
            };
            st.users.get_mut(&user).unwrap().keys.push(kv);
            (
                200,
                json!({"username": user, "key_version": req.key_version}),
            )
        }
        _ => err(404, "not_found"),
    }
}

async fn serve_conn(st: Shared, mut sock: TcpStream) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let (method, target) = (
            first.next().unwrap_or_default(),
            first.next().unwrap_or_default(),
        );
        let mut len = 0;
        let mut token = None;
        for line in lines {
            if let Some((k, v)) = line.split_once(':') {
                let v = v.trim();
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => len = v.parse().unwrap_or(0),
                    "authorization" => token = v.strip_prefix("Bearer ").map(str::to_owned),
                    _ => {}
                }
            }
        }
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_end..head_end + len].to_vec();
        buf.drain(..head_end + len);
        let (status, json) = handle(&st, method, target, token.as_deref(), &body);
        let payload = if status == 204 {
            Vec::new()
        } else {
            serde_json::to_vec(&json).unwrap()
        };
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            payload.len()
        );
        if sock.write_all(resp.as_bytes()).await.is_err() || sock.write_all(&payload).await.is_err()
        {
            return;
        }
    }
}

async fn start() -> (String, Shared) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let st: Shared = Arc::default();
    let st2 = st.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve_conn(st2.clone(), sock));
        }
    });
    (url, st)
}

#[tokio::test]
async fn register_login_refresh_rotate_logout() {
    let (url, _st) = start().await;
    let c = Client::new(&format!("{url}/"))
        .unwrap()
        .with_min_kdf_iterations(1000);

    let reg = c.register("alice", "Cafe\u{301} pw", 1000).await.unwrap();
    assert_eq!((reg.username.as_str(), reg.key_version), ("alice", 1));
    let e = c.register("alice", "other", 1000).await.unwrap_err();
    assert!(e.is_api(409, "username_taken"), "{e}");
    let e = c.register("weak", "pw", 999).await.unwrap_err();
    assert!(e.is_api(400, "weak_kdf"), "{e}");

    let kdf = c.prelogin("alice").await.unwrap();
    assert_eq!(kdf.iterations, 1000);
    // The composed spelling of the password is the same password.
    let mut s = c.login("alice", "Caf\u{e9} pw").await.unwrap();
    assert_eq!(s.key_version, 1);
    assert_eq!(
        s.identity.public_keys().unwrap(),
        reg.identity.public_keys().unwrap()
    );
    assert_eq!(
        s.fingerprint().unwrap(),
        reg.identity.fingerprint("alice").unwrap()
    );
    let e = c.login("alice", "wrong").await.unwrap_err();
    assert!(e.is_api(401, "invalid_credentials"), "{e}");
    let e = c.login("nobody", "pw").await.unwrap_err();
    assert!(e.is_api(401, "invalid_credentials"), "{e}");

    let me = c.me(&s.access_token).await.unwrap();
    assert_eq!((me.username.as_str(), me.key_version), ("alice", 1));
    let keys = c.keys(&s.access_token, "alice").await.unwrap();
    keys.verify().unwrap();
    let e = c.keys(&s.access_token, "nobody").await.unwrap_err();
    assert!(e.is_api(404, "not_found"), "{e}");
    c.register("alina", "pw", 1000).await.unwrap();
    let list = c.users(&s.access_token, "ali", None).await.unwrap();
    let names: Vec<_> = list.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["alice", "alina"]);

    let old_refresh = s.refresh_token.clone();
    c.refresh_session(&mut s).await.unwrap();
    assert_ne!(s.refresh_token, old_refresh);
    let e = c.refresh(&old_refresh).await.unwrap_err();
    assert!(e.is_api(401, "unauthorized"), "{e}");

    let old_fp = s.fingerprint().unwrap();
    // A rotation proves the password: a wrong one is refused and changes nothing.
    let e = c.rotate_keys(&mut s, "wrong").await.unwrap_err();
    assert!(e.is_api(401, "invalid_credentials"), "{e}");
    assert_eq!(s.key_version, 1);
    let rotated = c.rotate_keys(&mut s, "Caf\u{e9} pw").await.unwrap();
    assert_eq!(rotated.key_version, 2);
    assert_eq!(s.key_version, 2);
    assert_ne!(s.fingerprint().unwrap(), old_fp);
    c.check_directory(&s).await.unwrap();
    let changes = c.key_changes(&s.access_token, "alice").await.unwrap();
    assert_eq!(changes.changes.len(), 2);
    for ch in &changes.changes {
        ch.verify("alice").unwrap();
    }
    assert!(changes.changes[0].prev_sig.is_none());
    let chain = changes.verify_chain().unwrap();
    assert_eq!(chain.last().unwrap(), &s.identity.public_keys().unwrap());
    // A log whose second entry lost its link to the first does not verify.
    let mut broken = changes.clone();
    broken.changes[1].prev_sig = None;
    assert!(broken.verify_chain().is_err());
    let mut broken = changes.clone();
    broken.changes[1].prev_sig = broken.changes[1].self_sig.clone().into();
    assert!(broken.verify_chain().is_err());
    // A rotation that skips a version, or whose prev_sig is not by the old key.
    let other = Identity::generate().unwrap();
    let (auth_key, _) = s.derive("Caf\u{e9} pw").unwrap();
    let bad = RotateRequest::build("alice", 4, &s.identity, &other, &s.kek, &auth_key).unwrap();
    let e = c.rotate_request(&s.access_token, &bad).await.unwrap_err();
    assert!(e.is_api(409, "key_version_conflict"), "{e}");
    let bad = RotateRequest::build("alice", 3, &other, &other, &s.kek, &auth_key).unwrap();
    let e = c.rotate_request(&s.access_token, &bad).await.unwrap_err();
    assert!(e.is_api(400, "invalid_signature"), "{e}");
    // After rotation, login unwraps the version-2 bundle under the same password.
    let s2 = c.login("alice", "Cafe\u{301} pw").await.unwrap();
    assert_eq!(s2.key_version, 2);
    assert_eq!(
        s2.identity.public_keys().unwrap(),
        s.identity.public_keys().unwrap()
    );

    c.logout(&s.access_token, Some(&s.refresh_token))
        .await
        .unwrap();
    let e = c.me(&s.access_token).await.unwrap_err();
    assert!(e.is_api(401, "unauthorized"), "{e}");
    let e = c.refresh(&s.refresh_token).await.unwrap_err();
    assert!(e.is_api(401, "unauthorized"), "{e}");
    c.me(&s2.access_token).await.unwrap();
    c.logout_all(&s2.access_token).await.unwrap();
    let e = c.me(&s2.access_token).await.unwrap_err();
    assert_eq!(e.status(), Some(401));
}

#[tokio::test]
async fn login_detects_a_directory_that_swapped_keys() {
    let (url, st) = start().await;
    let c = Client::new(&url).unwrap().with_min_kdf_iterations(1000);
    c.register("bob", "pw", 1000).await.unwrap();
    st.lock().unwrap().swap_keys = Some(Identity::generate().unwrap());
    let e = c.login("bob", "pw").await.unwrap_err();
    assert!(matches!(e, Error::Verification(_)), "{e}");
}

#[tokio::test]
async fn raw_requests_for_negative_tests() {
    let (url, _st) = start().await;
    let c = Client::new(&url).unwrap();
    let id = Identity::generate().unwrap();
    let mut body =
        serde_json::to_value(RegisterRequest::build("carol", "pw", 1000, &id).unwrap()).unwrap();
    // The self-signature binds the user name.
    body["username"] = json!("carl");
    let r = c
        .request(Method::POST, "/api/auth/register", None, Some(&body))
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.error().unwrap().error.code, "invalid_signature");
    // Padded base64 is not base64url.
    body["username"] = json!("carol");
    body["auth_key"] = json!(format!("{}=", body["auth_key"].as_str().unwrap()));
    let r = c
        .request(Method::POST, "/api/auth/register", None, Some(&body))
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.error().unwrap().error.code.as_str()),
        (400, "invalid_auth_key")
    );
    let r = c
        .request_bytes(
            Method::POST,
            "/api/auth/login",
            None,
            Some("application/json"),
            Some(b"{".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.error().unwrap().error.code.as_str()),
        (400, "invalid_json")
    );
    let r = c
        .request(Method::GET, "/api/me", Some("forged"), None)
        .await
        .unwrap();
    assert!(r
        .expect_status(200)
        .unwrap_err()
        .is_api(401, "unauthorized"));
    // The auth key a client sends is the HKDF output, not the password.
    let (auth_key, _) = derive_keys("pw", &[0u8; 16], 1000);
    let e = c.login_with_auth_key("carol", &auth_key).await.unwrap_err();
    assert!(e.is_api(401, "invalid_credentials"));
}

#[tokio::test]
async fn cli_register_then_login() {
    let (url, _st) = start().await;
    let bin = env!("CARGO_BIN_EXE_securechat-client");
    let run = |args: Vec<&str>| {
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(args);
        cmd.output()
    };
    let out = run(vec![
        "register",
        "--server",
        &url,
        "--username",
        "dave",
        "--password",
        "p\u{e4}ss",
        "--iterations",
        "1000",
    ])
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reg: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reg["username"], "dave");
    assert_eq!(reg["key_version"], 1);
    let fp = reg["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(fp.len(), 30);
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);

    let cli_login = |password: &'static str, floor: &'static [&'static str]| {
        let mut args = vec![
            "login",
            "--server",
            url.as_str(),
            "--username",
            "dave",
            "--password",
            password,
        ];
        args.extend_from_slice(floor);
        run(args)
    };
    let cheap: &[&str] = &["--min-iterations", "1000"];
    let out = cli_login("pa\u{308}ss", cheap).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let login: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        login,
        json!({"username": "dave", "key_version": 1, "fingerprint": fp})
    );

    let out = cli_login("nope", cheap).await.unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid_credentials"), "{stderr}");

    // Without lowering the floor, the CLI refuses dave's 1000 iterations, as the browser would.
    let out = cli_login("p\u{e4}ss", &[]).await.unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("KDF parameters refused"), "{stderr}");
}

/// PROTOCOL.md §2.4: the client checks prelogin's answer before deriving anything or
/// sending a login, with the browser's floor (600,000 iterations) unless lowered.
#[tokio::test]
async fn login_refuses_kdf_parameters_below_the_browsers_floor() {
    let (url, st) = start().await;
    let cheap = Client::new(&url).unwrap().with_min_kdf_iterations(1000);
    cheap.register("erin", "pw", 1000).await.unwrap();
    let strict = Client::new(&url).unwrap();
    let e = strict.login("erin", "pw").await.unwrap_err();
    assert!(matches!(&e, Error::Kdf(m) if m.contains("1000")), "{e}");
    assert!(st.lock().unwrap().access.is_empty(), "no login was sent");

    // A server that answers with another algorithm, a short salt or a huge count.
    for (field, value) in [
        ("alg", json!("PBKDF2-SHA1")),
        ("salt", json!(b64::encode([1u8; 8]))),
        ("iterations", json!(10_000_001)),
    ] {
        let saved = st.lock().unwrap().users["erin"].kdf.clone();
        st.lock().unwrap().users.get_mut("erin").unwrap().kdf[field] = value;
        let e = cheap.login("erin", "pw").await.unwrap_err();
        assert!(matches!(e, Error::Kdf(_)), "{field}: {e}");
        st.lock().unwrap().users.get_mut("erin").unwrap().kdf = saved;
    }
    assert!(st.lock().unwrap().access.is_empty(), "no login was sent");
    cheap.login("erin", "pw").await.unwrap();
}
