#!/usr/bin/env bash
# Create (or update) the virtual environment with everything skutag and its tests need.
# Idempotent; safe to re-run. Usage: setup_env.sh PYTHON VENV
set -euo pipefail
PYTHON=${1:-python3.11}
VENV=${2:-.venv}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install --quiet --upgrade pip
# torch/torchvision first, exact versions (local files on the build machines), so no resolver picks another
$PIP install --quiet "torch==2.14.1" "torchvision==0.29.1"
$PIP install --quiet -e ".[dev]"
