#!/usr/bin/env bash
# Runs the whole test suite as root (installs what it needs first). Extra arguments go to
# pytest, e.g. scripts/test.sh tests/unit -x
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: the tests mount filesystems and run containers: run it as root" >&2
  exit 1
fi
bash scripts/install-deps.sh
python3 -m ruff check .
exec python3 -m pytest -q "$@"
