"""Reading conmon's k8s-file container logs, fast.

Each record is one line: `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <text>`, where
F ends a line of output and P is a piece of a longer line (conmon reads 8 KiB at a time),
whose own newline is not part of the output.

A log can hold millions of lines, so nothing here handles lines one by one in Python on
the common path: blocks of ~1 MiB are split and their fixed-width headers sliced off with
C-level map/join, streams are coalesced into large chunks, `tail` seeks backwards from the end and `since`/
`until` are found by bisecting the file on timestamps (conmon writes them in order).

Size: one job, reading and keeping one log format fast (parse, tail, since/until
bisection, follow across rotations, the keeper's rotation). The pieces share the record
layout and the block-wise helpers that make it fast; split apart, each would re-derive
them.

The reading side takes paths as strings (any path-like is accepted) and imports neither
`re`, `pathlib` nor `datetime` until a rare case needs one: `logs --tail` is mostly
interpreter start-up, and those three (with fnmatch, urllib.parse and enum behind them)
cost about as much CPU as the read itself (`python3 -I -S -X importtime`).
"""

from __future__ import annotations

import io
import os
import time
from _operator import itemgetter  # operator's own: the module adds only Python copies
from itertools import repeat

from ketch.values import value

# typing and collections.abc only for annotations; contextlib, functools' partial and
# collections' namedtuple not at all on the reading side: `logs --tail` is mostly
# start-up, and those (with collections, operator and the rest functools imports) cost
# a fifth of its instructions (callgrind)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from datetime import datetime
    from pathlib import Path
    from typing import IO, Any, BinaryIO, NamedTuple

    StrPath = str | os.PathLike[str]

BLOCK = 1 << 20
WRITE_BUFFER = 1 << 20
STREAMS = ("stdout", "stderr")

# conmon writes "%Y-%m-%dT%H:%M:%S.%09ld+HH:MM" (35 bytes) then " stdout F " (10): a
# fixed-width header, checked per block and then cut off with C-level slicing.
_TS_WIDTH = 35
_HEADER = _TS_WIDTH + 10
_KIND = itemgetter(slice(_TS_WIDTH, _HEADER))
_BODY = itemgetter(slice(_HEADER, None))
_SECOND = itemgetter(slice(0, 19))
_FRACTION = itemgetter(slice(19, 29))
_ZONE = itemgetter(slice(29, _TS_WIDTH))
_FULL_KINDS = {b" stdout F ": "stdout", b" stderr F ": "stderr"}
_UTC_ZONES = (b"+00:00", b"-00:00")
_KIND_FLAG = {b" stdout F ": b"o", b" stderr F ": b"e"}


def _runs(flags: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each run of one flag in a string of b"o"/b"e" flags."""
    start, n = 0, len(flags)
    while start < n:
        end = flags.find(b"e" if flags[start] == 111 else b"o", start)  # 111 is "o"
        end = n if end < 0 else end
        yield start, end
        start = end


if TYPE_CHECKING:
    class LogChunk(NamedTuple):
        """Output of one stream: possibly many lines, as the container wrote them."""

        stream: str
        data: bytes
else:
    class LogChunk(tuple):
        """Output of one stream: possibly many lines, as the container wrote them.
        A (stream, data) pair with those names, as a namedtuple would be."""

        __slots__ = ()

        def __new__(cls, stream: str, data: bytes) -> LogChunk:
            return tuple.__new__(cls, (stream, data))

        stream = property(itemgetter(0))
        data = property(itemgetter(1))

        def __repr__(self) -> str:
            return f"LogChunk(stream={self[0]!r}, data={self[1]!r})"


# what a primed reader yields first, once its files are open (never a stream's output)
_OPENED = LogChunk("", b"")


def _memo(func: Callable[[bytes, bytes], Any]) -> Callable[[bytes, bytes], Any]:
    """A cache of `func`'s results by arguments, emptied at 4096 entries (functools'
    lru_cache without importing functools)."""
    cache: dict[tuple[bytes, bytes], Any] = {}

    def cached(a: bytes, b: bytes) -> Any:
        key = (a, b)
        try:
            return cache[key]
        except KeyError:
            pass
        if len(cache) >= 4096:
            cache.clear()
        result = cache[key] = func(a, b)
        return result

    return cached


@value(frozen=True)
class LogEntry:
    """One record, for callers that want lines with their timestamps."""

    stream: str
    timestamp: int  # nanoseconds since the epoch
    message: bytes  # without the newline
    partial: bool   # a piece of a longer line; the next piece follows


# --- timestamps -------------------------------------------------------------------


@_memo
def _second_to_epoch(prefix: bytes, tz: bytes) -> int:
    """Epoch seconds of "YYYY-MM-DDTHH:MM:SS" in zone "+HH:MM"/"Z" (cached: a log has
    few distinct seconds compared with lines)."""
    from datetime import datetime  # only for since/until and non-UTC stamps

    text = (prefix + (b"+00:00" if tz in (b"", b"Z") else tz)).decode("ascii")
    return int(datetime.fromisoformat(text).timestamp())


def parse_timestamp(raw: bytes | str) -> int:
    """RFC 3339 with up to nanoseconds → nanoseconds since the epoch."""
    if isinstance(raw, str):
        raw = raw.encode("ascii")
    prefix, rest = raw[:19], raw[19:]
    frac = 0
    if rest.startswith(b"."):
        end = 1
        while end < len(rest) and 48 <= rest[end] <= 57:
            end += 1
        frac = int(rest[1:end][:9].ljust(9, b"0") or b"0")
        rest = rest[end:]
    try:
        return _second_to_epoch(prefix, rest) * 1_000_000_000 + frac
    except ValueError as e:
        raise ValueError(f"bad log timestamp {raw!r}") from e


def format_timestamp(ns: int) -> str:
    """Docker's `logs -t` form: UTC, nine fractional digits, "Z"."""
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


@_memo
def _docker_second(prefix: bytes, tz: bytes) -> bytes:
    if tz in (b"", b"Z", b"+00:00"):
        return prefix
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(_second_to_epoch(prefix, tz))
                         ).encode("ascii")


def _docker_ts(raw: bytes) -> bytes:
    """conmon's local-time stamp → Docker's UTC stamp, as bytes."""
    prefix, rest = raw[:19], raw[19:]
    frac = b"000000000"
    if rest.startswith(b"."):
        end = 1
        while end < len(rest) and 48 <= rest[end] <= 57:
            end += 1
        frac = rest[1:end][:9].ljust(9, b"0")
        rest = rest[end:]
    return _docker_second(prefix, rest) + b"." + frac + b"Z"


