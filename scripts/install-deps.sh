#!/usr/bin/env bash
# Installs every system package and Python dependency ketch and its tests need
# (Debian 12, as root). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# golang-go and golang-github-docker-spdystream-dev: the tests' SPDY client
# (tests/cri/spdyclient), built offline from Debian's packaged Go sources
PKGS=(runc crun conmon skopeo busybox-static mmdebstrap iptables iproute2
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

python3 -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 \
  | grep -v -E "^WARNING: (Running pip as|Location)" || true
# PYTHONDONTWRITEBYTECODE may be set; precompile so each ketch call does not recompile.
python3 -m compileall -q src >/dev/null
# Replace pip's console script with ketch's lean launcher (python -I -S, explicit sys.path):
# no site .pth processing at every start. See src/ketch/launcher.py.
python3 -m ketch.launcher >/dev/null
