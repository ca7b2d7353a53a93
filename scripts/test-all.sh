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

echo "==> Rust tests, all features"
cargo test --workspace --all-features --locked

step "the server's API tests without default features (no plugins)"
# Only the API suite and the unit tests depend on which plugins are compiled in (plugins.rs holds every
# #[cfg(feature)]); the job queue's and the layering tests ran above and do not change.
cargo test -p securechat --no-default-features --lib --test api --locked

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

step "building the binaries the browser tests drive"
cargo build -p securechat -p securechat-client --locked
# The README's run command is `cargo run --release` at the root: it must pick the server.
cargo run -q --locked -- config > /dev/null
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
export SECURECHAT_BIN="$target_dir/debug/securechat"
export SECURECHAT_CLIENT_BIN="$target_dir/debug/securechat-client"

step "the docker compose stack: images, podman-compose, HTTPS and WSS through Caddy"
bash scripts/test-docker.sh

step "JavaScript unit tests and browser tests"
cd tests-web
npm ci --no-audit --no-fund --loglevel=error
npm run --silent test:unit
step "browser tests in headless Chromium"
npm run --silent test:browser