def to_ns(value: datetime | float | int | None) -> int | None:
    """A bound for since/until: datetime (naive = UTC) or Unix seconds."""
    if value is None:
        return None
    if not isinstance(value, int | float | str):  # a datetime
        from datetime import UTC

        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp()) * 1_000_000_000 + value.microsecond * 1000
    return int(round(float(value) * 1_000_000_000))


# --- converting records ------------------------------------------------------------


class _Converter:
    """Turns blocks of whole records into lists of LogChunks (one per run of a stream)."""

    def __init__(self, timestamps: bool, streams: tuple[str, ...] = STREAMS) -> None:
        self.timestamps = timestamps
        self.streams = streams
        # Whether the last record of each stream was a P piece: the next piece continues
        # the same line and gets no timestamp of its own.
        self.partial = {"stdout": False, "stderr": False}

    def convert(self, block: bytes) -> list[LogChunk]:
        """`block` is a run of whole records (ends with a newline)."""
        lines = block.split(b"\n")
        lines.pop()
        if not lines:
            return []
        if not (self.partial["stdout"] or self.partial["stderr"]):
            kinds = set(map(_KIND, lines))
            if kinds <= _FULL_KINDS.keys():
                zones = set(map(_ZONE, lines)) if self.timestamps else {None}
                if len(zones) == 1:
                    return self._fast(block, lines, kinds, zones.pop())
        return self._slow(lines)

    def _fast(self, block: bytes, lines: list[bytes], kinds: set[bytes],
              zone: bytes | None) -> list[LogChunk]:
        """Only complete lines with well-formed headers, one time zone."""
        if len(kinds) == 1:
            kind = next(iter(kinds))
            stream = _FULL_KINDS[kind]
            if stream not in self.streams:
                return []
            if zone in _UTC_ZONES:
                # "...123456789+00:00 stdout F text" → "...123456789Z text", in one pass
                # over the block, unless some text contains the marker itself.
                marker = zone + kind
                if block.count(marker) == len(lines):
                    return [LogChunk(stream, block.replace(marker, b"Z "))]
            return [LogChunk(stream, self._bodies(lines, zone))]
        # Several streams: find the runs of each in a string of one flag byte per line
        # ("ooeoo...", searched with bytes.find), then join each run's bodies.
        if self.timestamps:
            bodies = self._bodies(lines, zone).split(b"\n")
        else:
            bodies = list(map(_BODY, lines))
        flags = b"".join(map(_KIND_FLAG.__getitem__, map(_KIND, lines)))
        out: list[LogChunk] = []
        wanted = self.streams
        for start, end in _runs(flags):
            stream = "stdout" if flags[start] == 111 else "stderr"  # 111 is "o"
            if stream in wanted:
                out.append(LogChunk(stream, b"\n".join(bodies[start:end]) + b"\n"))
        return out

    def _bodies(self, lines: list[bytes], zone: bytes | None) -> bytes:
        """Lines without their headers (with Docker timestamps when asked), joined."""
        if not self.timestamps:
            return b"\n".join(map(_BODY, lines)) + b"\n"
        seconds = map(_SECOND, lines)
        if zone not in _UTC_ZONES:
            table = {p: _docker_second(p, zone or b"") for p in set(map(_SECOND, lines))}
            seconds = map(table.__getitem__, seconds)
        return b"\n".join(map(b"".join, zip(seconds, map(_FRACTION, lines), repeat(b"Z "),
                                            map(_BODY, lines)))) + b"\n"

    def _slow(self, lines: list[bytes]) -> list[LogChunk]:
        """Record by record: partial lines, odd timestamps, or lines that are no records
        (never written by conmon; skipped)."""
        out: list[LogChunk] = []
        cur_stream = ""
        buf: list[bytes] = []
        for line in lines:
            parts = line.split(b" ", 3)
            if len(parts) < 4 or parts[2] not in (b"F", b"P"):
                continue
            raw_ts, stream_b, tag, text = parts
            stream = stream_b.decode("ascii", "replace")
            if stream not in self.partial:
                continue
            prefix = b""
            if self.timestamps and not self.partial[stream]:
                prefix = _docker_ts(raw_ts) + b" "
            self.partial[stream] = tag == b"P"
            if stream not in self.streams:
                continue
            if stream != cur_stream and buf:
                out.append(LogChunk(cur_stream, b"".join(buf)))
                buf = []
            cur_stream = stream
            buf.append(prefix + text + (b"" if tag == b"P" else b"\n"))
        if buf:
            out.append(LogChunk(cur_stream, b"".join(buf)))
        return out


# --- locating records --------------------------------------------------------------


def _record_after(f: BinaryIO, pos: int, limit: int) -> tuple[int, int | None]:
    """(start, timestamp) of the first record starting at or after `pos`; the
    timestamp is None at `limit` (end of the region)."""
    start = pos
    if pos > 0:
        f.seek(pos - 1)
        while True:
            chunk = f.read(4096)
            if not chunk:
                return limit, None
            nl = chunk.find(b"\n")
            if nl >= 0:
                start = f.tell() - len(chunk) + nl + 1
                break
    if start >= limit:
        return limit, None
    f.seek(start)
    head = f.read(64)
    try:
        return start, parse_timestamp(head.split(b" ", 1)[0])
    except ValueError:
        return start, None


def _first_at_or_after(f: BinaryIO, lo: int, hi: int, bound: int, strict: bool) -> int:
    """Offset of the first record in [lo, hi) whose timestamp is >= bound (> bound
    when `strict`), found by bisection; hi if none."""
    def satisfied(pos: int) -> tuple[bool, int]:
        start, ts = _record_after(f, pos, hi)
        if ts is None:
            return True, start
        return (ts > bound if strict else ts >= bound), start

    left, right = lo, hi
    while left < right:
        mid = (left + right) // 2
        ok, _start = satisfied(mid)
        if ok:
            right = mid
        else:
            left = mid + 1
    return _record_after(f, left, hi)[0] if left < hi else hi


