//! Child processes of a benchmark run (the securechat server, the echo relay, the upload
//! baselines): starting
//! them on a free port, reading the address from their first stdout line, killing them
//! when dropped, and reading their resident memory from `/proc/<pid>/status`.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

/// A child killed (and reaped) on drop.
pub struct Proc {
    child: Child,
    /// What the first stdout line announced, without its prefix.
    pub addr: String,
    dir: Option<tempfile::TempDir>,
}

impl Proc {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's VmRSS in KiB, if it can be read.
    pub fn rss_kb(&self) -> Option<u64> {
        rss_kb(self.pid())
    }

    /// The temp dir holding the child's data dir (the server's), if it has one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(tempfile::TempDir::path)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn first_line(mut cmd: Command, prefix: &str, what: &str) -> anyhow::Result<(Child, String)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    let read = BufReader::new(stdout).read_line(&mut line);
    let addr = match read {
        Ok(_) => line.trim().strip_prefix(prefix).map(str::to_owned),
        Err(_) => None,
    };
    match addr {
        Some(addr) => Ok((child, addr)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("{what}: unexpected first line {line:?}")
        }
    }
}

/// Start `bin serve` on a free port with a fresh data dir, the test-speed auth settings
/// of API-CONTRACT plus `env`; the server's rlimits are this process's (raise them first).
pub fn start_server(bin: &Path, env: &[(&str, String)]) -> anyhow::Result<Proc> {
    let dir = tempfile::tempdir()?;
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .env("SECURECHAT_SERVER__PORT", "0")
        .env("SECURECHAT_STORAGE__DATA_DIR", dir.path().join("data"))
        .env("SECURECHAT_AUTH__MIN_KDF_ITERATIONS", "1000")
        .env("SECURECHAT_LOG__LEVEL", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (child, addr) = first_line(
        cmd,
        "securechat listening on ",
        &format!("{}", bin.display()),
    )?;
    Ok(Proc {
        child,
        addr,
        dir: Some(dir),
    })
}

/// Start this binary's `echo-relay --port 0`; `addr` is its `ws://127.0.0.1:PORT`.
pub fn start_echo_relay(read_buffer: usize) -> anyhow::Result<Proc> {
    let exe = std::env::current_exe().context("finding the loadgen binary")?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "echo-relay",
        "--port",
        "0",
        "--read-buffer",
        &read_buffer.to_string(),
    ]);
    let (child, addr) = first_line(cmd, "echo-relay listening on ", "echo-relay")?;
    Ok(Proc {
        child,
        addr,
        dir: None,
    })
}

/// Start this binary's `plain-upload-server --port 0 --dir <temp dir>`; `addr` is its
/// `http://127.0.0.1:PORT`.
pub fn start_plain_upload_server() -> anyhow::Result<Proc> {
    let dir = tempfile::tempdir()?;
    let exe = std::env::current_exe().context("finding the loadgen binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["plain-upload-server", "--port", "0", "--dir"])
        .arg(dir.path().join("uploads"));
    let (child, addr) = first_line(
        cmd,
        "plain-upload-server listening on ",
        "plain-upload-server",
    )?;
    Ok(Proc {
        child,
        addr,
        dir: Some(dir),
    })
}

/// Start `node <script> --port 0 --dir <temp dir>` (tests-web/tools/tus-node-server.mjs);
/// `addr` is its `http://127.0.0.1:PORT`.
pub fn start_tus_node(node: &Path, script: &Path) -> anyhow::Result<Proc> {
    let dir = tempfile::tempdir()?;
    let mut cmd = Command::new(node);
    cmd.arg(script)
        .args(["--port", "0", "--dir"])
        .arg(dir.path().join("uploads"));
    let (child, addr) = first_line(
        cmd,
        "tus-node-server listening on ",
        &format!("{} {}", node.display(), script.display()),
    )
    .context("the tus-node baseline needs Node.js and `npm install` in tests-web")?;
    Ok(Proc {
        child,
        addr,
        dir: Some(dir),
    })
}

/// VmRSS of a process in KiB, from `/proc/<pid>/status`.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_parses() {
        let status = "Name:\tx\nVmPeak:\t  100 kB\nVmRSS:\t   12345 kB\nThreads:\t2\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert!(rss_kb(std::process::id()).is_some_and(|kb| kb > 0));
    }
}
