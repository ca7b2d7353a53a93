//! Command-line front of securechat-client for the browser cross-check: `register` and
//! `login` against a server, printing `{"username","key_version","fingerprint"}` with the
//! fingerprint computed locally from the keys held (generated, or unwrapped at login);
//! `file-seal` / `file-open` (file records with given key, nonce, file_id and record size,
//! stdin/stdout or paths; a refusal exits 1 with its code, e.g. `record_auth`, on stderr);
//! `send-file` / `fetch-file` (a tus upload with resume, a verified download); `send` (a
//! text message over the WebSocket, printed once acknowledged) and `history` (a
//! conversation, each message opened and verified). `--ca-cert PATH` (or
//! SECURECHAT_CA_CERT) trusts that CA instead of the public roots over https:// and wss://.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use securechat_client::files::{
    plain_size, FileKey, RecordOpener, RecordSealer, DEFAULT_RECORD_SIZE,
};
use securechat_client::kdf::{DEFAULT_ITERATIONS, MIN_ITERATIONS};
use securechat_client::uploads::{download, FileInfo, SendTo, UploadOptions, Uploader};
use securechat_client::ws::ServerFrame;
use securechat_client::{open, parse_enc_spki, seal_text, Client, Envelope, Session, Trust};

/// How long `send` waits for the server's ack.
const ACK_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Parser)]
#[command(name = "securechat-client", version, about)]
struct Cli {
    /// Trust only the CA certificate(s) in this PEM file over https:// and wss:// (e.g.
    /// Caddy's internal root); default: the public web PKI.
    #[arg(long, global = true, env = "SECURECHAT_CA_CERT")]
    ca_cert: Option<PathBuf>,
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
    /// Seal a file's records (plaintext from --input or stdin, ciphertext to --output or stdout).
    FileSeal {
        #[command(flatten)]
        record: RecordArgs,
        /// Plaintext bytes (default: all of the input).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Open a file's records; only verified records are written, and any refusal exits 1.
    FileOpen {
        #[command(flatten)]
        record: RecordArgs,
        /// Plaintext bytes (default: derived from the ciphertext length).
        #[arg(long)]
        size: Option<u64>,
    },
    /// Sign in, encrypt a file for USER and upload it (tus, resuming after failures).
    SendFile {
        #[command(flatten)]
        login: LoginArgs,
        /// The recipient.
        #[arg(long)]
        to: String,
        /// The file to send.
        path: PathBuf,
        /// The name in the manifest (default: the file name).
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "application/octet-stream")]
        mime: String,
        #[arg(long, default_value_t = DEFAULT_RECORD_SIZE)]
        record_size: u32,
        /// Records per PATCH.
        #[arg(long, default_value_t = 16)]
        records_per_patch: u64,
        /// Records sent with the POST (creation-with-upload); 0 for none.
        #[arg(long, default_value_t = 0)]
        records_in_create: u64,
    },
    /// Sign in, seal TEXT for --to and send it over the WebSocket; prints its id and seq
    /// once the server has acknowledged (stored) it.
    Send {
        #[command(flatten)]
        login: LoginArgs,
        /// The recipient.
        #[arg(long)]
        to: String,
        /// The message text.
        text: String,
        /// Send this many messages over one socket, one after the other (each waits for its
        /// ack), the text of each followed by " #<n>"; prints the first and last seq. For
        /// seeding long conversations (benchmarks, tests).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        repeat: u32,
    },
    /// Sign in and print the conversation with --peer, each message opened and its
    /// signature verified.
    History {
        #[command(flatten)]
        login: LoginArgs,
        /// The other party.
        #[arg(long)]
        peer: String,
        /// At most this many messages (1-200).
        #[arg(long, default_value_t = 200)]
        limit: u32,
    },
    /// Sign in, download file ID (the server's id), verify it and write it to --out.
    FetchFile {
        #[command(flatten)]
        login: LoginArgs,
        /// The server's file id.
        id: String,
        #[arg(long)]
        out: PathBuf,
        /// The other party (default: searched in every conversation that has messages).
        #[arg(long)]
        peer: Option<String>,
    },
}

