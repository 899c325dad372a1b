#!/usr/bin/env bash
# Starts the local test services: Kafka 4.3.1 (KRaft, one node) with scent's topics and
# PostgreSQL 15, then prints the environment to use (see deploy/dev/env.sh).
# Idempotent. Ports and run dir come from the variables described in env.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/kafka.sh" start
"$here/kafka.sh" topics
"$here/postgres.sh" start
"$here/env.sh"
