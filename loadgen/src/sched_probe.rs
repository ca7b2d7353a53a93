//! The machine's scheduling floor, measured beside a benchmark: how late a thread that
//! asks to wake every millisecond actually wakes, and how much CPU time the hypervisor took
//! from this VM (`steal` in `/proc/stat`) while the load ran.
//!
//! The sampling thread runs in a child process (`securechat-loadgen sched-probe`) started
//! under `chrt -f 50` when `chrt` is present: a real-time thread is ahead of the server,
//! the load generator and any compiler for a CPU, so its lateness is what no process on
//! this machine could have avoided (the vCPU not running, the kernel not preempting). A
//! stall of the server's delivery that the probe also saw at the same size is the
//! machine's, not the server's. Without `chrt` the probe runs at normal priority and says so.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::relay::{summarize, Summary};

/// What the probe saw over one load window.
#[derive(Debug)]
pub struct SchedResult {
    /// Wake-up lateness of the 1 kHz sampling thread, in ms.
    pub late: Summary,
    /// Whether the sampling thread ran at real-time priority.
    pub realtime: bool,
    /// Share of all CPU time (both cores) stolen by the hypervisor during the window, in %.
    pub steal_pct: f64,
    /// Longest run of consecutive samples more than 5 ms late, in ms (one stall's length).
    pub longest_stall_ms: f64,
}

/// A running probe; [`SchedProbe::finish`] stops it and summarizes.
pub struct SchedProbe {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    realtime: bool,
    stat_before: CpuTimes,
}

impl SchedProbe {
    /// Starts the sampling child (this same binary, `sched-probe`).
    pub fn start() -> anyhow::Result<SchedProbe> {
        let exe = std::env::current_exe().context("locating the loadgen binary")?;
        let realtime = Command::new("chrt")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let mut cmd = if realtime {
            let mut c = Command::new("chrt");
            c.arg("-f").arg("50").arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let mut child = cmd
            .arg("sched-probe")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the scheduling probe")?;
        let stdin = child.stdin.take().context("probe stdin")?;
        let mut stdout = child.stdout.take().context("probe stdout")?;
        // The child says "ready" once sampling; a refused chrt (no permission) shows here.
        let mut first = String::new();
        BufReader::new(&mut stdout)
            .read_line(&mut first)
            .context("waiting for the scheduling probe")?;
        anyhow::ensure!(
            first.trim() == "ready",
            "the scheduling probe did not start (chrt refused?): {first:?}"
        );
        Ok(SchedProbe {
            child,
            stdin: Some(stdin),
            stdout,
            realtime,
            stat_before: CpuTimes::read()?,
        })
    }

    /// Stops the probe and returns what it saw.
    pub fn finish(mut self) -> anyhow::Result<SchedResult> {
        let stat_after = CpuTimes::read()?;
        drop(self.stdin.take());
        let mut out = String::new();
        self.stdout.read_to_string(&mut out)?;
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "the scheduling probe failed: {status}");
        let mut lateness_us = Vec::new();
        let mut longest_stall_ms = 0.0;
        for line in out.lines() {
            if let Some(v) = line.strip_prefix("stall_ms ") {
                longest_stall_ms = v.trim().parse().unwrap_or(f64::NAN);
            } else if let Ok(us) = line.trim().parse::<u32>() {
                lateness_us.push(us);
            }
        }
        let total = stat_after.total.saturating_sub(self.stat_before.total);
        let steal = stat_after.steal.saturating_sub(self.stat_before.steal);
        let steal_pct = if total == 0 {
            f64::NAN
        } else {
            100.0 * steal as f64 / total as f64
        };
        Ok(SchedResult {
            late: summarize(lateness_us),
            realtime: self.realtime,
            steal_pct,
            longest_stall_ms,
        })
    }
}

impl Drop for SchedProbe {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The aggregate `cpu` line of `/proc/stat`: all jiffies, and the stolen ones.
struct CpuTimes {
    total: u64,
    steal: u64,
}

impl CpuTimes {
    fn read() -> anyhow::Result<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        let line = stat
            .lines()
            .find(|l| l.starts_with("cpu "))
            .context("no cpu line in /proc/stat")?;
        // user nice system idle iowait irq softirq steal guest guest_nice
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        // guest time is already counted in user; count the first eight fields.
        let total = v.iter().take(8).sum();
        let steal = v.get(7).copied().unwrap_or(0);
        Ok(CpuTimes { total, steal })
    }
}

/// The child's body: samples until stdin closes, then prints one lateness (µs) per line and
/// `stall_ms <longest stall>`.
pub fn run_child() -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = stop.clone();
    let sampler = std::thread::Builder::new()
        .name("sched-probe".into())
        .spawn(move || sample(Duration::from_millis(1), &thread_stop))
        .context("starting the sampling thread")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")?;
        out.flush()?;
    }
    // Blocks until the parent closes our stdin (or dies).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    stop.store(true, Ordering::Relaxed);
    let (late, stall_ms) = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the sampling thread panicked"))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for us in late {
        writeln!(out, "{us}")?;
    }
    writeln!(out, "stall_ms {stall_ms:.3}")?;
    out.flush()?;
    Ok(())
}

/// Sleeps to each next period boundary and records how late it woke (µs); also the longest
/// stretch of wall time covered by consecutive samples more than 5 ms late.
fn sample(period: Duration, stop: &AtomicBool) -> (Vec<u32>, f64) {
    let mut late = Vec::with_capacity(64 * 1024);
    let mut next = Instant::now() + period;
    let mut stall_start: Option<Instant> = None;
    let mut longest = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let woke = Instant::now();
        let lateness = woke.saturating_duration_since(next);
        late.push(u32::try_from(lateness.as_micros()).unwrap_or(u32::MAX));
        if lateness > Duration::from_millis(5) {
            let start = *stall_start.get_or_insert(next);
            longest = longest.max(woke - start);
        } else {
            stall_start = None;
        }
        // A late wake-up does not make the next samples come faster.
        next = woke.max(next) + period;
    }
    (late, longest.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampler_records_one_lateness_per_period() {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let t = std::thread::spawn(move || sample(Duration::from_millis(1), &s));
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        let (late, stall) = t.join().unwrap();
        assert!(late.len() >= 20 && late.len() <= 110, "{}", late.len());
        assert!(stall >= 0.0);
    }

    #[test]
    fn cpu_times_come_from_proc_stat() {
        let t = CpuTimes::read().unwrap();
        assert!(t.total > 0 && t.steal <= t.total);
    }
}