#[derive(Args)]
struct RecordArgs {
    /// The file key K, b64 (32 bytes).
    #[arg(long)]
    key: String,
    /// The base nonce N, b64 (12 bytes).
    #[arg(long)]
    nonce: String,
    #[arg(long)]
    file_id: String,
    #[arg(long, default_value_t = DEFAULT_RECORD_SIZE)]
    record_size: u32,
    /// Read from this file instead of stdin.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Write to this file instead of stdout (then a JSON summary is printed).
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct LoginArgs {
    /// Server base URL, e.g. http://127.0.0.1:8080
    #[arg(long)]
    server: String,
    #[arg(long)]
    username: String,
    #[arg(long, env = "SECURECHAT_PASSWORD")]
    password: String,
    /// The fewest PBKDF2 iterations accepted from prelogin (lower only for test servers).
    #[arg(long, default_value_t = MIN_ITERATIONS)]
    min_iterations: u32,
}

impl LoginArgs {
    async fn login(&self, trust: &Trust) -> anyhow::Result<(Client, Session)> {
        let client = Client::with_trust(&self.server, trust.clone())?
            .with_min_kdf_iterations(self.min_iterations);
        let session = client
            .login(&self.username, &self.password)
            .await
            .context("login")?;
        Ok((client, session))
    }
}

fn read_input(path: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    let mut data = Vec::new();
    match path {
        Some(p) => {
            File::open(p)
                .with_context(|| format!("opening {}", p.display()))?
                .read_to_end(&mut data)?;
        }
        None => {
            std::io::stdin().lock().read_to_end(&mut data)?;
        }
    }
    Ok(data)
}

/// Write `f`'s output to `path` through a temporary file renamed on success (removed on
/// failure), or to stdout.
fn with_output(
    path: Option<&Path>,
    f: impl FnOnce(&mut dyn Write) -> anyhow::Result<u64>,
) -> anyhow::Result<u64> {
    match path {
        Some(p) => {
            let part = p.with_extension("part");
            let result = (|| {
                let mut w = BufWriter::new(File::create(&part)?);
                let n = f(&mut w)?;
                w.flush()?;
                Ok::<_, anyhow::Error>(n)
            })();
            match result {
                Ok(n) => {
                    std::fs::rename(&part, p)?;
                    Ok(n)
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&part);
                    Err(e)
                }
            }
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = stdout.lock();
            let n = f(&mut w)?;
            w.flush()?;
            Ok(n)
        }
    }
}

fn file_key(args: &RecordArgs) -> anyhow::Result<FileKey> {
    FileKey::from_b64(&args.key, &args.nonce).context("--key / --nonce")
}

/// Seal `text` for `to`, send it on a fresh WebSocket and wait for its ack.
async fn send_text(
    client: &Client,
    session: &Session,
    to: &str,
    text: &str,
    repeat: u32,
) -> anyhow::Result<serde_json::Value> {
    let token = &session.access_token;
    let keys = client
        .keys(token, to)
        .await
        .with_context(|| format!("keys of {to}"))?;
    let verified = keys.verify().with_context(|| format!("keys of {to}"))?;
    let to_enc = parse_enc_spki(&verified.enc_spki)?;
    let mut ws = client
        .connect_ws(token)
        .await
        .context("opening the WebSocket")?;
    let mut acks = Vec::with_capacity(2);
    for n in 1..=repeat {
        let numbered;
        let text = if repeat == 1 {
            text
        } else {
            numbered = format!("{text} #{n}");
            &numbered
        };
        let envelope = seal_text(&session.username, &session.identity, to, &to_enc, text)?;
        ws.send_envelope(&envelope).await?;
        let answer = ws
            .recv_until(ACK_TIMEOUT, |f| match f {
                ServerFrame::Ack { id, .. } => *id == envelope.id,
                ServerFrame::Error { .. } => true,
                _ => false,
            })
            .await
            .context("waiting for the ack")?;
        let ack = match answer {
            ServerFrame::Ack { id, seq, server_ts } => {
                serde_json::json!({"id": id, "seq": seq, "server_ts": server_ts})
            }
            ServerFrame::Error { code, message, .. } => {
                anyhow::bail!("the server refused message {n}: {code}: {message}")
            }
            other => anyhow::bail!("unexpected frame {}", other.kind()),
        };
        if n == 1 || n == repeat {
            acks.push(ack);
        }
    }
    ws.close().await?;
    match acks.as_slice() {
        [only] => Ok(only.clone()),
        [first, last] => Ok(serde_json::json!({
            "sent": repeat,
            "first_seq": first["seq"],
            "last_seq": last["seq"],
        })),
        _ => anyhow::bail!("no message was sent"),
    }
}

