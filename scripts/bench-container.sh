#!/usr/bin/env bash
# Container figures for BENCHMARKS.md, from the RELEASE binary (build it first:
# cargo build --release -p securechat):
#   - image size: what the runtime stage adds to its Debian base (podman image inspect);
#   - cold start: `podman run` of the image on a fresh volume until GET /readyz answers
#     200 on the published port, RUNS times, beside the floor of the same run: `podman
#     run` of /bin/true in the same image (what the container runtime alone costs).
# Usage: scripts/bench-container.sh [RUNS] (default 5). Sets podman up as
# scripts/test-docker.sh does (scripts/podman-env.sh) and removes what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
runs="${1:-5}"
bin="$target_dir/release/securechat"
[ -x "$bin" ] || { echo "missing $bin: cargo build --release -p securechat" >&2; exit 1; }
image=localhost/securechat:bench
name=securechat-bench
volume=securechat-bench-data

# shellcheck source=scripts/podman-env.sh
source "$repo/scripts/podman-env.sh"
podman_install_missing
work=$(mktemp -d /tmp/securechat-bench.XXXXXX)
podman_setup "$work"
cleanup() {
  podman rm -f "$name" >/dev/null 2>&1 || true
  podman volume rm -f "$volume" >/dev/null 2>&1 || true
  podman rmi "$image" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

podman_base_image "$work"
mkdir -p "$work/ctx"
cp "$bin" "$work/ctx/securechat"
podman_build --target runtime-prebuilt --build-arg BINARY=securechat -t "$image" "$work/ctx"
base_size=$(podman image inspect "$base_image" --format '{{.Size}}')
size=$(podman image inspect "$image" --format '{{.Size}}')
echo "binary: $(stat -c %s "$bin") bytes; image $size bytes, base $base_size bytes"
echo "the runtime stage adds $(( (size - base_size) / 1000 )) kB ($(( (size - base_size) / 1048576 )) MiB)"

ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
for i in $(seq 1 "$runs"); do
  t0=$(date +%s%N)
  podman run --rm --entrypoint /bin/true "$image"
  floor=$(ms_since "$t0")
  port=$(free_port)
  t0=$(date +%s%N)
  podman run -d --name "$name" -p "127.0.0.1:$port:8080" -v "$volume:/data" \
    -e SECURECHAT_AUTH__JWT_SECRET="$secret" "$image" >/dev/null
  until curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; do
    [ "$(ms_since "$t0")" -lt 60000 ] || { podman logs "$name" >&2; exit 1; }
    sleep 0.01
  done
  ready=$(ms_since "$t0")
  echo "run $i: podman run to /readyz 200 in $ready ms (podman run of /bin/true: $floor ms)"
  podman rm -f "$name" >/dev/null
  podman volume rm -f "$volume" >/dev/null
done
