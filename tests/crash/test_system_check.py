"""`ketch system check [--repair]`, and intents owned by a live process versus one whose
pid was reused (the owner is pid + start time, never the pid alone)."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

from tests.conftest import KetchCLI
from tests.crash.conftest import kill_when

from ketch.store.intents import start_time


def _intent(root: Path, kind: str, pid: int, started: str) -> None:
    conn = sqlite3.connect(root / "ketch.db")
    with conn:
        conn.execute("INSERT INTO intents (kind, subject, pid, started, created, data)"
                     " VALUES (?, '', ?, ?, ?, '{}')", (kind, pid, started, time.time()))
    conn.close()


def test_system_check_reports_a_killed_load_and_repair_removes_it(
        croot: KetchCLI, tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    croot("save", "-o", str(archive), "busybox")
    croot("rmi", "busybox")
    tmp = croot.root / "tmp"
    # killed the moment its staging appears, before it could record the image
    assert kill_when(croot, ["load", "-i", str(archive)],
                     lambda: tmp.is_dir() and any(tmp.iterdir()), 0.0)
    check = croot("system", "check", check=False)
    assert check.returncode == 1
    lines = check.stdout.splitlines()
    assert lines[0].startswith("found: images.write (process "), check.stdout
    assert any(line.startswith("found: staging load-") for line in lines), check.stdout
    assert any(tmp.iterdir())  # reporting changed nothing
    repair = croot("system", "check", "--repair")
    assert repair.stdout.startswith("repaired: images.write (process "), repair.stdout
    assert list(tmp.iterdir()) == []
    assert croot("system", "check").stdout == "No problems found\n"
    croot("load", "-i", str(archive))


def test_an_intent_of_a_live_owner_is_left_and_a_reused_pid_is_not_its_owner(
        croot: KetchCLI) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        started = start_time(sleeper.pid)
        assert started is not None
        croot("images")  # makes the intents table
        _intent(croot.root, "images.write", sleeper.pid, started)
        # the same pid with another start time: a dead owner whose pid was reused
        _intent(croot.root, "images.write", sleeper.pid, str(int(started) - 1))
        tmp = croot.root / "tmp"
        live = tmp / f"blob-{sleeper.pid}.{started}-live"
        dead = tmp / f"blob-{sleeper.pid}.{int(started) - 1}-dead"
        live.write_bytes(b"x")
        dead.write_bytes(b"x")
        check = croot("system", "check", check=False)
        assert check.returncode == 1
        assert len([x for x in check.stdout.splitlines() if "images.write" in x]) == 1
        croot("images")
        assert sorted(p.name for p in tmp.iterdir()) == [live.name]
        conn = sqlite3.connect(croot.root / "ketch.db")
        rows = conn.execute("SELECT pid, started FROM intents").fetchall()
        conn.close()
        assert rows == [(sleeper.pid, started)]
    finally:
        sleeper.kill()
        sleeper.wait()
    croot("images")  # its owner is gone now: recovered
    assert list((croot.root / "tmp").iterdir()) == []
    assert croot("system", "check").stdout == "No problems found\n"


def test_system_check_finds_pinned_pod_namespaces_of_a_removed_container_and_repair_drops_them(
        croot: KetchCLI) -> None:
    # an infra whose record went (a store edited by hand) without its release: its IPC
    # and UTS namespaces would stay pinned, and nothing else would ever drop them
    from ketch.network import netns

    netns_dir = croot.root / "run" / "netns"
    cid = "ab" * 32
    pins = {kind: netns_dir / f"{cid}-{kind}" for kind in ("ipc", "uts")}
    netns.pin(pins)
    try:
        check = croot("system", "check", check=False)
        assert check.returncode == 1
        assert (f"found: pinned namespaces of removed container {cid[:12]}"
                in check.stdout.splitlines()), check.stdout
        repair = croot("system", "check", "--repair")
        assert (f"repaired: pinned namespaces of removed container {cid[:12]}"
                in repair.stdout.splitlines()), repair.stdout
        assert list(netns_dir.iterdir()) == []
        mounts = Path("/proc/self/mountinfo").read_text()
        assert not [p for p in pins.values() if f" {p} " in mounts]
        assert croot("system", "check").stdout == "No problems found\n"
    finally:
        for p in pins.values():
            netns.remove(p)
        netns.release_dir(netns_dir)