def _tail_records(f: BinaryIO, lo: int, hi: int, n: int) -> tuple[int, int]:
    """(start of the n-th last record in [lo, hi), how many records that keeps): fewer
    than n when the region holds fewer. `hi` is just after a newline."""
    if n <= 0:
        return hi, 0
    need = n + 1  # the newline ending the record before the first one we keep
    pos = hi
    # a few records are a few KiB: start small, growing to BLOCK for long tails
    step = min(BLOCK, 64 * 1024)
    while pos > lo:
        start = max(lo, pos - step)
        f.seek(start)
        data = f.read(pos - start)
        count = data.count(b"\n")
        if count >= need:
            idx = len(data)
            for _ in range(need):
                idx = data.rindex(b"\n", 0, idx)
            return start + idx + 1, n
        need -= count
        pos = start
        step = min(BLOCK, step * 4)
    return lo, n + 1 - need


def _tail_offset(f: BinaryIO, lo: int, hi: int, n: int) -> tuple[int, int]:
    """(start of the n-th last line in [lo, hi), how many lines that keeps), as `logs
    --tail` counts them: conmon writes a line that arrived in pieces as partial (P)
    records ended by a full (F) one, and such a line counts once. Fewer than n when the
    region holds fewer. `hi` is just after a newline."""
    records = n
    while True:
        offset, found = _tail_records(f, lo, hi, records)
        f.seek(offset)
        region = f.read(hi - offset)
        if b"stdout P " not in region and b"stderr P " not in region:
            # no partial records: a record is a line (a cut one is made whole)
            return _group_start(f, lo, offset), found
        lines = _lines_of(region)
        if lines >= n or offset <= lo:
            return _group_start(f, lo, offset), lines
        records += n - lines


def _lines_of(region: bytes) -> int:
    """How many lines the records of `region` make: each full record ends one, and a
    stream whose last record is partial has one still being written."""
    full = 0
    open_streams: set[bytes] = set()
    for record in region.split(b"\n")[:-1]:
        parts = record.split(b" ", 3)
        if len(parts) < 4:
            continue
        if parts[2] == b"F":
            full += 1
            open_streams.discard(parts[1])
        elif parts[2] == b"P":
            open_streams.add(parts[1])
    return full + len(open_streams)


def _group_start(f: BinaryIO, lo: int, offset: int) -> int:
    """`offset` moved back over the partial records just before it, so the first line
    kept is whole."""
    window = 4096
    while offset > lo:
        start = max(lo, offset - window)
        f.seek(start)
        data = f.read(offset - start)
        nl = data.rfind(b"\n", 0, len(data) - 1)
        if nl < 0 and start > lo:
            if window >= BLOCK:
                return offset  # a record longer than BLOCK: the cut stays where it is
            window *= 16
            continue
        record = data[nl + 1:]
        parts = record.split(b" ", 3)
        if len(parts) < 4 or parts[2] != b"P":
            return offset
        offset = start + nl + 1
    return offset


def _last_newline(f: BinaryIO, size: int) -> int:
    """Offset just after the last newline (records after it are still being written)."""
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        f.seek(start)
        data = f.read(pos - start)
        idx = data.rfind(b"\n")
        if idx >= 0:
            return start + idx + 1
        pos = start
    return 0


# --- public API --------------------------------------------------------------------


def read_log(path: StrPath, *, tail: int | None = None,
             since: datetime | float | None = None, until: datetime | float | None = None,
             timestamps: bool = False, follow: bool = False,
             is_done: Callable[[], bool] | None = None, streams: tuple[str, ...] = STREAMS,
             poll_interval: float = 0.1) -> Iterator[LogChunk]:
    """Chunks of a container's output, as `docker logs` shows them.

    `tail` keeps the last N records; `since`/`until` bound timestamps (inclusive);
    `timestamps` prefixes each line with Docker's UTC timestamp. With `follow`, keeps
    reading until `is_done()` is true (the container exited) and the file is drained.

    The log's files that exist are opened before this returns, so what they hold is
    read even if they are removed before the first chunk is asked for (a client of the
    Engine API gets the logs response's headers, then removes the container, then reads
    the body: docker-py's `containers.run` does).
    """
    chunks = _read_log(path, tail=tail, since=since, until=until, timestamps=timestamps,
                       follow=follow, is_done=is_done, streams=streams,
                       poll_interval=poll_interval, primed=True)
    next(chunks)  # (_OPENED: the files are open)
    return chunks


def _read_log(path: StrPath, *, tail: int | None = None,
              since: datetime | float | None = None, until: datetime | float | None = None,
              timestamps: bool = False, follow: bool = False,
              is_done: Callable[[], bool] | None = None, streams: tuple[str, ...] = STREAMS,
              poll_interval: float = 0.1, idle: Callable[[], None] | None = None,
              primed: bool = False) -> Iterator[LogChunk]:
    """read_log's generator. `primed`: it first yields _OPENED, once the files that
    exist are open (before waiting for a current file that does not exist yet)."""
    since_ns, until_ns = to_ns(since), to_ns(until)
    path = os.fspath(path)
    converter = _Converter(timestamps, streams)
    # Rotated generations first (oldest first), opened before the current file so that a
    # rotation meanwhile shifts names under us without losing what was opened.
    # The start offset is read first: a generation the keeper moves out meanwhile is
    # then read through the live file (and recovered from the generation where the
    # keeper has already punched it), never skipped; one opened twice is dropped below.
    base = start_offset(path)
    opened = _open_older(path)
    f = _open_waiting(path, False, None, poll_interval)
    held = [g for g, _ino in opened] + ([f] if f is not None else [])
    try:
        if primed:
            yield _OPENED
        if f is None:
            f = _open_waiting(path, follow and not opened, is_done, poll_interval)
            if f is None:
                if not opened:
                    return
                f = io.BytesIO()
            held.append(f)
        older = _in_order(opened, base, f, *_generations(path))
        regions, stop_early = _regions([*older, f], since_ns, until_ns, tail, base)
        for g, pos, end in regions:
            while pos < end:
                g.seek(pos)
                block = g.read(min(BLOCK, end - pos))
                if g is f:
                    block = _checked(f, path, pos, block)
                    if not block:  # moved out and dropped (max-file) before we got there
                        pos = min(end, start_offset(path))
                        continue
                cut_at = block.rfind(b"\n") + 1 if pos + len(block) < end else len(block)
                if cut_at == 0:
                    cut_at = len(block)  # a single record longer than a block
                yield from converter.convert(block[:cut_at])
                pos += cut_at
        if not follow or stop_early:
            return
        if idle is not None:
            idle()
        if isinstance(f, io.BytesIO):  # the current file did not exist yet
            f = _open_waiting(path, True, is_done, poll_interval)
            if f is None:
                return
            held.append(f)
            end = 0
        else:
            end = regions[-1][2] if regions and regions[-1][0] is f else _last_newline(
                f, os.fstat(f.fileno()).st_size)
        yield from _follow(f, path, end, converter, until_ns, is_done, poll_interval, idle)
    finally:
        for g in reversed(held):
            g.close()


