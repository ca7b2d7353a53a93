//! The disk's fsync floor, measured beside a benchmark: a thread that rewrites one 4 KiB
//! block of a file in the server's data dir and `fdatasync`s it, at a steady rate, for as
//! long as the load runs. Its latencies say what one durable commit could cost on this
//! filesystem at that moment, so a paced run's tail can be read against the disk's own
//! (a commit under `synchronous = full` cannot be faster than its fsync).
//!
//! The probe overwrites blocks of a file it preallocated and synced first, so each sample
//! is a data write plus the device's cache flush, with no block allocation or size change
//! to journal: the cheapest fsync the filesystem offers, i.e. the floor.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::relay::{summarize, Summary};

/// Blocks the probe file holds; the probe rewrites them in turn.
const BLOCKS: u64 = 64;
const BLOCK: usize = 4096;

/// A running probe; [`FsyncProbe::finish`] stops it and summarizes.
pub struct FsyncProbe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<anyhow::Result<Vec<u32>>>,
    path: PathBuf,
}

impl FsyncProbe {
    /// Starts probing `dir` (a file `fsync-probe` in it) `hz` times a second.
    pub fn start(dir: &Path, hz: u32) -> anyhow::Result<FsyncProbe> {
        anyhow::ensure!(hz > 0, "the fsync probe needs a rate above 0");
        let path = dir.join("fsync-probe");
        let file = prepare(&path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let period = Duration::from_secs_f64(1.0 / f64::from(hz));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fsync-probe".into())
            .spawn(move || run(&file, period, &thread_stop))
            .context("starting the fsync probe thread")?;
        Ok(FsyncProbe { stop, thread, path })
    }

    /// Stops the probe and returns its latencies in ms.
    pub fn finish(self) -> anyhow::Result<Summary> {
        self.stop.store(true, Ordering::Relaxed);
        let us = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the fsync probe thread panicked"))??;
        let _ = std::fs::remove_file(&self.path);
        Ok(summarize(us))
    }
}

/// Creates the probe file with all its blocks written and synced.
fn prepare(path: &Path) -> anyhow::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let block = [0x5a_u8; BLOCK];
    for i in 0..BLOCKS {
        file.write_all_at(&block, i * BLOCK as u64)?;
    }
    file.sync_all()?;
    Ok(file)
}

/// One sample per `period` (a late sample does not make the next ones come faster).
fn run(file: &File, period: Duration, stop: &AtomicBool) -> anyhow::Result<Vec<u32>> {
    let mut block = [0_u8; BLOCK];
    let mut us = Vec::new();
    let mut next = Instant::now();
    let mut i: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        block[..8].copy_from_slice(&i.to_le_bytes());
        let t = Instant::now();
        file.write_all_at(&block, (i % BLOCKS) * BLOCK as u64)?;
        file.sync_data()?;
        us.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
        i += 1;
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
    Ok(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_a_file_in_the_dir_and_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let probe = FsyncProbe::start(dir.path(), 200).unwrap();
        assert!(dir.path().join("fsync-probe").exists());
        std::thread::sleep(Duration::from_millis(100));
        let s = probe.finish().unwrap();
        assert!(s.n >= 1, "{s:?}");
        assert!(s.p50 > 0.0 && s.p50 <= s.p99 && s.p99 <= s.max, "{s:?}");
        assert!(!dir.path().join("fsync-probe").exists());
        assert!(FsyncProbe::start(dir.path(), 0).is_err());
    }
}
