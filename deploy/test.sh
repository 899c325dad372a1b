#!/usr/bin/env bash
# The project's one test command (CI runs it through .ci/run).
#
#   1. installs missing system packages (kcat, postgresql-15, C toolchain, pkg-config and
#      zlib headers for rdkafka's bundled librdkafka build, Maven and Java 17 for Kafka);
#   2. fetches the Kafka 4.3.1 jars into ${SCENT_CACHE:-~/.cache/scent} (deploy/kafka);
#   3. starts a private Kafka (with scent's topics) and PostgreSQL in a fresh run dir
#      under /tmp, on the default ports or free ones if those are busy, and stops both
#      on exit whatever happens;
#   4. with deploy/dev/env.sh exported (SCENT_KAFKA_BROKERS, SCENT_DATABASE_URL, ...) and
#      SCENT_REQUIRE_SERVICES=1 (tests needing Kafka/PostgreSQL must fail, not skip),
#      runs: cargo fmt --check, cargo clippy -D warnings, cargo test (all targets),
#      cargo test --doc, cargo bench --no-run.
# Stops at the first failing step and exits non-zero; the output then ends with that
# step's errors and last lines, and the free disk space. The last line sums up the test
# counts of all cargo test runs ("summary: N passed, N failed, N skipped"). With CI set,
# CARGO_INCREMENTAL defaults to 0.
#
# Usage: deploy/test.sh [--quick]
#   --quick   skip clippy and the bench build (local iteration)
# Environment:
#   SCENT_TEST_SKIP_CARGO=1   only do steps 1-3 (install, fetch, start/stop services)
#   SCENT_TEST_KEEP=1         keep the run dir (logs, data) after the services stop
#   SCENT_KAFKA_PORT, SCENT_KAFKA_CONTROLLER_PORT, SCENT_PG_PORT
#                             preferred ports (defaults 19092, 19093, 15432); a busy
#                             one is replaced by a random free port in 20000-31999
#   plus the variables of deploy/dev/kafka.sh and deploy/dev/postgres.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEV="$ROOT/deploy/dev"

QUICK=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "$0"
      exit 0
      ;;
    *)
      echo "unknown argument: $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

SCENT_LOG_TAG="test"
# shellcheck source-path=SCRIPTDIR source=dev/lib.sh
source "$DEV/lib.sh"

section() { printf '\n==== %s ====\n' "$*"; }

T0=$SECONDS
TESTS_PASSED=0
TESTS_FAILED=0
TESTS_SKIPPED=0
SERVICES_UP=0
# The output of the step that is running, repeated at the very end when it fails: CI
# shows the tail of a run, and the service logs printed on exit would hide the cause.
STEP_LOG=""
FAILED_STEP=""

summary() {
  printf '\nsummary: %d passed, %d failed, %d skipped\n' "$TESTS_PASSED" "$TESTS_FAILED" "$TESTS_SKIPPED"
}

# Adds up the "test result:" lines that cargo test printed into $STEP_LOG.
count_tests() {
  local line p f i
  while IFS= read -r line; do
    p="$(sed -n 's/.* \([0-9][0-9]*\) passed;.*/\1/p' <<<"$line")"
    f="$(sed -n 's/.* \([0-9][0-9]*\) failed;.*/\1/p' <<<"$line")"
    i="$(sed -n 's/.* \([0-9][0-9]*\) ignored;.*/\1/p' <<<"$line")"
    TESTS_PASSED=$((TESTS_PASSED + ${p:-0}))
    TESTS_FAILED=$((TESTS_FAILED + ${f:-0}))
    TESTS_SKIPPED=$((TESTS_SKIPPED + ${i:-0}))
  done < <(grep -a '^test result: ' "$STEP_LOG" || true)
}

stop_services() {
  ((SERVICES_UP)) || return 0
  SERVICES_UP=0
  section "stopping services"
  "$DEV/kafka.sh" stop || true
  "$DEV/postgres.sh" stop || true
}