def _regions(files: list[BinaryIO], since_ns: int | None, until_ns: int | None,
             tail: int | None, base: int = 0) -> tuple[list[tuple[BinaryIO, int, int]], bool]:
    """The part of each file (oldest first) to show: [(file, start, end)], and whether
    `until` ends the output before the last file's end. The last file's records begin
    at `base` (what the keeper has rotated out is before it)."""
    out: list[tuple[BinaryIO, int, int]] = []
    stop_early = False
    last = files[-1]
    for g in files:
        size = _size(g)
        lo = min(base, size) if g is last else 0
        end = max(lo, _last_newline(g, size))
        start = lo
        if since_ns is not None:
            start = _first_at_or_after(g, lo, end, since_ns, strict=False)
        if until_ns is not None:
            cut = _first_at_or_after(g, start, end, until_ns, strict=True)
            stop_early = cut < end
            end = cut
        out.append((g, start, end))
        if stop_early:
            break
    if tail is not None:
        need = tail
        kept: list[tuple[BinaryIO, int, int]] = []
        for g, start, end in reversed(out):
            if need <= 0 and kept:
                break
            offset, found = _tail_offset(g, start, end, need)
            kept.append((g, max(start, offset), end))
            need -= found
        out = kept[::-1]
    return out, stop_early


def _size(f: BinaryIO) -> int:
    if isinstance(f, io.BytesIO):
        return len(f.getbuffer())
    return os.fstat(f.fileno()).st_size


def rotated_paths(path: Path) -> list[Path]:
    """The rotated generations of a log, oldest first: `<log>.N[.gz]` ... `<log>.1[.gz]`
    (a plain file wins over its .gz: the keeper removes it only after the .gz is whole)."""
    found: list[Path] = []
    n = 1
    while True:
        plain = path.with_name(f"{path.name}.{n}")
        if plain.exists():
            found.append(plain)
        else:
            packed = path.with_name(f"{path.name}.{n}.gz")
            if not packed.exists():
                break
            found.append(packed)
        n += 1
    return found[::-1]


def _open_generation(p: str) -> tuple[BinaryIO, int]:
    """A rotated generation, readable and seekable, with its inode number."""
    if p.endswith(".gz"):
        import gzip

        with open(p, "rb") as raw:
            ino = os.fstat(raw.fileno()).st_ino
            return io.BytesIO(gzip.decompress(raw.read())), ino
    g = open(p, "rb")
    return g, os.fstat(g.fileno()).st_ino


def _in_order(opened: list[tuple[BinaryIO, int]], base: int, f: BinaryIO, live_ino: int,
              ranges: dict[int, tuple[int, int]]) -> list[BinaryIO]:
    """The generations to read before the live file's records at `base`, oldest
    first. The keeper may shift names while they are opened: those it recorded for this
    live file are put in order by their offsets, a copy seen twice (its gzip copy, or
    under two names) is read once, and one moved out after `base` was read is left to
    the live file's reading (which recovers it)."""
    if not _is_live(f, live_ino):
        return [g for g, _ino in opened]
    unknown = [g for g, ino in opened if ino not in ranges]
    known: dict[tuple[int, int], BinaryIO] = {}
    for g, ino in opened:
        if ino in ranges and ranges[ino][0] < base:
            known.setdefault(ranges[ino], g)
    return unknown + [known[span] for span in sorted(known)]


def _open_older(path: str) -> list[tuple[BinaryIO, int]]:
    """The rotated generations, oldest first by name (see _in_order), each once. All
    `<log>.N[.gz]` in the directory: while the keeper shifts names one may be missing
    for a moment, which must not hide the older ones."""
    found: dict[int, str] = {}
    finishing: dict[int, str] = {}  # moved out, not yet shifted in as `.1`: the newest
    parent, base = os.path.split(path)
    try:
        names_here = os.listdir(parent or ".")
    except FileNotFoundError:
        names_here = []
    for name in names_here:
        m = _generation_suffix(name[len(base):]) if name.startswith(base) else None
        if m is None:
            continue
        done, n, gz = m
        if done:
            finishing[n] = os.path.join(parent, name)
            continue
        if n not in found or not gz:  # a plain file wins over its .gz
            found[n] = os.path.join(parent, name)
    opened: list[tuple[BinaryIO, int]] = []
    seen: set[int] = set()
    names = [found[n] for n in sorted(found, reverse=True)]
    names += [finishing[n] for n in sorted(finishing)]
    for gen in names:
        try:
            g, ino = _open_generation(gen)
        except (FileNotFoundError, EOFError, OSError):
            continue  # rotated away or still being written: the next generation has it
        if ino in seen:  # renamed while we listed: opened once already
            g.close()
            continue
        seen.add(ino)
        opened.append((g, ino))
    return opened


def _generation_suffix(rest: str) -> tuple[bool, int, bool] | None:
    """What follows `<log>` in a generation's name: `.N`, `.N.gz` (shifted in) or
    `.doneN` (moved out, not yet shifted) → (done, N, gzipped); None for anything else."""
    if not rest.startswith("."):
        return None
    rest = rest[1:]
    done = rest.startswith("done")
    if done:
        rest = rest[4:]
    gz = not done and rest.endswith(".gz")
    if gz:
        rest = rest[:-3]
    if not (rest.isdigit() and rest.isascii()):
        return None
    return done, int(rest), gz


# --- reading past the keeper's hole punch ---------------------------------------------
#
# The keeper copies a generation out, records it in `<log>.gens` (the live file's inode,
# then one `<inode> <first offset> <end offset>` line per generation file, by inode so
# that renames and shifts do not matter), moves `<log>.start` past it, and only then
# punches the copied bytes (they read as zeros). A reader checks the start offset after
# each read from the live file: if it is still at or before the offset read from, no
# punch can have reached the bytes read (the punch follows the move); if it moved past,
# the bytes before it are taken from the generation that holds them instead.


