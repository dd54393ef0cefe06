#!/bin/sh
# Self-test of check_export.py: correct hand-written exports pass, damaged ones fail.
# Uses $PYTHON (default python3), e.g. PYTHON=/tmp/fmtvenv/bin/python tests/formats/selftest.sh
set -eu
exec "${PYTHON:-python3}" "$(dirname "$0")/selftest.py" "$@"
