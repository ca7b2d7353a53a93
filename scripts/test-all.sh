#!/usr/bin/env bash
# Runs every test securechat has: Rust (all features, and without default features), the
# JavaScript unit tests, and the browser tests in headless Chromium.
# On a fresh Debian machine, run as root: it installs what is missing (Node.js, npm,
# Chromium, ChromeDriver, sqlite3). Browser tests fail — never skip — if Chromium is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium chromium-driver)
# The browser tests read the server's SQLite file back (a deleted message's ciphertext is gone).
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
# python3: the check that `cargo run` picks the server, and the stack test's tools.
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# shellcheck source=scripts/install-missing.sh
source scripts/install-missing.sh
install_missing "${missing[@]}"

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "Node.js $node_major is too old: the web tests need Node.js >= 20 (Web Crypto as a global, node --test)." >&2
  exit 1
fi

# Each step says how long it took (seconds since the previous step), so a CI log shows
# where the time goes.
step_started=$SECONDS
step() {
  echo "    (took $((SECONDS - step_started)) s)"
  step_started=$SECONDS
  echo "==> $*"
}
trap 'echo "    (took $((SECONDS - step_started)) s; total $SECONDS s)"' EXIT

echo "==> the server's API tests without default features (no plugins)"
# Only the API suite and the unit tests depend on which plugins are compiled in (plugins.rs holds every
# #[cfg(feature)]); the job queue's and the layering tests run below and do not change.
# This pass runs first: its build of the server binary (no plugins) is then replaced by the
# all-features one below, which the browser tests and the stack test drive.
cargo test -p securechat --no-default-features --lib --test api --locked

step "Rust tests, all features"
cargo test --workspace --all-features --locked

step "every other combination of the server's features compiles (cargo check, cheap)"
# The features are read from server/Cargo.toml's [features] table (all but `default`).
# All and none were built and tested above, so only the combinations in between are checked.
mapfile -t features < <(awk '/^\[features\]/{f=1;next} /^\[/{f=0} f && /^[a-z0-9-]+ *=/{sub(/ *=.*/,""); if ($0 != "default") print}' server/Cargo.toml)
for ((mask = 1; mask < (1 << ${#features[@]}) - 1; mask++)); do
  subset=()
  for i in "${!features[@]}"; do
    if (( mask & (1 << i) )); then subset+=("${features[$i]}"); fi
  done
  list=$(IFS=,; echo "${subset[*]}")
  echo "    --features '${list}'"
  cargo check -q -p securechat --all-targets --no-default-features --features "$list" --locked
done

step "the binaries the browser tests drive (built by the all-features test run)"
# `cargo test --workspace --all-features` above built both binaries for its integration
# tests (CARGO_BIN_EXE_*) and left them in target/debug. A `cargo build -p …` here would
# resolve features differently and rebuild half the dependency tree (7 minutes in CI).
# `--no-run` is a no-op that fails if they were not built.
cargo test --workspace --all-features --locked --no-run -q
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
export SECURECHAT_BIN="$target_dir/debug/securechat"
export SECURECHAT_CLIENT_BIN="$target_dir/debug/securechat-client"
for bin in "$SECURECHAT_BIN" "$SECURECHAT_CLIENT_BIN"; do
  [ -x "$bin" ] || { echo "missing $bin" >&2; exit 1; }
done
"$SECURECHAT_BIN" config > /dev/null
# The README's run command is `cargo run --release` at the root: the workspace's default
# member must be the server, with exactly one binary, `securechat`.
cargo metadata --no-deps --format-version 1 --locked | python3 -c '
import json, sys
m = json.load(sys.stdin)
defaults = [p for p in m["packages"] if p["id"] in m["workspace_default_members"]]
bins = [t["name"] for p in defaults for t in p["targets"] if "bin" in t["kind"]]
sys.exit(0 if bins == ["securechat"] else f"cargo run at the root would not run the server: {bins}")
'

step "the docker compose stack: images, podman-compose, HTTPS and WSS through Caddy"
bash scripts/test-docker.sh

step "JavaScript unit tests and browser tests"
cd tests-web
npm ci --no-audit --no-fund --loglevel=error
npm run --silent test:unit
step "browser tests in headless Chromium"
npm run --silent test:browser
