#!/usr/bin/env bash
# Install everything the tests need, then run the whole suite (slow, browser and Slurm tests included).
# Extra arguments go to pytest, e.g. scripts/test.sh -k leaderboard
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --system
export PYTHONUNBUFFERED=1
exec .venv/bin/python -m pytest -q --timeout=900 "$@"
