//! securechat: a self-hosted end-to-end-encrypted web messenger. This crate is the server
//! core and binary; [`App`] is the seam tests and `main` use: build it from a [`Config`],
//! ask its port, run it until a shutdown future resolves.
//!
//! Invariants (see ARCHITECTURE.md): no handler ever sees plaintext; `db` never imports
//! warp; state is passed in (`AppState`), never global.

pub mod admin_host;
pub mod assets;
pub mod auth;
pub mod b64;
pub mod backup;
pub mod config;
pub mod db;
pub mod directory;
pub mod error;
pub mod files;
pub mod health;
pub mod healthcheck;
pub mod http;
pub mod jobs;
pub mod keys;
pub mod live;
pub mod logging;
pub mod messages;
pub mod metrics;
pub mod openapi;
pub mod plugins;
pub mod relay;
pub mod serve;
pub mod username;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use securechat_plugin_api::{Admission, Verdict};
use tokio::net::TcpListener;
use warp::filters::BoxedFilter;
use warp::http::header::{HeaderValue, CACHE_CONTROL};
use warp::reply::Response;
use warp::{Filter, Reply};

pub use config::Config;

use crate::auth::Auth;
use crate::db::Db;
use crate::directory::Directory;
use crate::error::ApiError;
use crate::files::Files;
use crate::messages::Messages;
use crate::plugins::Plugins;
use crate::relay::tickets::Tickets;
use crate::relay::upgrade::WsEndpoint;
use crate::relay::Hub;

/// Everything a request may need, built once and passed down.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub auth: Arc<Auth>,
    pub directory: Directory,
    pub messages: Messages,
    pub hub: Arc<Hub>,
    pub tickets: Arc<Tickets>,
    pub plugins: Arc<Plugins>,
    /// The durable job queue (started in `build`, drained in `run` after HTTP stops).
    pub jobs: jobs::Queue,
    /// Encrypted file sharing: tus uploads, downloads, the files jobs.
    pub files: Files,
    /// The open HTTP connections (`server.max_connections`) and the edge's counters.
    pub connections: Arc<serve::connections::Connections>,
}

/// A built server: bound to its port, database open and migrated, not yet serving.
pub struct App {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    /// Held while this server runs: see [`lock_data_dir`].
    _data_dir_lock: std::fs::File,
}

impl App {
    /// Prepares the data dir and secrets, opens the database, binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        config.validate()?;
        let config = Arc::new(config);
        prepare_data_dir(&config.storage.data_dir)?;
        let data_dir_lock = lock_data_dir(&config.storage.data_dir)?;

        let jwt_secret = if config.auth.jwt_secret.is_empty() {
            auth::secrets::load_or_create(&config.jwt_secret_path())?
        } else {
            config.auth.jwt_secret.as_bytes().to_vec()
        };
        auth::secrets::check_strength(&jwt_secret).context("auth.jwt_secret")?;
        let prelogin_key =
            auth::secrets::load_or_create(&config.storage.data_dir.join("prelogin_key"))?;

        let db = Db::open(&config.database_path(), &config.storage)
            .await
            .context("opening the database")?;
        let messages = Messages::new(db.clone(), &config.messages);
        let hub = Hub::new(db.clone(), config.relay.clone(), messages.clone());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let auth = Auth::new(
            db.clone(),
            config.auth.clone(),
            &jwt_secret,
            prelogin_key,
            cores,
            hub.clone(),
        )
        .await?;
        // The job queue; features register their job kinds here as they arrive.
        let files = Files::new(db.clone(), hub.clone(), &config);
        let mut registry = jobs::Registry::new();
        files::jobs::register(&mut registry, &files)?;
        // The expiry sweep runs on `default`, or on the first queue configured.
        let sweep_queue = if config.jobs.workers.contains_key("default") {
            "default"
        } else {
            config
                .jobs
                .workers
                .keys()
                .next()
                .map_or("default", |q| q.as_str())
        };
        messages::jobs::register(&mut registry, &messages, sweep_queue)?;
        let jobs = jobs::Queue::new(db.clone(), &config.jobs, registry)?;
        files.set_queue(jobs.clone());
        // Bytes a crash left past an upload's acknowledged offset go before anything reads them.
        files
            .cut_back_all()
            .await
            .context("cutting unacknowledged upload bytes back")?;
        jobs.start().await.context("starting the job queue")?;
        let admin = Arc::new(admin_host::AdminHost {
            db: db.clone(),
            auth: auth.clone(),
            hub: hub.clone(),
            jobs: jobs.clone(),
            data_dir: config.storage.data_dir.clone(),
            started: std::time::Instant::now(),
        });
        let plugins = Arc::new(Plugins::compiled_in(&config.plugins, Some(admin))?);
        let state = AppState {
            directory: Directory::new(
                db.clone(),
                auth.clone(),
                hub.clone(),
                config.directory.min_query_chars,
            ),
            hub,
            messages,
            tickets: Arc::new(Tickets::new(Duration::from_secs(
                config.relay.ticket_ttl_secs,
            ))),
            plugins,
            jobs,
            files,
            connections: Arc::new(serve::connections::Connections::new(
                config.server.max_connections,
            )),
            config: config.clone(),
            db,
            auth,
        };

