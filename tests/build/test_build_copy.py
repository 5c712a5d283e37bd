"""COPY and ADD: directory semantics, globs, ownership and modes, archives, URLs."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.build.conftest import Builder
from tests.helpers.host import serve_http

TREE = {
    "dir/a.txt": "a\n",
    "dir/sub/b.txt": "b\n",
    "one.txt": "one\n",
    "two.txt": "two\n",
    "notes.md": "md\n",
}


def test_directory_sources_copy_their_contents(kb: Builder) -> None:
    ctx = kb.context(TREE | {"Dockerfile": """\
FROM busybox
COPY dir /copied
COPY dir/ /existing/
COPY one.txt /renamed.txt
COPY one.txt /into/
COPY one.txt two.txt /both/
COPY *.txt /glob/
COPY d?r/sub/*.txt /deep/
WORKDIR /work
COPY one.txt .
COPY one.txt rel/
"""})
    kb.build(ctx, "-t", "copies")
    out = kb.run("copies", "sh", "-c", "cd / && find copied existing renamed.txt into both "
                 "glob deep work | sort")
    assert out.split() == sorted([
        "copied", "copied/a.txt", "copied/sub", "copied/sub/b.txt",
        "existing", "existing/a.txt", "existing/sub", "existing/sub/b.txt",
        "renamed.txt", "into", "into/one.txt", "both", "both/one.txt", "both/two.txt",
        "glob", "glob/one.txt", "glob/two.txt", "deep", "deep/b.txt",
        "work", "work/one.txt", "work/rel", "work/rel/one.txt"])
    assert kb.run("copies", "cat", "/copied/sub/b.txt", "/renamed.txt") == "b\none\n"


def test_ownership_modes_and_symlinks(kb: Builder) -> None:
    ctx = kb.context(TREE | {"Dockerfile": """\
FROM busybox
COPY dir /plain/
COPY --chown=www-data:33 dir /owned/
COPY --chown=1234 one.txt /numeric.txt
COPY --chmod=0751 one.txt /moded.txt
COPY links /links/
"""})
    (ctx / "dir" / "a.txt").chmod(0o640)
    (ctx / "links").mkdir()
    (ctx / "links" / "to-a").symlink_to("../dir/a.txt")
    kb.build(ctx, "-t", "owners")
    out = kb.run("owners", "stat", "-c", "%n %u:%g %a", "/plain/a.txt", "/owned",
                 "/owned/a.txt", "/owned/sub", "/numeric.txt", "/moded.txt")
    assert out.splitlines() == ["/plain/a.txt 0:0 640", "/owned 33:33 755",
                                "/owned/a.txt 33:33 640", "/owned/sub 33:33 755",
                                "/numeric.txt 1234:1234 644", "/moded.txt 0:0 751"]
    assert kb.run("owners", "readlink", "/links/to-a") == "../dir/a.txt\n"


def test_copy_errors(kb: Builder) -> None:
    missing = kb.context({"Dockerfile": "FROM busybox\nCOPY nothere.txt /x\n"}, "m")
    r = kb.build(missing, check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == ("COPY failed: file not found in build context or excluded"
                                " by .dockerignore: stat nothere.txt: file does not exist")
    several = kb.context(TREE | {"Dockerfile": "FROM busybox\nCOPY one.txt two.txt /x\n"},
                         "s")
    r = kb.build(several, check=False)
    assert r.returncode == 1
    assert "the destination must be a directory and end with a /" in r.stderr
    nomatch = kb.context({"Dockerfile": "FROM busybox\nCOPY *.none /x/\n"}, "n")
    r = kb.build(nomatch, check=False)
    assert r.stderr.strip() == "COPY failed: no source files were specified"
    outside = kb.context({"Dockerfile": "FROM busybox\nCOPY ../secret /x\n"}, "o")
    r = kb.build(outside, check=False)
    assert r.returncode == 1 and "outside the build context" in r.stderr
    chown = kb.context(TREE | {"Dockerfile": "FROM busybox\nCOPY --chown=nobody2 one.txt /\n"},
                       "c")
    r = kb.build(chown, check=False)
    assert r.returncode == 1 and "nobody2" in r.stderr


def _tar_bytes(files: dict[str, bytes], compress: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:" + compress) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.uid = ti.gid = 7
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_add_extracts_local_archives_and_copy_does_not(kb: Builder) -> None:
    ctx = kb.context({
        "Dockerfile": "FROM busybox\nADD app.tar.gz /opt/\nADD plain.tar /plain\n"
                      "COPY app.tar.gz /copied/\nADD one.txt /added.txt\n",
        "app.tar.gz": _tar_bytes({"app/bin/run": b"#!/bin/sh\n"}, "gz"),
        "plain.tar": _tar_bytes({"x.txt": b"x\n"}),
        "one.txt": "one\n",
    })
    kb.build(ctx, "-t", "adds")
    out = kb.run("adds", "sh", "-c", "stat -c '%n %u' /opt/app/bin/run; cat /plain/x.txt;"
                 " ls /copied; cat /added.txt")
    assert out == "/opt/app/bin/run 7\nx\napp.tar.gz\none\n"


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    with serve_http(directory=root) as server:
        yield f"http://127.0.0.1:{server.server_port}", root


def test_add_url_downloads_and_keys_the_cache_on_the_content(kb: Builder,
                                                             web: tuple[str, Path]) -> None:
    url, www = web
    (www / "data.txt").write_text("v1\n")
    ctx = kb.context({"Dockerfile": f"FROM busybox\nADD {url}/data.txt /dl/\n"
                                    f"ADD {url}/data.txt /named.txt\n"})
    kb.build(ctx, "-t", "urls")
    assert kb.run("urls", "stat", "-c", "%n %a", "/dl/data.txt", "/named.txt") == \
        "/dl/data.txt 600\n/named.txt 600\n"
    again = kb.build(ctx, "-t", "urls").stdout
    assert again.count("Using cache") == 2
    (www / "data.txt").write_text("v2\n")
    changed = kb.build(ctx, "-t", "urls").stdout
    assert "Using cache" not in changed
    assert kb.run("urls", "cat", "/dl/data.txt") == "v2\n"
    bad = kb.context({"Dockerfile": f"FROM busybox\nADD {url}/missing.txt /x\n"}, "bad")
    r = kb.build(bad, check=False)
    assert r.returncode == 1 and "missing.txt" in r.stderr