/// The conversation with `peer`, oldest first, each message opened and verified with
/// its sender's current signing key.
async fn read_history(
    client: &Client,
    session: &Session,
    peer: &str,
    limit: u32,
) -> anyhow::Result<serde_json::Value> {
    let token = &session.access_token;
    let history = client
        .history(token, peer, None, None, Some(limit))
        .await
        .with_context(|| format!("history with {peer}"))?;
    let mine = session.identity.sign_spki()?;
    let theirs = client
        .keys(token, peer)
        .await
        .with_context(|| format!("keys of {peer}"))?
        .verify()
        .with_context(|| format!("keys of {peer}"))?
        .sign_spki;
    let mut messages = Vec::with_capacity(history.messages.len());
    for item in history.messages {
        let envelope = Envelope::from_json(item.envelope.get())?;
        let spki = if envelope.from == session.username {
            &mine
        } else {
            &theirs
        };
        let opened = open(&envelope, &session.username, &session.identity, spki)
            .with_context(|| format!("message {}", item.seq))?;
        messages.push(serde_json::json!({
            "seq": item.seq,
            "id": envelope.id,
            "from": envelope.from,
            "to": envelope.to,
            "text": opened.text(),
        }));
    }
    Ok(serde_json::json!({ "messages": messages }))
}

