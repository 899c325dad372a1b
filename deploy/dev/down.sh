#!/usr/bin/env bash
# Stops the local test services started by deploy/dev/up.sh (Kafka and PostgreSQL).
# Idempotent. With --purge also deletes their run dir ($SCENT_RUN_DIR, default
# /tmp/scent-dev), i.e. all topics, offsets and database contents.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
status=0
"$here/kafka.sh" stop || status=1
"$here/postgres.sh" stop || status=1
if [[ "${1:-}" == "--purge" ]]; then
  if ((status == 0)); then
    run_dir="${SCENT_RUN_DIR:-/tmp/scent-dev}"
    echo "[down] removing $run_dir" >&2
    rm -rf -- "$run_dir"
  else
    echo "[down] a service did not stop; not purging" >&2
  fi
fi
exit "$status"
