//! The `securechat` binary: CLI commands, environment layering, the start-up line, logs
//! that hold no secrets, and graceful shutdown on SIGTERM.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use securechat_client::Client;

use crate::helpers::{ITERATIONS, PASSWORD};

const BIN: &str = env!("CARGO_BIN_EXE_securechat");

pub(crate) fn securechat(data: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SECURECHAT_STORAGE__DATA_DIR", data)
        .env("SECURECHAT_SERVER__PORT", "0")
        .env("SECURECHAT_AUTH__BCRYPT_COST", "4")
        .env(
            "SECURECHAT_AUTH__MIN_KDF_ITERATIONS",
            ITERATIONS.to_string(),
        )
        .current_dir(data.parent().expect("parent"));
    c
}

/// Asserts the command exited 0, showing its stderr otherwise.
pub(crate) fn succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_prints_the_effective_values_with_env_overrides_and_hides_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = securechat(&dir.path().join("data"))
        .env("SECURECHAT_SERVER__PORT", "9000")
        .env(
            "SECURECHAT_AUTH__JWT_SECRET",
            "f3a9c1d27b8e4f60a5d2c9e1b7f40a38",
        )
        .arg("config")
        .output()
        .expect("run");
    succeeded(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("port = 9000"), "{text}");
    assert!(text.contains("<hidden>"));
    assert!(!text.contains("f3a9c1d27b8e4f60a5d2c9e1b7f40a38"));
}

#[test]
fn an_unknown_or_bad_setting_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A variable that is not a setting (no section) is noted and left alone.
    let out = securechat(&dir.path().join("data"))
        .env("SECURECHAT_BIN", "/usr/bin/whatever")
        .arg("config")
        .output()
        .expect("run");
    succeeded(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("SECURECHAT_BIN is not a setting"));
    let out = securechat(&dir.path().join("data"))
        .env("SECURECHAT_SERVER__PROT", "1")
        .arg("config")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("prot"));
    let out = securechat(&dir.path().join("data"))
        .env("SECURECHAT_AUTH__BCRYPT_COST", "99")
        .arg("serve")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.bcrypt_cost"));
}

#[test]
fn a_config_file_is_read_from_the_flag_or_the_environment_and_must_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("custom.toml");
    std::fs::write(&file, "[server]\nport = 7123\n").expect("write");
    for use_env in [false, true] {
        let mut cmd = securechat(&dir.path().join("data"));
        cmd.env_remove("SECURECHAT_SERVER__PORT");
        if use_env {
            cmd.env("SECURECHAT_CONFIG", &file);
        } else {
            cmd.arg("--config").arg(&file);
        }
        let out = cmd.arg("config").output().expect("run");
        succeeded(&out);
        assert!(String::from_utf8_lossy(&out.stdout).contains("port = 7123"));
    }
    let out = securechat(&dir.path().join("data"))
        .args(["--config", "/nonexistent/securechat.toml", "config"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[test]
fn migrate_creates_the_schema_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = securechat(&dir.path().join("data"))
        .arg("migrate")
        .output()
        .expect("run");
    succeeded(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied migrations"));
    let out = securechat(&dir.path().join("data"))
        .arg("migrate")
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));
}

pub(crate) struct Running {
    pub(crate) child: std::process::Child,
    pub(crate) base: String,
}

/// A supervisor may send SIGTERM the moment it reads the start-up line: the handlers are
/// installed before that line is printed, so the stop is graceful (exit 0), never a kill.
#[tokio::test]
async fn sigterm_the_moment_the_server_says_it_listens_is_a_graceful_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // A race (the old code lost it only under load): ten tries.
    for _ in 0..10 {
        let (status, err) = sigterm_and_wait(start(&data, &[]));
        assert!(status.success(), "{status:?}: {err}");
        assert!(err.contains("SIGTERM received"), "{err}");
    }
}

/// One server per data dir: a second `serve` on it stops at once with a clear message,
/// while the first goes on serving; once the first has stopped, a new one starts.
#[tokio::test]
async fn a_second_server_on_the_same_data_dir_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let first = start(&data, &[]);
    let mut second = securechat(&data)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (status, err) = exit_and_stderr(
        &mut second,
        Duration::from_secs(20),
        "the second server did not stop",
    );
    assert!(!status.success());
    assert!(err.contains("already using the data dir"), "{err}");
    let health = reqwest::get(format!("{}/healthz", first.base))
        .await
        .expect("first still serves");
    assert!(health.status().is_success());
    let (status, _) = sigterm_and_wait(first);
    assert!(status.success());
    let again = start(&data, &[]);
    let (status, _) = sigterm_and_wait(again);
    assert!(status.success());
}

