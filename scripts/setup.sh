#!/usr/bin/env bash
# Install synthbench into a project-local virtual environment (.venv), idempotently.
#   scripts/setup.sh            harness + dev tools (pytest, pytest-benchmark, selenium, diffusers)
#   scripts/setup.sh --system   also the Debian packages the full test suite uses when run as root
#                               (chromium + chromium-driver for browser tests, slurm-wlm + munge for
#                               the Slurm tests); without them those tests skip with a reason.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [[ "${1:-}" == "--system" ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    need=()
    command -v chromium >/dev/null || need+=(chromium)
    command -v chromedriver >/dev/null || need+=(chromium-driver)
    command -v slurmctld >/dev/null || need+=(slurm-wlm)
    command -v munged >/dev/null || need+=(munge)
    if ((${#need[@]})); then
      echo "[setup] apt-get install ${need[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >/dev/null || true
      apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
  else
    echo "[setup] not root or no apt-get: skipping system packages (browser and Slurm tests will skip)"
  fi
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# Reinstall whenever pyproject.toml changed since the last install (its hash is the stamp).
stamp="$VENV/.synthbench-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "[setup] installing synthbench and its dependencies into $VENV (a few minutes the first time)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch first, pinned: these wheels are the ones this machine kind serves from its own disk.
  "$VENV/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
  echo "$want" >"$stamp"
fi
echo "[setup] ready: $VENV/bin/synthbench"