def _generations(path: StrPath) -> tuple[int, dict[int, tuple[int, int]]]:
    """(inode of the live file the offsets refer to, {inode: (first, end)})."""
    try:
        with open(os.fspath(path) + ".gens", "rb") as f:
            lines = f.read().split(b"\n")
        live = int(lines[0])
        ranges: dict[int, tuple[int, int]] = {}
        for line in lines[1:]:
            if line:
                ino, first, end = map(int, line.split())
                ranges[ino] = (first, end)
        return live, ranges
    except (FileNotFoundError, ValueError):
        return -1, {}


def _is_live(f: BinaryIO, live_ino: int) -> bool:
    try:
        return os.fstat(f.fileno()).st_ino == live_ino
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


def _recover(f: BinaryIO, path: StrPath, pos: int, hi: int) -> bytes | None:
    """Bytes from `pos` (at most up to `hi`) of the live file `f`, read from the
    generation the keeper copied them to; None when no generation holds them any more
    (dropped by max-file) or `f` is not the file the keeper rotates."""
    import contextlib

    for attempt in range(50):
        live_ino, ranges = _generations(path)
        if not _is_live(f, live_ino):
            return None
        wanted = {ino for ino, (first, end) in ranges.items() if first <= pos < end}
        if not wanted:
            return None
        # names move (shift, gzip) while we look: identify each file by its inode
        parent, prefix = os.path.split(os.fspath(path))
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(parent or "."):
                if not (name.startswith(prefix)
                        and _generation_suffix(name[len(prefix):]) is not None):
                    continue
                gen = os.path.join(parent, name)
                try:
                    if os.stat(gen).st_ino not in wanted:
                        continue
                    g, ino = _open_generation(gen)
                except (FileNotFoundError, EOFError, OSError):
                    continue
                with g:
                    if ino not in wanted:
                        continue
                    first, end = ranges[ino]
                    g.seek(pos - first)
                    data = g.read(min(hi, end, pos + BLOCK) - pos)
                    if data:
                        return data
        time.sleep(0.002 * min(attempt + 1, 10))
    return None


def _checked(f: BinaryIO, path: StrPath, pos: int, data: bytes) -> bytes:
    """`data` just read from the live file at `pos`, or, where the keeper may have
    punched it meanwhile, the same bytes from the generation it copied them to: a
    prefix of what was asked, never zeros. Empty when they are gone for good."""
    if not data:
        return data
    moved = start_offset(path)
    if moved <= pos or not _is_live(f, _generations(path)[0]):
        return data
    return _recover(f, path, pos, min(moved, pos + len(data))) or b""


def _open_waiting(path: StrPath, follow: bool, is_done: Callable[[], bool] | None,
                  poll_interval: float) -> BinaryIO | None:
    while True:
        try:
            return open(path, "rb")
        except FileNotFoundError:
            if not follow or (is_done is not None and is_done()):
                return None
            time.sleep(poll_interval)


def _follow(f: BinaryIO, path: StrPath, pos: int, converter: _Converter, until_ns: int | None,
            is_done: Callable[[], bool] | None, poll_interval: float,
            idle: Callable[[], None] | None) -> Iterator[LogChunk]:
    carry = b""
    delay = min(0.02, poll_interval)
    finishing = False
    opened: BinaryIO | None = None  # a file reopened after rotation; ours to close
    drained = False
    try:
        while True:
            f.seek(pos)
            data = _checked(f, path, pos, f.read(BLOCK))
            if not data and start_offset(path) > pos and _is_live(f, _generations(path)[0]):
                # moved out and dropped (max-file) before we got there: go on after it
                pos, carry = start_offset(path), b""
                continue
            if data:
                pos += len(data)
                delay = min(0.02, poll_interval)
                data = carry + data
                cut = data.rfind(b"\n") + 1
                carry = data[cut:]
                block = data[:cut]
                reached = False
                if block and until_ns is not None:
                    block, reached = _cut_until(block, until_ns)
                if block:
                    yield from converter.convert(block)
                if reached:
                    return
                continue
            if finishing:
                return
            if idle is not None:
                idle()
            if is_done is not None and is_done():
                # The monitor writes the exit file only after draining the container's
                # output into the log: one more read gets everything.
                finishing = True
                continue
            if _rotated(f, path, pos):
                if not drained:
                    # conmon may have written to the old file after our last read and
                    # before it opened the new one: read it once more first.
                    drained = True
                    continue
                drained = False
                if opened is not None:
                    opened.close()
                opened = _open_waiting(path, True, is_done, poll_interval)
                if opened is None:
                    return
                f, pos, carry = opened, 0, b""
                continue
            time.sleep(delay)
            delay = min(delay * 2, poll_interval)
    finally:
        if opened is not None:
            opened.close()


def _cut_until(block: bytes, until_ns: int) -> tuple[bytes, bool]:
    offset = 0
    for line in block.split(b"\n")[:-1]:
        try:
            ts = parse_timestamp(line.split(b" ", 1)[0])
        except ValueError:
            ts = None
        if ts is not None and ts > until_ns:
            return block[:offset], True
        offset += len(line) + 1
    return block, False


