#!/usr/bin/env bash
# Downloads the Apache Kafka 4.3.1 broker jars (and runtime dependencies) from Maven
# Central into ${SCENT_CACHE:-$HOME/.cache/scent}/kafka-4.3.1/lib, outside the repo,
# using deploy/kafka/pom.xml. Does nothing if a complete copy for the same pom is
# already there. Prints the lib directory on stdout; progress goes to stderr.
#
# Robust to interrupted runs: jars land in a temporary directory that is renamed into
# place only after mvn succeeds, and a marker (.complete, holding the pom's checksum)
# is written last. Concurrent runs are serialised with flock.
set -euo pipefail

KAFKA_VERSION=4.3.1
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
POM="$HERE/pom.xml"
CACHE="${SCENT_CACHE:-${HOME:-/root}/.cache/scent}"
BASE="$CACHE/kafka-$KAFKA_VERSION"
LIBDIR="$BASE/lib"
MARKER="$LIBDIR/.complete"

log() { printf '[kafka-fetch] %s\n' "$*" >&2; }

want="$(sha256sum "$POM" | cut -d' ' -f1)"

is_complete() {
  [[ -f "$MARKER" ]] && [[ "$(cat "$MARKER")" == "$want" ]]
}

if is_complete; then
  printf '%s\n' "$LIBDIR"
  exit 0
fi

for tool in mvn java; do
  command -v "$tool" >/dev/null 2>&1 || { log "error: '$tool' not found (install maven and openjdk-17)"; exit 1; }
done

mkdir -p "$BASE"
exec 9>"$BASE/.lock"
flock 9
# Another run may have finished the download while we waited for the lock.
if is_complete; then
  printf '%s\n' "$LIBDIR"
  exit 0
fi

# Leftovers of interrupted runs (their mvn, if still alive, held the lock until now).
rm -rf "$BASE"/lib.tmp.*
tmp="$(mktemp -d "$BASE/lib.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
log "downloading Kafka $KAFKA_VERSION jars into $LIBDIR (mvn dependency:copy-dependencies)"
start=$SECONDS
if ! mvn -B -q -f "$POM" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$tmp" >"$BASE/mvn.log" 2>&1; then
  log "error: mvn failed; last lines of $BASE/mvn.log:"
  tail -n 40 "$BASE/mvn.log" >&2
  exit 1
fi
for jar in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-tools-$KAFKA_VERSION.jar" "kafka-clients-$KAFKA_VERSION.jar"; do
  [[ -f "$tmp/$jar" ]] || { log "error: $jar missing after mvn"; exit 1; }
done
rm -rf "$LIBDIR"
chmod 755 "$tmp"
mv "$tmp" "$LIBDIR"
trap - EXIT
printf '%s\n' "$want" >"$MARKER"
log "done in $((SECONDS - start)) s ($(find "$LIBDIR" -name '*.jar' | wc -l) jars)"
printf '%s\n' "$LIBDIR"