on_exit() {
  local rc=$?
  set +e
  if ((rc != 0)) && [[ -n "${SCENT_RUN_DIR:-}" && -d "$SCENT_RUN_DIR" ]]; then
    local f
    for f in "$SCENT_RUN_DIR/kafka/logs/server.log" "$SCENT_RUN_DIR/postgres/postgres.log"; do
      if [[ -s "$f" ]]; then
        section "last 30 lines of $f"
        tail -n 30 "$f"
      fi
    done
  fi
  stop_services
  if ((rc != 0)) && [[ -n "$FAILED_STEP" && -s "$STEP_LOG" ]]; then
    section "step '$FAILED_STEP' failed: its last 60 lines (warnings and errors first)"
    grep -a -E -m 40 '^(error|warning)(\[|:)' "$STEP_LOG" || true
    echo "----"
    tail -n 60 "$STEP_LOG"
  fi
  if ((rc != 0)); then
    section "disk"
    df -h "$ROOT" "${CARGO_TARGET_DIR:-$ROOT/target}" /tmp 2>/dev/null || true
  fi
  if [[ -n "${SCENT_RUN_DIR:-}" && -d "$SCENT_RUN_DIR" ]]; then
    if [[ "${SCENT_TEST_KEEP:-0}" == 1 ]]; then
      echo "run dir kept: $SCENT_RUN_DIR"
    else
      rm -rf -- "$SCENT_RUN_DIR"
    fi
  fi
  [[ -n "$STEP_LOG" ]] && rm -f -- "$STEP_LOG"
  if ((rc != 0)); then
    summary
    echo "FAILED (exit $rc) after $((SECONDS - T0)) s"
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# Runs one step with a header and its duration; a failure ends the script.
step() {
  local name="$1"
  shift
  section "$name"
  echo "+ $*"
  local t=$SECONDS rc=0
  set +e
  "$@" 2>&1 | tee "$STEP_LOG"
  rc=${PIPESTATUS[0]}
  set -e
  count_tests
  if ((rc != 0)); then
    echo "---- step '$name' failed (exit $rc) after $((SECONDS - t)) s"
    FAILED_STEP="$name"
    exit "$rc"
  fi
  echo "---- step '$name' ok ($((SECONDS - t)) s)"
}

# First free port: $1 if it is free and not taken yet, else a random one.
pick_port() {
  local port="$1" tries=0
  shift
  while scent_port_in_use "$port" || [[ " $* " == *" $port "* ]]; do
    ((++tries < 200)) || scent_die "no free port found"
    port=$((20000 + RANDOM % 12000))
  done
  echo "$port"
}

# ---------------------------------------------------------------------------------------
section "system packages"
pkgs=(build-essential pkg-config zlib1g-dev)
command -v kcat >/dev/null 2>&1 || pkgs+=(kcat)
command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
java_major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' || true)"
if [[ -z "$java_major" ]] || ((${java_major%%.*} < 17)); then
  pkgs+=(openjdk-17-jre-headless)
fi
[[ -x /usr/lib/postgresql/15/bin/initdb ]] || pkgs+=(postgresql-15)
scent_apt_install "${pkgs[@]}"
echo "ok: ${pkgs[*]}"
for tool in cargo rustc; do
  command -v "$tool" >/dev/null 2>&1 || scent_die "$tool not found: install a Rust toolchain (MSRV in Cargo.toml)"
done
echo "cargo: $(cargo --version)"
echo "rustc: $(rustc --version)"
echo "java:  $(java -version 2>&1 | head -n 1)"
echo "mvn:   $(mvn -B -v 2>/dev/null | head -n 1 | sed 's/\x1b\[[0-9;]*m//g')"
echo "kcat:  $(kcat -V 2>&1 | grep -m 1 '^Version' || true)"
echo "pg:    $(/usr/lib/postgresql/15/bin/postgres --version)"

section "kafka jars"
t=$SECONDS
echo "lib: $("$ROOT/deploy/kafka/fetch.sh")"
echo "($((SECONDS - t)) s)"

section "ioos_qc oracle"
t=$SECONDS
# The venv lives in the cache next to the Kafka jars: the run directory is removed on exit.
SCENT_IOOS_QC_PYTHON="$(SCENT_IOOS_QC_VENV="${SCENT_CACHE:-${HOME:-/root}/.cache/scent}/ioos-qc-venv" "$DEV/ioos-qc.sh")"
export SCENT_IOOS_QC_PYTHON
echo "python: $SCENT_IOOS_QC_PYTHON ($((SECONDS - t)) s)"

section "services"
SCENT_RUN_DIR="$(mktemp -d /tmp/scent-test.XXXXXX)"
export SCENT_RUN_DIR
scent_ensure_run_dir
SCENT_KAFKA_PORT="$(pick_port "$SCENT_KAFKA_PORT")"
SCENT_KAFKA_CONTROLLER_PORT="$(pick_port "$SCENT_KAFKA_CONTROLLER_PORT" "$SCENT_KAFKA_PORT")"
SCENT_PG_PORT="$(pick_port "$SCENT_PG_PORT" "$SCENT_KAFKA_PORT" "$SCENT_KAFKA_CONTROLLER_PORT")"
export SCENT_KAFKA_PORT SCENT_KAFKA_CONTROLLER_PORT SCENT_PG_PORT
echo "run dir: $SCENT_RUN_DIR"
t=$SECONDS
SERVICES_UP=1
"$DEV/kafka.sh" start
"$DEV/kafka.sh" topics
"$DEV/postgres.sh" start
# shellcheck source-path=SCRIPTDIR source=dev/env.sh
source "$DEV/env.sh"
export SCENT_REQUIRE_SERVICES=1
echo "SCENT_KAFKA_BROKERS=$SCENT_KAFKA_BROKERS"
echo "SCENT_DATABASE_URL=$SCENT_DATABASE_URL"
echo "services up in $((SECONDS - t)) s"

if [[ "${SCENT_TEST_SKIP_CARGO:-0}" == 1 ]]; then
  section "cargo steps skipped (SCENT_TEST_SKIP_CARGO=1)"
  stop_services
  echo "services checked in $((SECONDS - T0)) s; no tests run"
  exit 0
fi

# A clean clone gains nothing from incremental artifacts, and they take gigabytes.
[[ -n "${CI:-}" ]] && export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
echo "CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-} target: ${CARGO_TARGET_DIR:-$ROOT/target}"
df -h "$ROOT" /tmp 2>/dev/null | sed 's/^/disk: /' || true
STEP_LOG="$(mktemp /tmp/scent-test-step.XXXXXX)"
step "cargo fmt" cargo fmt --all -- --check
if ((QUICK)); then
  section "cargo clippy skipped (--quick)"
else
  step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
fi
step "cargo test (all targets)" cargo test --workspace --all-targets
step "cargo test (doc)" cargo test --workspace --doc
if ((QUICK)); then
  section "cargo bench build skipped (--quick)"
else
  step "cargo bench (build only)" cargo bench --workspace --no-run
fi

stop_services
section "all steps passed in $((SECONDS - T0)) s"
summary
