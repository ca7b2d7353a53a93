//! Owns `securechat backup PATH` and `securechat restore PATH`: a consistent online copy of
//! the database and of the file blobs it refers to, with a manifest; and putting such a
//! copy in place in the configured data dir after checking it. The SQL (the online copy,
//! the checks) is in `db/backup.rs`.
//!
//! A backup directory holds `securechat.db` (one self-contained SQLite file),
//! `blobs/<2 hex>/<uuid>` (the encrypted blobs, laid out as in the data dir) and
//! `manifest.json` ([`Manifest`]: format and schema version, counts, the size and BLAKE3 of
//! every file).
//!
//! Invariants:
//! - `backup` takes no lock a server needs: the database copy is one read transaction
//!   (WAL lets the server write meanwhile) and blobs are only read;
//! - the blobs copied are exactly those the copied rows vouch for, cut to the bytes each row
//!   accounts for: a finished blob never changes, and an upload's bytes before its
//!   committed offset are never rewritten, so copying them after the snapshot is
//!   consistent; a row whose blob was removed after the snapshot (the server deletes a row
//!   before its blob) is dropped from the copy, so a restore has no row without its blob;
//! - the manifest is written last (write, fsync, rename): a directory without one is an
//!   unfinished backup, and `restore` refuses it;
//! - no secret is copied: `jwt_secret` and `prelogin_key` stay in the data dir (see
//!   README "Back up and restore" for what a restore on a new host means);
//! - everything written is private: directories 0700, files 0600;
//! - `restore` checks everything (manifest, every size and BLAKE3, `PRAGMA
//!   integrity_check`) before it changes anything, holds the data dir lock while it works
//!   (so never under a running server), and never deletes: a database it replaces is moved
//!   aside, together with its WAL and blobs, into `before-restore-<ms>/` in the data dir.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::db::{self, backup::Counts};
use crate::files::Blobs;

/// The `format` every manifest names.
pub const FORMAT: &str = "securechat-backup";
/// The manifest layout this binary writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const MANIFEST: &str = "manifest.json";
const DB_FILE: &str = "securechat.db";
const BLOBS: &str = "blobs";

/// `manifest.json`: what a backup holds, so that `restore` can check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// The securechat that wrote it.
    pub securechat_version: String,
    /// The database's schema version (the number of migrations applied).
    pub schema_version: i64,
    /// When the snapshot was taken: ms since the epoch, and as an HTTP date for people.
    pub created_at_ms: i64,
    pub created_at: String,
    pub counts: Counts,
    pub database: FileEntry,
    pub blobs: Vec<BlobEntry>,
    /// Rows of `files` left out because their blob was removed after the snapshot.
    pub dropped_files: u64,
    /// Always false: the JWT secret and the prelogin key are not in a backup.
    pub secrets_included: bool,
}

/// One file of a backup: its size and BLAKE3 (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub bytes: u64,
    pub blake3: String,
}

/// One blob: the server's uuid (its name on disk), its size and BLAKE3 (hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEntry {
    pub id: String,
    pub bytes: u64,
    pub blake3: String,
}

/// Why `backup` or `restore` would not go on; nothing was changed. Each has its own exit
/// code (README "Back up and restore").
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{} already exists and is not an empty directory; choose a new one", .0.display())]
    TargetNotEmpty(PathBuf),
    #[error("there is no database at {}", .0.display())]
    NoDatabase(PathBuf),
    #[error("{} is not a usable backup: {}", .0.display(), .1)]
    BadBackup(PathBuf, String),
    #[error("a securechat server is using the data dir {}; stop it before restoring", .0.display())]
    ServerRunning(PathBuf),
    #[error(
        "the data dir {} already has a database; pass --force to move it aside and restore",
        .0.display()
    )]
    HasDatabase(PathBuf),
}

impl Refusal {
    /// The process exit code: 3 a bad backup, 4 a running server, 5 the destination
    /// already holds data (1 stays for every other failure, 2 for bad configuration).
    pub fn exit_code(&self) -> u8 {
        match self {
            Refusal::NoDatabase(_) => 1,
            Refusal::BadBackup(..) => 3,
            Refusal::ServerRunning(_) => 4,
            Refusal::TargetNotEmpty(_) | Refusal::HasDatabase(_) => 5,
        }
    }
}

/// Writes a backup of the configured data dir into `to`, a directory that must not exist
/// or be empty. Blocking; works while a server runs on the data dir.
pub fn backup(config: &Config, to: &Path) -> anyhow::Result<Manifest> {
    let source = config.database_path();
    if !source.is_file() {
        return Err(Refusal::NoDatabase(source).into());
    }
    let created = claim_target(to)?;
    write_backup(config, &source, to).inspect_err(|_| clear_target(to, created))
}

