#!/usr/bin/env bash
# The main job on the embedded default: installs synthbench, then runs the whole flow on the
# procedural demo task with the offline EfficientNet-Lite0 backbone (build task -> demo generator
# and baselines -> validate -> grid -> leaderboard site) and prints where everything is.
# Extra arguments go to `synthbench demo` (see `synthbench demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/synthbench demo "$@"
