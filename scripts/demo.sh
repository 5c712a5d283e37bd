#!/usr/bin/env bash
# Sets everything up and runs the main job on a fresh Debian 12 machine, as root:
# makes a busybox image offline and drives ketch's image management commands with it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

export KETCH_ROOT="${KETCH_ROOT:-/var/lib/ketch}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
say() { printf '\n$ %s\n' "$*"; "$@"; }

python3 -c "from pathlib import Path; import sys; sys.path.insert(0, '.');
from tests.helpers.rootfs import write_busybox_rootfs_tar as w; w(Path('$work/busybox.tar'))"
say ketch import --change 'CMD ["sh"]' "$work/busybox.tar" busybox:latest
say ketch tag busybox:latest demo/busybox:1.0
say ketch images
say ketch image inspect --format '{{.Id}} {{json .Config.Cmd}}' demo/busybox:1.0
say ketch image history busybox
say ketch save -o "$work/busybox-saved.tar" busybox:latest
say ketch rmi demo/busybox:1.0
say ketch load -i "$work/busybox-saved.tar"
say ketch images
