#!/usr/bin/env bash
# Creates (once) a Python venv with the pinned ioos_qc 3.0.0, the oracle of the QC-flag
# kernel (operators/tests/ioos_qc_oracle.rs), and prints its interpreter path on stdout:
#
#   export SCENT_IOOS_QC_PYTHON=$(deploy/dev/ioos-qc.sh)
#
# Idempotent: a venv whose stamp matches the pins below is reused as it is; otherwise it
# is rebuilt from scratch. Every package of the venv is pinned (ioos_qc and the whole
# dependency closure it installs), so the oracle's flags do not move with new releases.
# Installs python3-venv from Debian if `python3 -m venv` is not available. Logs go to
# stderr; stdout carries only the interpreter path.
#
# Environment (defaults in parentheses):
#   SCENT_RUN_DIR (/tmp/scent-dev)                       the venv lives below it, unless
#   SCENT_IOOS_QC_VENV ($SCENT_RUN_DIR/ioos-qc-venv)     set here
#   SCENT_PYTHON (python3)                               interpreter that creates the venv
set -euo pipefail

SCENT_LOG_TAG=ioos-qc
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

VENV="${SCENT_IOOS_QC_VENV:-$SCENT_RUN_DIR/ioos-qc-venv}"
[[ "$VENV" == /* ]] || VENV="$PWD/$VENV"
PYTHON="${SCENT_PYTHON:-python3}"
STAMP="$VENV/.scent-pins"

# ioos_qc 3.0.0 and the versions of its dependency closure it was validated with.
PINS="ioos_qc==3.0.0
attrs==26.1.0
geographiclib==2.1
geojson==3.3.0
h5netcdf==1.8.2
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
numpy==2.4.6
packaging==26.3
pandas==3.1.1
pyparsing==3.3.3
python-dateutil==4.0.0
referencing==0.37.0
rpds-py==2026.9.1
ruamel.yaml==0.19.1
scipy==1.17.1
shapely==2.2.0
typing_extensions==4.16.0
tzdata==2026.6
xarray==2026.9.0"

venv_ready() {
  [[ -x "$VENV/bin/python" && -f "$STAMP" ]] || return 1
  [[ "$(cat "$STAMP")" == "$PINS" ]] || return 1
  "$VENV/bin/python" -c 'import ioos_qc.qartod, sys; sys.exit(ioos_qc.__version__ != "3.0.0")' \
    >/dev/null 2>&1
}

if ! venv_ready; then
  command -v "$PYTHON" >/dev/null 2>&1 || scent_apt_install python3
  if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    scent_apt_install python3-venv
  fi
  scent_log "creating $VENV with $("$PYTHON" --version 2>&1)"
  rm -rf -- "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV" >&2
  printf '%s\n' "$PINS" >"$VENV/requirements.txt"
  scent_log "installing ioos_qc 3.0.0 and its pinned dependencies"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --prefer-binary -r "$VENV/requirements.txt" >&2
  printf '%s' "$PINS" >"$STAMP"
  venv_ready || scent_die "$VENV was built but cannot import ioos_qc 3.0.0"
  scent_log "ready"
fi
printf '%s\n' "$VENV/bin/python"
