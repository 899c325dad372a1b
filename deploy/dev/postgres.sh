#!/usr/bin/env bash
# Runs a throwaway PostgreSQL 15 cluster on loopback for local tests, with database
# `scent` owned by role `scent` (password `scent`, CREATEDB so tests may make their own).
#
# Usage: deploy/dev/postgres.sh start|stop|status|url|psql [psql args...]|logs
#   start   initdb (first time), start, create role/database if missing. Idempotent.
#   stop    pg_ctl stop -m fast. Idempotent.
#   status  exit 0 if running, 3 if not.
#   url     print postgres://scent:scent@127.0.0.1:PORT/scent
#   psql    run psql as superuser postgres on database scent (extra args passed on)
#   logs    tail the server log.
#
# Uses /usr/lib/postgresql/15/bin directly (installs Debian's postgresql-15 if missing).
# As root, the server runs as user postgres (initdb refuses root). Trust auth on the
# unix socket (in the run dir) and on 127.0.0.1/::1; fsync and synchronous_commit stay on.
#
# Environment (defaults in parentheses):
#   SCENT_RUN_DIR (/tmp/scent-dev)   state lives in $SCENT_RUN_DIR/postgres
#   SCENT_PG_PORT (15432)            TCP port on 127.0.0.1 (and the socket's name)
set -euo pipefail

SCENT_LOG_TAG=postgres
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

PG_BIN=/usr/lib/postgresql/15/bin
PG_DIR="$SCENT_RUN_DIR/postgres"
PGDATA_DIR="$PG_DIR/data"
SOCK_DIR="$PG_DIR/sock"
PG_LOG="$PG_DIR/postgres.log"
PORT="$SCENT_PG_PORT"
URL="postgres://scent:scent@127.0.0.1:$PORT/scent"

# Runs a command as the server's owner: user postgres when we are root, else ourselves.
as_owner() {
  if ((EUID == 0)); then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

ensure_binaries() {
  if [[ ! -x "$PG_BIN/initdb" ]]; then
    scent_apt_install postgresql-15
  fi
  [[ -x "$PG_BIN/initdb" ]] || scent_die "$PG_BIN/initdb missing after installing postgresql-15"
}

is_running() {
  [[ -f "$PGDATA_DIR/PG_VERSION" ]] || return 1
  as_owner "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1
}

psql_super() {
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK_DIR" -p "$PORT" -U postgres "$@"
}

init_cluster() {
  scent_ensure_run_dir
  mkdir -p "$PG_DIR"
  if ((EUID == 0)); then
    chown postgres:postgres "$PG_DIR"
    runuser -u postgres -- test -x "$PG_DIR" ||
      scent_die "user postgres cannot reach $PG_DIR: put SCENT_RUN_DIR where every parent is world-executable (e.g. under /tmp)"
  fi
  chmod 700 "$PG_DIR"
  as_owner mkdir -p "$SOCK_DIR"
  scent_log "initdb $PGDATA_DIR"
  as_owner "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; scent_die "initdb failed"; }
  as_owner tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null <<EOF

# ---- added by deploy/dev/postgres.sh (throwaway test cluster) ----
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCK_DIR'
max_connections = 200
fsync = on
synchronous_commit = on
full_page_writes = on
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
EOF
}

cmd_start() {
  ensure_binaries
  if is_running; then
    scent_log "already running on 127.0.0.1:$PORT"
  else
    scent_port_in_use "$PORT" && scent_die "port $PORT is already in use (set SCENT_PG_PORT)"
    [[ -f "$PGDATA_DIR/PG_VERSION" ]] || init_cluster
    # The port comes from the environment on every start (-p), not from the data dir.
    # A leftover postmaster.pid of a killed server is handled by pg_ctl itself.
    if ! as_owner "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t 60 \
          -o "-p $PORT -k '$SOCK_DIR'" start >/dev/null; then
      tail -n 40 "$PG_LOG" >&2 || true
      scent_die "pg_ctl start failed"
    fi
    scent_log "started on 127.0.0.1:$PORT (dir $PG_DIR)"
  fi
  psql_super -d postgres <<'EOF'
SELECT 'CREATE ROLE scent LOGIN CREATEDB PASSWORD ''scent'''
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'scent') \gexec
SELECT 'CREATE DATABASE scent OWNER scent'
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'scent') \gexec
-- Tests drop their own databases WITH (FORCE), which must end the
-- autovacuum workers (owned by the superuser) that may be at work there.
GRANT pg_signal_backend TO scent;
EOF
  "$PG_BIN/psql" -X -q -At "$URL" -c 'select 1' >/dev/null ||
    scent_die "cannot connect as scent to $URL"
}

cmd_stop() {
  if ! is_running; then
    scent_log "not running"
    return 0
  fi
  as_owner "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 stop >/dev/null
  scent_log "stopped"
}

cmd_status() {
  if is_running; then
    echo "postgres running on 127.0.0.1:$PORT, dir $PG_DIR"
    return 0
  fi
  echo "postgres stopped (dir $PG_DIR)"
  return 3
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  url) echo "$URL" ;;
  psql) shift; psql_super -d scent "$@" ;;
  logs) tail -n "${LINES:-100}" "$PG_LOG" ;;
  *)
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0" >&2
    exit 2
    ;;
esac
