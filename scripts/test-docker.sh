#!/usr/bin/env bash
# The compose stack of docker/, started for real (issue #16):
#   1. static checks: docker/compose.yaml against the compose specification's JSON schema
#      (the copy check-jsonschema ships), hadolint on docker/Dockerfile;
#   2. images: the Debian base made with mmdebstrap when absent (kept as a cache), the
#      runtime from the host-built binary (--target runtime-prebuilt), Caddy from Debian's
#      package (--target caddy);
#   3. podman-compose up on free ports, the health check, then over HTTPS/WSS through Caddy,
#      trusting only its internal CA: two accounts, a message, `down` + `up`, the accounts
#      and the message still there; the server runs as uid 10001 and /data is not
#      world-readable; `down -v`, leaving nothing running, also on failure.
# Usage: scripts/test-docker.sh (after `cargo build -p securechat -p securechat-client`;
# SECURECHAT_BIN / SECURECHAT_CLIENT_BIN name other binaries). On Debian as root it
# installs what is missing; scripts/podman-env.sh says how podman is set up.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$(date +%s)
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
bin="${SECURECHAT_BIN:-$target_dir/debug/securechat}"
client_bin="${SECURECHAT_CLIENT_BIN:-$target_dir/debug/securechat-client}"
for b in "$bin" "$client_bin"; do
  if [ ! -x "$b" ]; then
    echo "missing $b: run cargo build -p securechat -p securechat-client first" >&2
    exit 1
  fi
done

# The project name keeps the test's containers, network and volumes apart from a real
# deployment of the same compose file on this machine.
project=securechat-test
image=localhost/securechat:test
caddy_image=localhost/securechat-caddy:test

# shellcheck source=scripts/podman-env.sh
source "$repo/scripts/podman-env.sh"
podman_install_missing
podman_tools
compose_cli="$tools/bin/podman-compose"

# ---------------------------------------------------------------- static checks
echo "==> docker/compose.yaml against the compose specification's schema"
"$tools/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker/compose.yaml
echo "==> hadolint docker/Dockerfile"
"$tools/bin/hadolint" docker/Dockerfile

# ---------------------------------------------------------------- podman set-up
work=$(mktemp -d /tmp/securechat-docker.XXXXXX)
podman_setup "$work"

env_file="$work/test.env"
compose() {
  "$compose_cli" -p "$project" --env-file "$env_file" -f "$repo/docker/compose.yaml" "$@"
}
server_ctr="${project}_securechat_1"
caddy_ctr="${project}_caddy_1"

