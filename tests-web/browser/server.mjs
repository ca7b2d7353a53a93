// Starts the real securechat binary for a test file: `securechat serve` on port 0 with the test
// settings of docs/API-CONTRACT.md and a fresh data dir, waits for its one stdout line
// `securechat listening on http://127.0.0.1:PORT`, and stops it (and removes the dir) afterwards.
import { spawn, execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const SERVER_BIN = process.env.SECURECHAT_BIN || path.join(REPO, 'target', 'debug', 'securechat');
export const CLIENT_BIN = process.env.SECURECHAT_CLIENT_BIN || path.join(REPO, 'target', 'debug', 'securechat-client');

// Children still running when this process exits (a crashed test) are killed with it.
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

const LISTENING = /^securechat listening on (http:\/\/127\.0\.0\.1:(\d+))\s*$/;

export async function startServer({ env = {}, timeoutMs = 30000 } = {}) {
  if (!existsSync(SERVER_BIN)) {
    throw new Error(`server binary not found at ${SERVER_BIN} (build it with cargo build -p securechat, or set SECURECHAT_BIN)`);
  }
  const dataDir = await mkdtemp(path.join(tmpdir(), 'securechat-web-'));
  const child = spawn(SERVER_BIN, ['serve'], {
    env: {
      ...process.env,
      SECURECHAT_SERVER__PORT: '0',
      SECURECHAT_STORAGE__DATA_DIR: dataDir,
      SECURECHAT_AUTH__BCRYPT_COST: '4',
      SECURECHAT_AUTH__MIN_KDF_ITERATIONS: '1000',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-20000);
  });
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );

  const url = await new Promise((resolve, reject) => {
    let buffer = '';
    const timer = setTimeout(() => fail(new Error(`server did not print its listening line within ${timeoutMs} ms`)), timeoutMs);
    function fail(err) {
      clearTimeout(timer);
      child.kill('SIGKILL');
      err.message += `\n--- server stderr ---\n${stderr}`;
      reject(err);
    }
    child.once('error', fail);
    exited.then(({ code, signal }) => fail(new Error(`server exited early (code ${code}, signal ${signal})`)));
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      buffer += chunk;
      let nl;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        const m = LISTENING.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      }
    });
  });

  return {
    url,
    dataDir,
    logs: () => stderr,
    /** Freezes the process (SIGSTOP): its sockets stay open and nothing answers, like a network cut in silence. */
    pause() {
      child.kill('SIGSTOP');
    },
    resume() {
      child.kill('SIGCONT');
    },
    async stop() {
      if (child.signalCode === null) child.kill('SIGCONT');
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Runs the Rust test client CLI; resolves to its JSON line {"username","key_version","fingerprint"}. */
export function runClient(args, { timeoutMs = 60000 } = {}) {
  if (!existsSync(CLIENT_BIN)) {
    return Promise.reject(
      new Error(`client binary not found at ${CLIENT_BIN} (build it with cargo build -p securechat-client, or set SECURECHAT_CLIENT_BIN)`),
    );
  }
  return new Promise((resolve, reject) => {
    execFile(CLIENT_BIN, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) {
        err.message += `\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;
        reject(err);
        return;
      }
      const line = stdout.trim().split('\n').filter(Boolean).at(-1) ?? '';
      try {
        resolve(JSON.parse(line));
      } catch {
        reject(new Error(`client printed no JSON line:\n${stdout}\n--- stderr ---\n${stderr}`));
      }
    });
  });
}

/**
 * Runs another command of the server binary (`admin grant USER`, `audit verify`) against a
 * running test server's data dir, with the same test settings; resolves to its stdout.
 */
export function serverCommand(server, args, { timeoutMs = 30000 } = {}) {
  return new Promise((resolve, reject) => {
    const env = {
      ...process.env,
      SECURECHAT_STORAGE__DATA_DIR: server.dataDir,
      SECURECHAT_AUTH__BCRYPT_COST: '4',
      SECURECHAT_AUTH__MIN_KDF_ITERATIONS: '1000',
    };
    execFile(SERVER_BIN, args, { env, timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) {
        err.message += `\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;
        reject(err);
        return;
      }
      resolve(stdout);
    });
  });
}
