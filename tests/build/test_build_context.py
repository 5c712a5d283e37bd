""".dockerignore, and contexts from a directory, a tarball or stdin; -f anywhere."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

from tests.build.conftest import Builder
from tests.conftest import ketch_command

LIST = "FROM busybox\nCOPY . /ctx/\nCMD [\"find\", \"/ctx\"]\n"


def listing(kb: Builder, image: str) -> list[str]:
    return sorted(kb.run(image, "find", "/ctx", "-mindepth", "1").split())


def test_dockerignore_patterns_exceptions_and_the_kept_dockerfile(kb: Builder) -> None:
    ctx = kb.context({
        "Dockerfile": LIST,
        ".dockerignore": "# comment\n*.md\n!README.md\nnode_modules\n/build/\n"
                         "**/*.log\n./secret.txt\nDockerfile\n",
        "README.md": "keep\n", "CHANGES.md": "drop\n",
        "node_modules/dep/index.js": "drop\n", "build/out.bin": "drop\n",
        "src/app.js": "keep\n", "src/deep/debug.log": "drop\n", "top.log": "drop\n",
        "secret.txt": "drop\n", "src/build/keep.txt": "keep\n",
    })
    kb.build(ctx, "-t", "ignored")  # the Dockerfile is read although it is ignored
    assert listing(kb, "ignored") == sorted([
        "/ctx/.dockerignore", "/ctx/README.md", "/ctx/src", "/ctx/src/app.js",
        "/ctx/src/build", "/ctx/src/build/keep.txt", "/ctx/src/deep"])
    # ignored files are not part of the checksum either
    (ctx / "CHANGES.md").write_text("changed\n")
    (ctx / "node_modules" / "dep" / "index.js").write_text("changed\n")
    out = kb.build(ctx, "-t", "ignored").stdout
    assert "Step 2/3 : COPY . /ctx/\n ---> Using cache" in out


def test_copy_of_an_ignored_file_fails_naming_it(kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": "FROM busybox\nCOPY secret.txt /\n",
                      ".dockerignore": "secret.txt\n", "secret.txt": "s\n"})
    r = kb.build(ctx, check=False)
    assert r.returncode == 1
    assert "stat secret.txt: file does not exist" in r.stderr


def _tar_of(root: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for p in sorted(root.rglob("*")):
            tf.add(p, arcname=str(p.relative_to(root)), recursive=False)
    return buf.getvalue()


def test_context_from_a_tarball_and_from_stdin(kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": LIST, "a.txt": "a\n", ".dockerignore": "b.txt\n",
                      "b.txt": "b\n"})
    data = _tar_of(ctx)
    tarball = kb.tmp / "ctx.tar.gz"
    tarball.write_bytes(data)
    kb.build(tarball, "-t", "fromtar")
    assert listing(kb, "fromtar") == ["/ctx/.dockerignore", "/ctx/Dockerfile", "/ctx/a.txt"]
    # the CLI helper speaks text; a gzip stream on stdin goes through raw bytes
    env = dict(os.environ, KETCH_ROOT=str(kb.root), KETCH_RUN_ROOT=str(kb.root / "run"))
    proc = subprocess.run([*ketch_command(), "build", "-t", "fromstdin", "-"],
                          input=data, capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert listing(kb, "fromstdin") == listing(kb, "fromtar")


def test_dockerfile_from_stdin_and_outside_the_context(kb: Builder) -> None:
    ctx = kb.context({"a.txt": "a\n"})
    out = kb.cli("build", "-f", "-", "-t", "dfstdin", str(ctx),
                 input="FROM busybox\nCOPY a.txt /\n").stdout
    assert "Successfully tagged dfstdin:latest" in out
    outside = kb.tmp / "elsewhere" / "Build.file"
    outside.parent.mkdir()
    outside.write_text("FROM busybox\nCOPY a.txt /from-outside.txt\n")
    kb.build(ctx, "-f", str(outside), "-t", "dfout")
    assert kb.run("dfout", "cat", "/from-outside.txt") == "a\n"
    # `docker build - < Dockerfile`: a Dockerfile on stdin and no context at all
    out = kb.cli("build", "-t", "nocontext", "-",
                 input="FROM busybox\nRUN echo no-context\n").stdout
    assert "no-context" in out


def test_missing_context_and_dockerfile(kb: Builder) -> None:
    r = kb.build(kb.tmp / "nope", check=False)
    assert r.returncode == 1
    assert r.stderr.strip().startswith('unable to prepare context: path "')
    empty = kb.context({"x": "x"}, "empty")
    r = kb.build(empty, check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == "Cannot locate specified Dockerfile: Dockerfile"
    r = kb.build(empty, "-f", "Other.dockerfile", check=False)
    assert r.stderr.strip() == "Cannot locate specified Dockerfile: Other.dockerfile"
