//! The `securechat` binary: `serve` (default), `migrate`, `admin grant|revoke USER`, `config`,
//! `jobs list|retry|cancel`, `audit verify`, `backup PATH`, `restore PATH [--force]`,
//! `healthcheck`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use securechat::config::Config;
use securechat::{db, App};
use securechat_plugin_api::admin::Verification;

/// mimalloc instead of glibc malloc: the relay allocates and frees small buffers per frame
/// on every worker thread, where glibc's arenas showed ~10% of the server's CPU in `perf`
/// (malloc, free, consolidate) under load. mimalloc is Microsoft's allocator, widely used
/// from Rust (thread-local free lists, no arena lock on the hot path).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "securechat",
    version,
    about = "Self-hosted end-to-end-encrypted messenger"
)]
struct Cli {
    /// Config file (default: ./config.toml if present).
    #[arg(long, global = true, env = "SECURECHAT_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Grant or revoke admin rights.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Print the effective configuration, secrets hidden.
    Config,
    /// Inspect and steer the job queue (works while the server runs).
    Jobs {
        #[command(subcommand)]
        action: JobsAction,
    },
    /// Check the admin audit log (needs the admin-logs feature).
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// GET /readyz of the configured server: exit 0 if it answers 200 (the container's
    /// HEALTHCHECK).
    Healthcheck,
    /// Copy the database and file blobs into the new directory PATH (works while the
    /// server runs). Exit 5 if PATH exists and is not empty.
    Backup { path: PathBuf },
    /// Check the backup in PATH and put it in place in the data dir (the server must be
    /// stopped). Exit 3: bad backup, 4: a server runs, 5: a database exists (see --force).
    Restore {
        path: PathBuf,
        /// Restore over an existing database, moving it (and its blobs) aside.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Recompute the hash chain: exit 0 if intact, 1 naming the first bad entry.
    Verify,
}

#[derive(Subcommand)]
enum JobsAction {
    /// List jobs, newest first.
    List {
        /// Only jobs in this state: available, running, done, failed or cancelled.
        #[arg(long)]
        state: Option<String>,
        /// Only jobs of this queue.
        #[arg(long)]
        queue: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Give a failed or cancelled job a fresh set of attempts, to run now.
    Retry { id: i64 },
    /// Cancel an available or running job.
    Cancel { id: i64 },
}

#[derive(Subcommand)]
enum AdminAction {
    /// Make a registered user an admin.
    Grant { username: String },
    /// Take admin rights away.
    Revoke { username: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("securechat: {e}");
            return ExitCode::from(2);
        }
    };
    securechat::logging::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("securechat: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::Migrate => migrate(&config),
            Command::Admin { action } => admin(config, action).await,
            Command::Jobs { action } => jobs(config, action).await,
            Command::Audit {
                action: AuditAction::Verify,
            } => audit_verify(&config),
            Command::Config => {
                print!("{}", config.redacted_toml());
                Ok(())
            }
            Command::Healthcheck => securechat::healthcheck::run(&config.server).await,
            Command::Backup { path } => backup(&config, &path),
            Command::Restore { path, force } => restore(&config, &path, force),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("securechat: {e:#}");
            if let Some(refusal) = e.downcast_ref::<securechat::backup::Refusal>() {
                return ExitCode::from(refusal.exit_code());
            }
            match e.downcast_ref::<Exit>() {
                Some(Exit(code, _)) => ExitCode::from(*code),
                None => ExitCode::FAILURE,
            }
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Every WebSocket is a file descriptor; the usual soft limit of 1024 is far too low.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(nofile = n, "file descriptor limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the file descriptor limit"),
    }
    let app = App::build(config).await?;
    // Before the line below: from then on SIGTERM means a graceful shutdown.
    let stop = securechat::shutdown_signal();
    // Scripts and tests read this line to learn the port (also when port = 0).
    println!("securechat listening on http://{}", app.addr());
    app.run(stop).await;
    Ok(())
}

fn migrate(config: &Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.storage.data_dir)?;
    let applied = db::migrate_file(&config.database_path(), &config.storage)?;
    if applied.is_empty() {
        println!(
            "database is up to date (schema version {})",
            db::latest_version()
        );
    } else {
        println!("applied migrations {applied:?}");
    }
    Ok(())
}