/// Creates `to` (0700), or takes an existing empty directory (made 0700). Returns whether
/// it created it.
fn claim_target(to: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(to) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Refusal::TargetNotEmpty(to.to_owned()).into());
            }
            set_mode(to, 0o700)?;
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            private_dir(to)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            Err(Refusal::TargetNotEmpty(to.to_owned()).into())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", to.display())),
    }
}

/// After a failed backup: removes what it wrote (the directory too if it made it).
fn clear_target(to: &Path, created: bool) {
    let result = if created {
        std::fs::remove_dir_all(to)
    } else {
        std::fs::read_dir(to).and_then(|entries| {
            for e in entries.flatten() {
                let path = e.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(path)?;
                } else {
                    std::fs::remove_file(path)?;
                }
            }
            Ok(())
        })
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, dir = %to.display(), "cannot clean up the failed backup");
    }
}

fn write_backup(config: &Config, source: &Path, to: &Path) -> anyhow::Result<Manifest> {
    let db_copy = to.join(DB_FILE);
    drop(private_file(&db_copy)?);
    let created_at_ms = db::now_ms();
    let mut conn = db::backup::copy_live(source, &db_copy).context("copying the database")?;
    let schema_version = db::backup::schema_version(&conn)?;
    if schema_version != db::latest_version() {
        anyhow::bail!(
            "the database is at schema version {schema_version} and this securechat expects {}; \
             back up with the securechat binary the server runs",
            db::latest_version()
        );
    }

    let live = Blobs::new(&config.storage.data_dir);
    let copies = Blobs::new(to);
    let mut blobs = Vec::new();
    let mut gone = Vec::new();
    for r in db::backup::referenced_blobs(&conn)? {
        let from = match live.open_read(&r.id) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                gone.push(r.id);
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read blob {}", r.id)),
        };
        let path = copies.path(&r.id)?;
        if let Some(dir) = path.parent() {
            private_dir(dir)?;
        }
        let (bytes, hash) = copy_into(from.take(r.bytes), &path)
            .with_context(|| format!("cannot copy blob {}", r.id))?;
        blobs.push(BlobEntry {
            id: r.id,
            bytes,
            blake3: hash.to_hex().to_string(),
        });
    }
    let dropped = db::backup::drop_files(&mut conn, &gone)?;
    if dropped > 0 {
        tracing::info!(
            dropped,
            "files removed after the snapshot were left out of the backup"
        );
    }
    let problems = db::backup::integrity_problems(&conn)?;
    if !problems.is_empty() {
        anyhow::bail!(
            "the copy fails PRAGMA integrity_check: {}",
            problems.join("; ")
        );
    }
    let counts = db::backup::counts(&conn)?;
    conn.close()
        .map_err(|(_, e)| e)
        .context("closing the copy")?;
    File::open(&db_copy)?.sync_all()?;
    let (bytes, hash) = hash_file(&db_copy)?;

    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        securechat_version: env!("CARGO_PKG_VERSION").into(),
        schema_version,
        created_at_ms,
        created_at: httpdate::fmt_http_date(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_millis(u64::try_from(created_at_ms).unwrap_or(0)),
        ),
        counts,
        database: FileEntry {
            bytes,
            blake3: hash.to_hex().to_string(),
        },
        blobs,
        dropped_files: u64::try_from(dropped).unwrap_or(0),
        secrets_included: false,
    };
    sync_tree(&to.join(BLOBS))?;
    let tmp = to.join("manifest.json.partial");
    let mut f = private_file(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(&manifest)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, to.join(MANIFEST))?;
    sync_dir(to)?;
    // The backup directory's own name, in its parent (`.` for a bare relative name).
    let parent = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sync_dir(parent)?;
    Ok(manifest)
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    /// Where the database it replaced went (with its WAL and blobs), if there was one.
    pub moved_aside: Option<PathBuf>,
}

/// Puts the backup in `from` in place in the configured data dir, after checking it.
/// Refuses while a server uses the data dir, and over an existing database unless `force`.
/// Blocking.
pub fn restore(config: &Config, from: &Path, force: bool) -> anyhow::Result<Restored> {
    let manifest = verify(from)?;
    let data_dir = &config.storage.data_dir;
    crate::prepare_data_dir(data_dir)?;
    let _lock = crate::lock_data_dir(data_dir).map_err(|e| {
        if e.is::<crate::DataDirInUse>() {
            Refusal::ServerRunning(data_dir.clone()).into()
        } else {
            e
        }
    })?;
    let db_path = config.database_path();
    if db_path.exists() && !force {
        return Err(Refusal::HasDatabase(data_dir.clone()).into());
    }
    let staged_db = data_dir.join("securechat.db.restoring");
    let staged_blobs = data_dir.join("blobs.restoring");
    let clear_staging = || {
        let _ = std::fs::remove_file(&staged_db);
        let _ = std::fs::remove_dir_all(&staged_blobs);
    };
    clear_staging();
    if let Err(e) = stage(from, &manifest, &staged_db, &staged_blobs) {
        clear_staging();
        return Err(e);
    }
    let moved_aside = move_aside(data_dir, &db_path)?;
    std::fs::rename(&staged_db, &db_path)?;
    if staged_blobs.exists() {
        std::fs::rename(&staged_blobs, data_dir.join(BLOBS))?;
    }
    sync_dir(data_dir)?;
    Ok(Restored {
        manifest,
        moved_aside,
    })
}

