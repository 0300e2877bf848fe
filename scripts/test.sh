#!/usr/bin/env bash
# The README's test command: its own virtual environment with the test extras, then the whole suite (CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh .venv-test test
python -m pytest "$@"  # pyproject.toml adds -q: one -q keeps the "N passed" line
