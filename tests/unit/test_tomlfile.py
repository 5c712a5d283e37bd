"""ketch.tomlfile: a state root's TOML files are parsed once per change; the commands
after that read the kept parse without importing tomllib."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ketch import tomlfile
from ketch.errors import InvalidArgument

TEXT = '[network]\nbridge_name = "kt0"\npool_prefixlen = 26\ndns_upstreams = []\n'

PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
from ketch import tomlfile
from ketch.errors import InvalidArgument
data = tomlfile.read(sys.argv[2], sys.argv[3])
print(data["network"]["bridge_name"], "tomllib" in sys.modules)
"""


def _read_in_a_fresh_process(path: Path, root: Path) -> str:
    import ketch

    src = os.path.dirname(os.path.dirname(ketch.__file__))
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", PROBE, src, str(path), str(root)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_second_read_comes_from_the_kept_parse_without_tomllib(tmp_path: Path) -> None:
    conf = tmp_path / "network.toml"
    conf.write_text(TEXT)
    assert _read_in_a_fresh_process(conf, tmp_path) == "kt0 True\n"
    assert (tmp_path / "cache" / "network.toml.json").is_file()
    assert _read_in_a_fresh_process(conf, tmp_path) == "kt0 False\n"
    assert tomlfile.read(str(conf), str(tmp_path)) == tomllib.loads(TEXT)


def test_an_edit_is_read_even_at_the_same_size_and_time(tmp_path: Path) -> None:
    conf = tmp_path / "ketch.toml"
    conf.write_text(TEXT)
    tomlfile.read(str(conf), str(tmp_path))
    st = conf.stat()
    conf.write_text(TEXT.replace("kt0", "kt1"))  # same size
    os.utime(conf, ns=(st.st_atime_ns, st.st_mtime_ns))  # same modification time
    assert tomlfile.read(str(conf), str(tmp_path))["network"]["bridge_name"] == "kt1"
    # and a file put in its place
    new = tmp_path / "new.toml"
    new.write_text(TEXT.replace("kt0", "kt2"))
    new.replace(conf)
    assert tomlfile.read(str(conf), str(tmp_path))["network"]["bridge_name"] == "kt2"


def test_a_file_outside_the_root_and_a_date_are_parsed_each_time(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    elsewhere = tmp_path / "network.toml"
    elsewhere.write_text(TEXT)
    assert tomlfile.read(str(elsewhere), str(root)) == tomllib.loads(TEXT)
    dated = root / "ketch.toml"
    dated.write_text("when = 1979-05-27\n")
    assert str(tomlfile.read(str(dated), str(root))["when"]) == "1979-05-27"
    assert not (root / "cache").exists()


def test_bad_toml_raises_and_keeps_nothing_and_an_unwritable_cache_is_no_error(
        tmp_path: Path) -> None:
    conf = tmp_path / "ketch.toml"
    conf.write_text("[containers\n")
    with pytest.raises(InvalidArgument, match=r"^cannot read .*ketch\.toml: Expected ']'"):
        tomlfile.read(str(conf), str(tmp_path))
    assert not (tmp_path / "cache").exists()
    with pytest.raises(InvalidArgument, match=r"^cannot read .*missing\.toml: \[Errno 2\]"):
        tomlfile.read(str(tmp_path / "missing.toml"), str(tmp_path))
    (tmp_path / "cache").write_text("not a directory")
    conf.write_text(TEXT)
    assert tomlfile.read(str(conf), str(tmp_path)) == tomllib.loads(TEXT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "ketch.toml"]


def test_a_broken_network_toml_is_one_line_and_makes_nothing(ketch, ketch_root: Path) -> None:
    conf = ketch_root / "network.toml"
    good = conf.read_text()
    conf.write_text("[network\n")
    try:
        for args in (["network", "ls"], ["network", "create", "n1"]):
            proc = ketch(*args, check=False)
            assert proc.returncode == 1, proc
            assert proc.stdout == ""
            assert proc.stderr == (f"Error: cannot read {conf}: Expected ']' at the end of a"
                                   " table declaration (at line 1, column 9)\n")
        assert not (ketch_root / "run" / "network").exists()
        assert not (ketch_root / "cache").exists()
    finally:
        conf.write_text(good)
    assert "n1" not in ketch("network", "ls", "--format", "{{.Name}}").stdout.split()