/// Reads the manifest and checks the backup against it without writing anything: format,
/// schema version, every file's size and BLAKE3, `PRAGMA integrity_check`.
pub fn verify(from: &Path) -> anyhow::Result<Manifest> {
    let bad = |why: String| -> anyhow::Error { Refusal::BadBackup(from.to_owned(), why).into() };
    let text = match std::fs::read(from.join(MANIFEST)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(bad(format!(
                "it has no {MANIFEST} (not a securechat backup, or one that did not finish)"
            )))
        }
        Err(e) => return Err(bad(format!("cannot read {MANIFEST}: {e}"))),
    };
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| bad(format!("{MANIFEST} cannot be parsed: {e}")))?;
    if manifest.format != FORMAT || manifest.format_version != FORMAT_VERSION {
        return Err(bad(format!(
            "its format is {:?} version {}; this securechat reads {FORMAT:?} version {FORMAT_VERSION}",
            manifest.format, manifest.format_version
        )));
    }
    if manifest.schema_version > db::latest_version() {
        return Err(bad(format!(
            "its schema version {} is newer than this securechat understands (up to {}); \
             restore it with a newer securechat",
            manifest.schema_version,
            db::latest_version()
        )));
    }
    let db_file = from.join(DB_FILE);
    let (bytes, hash) =
        hash_file(&db_file).map_err(|e| bad(format!("cannot read {DB_FILE}: {e}")))?;
    if !matches(&manifest.database, bytes, &hash) {
        return Err(bad(format!(
            "{DB_FILE} does not match the size and BLAKE3 in {MANIFEST} (damaged or changed \
             since the backup)"
        )));
    }
    let conn = db::backup::open_read_only(&db_file)
        .map_err(|e| bad(format!("{DB_FILE} cannot be opened: {e}")))?;
    let problems = db::backup::integrity_problems(&conn)
        .map_err(|e| bad(format!("PRAGMA integrity_check failed: {e}")))?;
    if !problems.is_empty() {
        return Err(bad(format!(
            "PRAGMA integrity_check: {}",
            problems.join("; ")
        )));
    }
    let version = db::backup::schema_version(&conn)?;
    drop(conn);
    if version != manifest.schema_version {
        return Err(bad(format!(
            "{DB_FILE} is at schema version {version}, the manifest says {}",
            manifest.schema_version
        )));
    }
    let blobs = Blobs::new(from);
    for b in &manifest.blobs {
        let path = blobs
            .path(&b.id)
            .map_err(|_| bad(format!("{MANIFEST} names a blob {:?}", b.id)))?;
        let (bytes, hash) =
            hash_file(&path).map_err(|e| bad(format!("cannot read blob {}: {e}", b.id)))?;
        if bytes != b.bytes || hash.to_hex().as_str() != b.blake3 {
            return Err(bad(format!(
                "blob {} does not match its size and BLAKE3 in {MANIFEST}",
                b.id
            )));
        }
    }
    Ok(manifest)
}

/// Copies the backup's database and blobs to the staging names in the data dir, checking
/// every copy against the manifest again (the backup may have changed since `verify`).
fn stage(
    from: &Path,
    manifest: &Manifest,
    staged_db: &Path,
    staged_blobs: &Path,
) -> anyhow::Result<()> {
    let changed = |what: &str| -> anyhow::Error {
        Refusal::BadBackup(
            from.to_owned(),
            format!("{what} changed while it was being restored"),
        )
        .into()
    };
    let (bytes, hash) = copy_into(File::open(from.join(DB_FILE))?, staged_db)?;
    if !matches(&manifest.database, bytes, &hash) {
        return Err(changed(DB_FILE));
    }
    if manifest.blobs.is_empty() {
        return Ok(());
    }
    private_dir(staged_blobs)?;
    let source = Blobs::new(from);
    let staged = Blobs::at(staged_blobs.to_owned());
    for b in &manifest.blobs {
        let path = staged.path(&b.id)?;
        if let Some(dir) = path.parent() {
            private_dir(dir)?;
        }
        let (bytes, hash) = copy_into(source.open_read(&b.id)?, &path)?;
        if bytes != b.bytes || hash.to_hex().as_str() != b.blake3 {
            return Err(changed(&format!("blob {}", b.id)));
        }
    }
    Ok(sync_tree(staged_blobs)?)
}