async fn admin(config: Config, action: AdminAction) -> anyhow::Result<()> {
    let (username, grant) = match action {
        AdminAction::Grant { username } => (username, true),
        AdminAction::Revoke { username } => (username, false),
    };
    let database = db::Db::open(&config.database_path(), &config.storage).await?;
    let name = username.clone();
    let found = database
        .write(move |c| db::users::set_admin(c, &name, grant))
        .await?;
    if !found {
        anyhow::bail!("no user named {username:?}");
    }
    println!(
        "{username} is {} an admin",
        if grant { "now" } else { "no longer" }
    );
    Ok(())
}

/// `securechat jobs …`: reads and edits the job table; a running server sees a retried job at
/// its next wake-up and a cancelled running job at its next heartbeat or completion.
async fn jobs(config: Config, action: JobsAction) -> anyhow::Result<()> {
    use securechat::jobs::{CancelOutcome, JobState, Queue, Registry};
    let database = db::Db::open(&config.database_path(), &config.storage).await?;
    let queue = Queue::new(database, &config.jobs, Registry::new())?;
    match action {
        JobsAction::List {
            state,
            queue: name,
            limit,
        } => {
            let state = state.map(|s| s.parse::<JobState>()).transpose()?;
            let list = queue.list(state, name, limit).await?;
            print!("{}", securechat::jobs::render_list(&list));
        }
        JobsAction::Retry { id } => {
            queue.retry(id).await?;
            println!("job {id} is available again");
        }
        JobsAction::Cancel { id } => match queue.cancel(id).await? {
            CancelOutcome::Cancelled { was_running } => println!(
                "job {id} cancelled{}",
                if was_running {
                    " (it was running; its worker will stop at its next heartbeat)"
                } else {
                    ""
                }
            ),
            CancelOutcome::AlreadyFinished(state) => {
                anyhow::bail!("job {id} is already {state}; nothing to cancel")
            }
        },
    }
    Ok(())
}

/// `securechat audit verify`: reads the audit log straight from the database file (the
/// server may be stopped) and checks its chain with the admin-logs plugin's rule.
fn audit_verify(config: &Config) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open_with_flags(
        config.database_path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let entries = securechat::admin_host::audit_entries(&conn)?;
    match securechat::plugins::verify_audit_chain(&entries) {
        None => Err(Exit(
            2,
            "audit verify: the admin-logs feature is not compiled into this build".into(),
        )
        .into()),
        Some(Verification::Ok { entries }) => {
            println!("audit log ok: {entries} entries");
            Ok(())
        }
        Some(Verification::Broken {
            entries,
            first_bad_seq,
            reason,
        }) => Err(Exit(
            1,
            format!("audit log broken at entry {first_bad_seq} ({reason}); {entries} entries"),
        )
        .into()),
    }
}

/// `securechat backup PATH`: see `securechat::backup`.
fn backup(config: &Config, path: &std::path::Path) -> anyhow::Result<()> {
    let m = securechat::backup::backup(config, path)?;
    let bytes: u64 = m.blobs.iter().map(|b| b.bytes).sum();
    println!(
        "backup written to {}: schema version {}, {} users, {} messages, {} files, {} uploads \
         in progress ({} blobs, {bytes} bytes); no secrets included",
        path.display(),
        m.schema_version,
        m.counts.users,
        m.counts.messages,
        m.counts.files,
        m.counts.uploads,
        m.blobs.len(),
    );
    Ok(())
}

/// `securechat restore PATH [--force]`: see `securechat::backup`.
fn restore(config: &Config, path: &std::path::Path, force: bool) -> anyhow::Result<()> {
    let r = securechat::backup::restore(config, path, force)?;
    let m = &r.manifest;
    println!(
        "restored the backup of {} into {}: schema version {}, {} users, {} messages, {} files",
        m.created_at,
        config.storage.data_dir.display(),
        m.schema_version,
        m.counts.users,
        m.counts.messages,
        m.counts.files,
    );
    if let Some(aside) = r.moved_aside {
        println!("the previous database was moved to {}", aside.display());
    }
    Ok(())
}

/// An error that ends the process with this exit code.
#[derive(Debug)]
struct Exit(u8, String);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Exit {}
