#!/usr/bin/env bash
# Makes the `node` base image the sample app builds FROM, from the Debian mirror alone:
# a bookworm minbase root filesystem with Debian's nodejs and npm (mmdebstrap, no Docker
# Hub), imported as node:latest. Skips the work when the image is already there.
#   usage: examples/make-node-image.sh [IMAGE]      (default node:latest; needs root)
set -euo pipefail
image="${1:-node:latest}"
ketch=(ketch)
if [ -n "${KETCH:-}" ]; then read -r -a ketch <<<"$KETCH"; fi
if "${ketch[@]}" image inspect --format '{{.Id}}' "$image" >/dev/null 2>&1; then
  echo "$image is already there"
  exit 0
fi
command -v mmdebstrap >/dev/null || { echo "make-node-image: mmdebstrap is not installed (apt-get install mmdebstrap)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mirror="${DEBIAN_MIRROR:-}"
# The apt lists and caches are dropped so the layer holds only what runs.
mmdebstrap --quiet --format=tar --variant=minbase --include=nodejs,npm \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  bookworm "$work/node.tar" ${mirror:+"$mirror"}
"${ketch[@]}" import --change 'CMD ["node"]' "$work/node.tar" "$image"
