"""The `ketch` launcher written by `python -m ketch.launcher` (scripts/install-deps.sh)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ketch


def _write(tmp_path: Path) -> Path:
    target = tmp_path / "ketch"
    proc = subprocess.run([sys.executable, "-m", "ketch.launcher", str(target)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote {target}"
    return target


def test_launcher_runs_ketch_isolated_from_the_callers_environment(tmp_path: Path) -> None:
    target = _write(tmp_path)
    text = target.read_text()
    first = text.splitlines()[0]
    assert first == f"#!{os.path.realpath(sys.executable)} -ISXutf8"
    assert os.access(target, os.X_OK)
    # ketch's source directory is on the launcher's path; the working directory of the
    # `python -m` that wrote it is not.
    src = os.path.dirname(os.path.dirname(ketch.__file__))
    assert repr(src) in text
    assert repr(str(tmp_path)) not in text
    # A module on PYTHONPATH named like one of ketch's must not shadow it: -I ignores it.
    decoy = tmp_path / "decoy"
    (decoy / "ketch").mkdir(parents=True)
    (decoy / "ketch" / "__init__.py").write_text("raise SystemExit('decoy imported')\n")
    env = dict(os.environ, PYTHONPATH=str(decoy))
    proc = subprocess.run([str(target), "--version"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"ketch version {ketch.__version__}\n"
    # and a real command reaches its module (the command table and argument parsing)
    proc = subprocess.run([str(target), "tag", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "Usage:  ketch tag" in proc.stdout


def test_launcher_skips_site(tmp_path: Path) -> None:
    target = _write(tmp_path)
    probe = tmp_path / "probe.py"
    # Run the launcher's own interpreter line on a probe: `site` must not have run.
    probe.write_text("import sys; print('site' in sys.modules, sys.flags.isolated,"
                     " sys.flags.utf8_mode)\n")
    first = target.read_text().splitlines()[0][2:].split()
    proc = subprocess.run([*first, str(probe)], capture_output=True, text=True,
                          env=dict(os.environ, LC_ALL="C.UTF-8"))
    assert proc.stdout.split() == ["False", "1", "1"]


def test_launcher_refuses_bad_usage(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ketch.launcher", "--bogus"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("usage:")
    proc = subprocess.run([sys.executable, "-m", "ketch.launcher",
                           str(tmp_path / "missing" / "ketch")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "cannot write" in proc.stderr


def test_installed_packages_cannot_shadow_the_standard_library(tmp_path: Path) -> None:
    # A launcher whose extra directory holds a `sqlite3` package: `ketch ps` must still
    # import the standard one, as a normal interpreter with site-packages would.
    from ketch.launcher import render

    shadow = tmp_path / "shadow"
    (shadow / "sqlite3").mkdir(parents=True)
    (shadow / "sqlite3" / "__init__.py").write_text("raise SystemExit('shadow imported')\n")
    src = os.path.dirname(os.path.dirname(ketch.__file__))
    target = tmp_path / "ketch"
    target.write_text(render(os.path.realpath(sys.executable), [str(shadow), src]))
    target.chmod(0o755)
    env = dict(os.environ, KETCH_ROOT=str(tmp_path / "root"))
    proc = subprocess.run([str(target), "ps", "-a"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("CONTAINER ID")


def test_ketch_runs_itself_again_through_the_launcher_it_came_through(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ketch.launcher import self_command

    target = _write(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(target), "run"])
    assert self_command() == [str(target)]
    # started as `python -m ketch` (argv[0] is ketch/__main__.py), by a script that is
    # not a launcher, or as `-c` code (the API service): the same interpreter with this
    # process's module path, which the bare interpreter may not have (a venv's)
    main = os.path.join(os.path.dirname(ketch.__file__), "__main__.py")
    other = tmp_path / "other"
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    for argv0 in (main, str(other), "ketch", "-c"):
        monkeypatch.setattr(sys, "argv", [argv0, "run"])
        argv = self_command()
        assert argv[:4] == [sys.executable, "-I", "-S", "-c"] and len(argv) == 5
    proc = subprocess.run([*argv, "--version"], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"]}, cwd="/")
    assert proc.returncode == 0 and proc.stdout.startswith("ketch version "), proc.stderr


def test_a_command_ends_without_teardown_yet_flushes_closes_and_keeps_its_exit_code(
        tmp_path: Path) -> None:
    # The launcher ends a command with os._exit (ketch.cli.main.exit_now): what is
    # written must still reach a pipe whole, the exit code must be the command's, and
    # the database's changes must all be in ketch.db (an empty WAL: nothing for later
    # commands to recover).
    target = _write(tmp_path)
    env = dict(os.environ, KETCH_ROOT=str(tmp_path / "root"),
               KETCH_RUN_ROOT=str(tmp_path / "run"))
    proc = subprocess.run([str(target), "ps", "-a", "--format", "json"], capture_output=True,
                          text=True, env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert (tmp_path / "root" / "ketch.db-wal").stat().st_size == 0
    big = subprocess.run([str(target), "image", "inspect", *[f"img{i}" for i in range(300)]],
                         capture_output=True, text=True, env=env)
    assert big.returncode == 1
    assert big.stdout == "[]\n"
    lines = big.stderr.splitlines()
    assert len(lines) == 300 and lines[-1] == "Error: No such image: img299:latest"
    bad = subprocess.run([str(target), "create", "--bogus-flag", "x"], capture_output=True,
                         text=True, env=env)
    assert bad.returncode == 125 and len(bad.stderr.splitlines()) == 1
    # `python -m ketch` ends the same way
    src = os.path.dirname(os.path.dirname(ketch.__file__))
    again = subprocess.run([sys.executable, "-I", "-S", "-c",
                            "import sys, runpy; sys.path.insert(0, sys.argv[1]);"
                            " sys.argv[1:2] = []; runpy.run_module('ketch', run_name='__main__')",
                            src, "image", "inspect", "nothing"],
                           capture_output=True, text=True, env=env)
    assert again.returncode == 1 and again.stderr == "Error: No such image: nothing:latest\n"