        let addr = SocketAddr::new(config.server.bind, config.server.port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let addr = listener.local_addr()?;
        Ok(App {
            listener,
            addr,
            state,
            _data_dir_lock: data_dir_lock,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let timeouts = serve::Timeouts::from_config(&self.state.config.server);
        let filter = routes(&self.state);
        let ws = Arc::new(WsEndpoint::new(
            self.state.hub.clone(),
            self.state.plugins.clone(),
            self.state.tickets.clone(),
            allowed_origins(&self.state.config, self.addr.port()),
            http::security_headers(self.state.config.server.behind_tls),
        ));
        tracing::info!(addr = %self.addr, plugins = ?self.state.plugins.names(), "serving");
        serve::serve(
            self.listener,
            filter,
            ws,
            self.state.connections.clone(),
            timeouts,
            shutdown,
        )
        .await;
        // Upgraded sockets are not HTTP connections: tell them to close (1001), and give
        // them the grace period to say so before the process may end.
        self.state.hub.close_all_and_wait(timeouts.grace).await;
        // Jobs drain after the HTTP server has stopped, so no request enqueues meanwhile.
        let jobs_grace = Duration::from_secs(self.state.config.jobs.shutdown_grace_secs);
        self.state.jobs.shutdown(jobs_grace).await;
    }

    /// Serves until SIGTERM or Ctrl-C (handlers installed when this is called).
    pub async fn run_until_stopped(self) {
        let stop = shutdown_signal();
        self.run(stop).await
    }
}

/// Installs the SIGTERM and Ctrl-C (SIGINT) handlers now, so a signal that arrives from here
/// on starts a graceful shutdown instead of killing the process, and returns a future that
/// resolves on the first of them. Call it before announcing that the server is up: a
/// supervisor may send SIGTERM the moment it reads that line. Needs a tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            let (mut term, mut int) = match (term, int) {
                (Ok(t), Ok(i)) => (t, i),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "cannot install signal handlers; stop with SIGKILL");
                    return std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = int.recv() => tracing::info!("Ctrl-C received; shutting down"),
                _ = term.recv() => tracing::info!("SIGTERM received; shutting down"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("Ctrl-C received; shutting down");
            } else {
                std::future::pending::<()>().await
            }
        }
    }
}

/// Every (method, path) the server answers, as OpenAPI spells paths.
pub fn route_table() -> Vec<(&'static str, &'static str)> {
    [
        health::ROUTES,
        metrics::ROUTES,
        openapi::ROUTES,
        plugins::ROUTES,
        auth::routes::ROUTES,
        directory::routes::ROUTES,
        relay::routes::ROUTES,
        messages::routes::ROUTES,
        files::routes::ROUTES,
    ]
    .concat()
}

/// Origins allowed to open WebSockets: the public origin, the configured extras, and the
/// loopback origins of the port actually bound.
pub fn allowed_origins(config: &Config, port: u16) -> Vec<String> {
    let mut origins = vec![config.server.public_origin.clone()];
    origins.extend(config.server.allowed_origins.iter().cloned());
    origins.push(format!("http://localhost:{port}"));
    origins.push(format!("http://127.0.0.1:{port}"));
    origins
}

/// Creates the data dir if needed and makes it private (0700).
pub(crate) fn prepare_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make data dir {} private", dir.display()))?;
    }
    Ok(())
}

/// Locks `<data dir>/securechat.lock` for this server, or fails if another server holds
/// it. One server per data dir is what the single writer, the job queue (which requeues
/// every `running` job at start-up as an orphan) and the writer's message-id buffer assume;
/// the lock is released when the process ends, however it ends. The `admin`, `jobs`,
/// `migrate` and `backup` commands do not take it: they may run beside a server.
/// `restore` takes it, so that it never replaces files under a running server and no
/// server starts while it does.
pub(crate) fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("securechat.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(DataDirInUse(dir.to_owned()).into()),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Another process (a server, or a restore) holds the data dir's lock.
#[derive(Debug, thiserror::Error)]
#[error("another securechat server is already using the data dir {}", .0.display())]
pub struct DataDirInUse(pub std::path::PathBuf);

/// The whole HTTP surface: API, plugin routes, assets; one error shape; headers on all.
pub fn routes(state: &AppState) -> BoxedFilter<(Response,)> {
    let limit = state.config.server.max_json_body_bytes;
    let api = auth::routes::routes(state.auth.clone(), state.plugins.clone(), limit)
        .or(directory::routes::routes(
            state.directory.clone(),
            state.auth.clone(),
            limit,
        ))
        .unify()
        .or(openapi::route())
        .unify()
        .or(plugins::route(state.plugins.clone()))
        .unify()
        .or(state.plugins.routes())
        .unify()
        .or(relay::routes::routes(
            state.tickets.clone(),
            state.auth.clone(),
        ))
        .unify()
        .or(messages::routes::routes(
            state.messages.clone(),
            state.auth.clone(),
            limit,
        ))
        .unify()
        .or(files::routes::routes(
            state.files.clone(),
            state.auth.clone(),
            state.plugins.clone(),
        ))
        .unify()
        .map(|r: Response| no_store(r))
        .boxed();
    let plugins = state.plugins.clone();
    let admission = http::caller()
        .and(warp::path::full())
        .and_then(move |caller: http::Caller, path: warp::path::FullPath| {
            let verdict = plugins.admit(&Admission::Request {
                client: caller.client(),
                path: path.as_str(),
            });
            async move {
                match verdict {
                    Verdict::Allow => Ok(()),
                    Verdict::Refuse { retry_after_secs } => Err(warp::reject::custom(
                        ApiError::rate_limited(retry_after_secs),
                    )),
                }
            }
        })
        .untuple_one();
    let headers = http::security_headers(state.config.server.behind_tls);
    admission
        .and(
            health::routes(state.db.clone())
                .or(metrics::route(state.clone()))
                .unify()
                .or(api)
                .unify()
                .or(assets::routes())
                .unify(),
        )
        .recover(error::recover)
        .unify()
        .map(move |mut r: Response| {
            r.headers_mut().extend(headers.clone());
            r
        })
        .with(http::request_log(http::RouteTemplates::new(&route_table())))
        .map(Reply::into_response)
        .boxed()
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.into_response()
}