cleanup() {
  status=$?
  set +e
  if [ "$status" -ne 0 ]; then
    echo "==> FAILED ($status); the containers' last log lines:" >&2
    for c in "$server_ctr" "$caddy_ctr"; do
      echo "--- $c" >&2
      podman logs --tail 40 "$c" 2>&1 | cat >&2
    done
  fi
  if [ -f "$env_file" ]; then
    compose down -v >/dev/null 2>&1
  fi
  # Whatever compose left (a half-started stack): containers, pod, network, volumes.
  podman ps -aq --filter "label=io.podman.compose.project=$project" | xargs -r podman rm -f >/dev/null 2>&1
  podman pod rm -f "pod_$project" >/dev/null 2>&1
  podman network rm -f "${project}_default" >/dev/null 2>&1
  podman volume ls -q --filter "label=io.podman.compose.project=$project" | xargs -r podman volume rm -f >/dev/null 2>&1
  podman rmi "$image" >/dev/null 2>&1
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

# ---------------------------------------------------------------- images
podman_base_image "$work"
echo "==> building $image from $bin"
mkdir -p "$work/ctx"
# Without its debug info the debug binary is ~30 MB instead of ~230: faster to layer.
if command -v strip >/dev/null 2>&1; then
  strip --strip-debug -o "$work/ctx/securechat" "$bin"
else
  cp "$bin" "$work/ctx/securechat"
fi
podman_build --target runtime-prebuilt --build-arg BINARY=securechat -t "$image" "$work/ctx"
echo "==> building $caddy_image (Debian's caddy; layer cache kept)"
mkdir -p "$work/empty"
podman_build --target caddy -t "$caddy_image" "$work/empty"

# ---------------------------------------------------------------- the stack
https_port=$(free_port)
http_port=$(free_port)
while [ "$http_port" = "$https_port" ]; do http_port=$(free_port); done
mkdir -m 0700 "$work/secrets"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/secrets/jwt_secret"
chmod 0600 "$work/secrets/jwt_secret"
# The server runs as uid 10001 and refuses a secret file others can read.
if [ "$(id -u)" -eq 0 ]; then
  chown 10001:10001 "$work/secrets/jwt_secret"
else
  podman unshare chown 10001:10001 "$work/secrets/jwt_secret"
fi
cat > "$env_file" <<EOF
SECURECHAT_DOMAIN=localhost
SECURECHAT_TLS=internal
SECURECHAT_PUBLIC_ORIGIN=https://localhost:$https_port
SECURECHAT_LISTEN_IP=127.0.0.1
SECURECHAT_HTTP_PORT=$http_port
SECURECHAT_HTTPS_PORT=$https_port
SECURECHAT_JWT_SECRET_FILE=$work/secrets/jwt_secret
SECURECHAT_IMAGE=$image
SECURECHAT_CADDY_IMAGE=$caddy_image
EOF
base_url="https://localhost:$https_port"
ca="$work/caddy-root.crt"

up() {
  local t0
  t0=$(date +%s%N)
  compose up -d --no-build >"$work/compose-up.log" 2>&1 || {
    cat "$work/compose-up.log" >&2
    return 1
  }
  # The image's HEALTHCHECK (securechat healthcheck: GET /readyz inside the container).
  for _ in $(seq 1 120); do
    if podman healthcheck run "$server_ctr" >/dev/null 2>&1; then
      echo "    healthy after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
      break
    fi
    sleep 0.5
  done
  podman healthcheck run "$server_ctr" >/dev/null
  # Caddy makes its internal CA and the site's certificate at start.
  for _ in $(seq 1 120); do
    if podman cp "$caddy_ctr:/data/caddy/pki/authorities/local/root.crt" "$ca" 2>/dev/null \
      && curl -fsS --cacert "$ca" "$base_url/readyz" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  echo "Caddy did not answer $base_url/readyz with its internal CA" >&2
  curl -sS --cacert "$ca" "$base_url/readyz" >&2
  return 1
}

sc() {
  "$client_bin" --ca-cert "$ca" "$@"
}
password="correct horse battery staple"
export SECURECHAT_PASSWORD="$password"

echo "==> podman-compose up (https on 127.0.0.1:$https_port)"
up

echo "==> the container: uid 10001, /data mode 0700, the JWT secret from the compose secret"
uid_line=$(podman exec "$server_ctr" grep '^Uid:' /proc/1/status)
read -r _ ruid euid _ _ <<<"$uid_line"
[ "$ruid" = 10001 ] && [ "$euid" = 10001 ] || { echo "server runs as $uid_line" >&2; exit 1; }
data_mode=$(podman exec "$server_ctr" stat -c '%a %u' /data)
[ "$data_mode" = "700 10001" ] || { echo "/data is $data_mode, expected 700 10001" >&2; exit 1; }
mountpoint=$(podman volume inspect "${project}_data" --format '{{.Mountpoint}}')
host_mode=$(stat -c '%a' "$mountpoint")
(( (8#$host_mode & 8#007) == 0 )) || { echo "the data volume is mode $host_mode on the host" >&2; exit 1; }
if podman exec "$server_ctr" test -e /data/jwt_secret; then
  echo "the server generated its own JWT secret instead of reading the compose secret" >&2
  exit 1
fi
podman exec "$server_ctr" securechat config | grep -q 'trusted_proxies = \["172.31.254.2"\]' \
  || { echo "the rate limit does not trust exactly the proxy's address" >&2; exit 1; }

echo "==> two accounts and a message over HTTPS and WSS through Caddy"
sc register --server "$base_url" --username alice --password "$password" >/dev/null
sc register --server "$base_url" --username bob --password "$password" >/dev/null
sent=$(sc send --server "$base_url" --username alice --to bob "hello through caddy")
echo "    sent: $sent"
sc history --server "$base_url" --username bob --peer alice | grep -q '"text":"hello through caddy"' \
  || { echo "bob does not see alice's message" >&2; exit 1; }

# Anything but the internal CA is refused: the client trusts exactly --ca-cert.
if "$client_bin" login --server "$base_url" --username alice --password "$password" >/dev/null 2>&1; then
  echo "the client accepted Caddy's certificate without its CA" >&2
  exit 1
fi

echo "==> down, up: the accounts and the message are still there"
compose down >/dev/null 2>&1
[ -z "$(podman ps -q --filter "label=io.podman.compose.project=$project")" ] \
  || { echo "containers still running after down" >&2; exit 1; }
up
sc login --server "$base_url" --username alice --password "$password" >/dev/null
history=$(sc history --server "$base_url" --username bob --peer alice)
grep -q '"text":"hello through caddy"' <<<"$history" \
  || { echo "the message is gone after the restart: $history" >&2; exit 1; }
sc send --server "$base_url" --username bob --to alice "still here" >/dev/null
sc history --server "$base_url" --username alice --peer bob | grep -q '"text":"still here"' \
  || { echo "no reply after the restart" >&2; exit 1; }

echo "==> the server logs JSON lines (and the start-up line scripts read)"
podman logs "$server_ctr" 2>&1 | python3 -c '
import json, sys
objects = 0
for line in sys.stdin.read().splitlines():
    if line.startswith("securechat listening on "):
        continue
    json.loads(line)
    objects += 1
assert objects > 0, "no JSON log line"
'

echo "==> down -v"
compose down -v >/dev/null 2>&1
# podman-compose 1.0.6 leaves the project's network behind.
podman network rm -f "${project}_default" >/dev/null
left=$(podman ps -aq --filter "label=io.podman.compose.project=$project")
[ -z "$left" ] || { echo "containers left after down -v: $left" >&2; exit 1; }
if [ -n "$(podman volume ls -q --filter "label=io.podman.compose.project=$project")" ]; then
  echo "volumes survived down -v" >&2
  exit 1
fi
echo "test-docker: 1 passed, 0 failed ($(( $(date +%s) - started )) s)"
