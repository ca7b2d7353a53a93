//! The test harness: `spawn_app()` builds the real server on 127.0.0.1:0 with a fresh data
//! dir, and hands back a client for it.

use std::path::PathBuf;

use securechat::{App, Config};
use securechat_client::{Client, Session};
use tokio::sync::oneshot;

/// The JWT secret tests configure, so they can forge tokens against it.
pub const TEST_JWT_SECRET: &str = "test-only-5d41402abc4b2a76b9719d911017c592";
pub const ITERATIONS: u32 = 1000;
pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub config: Config,
    /// Dropping the sender (with the TestApp) also stops the server.
    shutdown: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
}

pub fn test_config(data_dir: PathBuf) -> Config {
    let mut c = Config::default();
    c.server.port = 0;
    c.storage.data_dir = data_dir;
    c.storage.synchronous = securechat::config::Synchronous::Normal;
    c.auth.bcrypt_cost = 4;
    c.auth.min_kdf_iterations = ITERATIONS;
    c.auth.jwt_secret = TEST_JWT_SECRET.into();
    c
}

/// The `error.code` of an error body ("" for anything else).
pub fn error_code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path().join("data"));
    tweak(&mut config);
    start(dir, config).await
}

async fn start(dir: tempfile::TempDir, config: Config) -> TestApp {
    let app = App::build(config.clone()).await.expect("app builds");
    let base = format!("http://{}", app.addr());
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run(async move {
        let _ = rx.await;
    }));
    TestApp {
        client: Client::new(&base)
            .expect("client")
            .with_min_kdf_iterations(ITERATIONS),
        dir,
        config,
        shutdown: Some(tx),
        handle,
    }
}

impl TestApp {
    /// Stops the server and starts a new one on the same data dir.
    pub async fn restart(self) -> TestApp {
        let stopped = self.stop().await;
        let mut config = stopped.config.clone();
        config.server.port = 0;
        start(stopped.dir, config).await
    }

    /// Stops the server; the data dir stays (for tools run against it).
    pub async fn stop(mut self) -> TestApp {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.handle).await;
        self
    }

    pub fn db_path(&self) -> PathBuf {
        self.config.database_path()
    }

    /// A direct connection to the server's SQLite file, for asserting what is stored.
    pub fn sqlite(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db_path()).expect("open db")
    }

    pub fn count(&self, table: &str) -> i64 {
        self.sqlite()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .expect("count")
    }

    pub async fn register(&self, username: &str) -> securechat_client::Registered {
        self.client
            .register(username, PASSWORD, ITERATIONS)
            .await
            .expect("register")
    }

    /// POSTs `body` as JSON, with a bearer token if given; any status comes back as is.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &impl serde::Serialize,
    ) -> securechat_client::RawResponse {
        let body = serde_json::to_value(body).expect("json");
        self.client
            .request(securechat_client::Method::POST, path, token, Some(&body))
            .await
            .expect("send")
    }

    /// `method path` with `token` as bearer and an optional JSON body: the status and the
    /// JSON answer (`Null` for an empty body).
    pub async fn call(
        &self,
        method: securechat_client::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let r = self
            .client
            .request(method, path, Some(token), body.as_ref())
            .await
            .expect("send");
        let v = if r.body.is_empty() {
            serde_json::Value::Null
        } else {
            r.json().expect("json")
        };
        (r.status, v)
    }

    /// Deletes the account of `s` (`DELETE /api/me` with the auth key of [`PASSWORD`]) and
    /// asserts the 204.
    pub async fn delete_account(&self, s: &Session) {
        let (auth, _) = s.derive(PASSWORD).expect("derive");
        let body = serde_json::json!({ "auth_key": securechat_client::b64::encode(auth) });
        let (status, v) = self
            .call(
                securechat_client::Method::DELETE,
                "/api/me",
                &s.access_token,
                Some(body),
            )
            .await;
        assert_eq!(status, 204, "{v}");
    }

    /// Asserts that both tokens of `s` are refused with 401 `unauthorized`.
    pub async fn assert_session_dead(&self, s: &Session) {
        let e = self
            .client
            .me(&s.access_token)
            .await
            .expect_err("access token must be dead");
        assert!(e.is_api(401, "unauthorized"), "{e}");
        let e = self
            .client
            .refresh(&s.refresh_token)
            .await
            .expect_err("refresh token must be dead");
        assert!(e.is_api(401, "unauthorized"), "{e}");
    }

    pub async fn register_and_login(&self, username: &str) -> Session {
        self.register(username).await;
        self.client.login(username, PASSWORD).await.expect("login")
    }
}
