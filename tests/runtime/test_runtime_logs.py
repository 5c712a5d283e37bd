"""Reading conmon's k8s-file logs: streams, partial lines, tail, since/until, follow."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pytest

from ketch.runtime.logs import (
    format_timestamp,
    iter_entries,
    parse_timestamp,
    read_log,
    write_log,
)

BASE = 1_700_000_000  # 2023-11-14T22:13:20Z


def stamp(sec: float, zone: str = "+00:00") -> str:
    whole = int(sec)
    frac = round((sec - whole) * 1e9)
    shift = 0
    if zone not in ("+00:00", "Z"):
        sign = 1 if zone[0] == "+" else -1
        shift = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    t = time.gmtime(whole + shift)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{frac:09d}{zone}"


def record(sec: float, stream: str, text: str, tag: str = "F", zone: str = "+00:00") -> str:
    return f"{stamp(sec, zone)} {stream} {tag} {text}\n"


def write(path: Path, records: list[str]) -> Path:
    path.write_text("".join(records))
    return path


def collect(path: Path, **kwargs: object) -> tuple[bytes, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    write_log(path, out, err, **kwargs)
    return out.getvalue(), err.getvalue()


def test_timestamps_parse_to_nanoseconds_in_any_zone():
    assert parse_timestamp(stamp(BASE + 0.5)) == BASE * 10**9 + 500_000_000
    assert parse_timestamp(stamp(BASE + 0.5, "+02:00")) == BASE * 10**9 + 500_000_000
    assert parse_timestamp(stamp(BASE, "-05:30")) == BASE * 10**9
    assert format_timestamp(BASE * 10**9 + 7) == "2023-11-14T22:13:20.000000007Z"


def test_streams_are_kept_apart_and_in_order(tmp_path: Path):
    log = write(tmp_path / "log", [record(BASE, "stdout", "one"), record(BASE, "stderr", "two"),
                                   record(BASE + 1, "stdout", "three")])
    chunks = list(read_log(log))
    assert [(c.stream, c.data) for c in chunks] == [
        ("stdout", b"one\n"), ("stderr", b"two\n"), ("stdout", b"three\n")]
    assert collect(log) == (b"one\nthree\n", b"two\n")


def test_partial_records_join_into_one_line(tmp_path: Path):
    log = write(tmp_path / "log", [record(BASE, "stdout", "hel", "P"),
                                   record(BASE, "stderr", "err", "F"),
                                   record(BASE, "stdout", "lo", "F"),
                                   record(BASE, "stdout", "no newline", "P")])
    out, err = collect(log)
    assert out == b"hello\nno newline"
    assert err == b"err\n"
    entries = list(iter_entries(log))
    assert [(e.stream, e.message, e.partial) for e in entries][0] == ("stdout", b"hel", True)


def test_timestamps_option_prints_dockers_utc_stamp_once_per_line(tmp_path: Path):
    log = write(tmp_path / "log", [record(BASE + 0.25, "stdout", "a"),
                                   record(BASE + 1, "stdout", "b", "P"),
                                   record(BASE + 1, "stdout", "c"),
                                   record(BASE + 2, "stderr", "d", zone="+02:00")])
    out, err = collect(log, timestamps=True)
    assert out == (b"2023-11-14T22:13:20.250000000Z a\n"
                   b"2023-11-14T22:13:21.000000000Z bc\n")
    assert err == b"2023-11-14T22:13:22.000000000Z d\n"


def test_non_utc_logs_are_converted_to_utc(tmp_path: Path):
    log = write(tmp_path / "log", [record(BASE + i, "stdout", f"l{i}", zone="+09:00")
                                   for i in range(3)])
    out, _ = collect(log, timestamps=True)
    assert out.splitlines()[2] == b"2023-11-14T22:13:22.000000000Z l2"


def test_tail_keeps_the_last_records(tmp_path: Path):
    log = write(tmp_path / "log", [record(BASE + i, "stdout", str(i)) for i in range(1000)])
    assert collect(log, tail=3)[0] == b"997\n998\n999\n"
    assert collect(log, tail=0)[0] == b""
    assert collect(log, tail=5000)[0].count(b"\n") == 1000


def test_tail_counts_a_line_written_in_pieces_once(tmp_path: Path):
    # conmon splits a line it read in several pieces into partial (P) records ended by
    # a full (F) one; `logs --tail N` still means the last N lines, as Docker's does
    records = []
    for i in range(200):
        if i % 3 == 0:
            records += [record(BASE + i, "stdout", f"{i}a", "P"),
                        record(BASE + i, "stdout", f"{i}b", "P")]
        records.append(record(BASE + i, "stdout", f"{i}" + ("c" if i % 3 == 0 else "")))
    log = write(tmp_path / "log", records)
    assert collect(log, tail=1)[0] == b"199\n"
    assert collect(log, tail=2)[0] == b"198a198b198c\n199\n"
    assert collect(log, tail=3)[0] == b"197\n198a198b198c\n199\n"
    assert collect(log, tail=100)[0].count(b"\n") == 100
    assert collect(log, tail=500)[0].count(b"\n") == 200


def test_since_and_until_bound_the_output_inclusively(tmp_path: Path):
    log = write(tmp_path / "log", [record(BASE + i, "stdout", str(i)) for i in range(100)])
    assert collect(log, since=BASE + 97)[0] == b"97\n98\n99\n"
    assert collect(log, until=BASE + 2)[0] == b"0\n1\n2\n"
    assert collect(log, since=BASE + 10.5, until=BASE + 12)[0] == b"11\n12\n"
    assert collect(log, since=BASE + 50, tail=2)[0] == b"98\n99\n"
    assert collect(log, since=BASE + 1000)[0] == b""


def test_an_unfinished_last_record_is_not_shown(tmp_path: Path):
    log = tmp_path / "log"
    log.write_text(record(BASE, "stdout", "done") + stamp(BASE) + " stdout F half")
    assert collect(log)[0] == b"done\n"


def test_missing_log_reads_as_empty(tmp_path: Path):
    assert list(read_log(tmp_path / "nope")) == []


def test_follow_streams_new_records_until_done_and_drained(tmp_path: Path):
    log = write(tmp_path / "log", [record(BASE, "stdout", "first")])
    done = threading.Event()

    def writer() -> None:
        with open(log, "a") as f:
            for i in range(5):
                time.sleep(0.05)
                f.write(record(BASE + 1 + i, "stdout" if i % 2 else "stderr", f"n{i}"))
                f.flush()
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    seen = list(read_log(log, follow=True, is_done=done.is_set, poll_interval=0.02))
    t.join()
    assert b"".join(c.data for c in seen if c.stream == "stdout") == b"first\nn1\nn3\n"
    assert b"".join(c.data for c in seen if c.stream == "stderr") == b"n0\nn2\nn4\n"


def test_follow_stops_at_until(tmp_path: Path):
    log = write(tmp_path / "log", [record(BASE + i, "stdout", str(i)) for i in range(3)])
    chunks = list(read_log(log, follow=True, until=BASE + 1, is_done=lambda: False))
    assert b"".join(c.data for c in chunks) == b"0\n1\n"


def test_streams_filter_keeps_only_the_asked_stream(tmp_path: Path):
    log = write(tmp_path / "log", [record(BASE, "stdout", "o"), record(BASE, "stderr", "e")])
    assert [c.data for c in read_log(log, streams=("stderr",))] == [b"e\n"]
    out = io.BytesIO()
    write_log(log, out, None)
    assert out.getvalue() == b"o\n"


def _million_line_log(path: Path) -> Path:
    head = stamp(BASE)[:19]
    lines = [f"{head}.{i % 10**9:09d}+00:00 stdout F line {i}\n" for i in range(1_000_000)]
    path.write_text("".join(lines))
    return path


@pytest.mark.slow
def test_a_million_lines_are_written_out_whole_and_tailed(tmp_path: Path):
    # (the speed of both is measured by bench/bench_containers.py's logs rows)
    log = _million_line_log(tmp_path / "big.log")
    target = tmp_path / "out"
    with open(target, "wb") as out:
        write_log(log, out, None)
    assert target.stat().st_size == sum(len(f"line {i}\n") for i in range(1_000_000))
    assert collect(log, tail=2)[0] == b"line 999998\nline 999999\n"


# --- the keeper's hole punch, between two reads of a reader ---------------------------


def _lines(first: int, count: int) -> list[str]:
    # ~100 bytes a record: 12,000 of them are more than one read block (1 MiB)
    return [record(BASE + i / 1000, "stdout", f"line {i} " + "padding " * 6)
            for i in range(first, first + count)]


def _expected(count: int) -> bytes:
    return b"".join(f"line {i} {'padding ' * 6}\n".encode() for i in range(count))


def _rotate(log: Path, manifest: object, seq: int, max_size: int) -> None:
    """One step of the keeper, exactly as keep_rotating takes it (the worker that later
    renames `.doneN` to `.1` is played by the test)."""
    from ketch.runtime.logs import _rotate_out, start_offset

    with open(log, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        start = start_offset(log)
        pending = log.with_name(f"{log.name}.done{seq}")
        _rotate_out(f, log, start, size, max_size, pending, manifest)  # type: ignore[arg-type]


def _keeper_manifest(log: Path) -> object:
    from ketch.runtime.logs import _Manifest

    m = _Manifest(log, 100)
    m.restart(os.stat(log).st_ino, False)
    return m


def test_logs_never_returns_bytes_the_keeper_punched_while_it_read(tmp_path: Path):
    log = write(tmp_path / "ctr.log", _lines(0, 30_000))  # ~3 MiB: three read blocks
    manifest = _keeper_manifest(log)
    reader = read_log(log)
    first = next(reader).data  # the first block is read: now the keeper rotates twice,
    _rotate(log, manifest, 1, 1 << 20)  # over what the reader is about to read
    _rotate(log, manifest, 2, 1 << 20)
    (tmp_path / "ctr.log.done1").rename(tmp_path / "ctr.log.2")  # the worker's shift
    (tmp_path / "ctr.log.done2").rename(tmp_path / "ctr.log.1")
    with open(log, "rb") as f:
        assert f.read(4096) == bytes(4096)  # punched: what a naive read gets
    data = first + b"".join(c.data for c in reader)
    assert b"\0" not in data
    assert data == _expected(30_000)
    # and a new reader sees the generations plus the rest of the live file, once each
    assert b"".join(c.data for c in read_log(log)) == _expected(30_000)


def test_logs_follow_reads_punched_records_from_the_generation_that_holds_them(
        tmp_path: Path):
    log = write(tmp_path / "ctr.log", _lines(0, 10))
    manifest = _keeper_manifest(log)
    done = threading.Event()
    reader = read_log(log, follow=True, is_done=done.is_set, poll_interval=0.01)
    got = [next(reader).data]  # the first ten lines, then it follows
    with open(log, "a") as f:
        f.write("".join(_lines(10, 29_990)))
    got.append(next(reader).data)  # the follower has read one block of the new records
    _rotate(log, manifest, 1, 2 << 20)  # the keeper moves out the part it reads next
    (tmp_path / "ctr.log.done1").rename(tmp_path / "ctr.log.1")
    done.set()
    got.extend(c.data for c in reader)
    data = b"".join(got)
    assert b"\0" not in data
    assert data == _expected(30_000)



def test_logs_reads_every_generation_once_in_order_while_the_keeper_shifts_names(
        tmp_path: Path):
    log = write(tmp_path / "ctr.log", _lines(0, 5000))
    manifest = _keeper_manifest(log)
    for seq in (1, 2, 3):
        _rotate(log, manifest, seq, 100_000)
    # caught in the middle of the keeper's shift: `.1` is free, the newest generation
    # is still `.done3`, and one name is seen twice (a hard link stands for a rename
    # that a directory listing can show under both names)
    (tmp_path / "ctr.log.done1").rename(tmp_path / "ctr.log.3")
    (tmp_path / "ctr.log.done2").rename(tmp_path / "ctr.log.2")
    os.link(tmp_path / "ctr.log.2", tmp_path / "ctr.log.4")
    assert not (tmp_path / "ctr.log.1").exists()
    assert b"".join(c.data for c in read_log(log)) == _expected(5000)
    last_two = b"".join(_expected(5000).splitlines(keepends=True)[-2:])
    assert b"".join(c.data for c in read_log(log, tail=2)) == last_two


def test_the_keeper_never_ends_a_generation_inside_a_line_that_came_in_pieces(
        tmp_path: Path):
    # conmon writes a long line as P pieces then an F; a generation that ended between
    # them would leave the next one (and, once the first goes, the log) beginning with
    # the end of a line. The cut goes back to before the pieces.
    whole = _lines(0, 40)
    pieces = [record(BASE + 1, "stdout", "long " * 20, "P"),
              record(BASE + 1, "stderr", "other stream", "F"),
              record(BASE + 1, "stdout", "line, continued " * 5, "P"),
              record(BASE + 1, "stdout", "and ended", "F")]
    log = write(tmp_path / "ctr.log", whole + pieces + _lines(40, 40))
    manifest = _keeper_manifest(log)
    max_size = len("".join(whole + pieces[:3]).encode())  # room for up to the last piece
    _rotate(log, manifest, 1, max_size)
    generation = (tmp_path / "ctr.log.done1").read_bytes()
    assert generation == "".join(whole).encode()  # ends before the first piece
    (tmp_path / "ctr.log.done1").rename(tmp_path / "ctr.log.1")
    # the live part begins with the first piece, and nothing is lost or doubled
    from ketch.runtime.logs import start_offset

    with open(log, "rb") as f:
        f.seek(start_offset(log))
        assert f.readline() == pieces[0].encode()
    out, err = collect(log)
    assert out == _expected(40) + b"long " * 20 + b"line, continued " * 5 + b"and ended\n" \
        + b"".join(f"line {i} {'padding ' * 6}\n".encode() for i in range(40, 80))
    assert err == b"other stream\n"
