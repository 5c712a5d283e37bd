"""The storage driver contract, run against every driver ketch has (the filesystem one).

A new backend passes these before the registry may use it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ketch.registry.driver import FilesystemDriver, PathNotFound, StorageDriver

DRIVERS: dict[str, Callable[[Path], StorageDriver]] = {"filesystem": FilesystemDriver}


@pytest.fixture(params=sorted(DRIVERS))
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> StorageDriver:
    return DRIVERS[request.param](tmp_path / "store")


def test_put_and_get_content_round_trip(driver: StorageDriver) -> None:
    driver.put_content("a/b/c", b"hello")
    assert driver.get_content("a/b/c") == b"hello"
    driver.put_content("a/b/c", b"replaced")
    assert driver.get_content("a/b/c") == b"replaced"
    assert driver.stat("a/b/c").size == 8
    assert driver.stat("a/b").is_dir


def test_missing_paths_raise_path_not_found(driver: StorageDriver) -> None:
    for op in (lambda: driver.get_content("nope"), lambda: driver.stat("nope"),
               lambda: driver.list("nope"), lambda: driver.delete("nope"),
               lambda: driver.reader("nope"), lambda: driver.move("nope", "x"),
               lambda: list(driver.walk("nope"))):
        with pytest.raises(PathNotFound):
            op()


def test_writer_appends_and_commits_atomically(driver: StorageDriver) -> None:
    w = driver.writer("up/data")
    w.write(b"abc")
    with pytest.raises(PathNotFound):
        driver.stat("up/data")  # not visible before commit
    w.commit()
    w2 = driver.writer("up/data", append=True)
    assert w2.size == 3
    w2.write(b"def")
    w2.commit()
    with driver.reader("up/data", offset=2) as f:
        assert f.read() == b"cdef"
    cancelled = driver.writer("up/other")
    cancelled.write(b"x")
    cancelled.cancel()
    assert driver.list("up") == ["data"]


def test_list_move_delete_and_walk(driver: StorageDriver) -> None:
    driver.put_content("r/x/1", b"1")
    driver.put_content("r/x/2", b"2")
    driver.put_content("r/y", b"y")
    assert driver.list("r") == ["x", "y"]
    driver.move("r/y", "s/y")
    assert driver.get_content("s/y") == b"y"
    assert [i.path for i in driver.walk("r")] == ["r/x", "r/x/1", "r/x/2"]
    driver.delete("r/x")
    assert driver.list("r") == []


def test_paths_cannot_escape_the_root(driver: StorageDriver) -> None:
    with pytest.raises(ValueError):
        driver.put_content("../escape", b"x")
