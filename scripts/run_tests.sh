#!/usr/bin/env bash
# The project's one test command (make test and .ci/run both call it).
set -uo pipefail
VENV=${1:-.venv}
mkdir -p test-artifacts
"$VENV/bin/python" -m pytest -q -p no:cacheprovider --junitxml=test-artifacts/junit.xml "${@:2}"
rc=$?
# pytest exit 5 = no tests collected: that is a failure for us
if [ "$rc" -eq 5 ]; then echo "no tests were collected" >&2; exit 1; fi
exit $rc