/// Moves the database at `db_path` (with its WAL, shared-memory and journal files) and the
/// blob directory into a new `before-restore-<ms>/` of the data dir, if any of them exist.
/// A WAL or journal left beside the restored database would be applied to it.
fn move_aside(data_dir: &Path, db_path: &Path) -> anyhow::Result<Option<PathBuf>> {
    let name = db_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| DB_FILE.into());
    let present: Vec<PathBuf> = [
        name.clone(),
        format!("{name}-wal"),
        format!("{name}-shm"),
        format!("{name}-journal"),
        BLOBS.into(),
    ]
    .into_iter()
    .map(|n| data_dir.join(n))
    .filter(|p| p.exists())
    .collect();
    if present.is_empty() {
        return Ok(None);
    }
    let aside = data_dir.join(format!("before-restore-{}", db::now_ms()));
    DirBuilder::new()
        .mode_private()
        .create(&aside)
        .with_context(|| format!("cannot create {}", aside.display()))?;
    for p in present {
        if let Some(n) = p.file_name() {
            std::fs::rename(&p, aside.join(n))
                .with_context(|| format!("cannot move {} aside", p.display()))?;
        }
    }
    sync_dir(&aside)?;
    Ok(Some(aside))
}

fn matches(entry: &FileEntry, bytes: u64, hash: &blake3::Hash) -> bool {
    entry.bytes == bytes && hash.to_hex().as_str() == entry.blake3
}

/// Streams `from` into `to` and through BLAKE3; returns the byte count and the hash.
fn copy_hashed(mut from: impl Read, mut to: impl Write) -> io::Result<(u64, blake3::Hash)> {
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
    Ok((total, hasher.finalize()))
}

/// Copies `from` into the new private file `to`, fsynced.
fn copy_into(from: impl Read, to: &Path) -> io::Result<(u64, blake3::Hash)> {
    let mut f = private_file(to)?;
    let done = copy_hashed(from, &mut f)?;
    f.sync_all()?;
    Ok(done)
}

fn hash_file(path: &Path) -> io::Result<(u64, blake3::Hash)> {
    copy_hashed(File::open(path)?, io::sink())
}

/// Creates a new file only its owner may read (0600); fails if it exists.
fn private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Creates `dir` and any missing parents, private (0700); an existing one is left as is.
fn private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode_private().create(dir)
}

trait Private {
    fn mode_private(&mut self) -> &mut Self;
}

impl Private for DirBuilder {
    fn mode_private(&mut self) -> &mut Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            self.mode(0o700);
        }
        self
    }
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot make {} private", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Fsyncs a directory, so the names created in it are durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Fsyncs `root` and its subdirectories (a blob tree: two levels), if it exists.
fn sync_tree(root: &Path) -> io::Result<()> {
    if !root.exists() {
        return Ok(());
    }
    for e in std::fs::read_dir(root)?.flatten() {
        if e.file_type()?.is_dir() {
            sync_dir(&e.path())?;
        }
    }
    sync_dir(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_have_their_documented_exit_codes() {
        let p = PathBuf::from("/x");
        assert_eq!(Refusal::BadBackup(p.clone(), String::new()).exit_code(), 3);
        assert_eq!(Refusal::ServerRunning(p.clone()).exit_code(), 4);
        assert_eq!(Refusal::TargetNotEmpty(p.clone()).exit_code(), 5);
        assert_eq!(Refusal::HasDatabase(p.clone()).exit_code(), 5);
        assert_eq!(Refusal::NoDatabase(p).exit_code(), 1);
    }

    #[test]
    fn a_target_that_holds_a_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("keep"), b"x").expect("write");
        let err = claim_target(dir.path()).expect_err("not empty");
        assert!(matches!(
            err.downcast_ref::<Refusal>(),
            Some(Refusal::TargetNotEmpty(_))
        ));
        assert_eq!(std::fs::read(dir.path().join("keep")).expect("read"), b"x");
        let file = dir.path().join("keep");
        assert!(claim_target(&file).is_err(), "a file is not a directory");
    }

    #[cfg(unix)]
    #[test]
    fn a_new_target_and_its_parents_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let to = dir.path().join("a/b");
        assert!(claim_target(&to).expect("claim"));
        let mode = std::fs::metadata(&to).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let f = to.join("f");
        drop(private_file(&f).expect("file"));
        let mode = std::fs::metadata(&f).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(private_file(&f).is_err(), "never overwrites");
    }
}
