#!/usr/bin/env bash
# Sets everything up and runs the main job on a fresh Debian 12 machine, as root (re-run
# through sudo when started as another user):
# makes a busybox image offline and drives ketch's image management commands with it,
# then builds the notes' Node app (examples/node-app) and serves it on 127.0.0.1:3000.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  # ketch needs root (overlay mounts, runc, bridges): through sudo if there is one.
  command -v sudo >/dev/null 2>&1 && exec sudo -- bash "$0" "$@"
  echo "scripts/demo.sh: ketch runs containers as root: run it as root" >&2
  exit 1
fi
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
source scripts/venv.sh  # ketch and python3 below: ketch's environment

export KETCH_ROOT="${KETCH_ROOT:-/var/lib/ketch}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say() { printf '\n$ %s\n' "$*"; "$@"; }

say python3 -m ketch.images.busybox "$work/busybox.tar"   # busybox-static as a rootfs tarball
say ketch import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest
say ketch tag busybox:latest demo/busybox:1.0
say ketch images
say ketch image inspect --format '{{.Id}} {{json .Config.Cmd}}' demo/busybox:1.0
say ketch image history busybox
say ketch save -o "$work/busybox-saved.tar" busybox:latest
say ketch rmi demo/busybox:1.0
say ketch load -i "$work/busybox-saved.tar"
say ketch images

# The notes' Node app: a node base image from the Debian mirror (mmdebstrap), the
# optimised Dockerfile built with the layer cache, run with -p 3000:80 and fetched.
say bash examples/make-node-image.sh node:latest
(cd examples/node-app && say ketch build -t node-hello .)
(cd examples/node-app && say ketch build -t node-hello .)   # unchanged: every step cached
ketch rm -f node-hello >/dev/null 2>&1 || true
say ketch run -d -p 3000:80 --name node-hello node-hello
page=""
for _ in $(seq 1 50); do
  page=$(python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:3000/', timeout=2).read().decode())" 2>/dev/null) && break
  sleep 0.2
done
printf '\n$ curl http://127.0.0.1:3000/\n%s\n' "$page"
say ketch stop node-hello
say ketch rm node-hello
[ -n "$page" ] || { echo "demo: the page did not come back from 127.0.0.1:3000" >&2; exit 1; }
