#!/usr/bin/env bash
# Environment for code and tests that talk to the local services of deploy/dev.
# Source it (`source deploy/dev/env.sh`) after deploy/dev/up.sh, or run it to get
# export lines (`eval "$(deploy/dev/env.sh)"`). It does not start anything.
#
# Exports: SCENT_RUN_DIR, SCENT_KAFKA_PORT, SCENT_KAFKA_CONTROLLER_PORT, SCENT_PG_PORT
# (defaults /tmp/scent-dev, 19092, 19093, 15432 unless already set), and from them
#   SCENT_KAFKA_BROKERS  = 127.0.0.1:$SCENT_KAFKA_PORT
#   SCENT_DATABASE_URL   = postgres://scent:scent@127.0.0.1:$SCENT_PG_PORT/scent
#   SCENT_KAFKA_CTL      = absolute path of deploy/dev/kafka.sh (tests use `restart`)
#   SCENT_PG_CTL         = absolute path of deploy/dev/postgres.sh
# No `set -e` here: this file runs inside the caller's shell.

__scent_dev_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

export SCENT_RUN_DIR="${SCENT_RUN_DIR:-/tmp/scent-dev}"
[[ "$SCENT_RUN_DIR" == /* ]] || SCENT_RUN_DIR="$PWD/$SCENT_RUN_DIR"
export SCENT_KAFKA_PORT="${SCENT_KAFKA_PORT:-19092}"
export SCENT_KAFKA_CONTROLLER_PORT="${SCENT_KAFKA_CONTROLLER_PORT:-19093}"
export SCENT_PG_PORT="${SCENT_PG_PORT:-15432}"
export SCENT_KAFKA_BROKERS="127.0.0.1:$SCENT_KAFKA_PORT"
export SCENT_DATABASE_URL="postgres://scent:scent@127.0.0.1:$SCENT_PG_PORT/scent"
export SCENT_KAFKA_CTL="$__scent_dev_dir/kafka.sh"
export SCENT_PG_CTL="$__scent_dev_dir/postgres.sh"
unset __scent_dev_dir

# Executed rather than sourced: print the settings as export lines.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  for __scent_var in SCENT_RUN_DIR SCENT_KAFKA_PORT SCENT_KAFKA_CONTROLLER_PORT SCENT_PG_PORT \
    SCENT_KAFKA_BROKERS SCENT_DATABASE_URL SCENT_KAFKA_CTL SCENT_PG_CTL; do
    printf 'export %s=%q\n' "$__scent_var" "${!__scent_var}"
  done
fi
