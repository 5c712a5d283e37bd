# Sourced by the scripts: where ketch's Python environment is, first on PATH.
# ketch runs on the distribution's python3 (Debian 12: 3.11, built with PGO and LTO and a
# static libpython), in a virtual environment of its own: see scripts/install-deps.sh.
KETCH_VENV="${KETCH_VENV:-/opt/ketch/venv}"
export PATH="$KETCH_VENV/bin:$PATH"
