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
# pytest keeps its assertion-rewritten test modules as bytecode; with writing switched off
# every run (and every worker) would rewrite all of them again.
unset PYTHONDONTWRITEBYTECODE
# The tests' temporary directories (their state roots, images, registries: several GB
# over a run) and TMPDIR go to a tmpfs of their own, as /tmp is on Debian 13: on a
# root filesystem like this VM's (ext4 without a journal), creating files right after
# many were deleted costs the kernel a scan of the recently freed inodes, and the suite
# spent about a fifth of its CPU there (430 against 530 CPU-seconds a run). The state
# root on the disk itself is covered by tests/containers/test_disk_root.py and measured
# in bench/. KETCH_TEST_TMPFS=0 keeps everything on the disk. A passing test's directory
# is removed when it ends (pyproject: tmp_path_retention_policy), which keeps the tmpfs
# small.
tmpfs=""
warm=""
cleanup() {  # (never changes the script's exit status)
  if [ -n "$warm" ] && kill -0 "$warm" 2>/dev/null; then
    kill -TERM -- "-$warm" 2>/dev/null || true
    wait "$warm" 2>/dev/null || true
  fi
  if [ -n "$tmpfs" ]; then
    if mountpoint -q "$tmpfs"; then umount -l "$tmpfs" || true; fi
    rmdir "$tmpfs" || true
  fi
}
trap cleanup EXIT
given=$#  # (test paths or options of the caller's own)
if [ "${KETCH_TEST_TMPFS:-1}" != 0 ]; then
  tmpfs="$(mktemp -d /tmp/ketch-tests.XXXXXX)"
  mount -t tmpfs -o mode=0700 ketch-tests "$tmpfs"
  export TMPDIR="$tmpfs"
  set -- --basetemp "$tmpfs/pytest" "$@"
fi
# The Debian roots some tests import (PostgreSQL, Node.js: tests/helpers/rootfs.py) are
# made from the mirror once per machine and cached, as is Go's build cache for the
# tests' Go client; on a fresh machine that is ~26 CPU-seconds (~56 while the roots
# were installed rather than unpacked: a run with an empty cache took 3:36, 417 busy
# CPU-seconds, before that change and 3:27, 396, after), which start here
# (tests/helpers/warm.py), beside mypy and the collection below, instead of in the middle
# of the run, where the first test to need a root waited ~50 s for it and ended the run
# late (a fresh machine's run: 3:25 before, 3:13 after; a machine with the roots cached,
# 2:42-2:49, does not change). The tests wait on the roots' locks. (Its own process
# group: an early exit of this script stops it.)
if [ "$given" = 0 ]; then
  setsid python3 -m tests.helpers.warm > /dev/null 2>&1 &
  warm=$!
fi
# Each xdist worker collects every test module, and on a fresh checkout each would
# rewrite all their asserts (pytest's assertion rewriting: ~5 s of CPU a process, all at
# once); a collection first writes the rewritten bytecode that the workers then load
# (~1.5 s each): for the whole suite two of them, one per core, each over half of the
# test directories by lines of code (a fresh clone's 4.9 s, one core, in ~3.7). mypy
# checks src/ beside them, and its report comes first. Its cache is kept with the tests'
# image cache, outside the checkout: mypy validates each entry by the file's contents,
# so a fresh clone checks in ~0.2 s what takes ~5 s from nothing.
mypy_log="$(mktemp)"
python3 -m mypy --cache-dir "${KETCH_TEST_CACHE:-/var/tmp/ketch-test-cache}/mypy" \
  > "$mypy_log" 2>&1 &
mypy_pid=$!
if [ "$given" = 0 ]; then
  mapfile -t halves < <(
    for d in tests/*/; do
      [ "$d" = tests/__pycache__/ ] || echo "$(cat "$d"*.py 2>/dev/null | wc -l) $d"
    done | sort -rn | awk '{ if (a <= b) { a += $1; A = A " " $2 } else { b += $1; B = B " " $2 } }
                           END { print A; print B }')
  # (word splitting wanted: the halves are lists of directories)
  # shellcheck disable=SC2086
  python3 -m pytest --collect-only -q -p no:xdist -p no:cacheprovider ${halves[0]} \
    > /dev/null 2>&1 &
  half=$!
  # shellcheck disable=SC2086
  python3 -m pytest --collect-only -q -p no:xdist -p no:cacheprovider ${halves[1]} \
    > /dev/null 2>&1 || true
  wait "$half" || true
else
  python3 -m pytest --collect-only -q -p no:xdist "$@" > /dev/null 2>&1 || true
fi
mypy_status=0
wait "$mypy_pid" || mypy_status=$?
cat "$mypy_log"
rm -f "$mypy_log"
[ "$mypy_status" = 0 ] || exit "$mypy_status"
# In parallel (pytest-xdist): the tests mostly wait on containers and subprocesses, so
# more workers than cores pay off, up to where both cores are busy; past that, more
# processes at once make each slower, and the run takes more CPU for the same work. On 2 cores and the tmpfs, whole clean-clone runs of .ci/run:
# 4 workers 2:54 (274 busy CPU-seconds), 5 workers 2:44-2:48 (289-299), 6 workers
# 2:48-2:58 (315-334), 8 workers 2:52 (336). KETCH_TEST_WORKERS=0 runs them in this one
# process.
# --dist loadgroup keeps the tests marked xdist_group("NAME") on one worker, so the
# servers and images they share are made once (tests/cri, the crash harness).
python3 -m pytest -q -n "${KETCH_TEST_WORKERS:-5}" --dist loadgroup --durations=15 "$@"