def _rotated(f: BinaryIO, path: StrPath, pos: int) -> bool:
    """conmon replaces the file when it reaches --log-size-max."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(f.fileno())
    return (st.st_ino, st.st_dev) != (own.st_ino, own.st_dev) or own.st_size < pos


def _same_file(a: IO[bytes], b: IO[bytes]) -> bool:
    if a is b:
        return True
    try:
        sa, sb = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def write_log(path: StrPath, stdout: IO[bytes] | None, stderr: IO[bytes] | None,
              **options: Any) -> None:
    """Copy a log to two byte streams (the CLI's `logs`); options as for read_log.

    Output is gathered into large writes (sys.stderr.buffer is unbuffered when not a
    TTY). When both streams lead to the same file (`2>&1`, a terminal) they share one
    buffer, so lines keep their order; otherwise each is buffered on its own.
    """
    import contextlib

    streams = tuple(s for s, out in (("stdout", stdout), ("stderr", stderr)) if out)
    if stdout is not None and stderr is not None and _same_file(stdout, stderr):
        targets = {"stdout": stdout, "stderr": stdout}
    else:
        targets = {"stdout": stdout, "stderr": stderr}  # type: ignore[dict-item]  # a None target is never in `streams`, so never looked up
    pending: dict[int, tuple[IO[bytes], bytearray]] = {}
    for out in targets.values():
        if out is not None:
            pending.setdefault(id(out), (out, bytearray()))

    def flush() -> None:
        for out, buf in pending.values():
            if buf:
                out.write(buf)
                buf.clear()
            with contextlib.suppress(AttributeError, OSError, ValueError):
                out.flush()

    for chunk in _read_log(path, streams=streams, idle=flush, **options):
        out = targets[chunk.stream]
        entry = pending[id(out)]
        buf = entry[1]
        if not buf and len(chunk.data) >= WRITE_BUFFER:
            out.write(chunk.data)
            continue
        buf += chunk.data
        if len(buf) >= WRITE_BUFFER:
            out.write(buf)
            buf.clear()
    flush()


def iter_entries(path: StrPath, **options: object) -> Iterator[LogEntry]:
    """Records one by one with their timestamps (slower; for small logs and tests)."""
    tail = options.pop("tail", None)
    since_ns = to_ns(options.pop("since", None))  # type: ignore[arg-type]  # callers pass what to_ns takes (ns, seconds, text or None)
    until_ns = to_ns(options.pop("until", None))  # type: ignore[arg-type]  # as `since`
    if options:
        raise TypeError(f"unexpected options: {', '.join(options)}")
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        end = _last_newline(f, os.fstat(f.fileno()).st_size)
        start = min(start_offset(path), end)
        if since_ns is not None:
            start = _first_at_or_after(f, start, end, since_ns, strict=False)
        if until_ns is not None:
            end = _first_at_or_after(f, start, end, until_ns, strict=True)
        if tail is not None:
            start = max(start, _tail_offset(f, start, end, int(tail))[0])  # type: ignore[call-overload]  # tail is a count (int or its text) when given
        pieces = []
        pos = start
        while pos < end:
            f.seek(pos)
            piece = _checked(f, path, pos, f.read(end - pos))
            if not piece:  # moved out and dropped (max-file) before we got there
                pos = start_offset(path)
                continue
            pieces.append(piece)
            pos += len(piece)
        data = b"".join(pieces)
    for line in data.split(b"\n")[:-1]:
        parts = line.split(b" ", 3)
        if len(parts) < 4 or parts[2] not in (b"F", b"P"):
            continue
        try:
            ts = parse_timestamp(parts[0])
        except ValueError:
            continue
        yield LogEntry(parts[1].decode("ascii", "replace"), ts, parts[3], parts[2] == b"P")


# --- log drivers and rotation -------------------------------------------------------
#
# `json-file` (Docker's default name), `local` and ketch's native `k8s-file` all store
# conmon's k8s-file records: `logs` reads them exactly as Docker's json-file reader reads
# its own (tail, since/until, follow, across rotated and gzipped generations), and conmon
# writes them without a copy through Python. Rotation: with max-file 1 conmon itself
# starts the file over at max-size (Docker's json-file does the same); with more files a
# small keeper process (keep_rotating, below) moves full generations out of the file
# conmon appends to, so the container never waits for a rename or for gzip.

DEFAULT_DRIVER = "json-file"
FILE_DRIVERS = ("json-file", "local", "k8s-file")
_ROTATION_OPTS = ("max-size", "max-file", "compress")
# k8s-file takes Podman's `path`: conmon writes the log there instead of the container's
# directory (the CRI puts it where the kubelet asks)
_DRIVER_OPTS: dict[str, tuple[str, ...]] = {
    "json-file": _ROTATION_OPTS, "local": _ROTATION_OPTS,
    "k8s-file": (*_ROTATION_OPTS, "path"),
    "none": (), "journald": ("tag",),
}
# The drivers a container may log with, as `docker info` lists them (Plugins.Log: not
# "none", which logs nothing)
LOG_DRIVERS = tuple(sorted(d for d in _DRIVER_OPTS if d != "none"))
# Docker's local driver rotates by default: 20 MB files, 5 of them, compressed
_LOCAL_DEFAULTS = {"max-size": "20m", "max-file": "5", "compress": "true"}
JOURNAL_SOCKET = "/run/systemd/journal/socket"


@value(frozen=True)
class LogPolicy:
    driver: str
    max_size: int | None = None  # bytes per file; None: one file, unbounded
    max_file: int = 1
    compress: bool = False

    @property
    def stores_file(self) -> bool:
        return self.driver in FILE_DRIVERS

    @property
    def keeper_needed(self) -> bool:
        """More than one file: ketch rotates (conmon alone can only start over)."""
        return self.stores_file and self.max_size is not None and self.max_file > 1


def _go_bool(text: str) -> bool:
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f'strconv.ParseBool: parsing "{text}": invalid syntax')


def log_policy(driver: str, opts: dict[str, str]) -> LogPolicy:
    """Check a LogConfig as Docker does at create; InvalidArgument with Docker's message
    (ketch also refuses max-file > 1 without max-size, which Docker accepts and ignores)."""
    from ketch.errors import InvalidArgument

    allowed = _DRIVER_OPTS.get(driver)
    if allowed is None:
        raise InvalidArgument(f"logger: no log driver named '{driver}' is registered")
    for key in opts:
        if key not in allowed:
            raise InvalidArgument(f"unknown log opt '{key}' for {driver} log driver")
    if driver == "journald" and not os.path.exists(JOURNAL_SOCKET):
        raise InvalidArgument(f"logger: journald is not running on this host (no"
                              f" {JOURNAL_SOCKET}): use another --log-driver")
    if driver not in FILE_DRIVERS:
        return LogPolicy(driver)
    if "path" in opts:
        path = opts["path"]
        if not path.startswith("/") or path.endswith("/"):
            raise InvalidArgument(f"log opt path {path!r}: must be an absolute file path")
        if ":" in path or "\n" in path:
            raise InvalidArgument(f"log opt path {path!r}: must not contain ':' or a"
                                  " newline")
    if driver == "local":
        opts = {**_LOCAL_DEFAULTS, **opts}
    max_size: int | None = None
    if "max-size" in opts:
        from ketch.fmt.units import parse_size

        max_size = parse_size(opts["max-size"])
        if max_size <= 0:
            raise InvalidArgument("max-size must be a positive number")
    max_file = 1
    if "max-file" in opts:
        text = opts["max-file"]
        digits = text[1:] if text[:1] in ("+", "-") else text
        if not (digits.isdigit() and digits.isascii()):  # Go's strconv.Atoi
            raise InvalidArgument(f'strconv.Atoi: parsing "{text}": invalid syntax')
        max_file = int(text)
        if max_file < 1:
            raise InvalidArgument("max-file cannot be less than 1")
        if max_file > 1 and max_size is None:
            raise InvalidArgument("max-file cannot be greater than 1 when max-size is not"
                                  " set: nothing would ever be rotated")
    compress = False
    if "compress" in opts:
        try:
            compress = _go_bool(opts["compress"])
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
        if compress and driver == "local" and max_file < 2:
            raise InvalidArgument("compression cannot be enabled when max file count is"
                                  f" {max_file}")
        if compress and (max_file == 1 or max_size is None):
            raise InvalidArgument("compress cannot be true when max-file is less than 2 or"
                                  " max-size is not set")
    return LogPolicy(driver, max_size, max_file, compress)


def log_files(path: Path) -> list[Path]:
    """Every file of a container's log, oldest first."""
    return [*rotated_paths(path), *([path] if path.exists() else [])]


def _shift(path: Path, max_file: int) -> None:
    """ctr.log.k → ctr.log.k+1, dropping the oldest kept: `.1` is then free."""
    import contextlib

    def name(n: int, gz: bool) -> Path:
        return path.with_name(f"{path.name}.{n}" + (".gz" if gz else ""))

    for gz in (False, True):
        with contextlib.suppress(FileNotFoundError):
            name(max_file - 1, gz).unlink()
    for n in range(max_file - 2, 0, -1):
        for gz in (False, True):
            with contextlib.suppress(FileNotFoundError):
                os.rename(name(n, gz), name(n + 1, gz))


def _private(name: str, flags: int) -> int:
    return os.open(name, flags, 0o600)


def _gzip_file(src: Path, packed: Callable[[int], None] | None = None) -> None:
    """`src` → `src.gz`, by a gzip process at low priority: in this process it would
    hold the interpreter the keeper needs to act in time (Python's gzip module where
    there is no gzip binary)."""
    import contextlib

    dst = src.with_name(src.name + ".gz")
    tmp = src.with_name(src.name + ".gz.tmp")
    try:
        with open(src, "rb") as fin, open(tmp, "wb", opener=_private) as fout:
            from shutil import which

            if which("gzip"):
                import subprocess

                subprocess.run(["nice", "-n", "10", "gzip", "-6", "-c"], stdin=fin,
                               stdout=fout, check=True)
            else:
                import gzip
                import shutil

                with gzip.open(fout, "wb") as out:
                    shutil.copyfileobj(fin, out, BLOCK)
            if packed is not None:
                packed(os.fstat(fout.fileno()).st_ino)  # recorded before it is visible
        os.rename(tmp, dst)
        src.unlink()
    except (FileNotFoundError, OSError, ValueError, RuntimeError):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _alive(pid: int) -> bool:
    import contextlib

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for us
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    return True


_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 0x01, 0x02
_PUNCH_ALIGN = 1 << 16  # punch whole 64 KiB pieces: any filesystem block size divides it


def _punch(fd: int, length: int) -> bool:
    """Free the disk blocks of the file's first `length` bytes (they then read as
    zeros); the size and every offset stay as they are. False when not supported."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    length -= length % _PUNCH_ALIGN
    if length <= 0:
        return True
    return libc.fallocate(fd, _FALLOC_FL_KEEP_SIZE | _FALLOC_FL_PUNCH_HOLE, 0, length) == 0


def start_offset(path: StrPath) -> int:
    """Where a log's records begin: past what the keeper has rotated out (0 if none)."""
    try:
        with open(os.fspath(path) + ".start", "rb") as f:
            return int(f.read() or b"0")
    except (FileNotFoundError, ValueError):
        return 0


def _set_start(path: Path, offset: int) -> None:
    name = path.with_name(path.name + ".start")
    tmp = name.with_name(name.name + ".tmp")
    with open(tmp, "wb", opener=_private) as f:
        f.write(b"%d" % offset)
    os.rename(tmp, name)


class _Manifest:
    """The keeper's `<log>.gens` (see _generations), rewritten whole and atomically."""

    def __init__(self, path: Path, keep: int) -> None:
        import threading

        self.path = path
        self.name = path.with_name(path.name + ".gens")
        self.keep = keep
        self.live = -1
        self.ranges: dict[int, tuple[int, int]] = {}
        self.lock = threading.Lock()

    def restart(self, live_ino: int, keep_ranges: bool) -> None:
        with self.lock:
            if not keep_ranges:
                self.ranges.clear()
            else:
                self.ranges = _generations(self.path)[1]
            self.live = live_ino
            self._write()

    def add(self, ino: int, first: int, end: int) -> None:
        with self.lock:
            self._add(ino, (first, end))

    def same_as(self, ino: int, other: int) -> None:
        """`ino` holds what `other` holds (its gzip copy)."""
        with self.lock:
            if other in self.ranges:
                self._add(ino, self.ranges[other])

    def _add(self, ino: int, span: tuple[int, int]) -> None:
        self.ranges.pop(ino, None)  # an inode freed by a dropped generation, reused
        self.ranges[ino] = span
        while len(self.ranges) > self.keep:
            del self.ranges[next(iter(self.ranges))]
        self._write()

    def _write(self) -> None:
        tmp = self.name.with_name(self.name.name + ".tmp")
        lines = [b"%d" % self.live, *(b"%d %d %d" % (ino, a, b)
                                      for ino, (a, b) in self.ranges.items())]
        with open(tmp, "wb", opener=_private) as f:
            f.write(b"\n".join(lines) + b"\n")
        os.rename(tmp, self.name)


def _rotate_out(f: BinaryIO, path: Path, start: int, size: int, max_size: int,
                pending: Path, manifest: _Manifest) -> int:
    """One rotation step: copy max-size bytes of whole records from `start` (or one
    huge record) to `pending`, record it, move the start past it and punch it out of
    the live file. Returns the new start."""
    f.seek(start)
    head = f.read(max_size)
    cut = start + _clean_cut(head)
    if cut == start:
        cut = _last_newline(f, size)
        if cut <= start:
            cut = size
    out = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        _copy_range(f.fileno(), out, start, cut - start)
        copied = os.fstat(out).st_ino
    finally:
        os.close(out)
    # readers can find the copy (by inode) before the start moves past it, and the start
    # moves before the punch: see _checked
    manifest.add(copied, start, cut)
    _set_start(path, cut)
    _punch(f.fileno(), cut - 1)  # the newline before the new start stays readable
    return cut


_CUT_WINDOW = 64  # records looked back over for a clean cut (a line's pieces are 8 KiB)


def _clean_cut(head: bytes) -> int:
    """Where to end a generation in `head`: after its last whole record at which no
    stream is inside a line that came in pieces (P records up to the F that ends it),
    so that no generation begins with the end of a line whose start a removed one held.
    Looked for among the last _CUT_WINDOW records; a longer chain is cut after its last
    record there, as any record end. 0 when `head` holds no whole record."""
    end = head.rfind(b"\n") + 1
    if end == 0:
        return 0
    ends: list[int] = []  # the end offsets of the window's records, last first
    kinds: list[tuple[bytes, bytes]] = []  # their (stream, tag)
    pos = end
    while pos > 0 and len(ends) < _CUT_WINDOW:
        begin = head.rfind(b"\n", 0, pos - 1) + 1
        parts = head[begin:pos].split(b" ", 3)
        ends.append(pos)
        kinds.append((parts[1], parts[2]) if len(parts) == 4 else (b"", b"F"))
        pos = begin
    for i, cut in enumerate(ends):
        # cutting after record i: each stream's last record before the cut decides
        last: dict[bytes, bytes] = {}
        for stream, tag in kinds[i:]:
            last.setdefault(stream, tag)
        if b"P" not in last.values():
            return cut
    return end


def keep_rotating(path: Path, conmon_pid: int, max_size: int, max_file: int,
                  compress: bool, ready: Callable[[], None] | None = None) -> None:
    """The keeper: rotate a log conmon keeps appending to, while conmon runs.

    conmon can only start its file over (losing it), and cannot be told to reopen it.
    So conmon keeps one file and never stops appending, and when the records past the
    start offset reach max-size the keeper copies them (in the kernel) to a new
    generation `.1` (older ones shift, the oldest goes), moves the start offset
    (`<log>.start`, which readers honour) past them and frees their disk blocks with a
    hole punch: the file's size grows, its disk use does not. Nothing is lost however
    late the keeper runs, and neither conmon nor the container ever waits for it; gzip
    runs in a worker thread (as a low-priority gzip process).
    """
    import contextlib
    import queue
    import threading
    from functools import partial

    done: queue.Queue[Path | None] = queue.Queue()

    def finish_generations() -> None:
        while (pending := done.get()) is not None:
            _shift(path, max_file)
            first = path.with_name(f"{path.name}.1")
            try:
                os.rename(pending, first)
            except FileNotFoundError:
                continue
            if compress:
                with contextlib.suppress(OSError):
                    plain = os.stat(first).st_ino
                    _gzip_file(first, partial(manifest.same_as, other=plain))

    # generations by inode: the kept ones, a gzip copy each and a few being finished
    manifest = _Manifest(path, 2 * max_file + 8)
    worker = threading.Thread(target=finish_generations, daemon=True)
    worker.start()
    seq = 0
    f: BinaryIO | None = None
    start = 0
    last_size, last_time = 0, time.monotonic()
    try:
        while True:
            alive = _alive(conmon_pid)
            if f is None or _rotated(f, path, 0):
                # first round, or conmon started the file over (its backstop limit)
                if f is not None:
                    f.close()
                try:
                    f = open(path, "r+b")
                except FileNotFoundError:
                    f = None
                    if not alive:
                        return
                    time.sleep(0.05)
                    continue
                start = start_offset(path)
                live = os.fstat(f.fileno())
                if start > live.st_size:
                    start = 0
                    _set_start(path, 0)
                # offsets recorded for this same file stay valid (a restarted keeper)
                manifest.restart(live.st_ino, _generations(path)[0] == live.st_ino
                                 and start > 0)
                if ready is not None:
                    ready()  # from here on nothing conmon writes can be lost
                    ready = None
            size = os.fstat(f.fileno()).st_size
            if size - start >= max_size:
                seq += 1
                pending = path.with_name(f"{path.name}.done{seq}")
                start = _rotate_out(f, path, start, size, max_size, pending, manifest)
                done.put(pending)
                last_size, last_time = 0, time.monotonic()
                continue
            if not alive:
                return
            # poll sooner as the file nears max-size; a late poll only lets the file
            # grow past it for a moment, it never loses anything
            now = time.monotonic()
            rate = (size - last_size) / max(now - last_time, 1e-3) if last_size else 0
            last_size, last_time = size, now
            room = start + max_size - size
            time.sleep(0.25 if rate <= 0 else min(0.25, max(0.005, room / rate / 2)))
    finally:
        done.put(None)
        worker.join()
        if f is not None:
            f.close()


def _copy_range(src: int, dst: int, offset: int, count: int) -> None:
    while count > 0:
        try:
            n = os.copy_file_range(src, dst, count, offset)
        except OSError:
            n = 0
        if n <= 0:  # not supported between these files: copy through memory
            os.lseek(src, offset, os.SEEK_SET)
            data = os.read(src, min(count, BLOCK))
            if not data:
                return
            n = os.write(dst, data)
        offset += n
        count -= n


def main(argv: list[str]) -> None:
    """`keep <log> <conmon pid> <max-size> <max-file> <0|1>`: the keeper's process
    (started by runtime/monitor.py). Its stdout is a pipe to the starting `ketch`: one
    line once the keeper is ready."""
    import contextlib
    from pathlib import Path

    def ready() -> None:
        with contextlib.suppress(OSError):
            os.write(1, b"ready\n")
            os.close(1)

    _cmd, log, pid, size, files, gz = argv
    # who the keeper is, for stop_keeper: its pid and start time (no pid reuse fools it)
    from ketch.procstat import record

    with contextlib.suppress(OSError):
        record(f"{log}.keeper", os.getpid())
    keep_rotating(Path(log), int(pid), int(size), int(files), gz == "1", ready)


def stop_keeper(log: str, timeout: float = 5.0) -> None:
    """End the log's keeper if it still runs, and return once it is gone: the container
    and its directory are being removed, and a keeper still shifting generations would
    put files back into the directory while it is emptied. Its `<log>.keeper` file
    names it (ketch.procstat). `rm` calls procstat itself, without loading this module."""
    from ketch.procstat import stop_recorded

    stop_recorded(f"{log}.keeper", timeout)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