async fn run(cli: Cli) -> anyhow::Result<Option<serde_json::Value>> {
    let trust = match &cli.ca_cert {
        Some(path) => Trust::from_pem_file(path).context("--ca-cert")?,
        None => Trust::public_roots()?,
    };
    match cli.command {
        Command::Send {
            login,
            to,
            text,
            repeat,
        } => {
            let (client, session) = login.login(&trust).await?;
            Ok(Some(
                send_text(&client, &session, &to, &text, repeat).await?,
            ))
        }
        Command::History { login, peer, limit } => {
            let (client, session) = login.login(&trust).await?;
            Ok(Some(read_history(&client, &session, &peer, limit).await?))
        }
        Command::FileSeal { record, size } => {
            let key = file_key(&record)?;
            let plain = read_input(record.input.as_deref())?;
            let size = size.unwrap_or(plain.len() as u64);
            let sealer = RecordSealer::new(&key, &record.file_id, size, record.record_size)?;
            let records = sealer.count();
            let n = with_output(record.output.as_deref(), |mut w| {
                Ok(sealer.seal_stream(&mut plain.as_slice(), &mut w)?)
            })?;
            Ok(record
                .output
                .map(|_| serde_json::json!({"size": size, "cipher_size": n, "records": records})))
        }
        Command::FileOpen { record, size } => {
            let key = file_key(&record)?;
            let ct = read_input(record.input.as_deref())?;
            let size = match size {
                Some(s) => s,
                None => plain_size(ct.len() as u64, record.record_size)?,
            };
            let opener = RecordOpener::new(&key, &record.file_id, size, record.record_size)?;
            let n = with_output(record.output.as_deref(), |mut w| {
                Ok(opener.open_stream(&mut ct.as_slice(), &mut w)?)
            })?;
            Ok(record.output.map(|_| serde_json::json!({"size": n})))
        }
        Command::SendFile {
            login,
            to,
            path,
            name,
            mime,
            record_size,
            records_per_patch,
            records_in_create,
        } => {
            let (client, session) = login.login(&trust).await?;
            let keys = client
                .keys(&session.access_token, &to)
                .await
                .with_context(|| format!("keys of {to}"))?;
            let verified = keys.verify().with_context(|| format!("keys of {to}"))?;
            let to_enc = parse_enc_spki(&verified.enc_spki)?;
            let name = match name {
                Some(n) => n,
                None => path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            };
            let source = BufReader::new(
                File::open(&path).with_context(|| format!("opening {}", path.display()))?,
            );
            let options = UploadOptions {
                record_size,
                records_per_patch,
                records_in_create,
                ..UploadOptions::default()
            };
            let send = SendTo {
                from: &session.username,
                identity: &session.identity,
                to: &to,
                to_enc: &to_enc,
                name: &name,
                mime: &mime,
            };
            let mut up = Uploader::start(&client, &session.access_token, source, send, options)
                .await
                .context("creating the upload")?;
            up.run(&client, |_, _| {}).await.context("uploading")?;
            Ok(Some(serde_json::json!({
                "id": up.status.id(),
                "file_id": up.manifest.file_id,
                "size": up.manifest.size,
                "cipher_size": up.cipher_size,
                "sha256": up.manifest.sha256,
            })))
        }
        Command::FetchFile {
            login,
            id,
            out,
            peer,
        } => {
            let (client, session) = login.login(&trust).await?;
            let token = session.access_token.clone();
            let peers = match peer {
                Some(p) => vec![p],
                None => client
                    .conversations(&token)
                    .await?
                    .conversations
                    .into_iter()
                    .map(|c| c.peer)
                    .collect(),
            };
            let mut found: Option<FileInfo> = None;
            'peers: for p in peers {
                let mut cursor: Option<String> = None;
                loop {
                    let page = client
                        .conversation_files(&token, &p, cursor.as_deref(), Some(100))
                        .await?;
                    if let Some(f) = page.files.into_iter().find(|f| f.id == id) {
                        found = Some(f);
                        break 'peers;
                    }
                    match page.next_cursor {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
            }
            let info = found.with_context(|| format!("no file {id} shared with you"))?;
            let sender_spki = if info.from == session.username {
                session.identity.sign_spki()?
            } else {
                let keys = client.keys(&token, &info.from).await?;
                keys.verify()?.sign_spki
            };
            let mut manifest = None;
            let part = out.with_extension("part");
            let result = async {
                let mut w = BufWriter::new(File::create(&part)?);
                let m = download(&client, &session, &sender_spki, &info, &mut w, 5).await?;
                w.flush()?;
                manifest = Some(m);
                Ok::<_, anyhow::Error>(())
            }
            .await;
            if let Err(e) = result {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
            std::fs::rename(&part, &out)?;
            let m = manifest.context("no manifest")?;
            Ok(Some(serde_json::json!({
                "id": info.id,
                "file_id": m.file_id,
                "name": m.name,
                "mime": m.mime,
                "size": m.size,
                "sha256": m.sha256,
            })))
        }
        Command::Register {
            server,
            username,
            password,
            iterations,
        } => {
            let client = Client::with_trust(&server, trust)?;
            let reg = client
                .register(&username, &password, iterations)
                .await
                .context("register")?;
            let fingerprint = reg.identity.fingerprint(&reg.username)?;
            Ok(Some(serde_json::json!({
                "username": reg.username,
                "key_version": reg.key_version,
                "fingerprint": fingerprint,
            })))
        }
        Command::Login {
            server,
            username,
            password,
            min_iterations,
        } => {
            let client =
                Client::with_trust(&server, trust)?.with_min_kdf_iterations(min_iterations);
            let session = client.login(&username, &password).await.context("login")?;
            let fingerprint = session.fingerprint()?;
            Ok(Some(serde_json::json!({
                "username": session.username,
                "key_version": session.key_version,
                "fingerprint": fingerprint,
            })))
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(out) => {
            if let Some(out) = out {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("securechat-client: {e:#}");
            ExitCode::FAILURE
        }
    }
}
