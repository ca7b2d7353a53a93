//! Command-line front of securechat-client for the browser cross-check: `register` and
//! `login` against a server, printing `{"username","key_version","fingerprint"}` with the
//! fingerprint computed locally from the keys held (generated, or unwrapped at login).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use securechat_client::kdf::{DEFAULT_ITERATIONS, MIN_ITERATIONS};
use securechat_client::Client;

#[derive(Parser)]
#[command(name = "securechat-client", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate keys and register a user.
    Register {
        /// Server base URL, e.g. http://127.0.0.1:8080
        #[arg(long)]
        server: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        password: String,
        /// PBKDF2 iterations.
        #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
        iterations: u32,
    },
    /// Log in, unwrap the key bundle and check it against the directory.
    Login {
        /// Server base URL, e.g. http://127.0.0.1:8080
        #[arg(long)]
        server: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        password: String,
        /// The fewest PBKDF2 iterations accepted from prelogin (lower only for test servers).
        #[arg(long, default_value_t = MIN_ITERATIONS)]
        min_iterations: u32,
    },
}

async fn run(cli: Cli) -> anyhow::Result<serde_json::Value> {
    match cli.command {
        Command::Register {
            server,
            username,
            password,
            iterations,
        } => {
            let client = Client::new(&server)?;
            let reg = client
                .register(&username, &password, iterations)
                .await
                .context("register")?;
            let fingerprint = reg.identity.fingerprint(&reg.username)?;
            Ok(serde_json::json!({
                "username": reg.username,
                "key_version": reg.key_version,
                "fingerprint": fingerprint,
            }))
        }
        Command::Login {
            server,
            username,
            password,
            min_iterations,
        } => {
            let client = Client::new(&server)?.with_min_kdf_iterations(min_iterations);
            let session = client.login(&username, &password).await.context("login")?;
            let fingerprint = session.fingerprint()?;
            Ok(serde_json::json!({
                "username": session.username,
                "key_version": session.key_version,
                "fingerprint": fingerprint,
            }))
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("securechat-client: {e:#}");
            ExitCode::FAILURE
        }
    }
}
