//! Owns where ciphertext lives on disk: `<data_dir>/blobs/<2 hex>/<uuid>`, named only by
//! the server's own upload id (checked to be a uuid v4 here, so no client text can ever
//! reach a path), and the blocking file operations on them. Callers run these off the
//! async workers (`spawn_blocking`).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::messages::envelope::is_uuid_v4;

/// The blob directory of one data dir.
#[derive(Debug, Clone)]
pub struct Blobs {
    root: PathBuf,
}

impl Blobs {
    pub fn new(data_dir: &Path) -> Blobs {
        Blobs {
            root: data_dir.join("blobs"),
        }
    }

    /// Blobs laid out under `root` itself (a restore's staging directory).
    pub fn at(root: PathBuf) -> Blobs {
        Blobs { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of blob `id`; an id that is not a server-made uuid has none.
    pub fn path(&self, id: &str) -> io::Result<PathBuf> {
        if !is_uuid_v4(id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a blob is named by a server uuid only",
            ));
        }
        Ok(self.root.join(&id[..2]).join(id))
    }

    /// Opens blob `id` for writing, creating it (and its directory) if needed.
    pub fn open_write(&self, id: &str) -> io::Result<File> {
        let path = self.path(id)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
    }

    pub fn open_read(&self, id: &str) -> io::Result<File> {
        File::open(self.path(id)?)
    }

    /// The blob's length; 0 if there is none yet.
    pub fn len(&self, id: &str) -> io::Result<u64> {
        match std::fs::metadata(self.path(id)?) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Cuts blob `id` back to `len` bytes if it is longer (bytes of a PATCH that was never
    /// acknowledged), and makes that durable. Returns whether anything was cut.
    pub fn cut_back(&self, id: &str, len: u64) -> io::Result<bool> {
        if self.len(id)? <= len {
            return Ok(false);
        }
        let f = self.open_write(id)?;
        f.set_len(len)?;
        f.sync_data()?;
        Ok(true)
    }

    /// Removes blob `id`; a missing one is fine.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(id)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}
