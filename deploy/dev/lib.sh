# shellcheck shell=bash
# Shared helpers for the local-services scripts in deploy/dev (sourced, not run).
# Defines the default run dir and ports (all overridable by environment variables)
# and small helpers: logging, Debian package installation, port and pid checks.

SCENT_DEV_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034 # used by the scripts that source this file
SCENT_REPO_ROOT="$(cd "$SCENT_DEV_DIR/../.." && pwd)"

: "${SCENT_RUN_DIR:=/tmp/scent-dev}"
[[ "$SCENT_RUN_DIR" == /* ]] || SCENT_RUN_DIR="$PWD/$SCENT_RUN_DIR"
: "${SCENT_KAFKA_PORT:=19092}"
: "${SCENT_KAFKA_CONTROLLER_PORT:=19093}"
: "${SCENT_PG_PORT:=15432}"

scent_log() { printf '[%s] %s\n' "${SCENT_LOG_TAG:-scent}" "$*" >&2; }
scent_die() { scent_log "error: $*"; exit 1; }

# Creates the run dir (and parents) and makes it traversable, because the PostgreSQL
# server runs as user postgres below it (mktemp -d creates mode 0700 directories).
scent_ensure_run_dir() {
  mkdir -p "$SCENT_RUN_DIR"
  if [[ -O "$SCENT_RUN_DIR" ]]; then
    chmod a+rx "$SCENT_RUN_DIR"
  fi
}

scent_pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'
}

# Installs the given Debian packages if they are missing (apt-get update once first).
scent_apt_install() {
  local -a missing=()
  local pkg
  for pkg in "$@"; do
    scent_pkg_installed "$pkg" || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  local -a sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || scent_die "missing packages (${missing[*]}) and not root"
    sudo=(sudo -n)
  fi
  scent_log "installing Debian packages: ${missing[*]}"
  if [[ -z "${SCENT_APT_UPDATED:-}" ]]; then
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq >&2
    SCENT_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >&2
}

scent_ensure_kcat() {
  command -v kcat >/dev/null 2>&1 || scent_apt_install kcat
}

# True if something listens on TCP port $1 (any address).
scent_port_in_use() {
  local port="$1"
  if command -v ss >/dev/null 2>&1; then
    [[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]]
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
  fi
}

scent_pid_alive() {
  [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null
}
