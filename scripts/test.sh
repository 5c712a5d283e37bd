#!/usr/bin/env bash
# Runs the whole test suite as root (installs what it needs first). Extra arguments go to
# pytest, e.g. scripts/test.sh tests/unit -x
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  # The tests mount filesystems and run containers: as root, through sudo if there is one.
  command -v sudo >/dev/null 2>&1 && exec sudo -- bash "$0" "$@"
  echo "scripts/test.sh: the tests mount filesystems and run containers: run it as root" >&2
  exit 1
fi
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
source scripts/venv.sh  # python3 below is ketch's environment's (see install-deps.sh)
python3 -m ruff check .
python3 -m mypy
# pytest keeps its assertion-rewritten test modules as bytecode; with writing switched off
# every run (and every worker) would rewrite all of them again.
unset PYTHONDONTWRITEBYTECODE
# In parallel (pytest-xdist): the tests mostly wait on containers and subprocesses, so
# more workers than cores pay off. KETCH_TEST_WORKERS=0 runs them in this one process.
# --dist loadgroup keeps the tests marked xdist_group("NAME") on one worker, so the
# servers and images they share are made once (tests/cri, the crash harness).
exec python3 -m pytest -q -n "${KETCH_TEST_WORKERS:-4}" --dist loadgroup --durations=15 "$@"
