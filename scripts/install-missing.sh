# Sourced by the test scripts: install_missing PKG... installs Debian packages with apt-get
# when run as root on Debian, and otherwise fails saying what to install. No-op without
# arguments.
install_missing() {
  [ $# -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing $*"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "missing $*: install them (as root: apt-get install -y $*)" >&2
    return 1
  fi
}