pub(crate) fn start(data: &std::path::Path, extra: &[(&str, &str)]) -> Running {
    let mut cmd = securechat(data);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let mut child = cmd
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    let base = line
        .trim()
        .strip_prefix("securechat listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Running { child, base }
}

pub(crate) fn sigterm_and_wait(mut r: Running) -> (std::process::ExitStatus, String) {
    let status = Command::new("kill")
        .args(["-TERM", &r.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    exit_and_stderr(
        &mut r.child,
        Duration::from_secs(15),
        "no exit after SIGTERM",
    )
}

/// Waits up to `within` for `child` to exit (killing it and failing with `late` if it does
/// not); returns its status and what it wrote to stderr.
fn exit_and_stderr(
    child: &mut std::process::Child,
    within: Duration,
    late: &str,
) -> (std::process::ExitStatus, String) {
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return (s, err);
        }
        if started.elapsed() >= within {
            let _ = child.kill();
            panic!("{late}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn admin_grant_and_revoke_change_the_flag_of_a_registered_user() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = start(&data, &[]);
    let client = client_with_account(&server, "root_user").await;
    let out = securechat(&data)
        .args(["admin", "grant", "root_user"])
        .output()
        .expect("run");
    succeeded(&out);
    let s = client.login("root_user", PASSWORD).await.expect("login");
    assert!(client.me(&s.access_token).await.expect("me").is_admin);
    let out = securechat(&data)
        .args(["admin", "revoke", "root_user"])
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(!client.me(&s.access_token).await.expect("me").is_admin);
    let out = securechat(&data)
        .args(["admin", "grant", "ghost"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "no such user");
    let (status, _) = sigterm_and_wait(server);
    assert!(status.success());
}

/// Runs a whole session with debug logging and asserts that no token, auth key, key
/// material, salt or ciphertext ever reaches the log; and that SIGTERM exits cleanly.
#[tokio::test]
async fn logs_hold_no_secrets_and_sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = start(
        &data,
        &[("RUST_LOG", "debug"), ("SECURECHAT_LOG__FORMAT", "json")],
    );
    let client = Client::new(&server.base)
        .expect("client")
        .with_min_kdf_iterations(ITERATIONS);
    let reg = client
        .register("logcheck", PASSWORD, ITERATIONS)
        .await
        .expect("register");
    let mut s = client.login("logcheck", PASSWORD).await.expect("login");
    let first_access = s.access_token.clone();
    let first_refresh = s.refresh_token.clone();
    client.refresh_session(&mut s).await.expect("refresh");
    let _ = client.refresh(&first_refresh).await; // reuse: logged as a warning, without the token
    let _ = client.me(&first_access).await;
    let pk = reg.identity.public_keys().expect("pk");
    let kdf = client.prelogin("logcheck").await.expect("prelogin");
    let (status, log) = sigterm_and_wait(server);
    assert!(status.success(), "exit status {status:?}");
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(
        log.contains("\"route\":\"/api/auth/login\""),
        "request log present: {log}"
    );
    let secrets = [
        ("access token", first_access.as_str()),
        ("access token", s.access_token.as_str()),
        ("refresh token", first_refresh.as_str()),
        ("refresh token", s.refresh_token.as_str()),
        ("password", PASSWORD),
        ("salt", kdf.salt.as_str()),
    ];
    for (what, secret) in secrets {
        assert!(!log.contains(secret), "the log contains a {what}");
    }
    let enc = securechat_client::b64::encode(&pk.enc_spki);
    assert!(!log.contains(&enc[..40]), "the log contains key material");
}

/// Store-then-ack: once the sender has its ack, a kill -9 of the server loses nothing.
#[tokio::test]
async fn an_acknowledged_message_survives_kill_9_of_the_server_and_a_resend_is_still_recognised() {
    use securechat_client::ws::ServerFrame;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // FULL synchronous mode: durable even across power loss, not only a process crash.
    let sync = [("SECURECHAT_STORAGE__SYNCHRONOUS", "full")];
    let mut server = start(&data, &sync);
    let client = Client::new(&server.base)
        .expect("client")
        .with_min_kdf_iterations(ITERATIONS);
    let alice = {
        client
            .register("alice", PASSWORD, ITERATIONS)
            .await
            .expect("register");
        client.login("alice", PASSWORD).await.expect("login")
    };
    client
        .register("bob", PASSWORD, ITERATIONS)
        .await
        .expect("register");
    let bob_keys = client.keys(&alice.access_token, "bob").await.expect("keys");
    let enc = securechat_client::parse_enc_spki(
        &securechat_client::b64::decode(&bob_keys.enc_public_key).expect("b64"),
    )
    .expect("rsa");
    let mut ws = client.connect_ws(&alice.access_token).await.expect("ws");
    let mut acked = Vec::new();
    let mut sent = Vec::new();
    for i in 0..20 {
        let env = securechat_client::envelope::seal_text(
            "alice",
            &alice.identity,
            "bob",
            &enc,
            &format!("m{i}"),
        )
        .expect("seal");
        ws.send_envelope(&env).await.expect("send");
        acked.push(env.id.clone());
        sent.push(env);
    }
    let mut seqs = std::collections::HashMap::new();
    while seqs.len() < acked.len() {
        match ws.recv().await.expect("frame") {
            ServerFrame::Ack { id, seq, .. } => {
                seqs.insert(id, seq);
            }
            ServerFrame::Error { code, .. } => panic!("error {code}"),
            _ => {}
        }
    }
    let status = Command::new("kill")
        .args(["-KILL", &server.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let _ = server.child.wait();

    let server = start(&data, &sync);
    let client = Client::new(&server.base)
        .expect("client")
        .with_min_kdf_iterations(ITERATIONS);
    let bob = client.login("bob", PASSWORD).await.expect("login");
    let history = client
        .history(&bob.access_token, "alice", Some(0), None, None)
        .await
        .expect("history");
    let ids: Vec<String> = history
        .messages
        .iter()
        .map(|m| m.envelope.parse().expect("envelope").id)
        .collect();
    assert_eq!(ids, acked, "every acknowledged message is there, in order");

    // A resend after the restart (the client never saw its ack, say) is recognised: the
    // ids the killed server held only in its write buffer were put back at start-up.
    let alice = client.login("alice", PASSWORD).await.expect("login");
    let mut ws = client.connect_ws(&alice.access_token).await.expect("ws");
    for env in [&sent[0], &sent[19]] {
        ws.send_envelope(env).await.expect("resend");
        loop {
            match ws.recv().await.expect("frame") {
                ServerFrame::Ack { id, seq, .. } => {
                    assert_eq!(id, env.id);
                    assert_eq!(seq, seqs[&env.id], "a resend gets the original seq");
                    break;
                }
                ServerFrame::Error { code, .. } => panic!("error {code}"),
                _ => {}
            }
        }
    }
    let again = client
        .history(&bob.access_token, "alice", Some(0), None, None)
        .await
        .expect("history");
    assert_eq!(again.messages.len(), acked.len(), "nothing stored twice");
    let (status, _) = sigterm_and_wait(server);
    assert!(status.success());
}

/// Logs shipped to a log service must not say who looks up whom: the request log names the
/// route template, never the user in the path; and logs written to a pipe carry no ANSI
/// colour escapes.
#[tokio::test]
async fn the_request_log_names_the_route_template_not_the_user_and_a_pipe_gets_no_colours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = start(&data, &[]);
    let http = reqwest::Client::new();
    for path in [
        "/api/users/zoe_looked_up/keys",
        "/api/conversations/zoe_looked_up/messages",
        "/zoe_looked_up",
        "/js/crypto.js",
    ] {
        let r = http
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .expect("send");
        assert!(r.status().as_u16() >= 200, "{path}");
    }
    let (status, log) = sigterm_and_wait(server);
    assert!(status.success());
    assert!(log.contains("/api/users/{name}/keys"), "{log}");
    assert!(log.contains("/api/conversations/{peer}/messages"), "{log}");
    assert!(log.contains("(unrouted)"), "{log}");
    assert!(
        log.contains("/js/crypto.js"),
        "assets are named as they are: {log}"
    );
    assert!(
        !log.contains("zoe_looked_up"),
        "a user's name reached the log: {log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a piped log: {log:?}"
    );
}

/// However many connections the limit turns away, the operator reads one warning.
#[tokio::test]
async fn the_connection_limit_warning_is_logged_once_however_many_connections_are_turned_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = start(&data, &[("SECURECHAT_SERVER__MAX_CONNECTIONS", "5")]);
    let addr = server.base.trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..500 {
        held.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    // The server still answers a new client.
    let health = reqwest::get(format!("{}/healthz", server.base))
        .await
        .expect("healthz at the limit");
    assert!(health.status().is_success());
    drop(held);
    let (status, log) = sigterm_and_wait(server);
    assert!(status.success());
    let warnings = log.matches("connection limit reached").count();
    assert_eq!(warnings, 1, "{log}");
    assert!(log.contains("server.max_connections"), "{log}");
}

/// SIGTERM tells every WebSocket 1001 (going away) before the process ends.
#[tokio::test]
async fn sigterm_tells_every_websocket_1001_before_the_process_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = start(&data, &[]);
    let client = client_with_account(&server, "leaver").await;
    let s = client.login("leaver", PASSWORD).await.expect("login");
    let mut ws = client.connect_ws(&s.access_token).await.expect("ws");
    let (status, _) = sigterm_and_wait(server);
    assert!(status.success());
    assert_eq!(crate::relay::close_code(&mut ws).await, Some(1001));
}

/// A client of `server` on which `name` has registered (password [`PASSWORD`]).
async fn client_with_account(server: &Running, name: &str) -> Client {
    let client = Client::new(&server.base)
        .expect("client")
        .with_min_kdf_iterations(ITERATIONS);
    client
        .register(name, PASSWORD, ITERATIONS)
        .await
        .expect("register");
    client
}
