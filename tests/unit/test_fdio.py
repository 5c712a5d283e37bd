"""ketch.fdio.write_all: every byte arrives although signals cut pipe writes short."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from ketch.fdio import WholeFile, write_all

R = TypeVar("R")


def _into_a_slow_pipe(write: Callable[[int], R]) -> tuple[R, bytes]:
    """`write(fd)` to a pipe whose reader is slower than the writer (the pipe stays
    full, so writes block), while a handled SIGALRM comes every 2 ms: (what `write`
    returned, every byte the reader got)."""
    r, w = os.pipe()
    got = bytearray()

    def read() -> None:
        while True:
            time.sleep(0.0005)
            data = os.read(r, 4096)
            if not data:
                return
            got.extend(data)

    reader = threading.Thread(target=read)
    reader.start()
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
    try:
        result = write(w)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.close(w)
        reader.join()
        os.close(r)
    return result, bytes(got)


def test_a_bare_write_to_a_full_pipe_returns_short_when_a_signal_is_handled() -> None:
    # what write_all is for: the condition really makes os.write write less
    data = os.urandom(1 << 20)
    counts, got = _into_a_slow_pipe(lambda w: [os.write(w, data) for _ in range(3)])
    assert min(counts) < len(data)
    assert len(got) == sum(counts)


def test_write_all_writes_every_byte_in_order_under_the_same_signals() -> None:
    data = os.urandom(3 << 20)
    _, got = _into_a_slow_pipe(lambda w: write_all(w, data))
    assert got == data


def test_write_all_takes_a_memoryview_slice_and_raises_on_a_closed_reader() -> None:
    r, w = os.pipe()
    buf = bytearray(b"0123456789")
    write_all(w, memoryview(buf)[2:6])
    assert os.read(r, 100) == b"2345"
    os.close(r)
    previous = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        try:
            write_all(w, b"x")
        except BrokenPipeError:
            pass
        else:
            raise AssertionError("a write to a pipe without a reader did not raise")
    finally:
        signal.signal(signal.SIGPIPE, previous)
        os.close(w)


def test_whole_files_written_to_one_path_by_two_threads_at_once_end_whole(tmp_path) -> None:
    # each thread's temporary file is its own: the path ends as one of the two files,
    # whole, and nothing else is left beside it
    target = str(tmp_path / "out.tar")
    bodies = [bytes([n]) * 1_000_000 for n in (1, 2)]
    barrier = threading.Barrier(2, timeout=30)  # (a thread that fails early breaks it)
    errors: list[BaseException] = []

    def write(body: bytes) -> None:
        try:
            with WholeFile(target) as f:
                f.write(body[:500_000])
                barrier.wait()
                f.write(body[500_000:])
                barrier.wait()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with open(target, "rb") as f:
        assert f.read() in bodies
    assert os.listdir(tmp_path) == ["out.tar"]


def test_remove_file_removes_a_file_and_takes_a_missing_one_as_done(tmp_path) -> None:
    from ketch.fdio import read_text, remove_file

    f = tmp_path / "pid"
    f.write_bytes("4242 ünïcode\n".encode())
    assert read_text(str(f)) == "4242 ünïcode\n"
    remove_file(str(f))
    assert not f.exists()
    remove_file(str(f))  # (gone already: no error)
    with pytest.raises(IsADirectoryError):
        remove_file(str(tmp_path))  # a directory is not a file it removes
