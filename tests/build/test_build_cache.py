"""The layer cache as the notes explain it, on the notes' optimised Dockerfile shape
(busybox stands in for node; the "install" writes the date, so a re-run is visible)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.build.conftest import Builder

DOCKERFILE = """\
FROM busybox
WORKDIR /app
COPY package.json /app
RUN echo installing; cat package.json; cat /proc/sys/kernel/random/uuid > /app/installed
COPY . /app
EXPOSE 80
CMD ["node", "server.js"]
"""

FILES = {
    "Dockerfile": DOCKERFILE,
    "package.json": '{"name": "demo", "dependencies": {}}\n',
    "server.js": "console.log('v1')\n",
}


def steps(output: str) -> dict[int, str]:
    """Step number -> "cache" | "run" | "new", from the classic builder's output."""
    out: dict[int, str] = {}
    current = 0
    for line in output.splitlines():
        m = re.match(r"Step (\d+)/\d+ : ", line)
        if m:
            current = int(m.group(1))
            out[current] = "new"
        elif line == " ---> Using cache":
            out[current] = "cache"
        elif line.startswith(" ---> Running in "):
            out[current] = "run"
    return out


def built_id(output: str) -> str:
    m = re.search(r"^Successfully built ([0-9a-f]{12})$", output, re.M)
    assert m, output
    return m.group(1)


def test_first_build_prints_every_step_and_tags(kb: Builder) -> None:
    ctx = kb.context(FILES)
    out = kb.build(ctx, "-t", "node-hello").stdout
    assert [line for line in out.splitlines() if line.startswith("Step ")] == [
        "Step 1/7 : FROM busybox", "Step 2/7 : WORKDIR /app",
        "Step 3/7 : COPY package.json /app",
        "Step 4/7 : RUN echo installing; cat package.json; cat /proc/sys/kernel/random/uuid > /app/installed",
        "Step 5/7 : COPY . /app", "Step 6/7 : EXPOSE 80",
        'Step 7/7 : CMD ["node", "server.js"]']
    assert "installing\n" in out and '{"name": "demo"' in out  # RUN output is streamed
    assert re.search(r"^ ---> Running in [0-9a-f]{12}$", out, re.M)
    assert re.search(r"^ ---> Removed intermediate container [0-9a-f]{12}$", out, re.M)
    assert out.rstrip().endswith("Successfully tagged node-hello:latest")
    assert kb.image_id("node-hello").split(":")[1].startswith(built_id(out))
    assert kb.run("node-hello", "cat", "/app/server.js") == "console.log('v1')\n"
    assert kb.inspect("node-hello", "{{json .Config.Cmd}}") == '["node","server.js"]'
    assert kb.inspect("node-hello", "{{json .Config.ExposedPorts}}") == '{"80/tcp":{}}'
    assert kb.inspect("node-hello", "{{.Config.WorkingDir}}") == "/app"


def test_unchanged_rebuild_reuses_every_step_with_the_same_id(kb: Builder) -> None:
    ctx = kb.context(FILES)
    first = kb.build(ctx, "-t", "app").stdout
    installed = kb.run("app", "cat", "/app/installed")
    # mtimes are not part of the checksum: touching a file keeps the cache
    os.utime(ctx / "package.json", (time.time() + 5, time.time() + 5))
    second = kb.build(ctx, "-t", "app").stdout
    assert steps(second) == {1: "new", 2: "cache", 3: "cache", 4: "cache", 5: "cache",
                             6: "cache", 7: "cache"}
    assert built_id(second) == built_id(first)
    assert kb.run("app", "cat", "/app/installed") == installed  # the date RUN stayed cached


def test_source_change_reruns_from_copy_dot_but_keeps_the_install(kb: Builder) -> None:
    ctx = kb.context(FILES)
    first = kb.build(ctx, "-t", "app").stdout
    installed = kb.run("app", "cat", "/app/installed")
    (ctx / "server.js").write_text("console.log('v2')\n")
    second = kb.build(ctx, "-t", "app").stdout
    assert steps(second) == {1: "new", 2: "cache", 3: "cache", 4: "cache", 5: "new",
                             6: "new", 7: "new"}
    assert built_id(second) != built_id(first)
    assert kb.run("app", "cat", "/app/server.js") == "console.log('v2')\n"
    assert kb.run("app", "cat", "/app/installed") == installed


def test_package_json_change_reruns_the_install(kb: Builder) -> None:
    ctx = kb.context(FILES)
    kb.build(ctx, "-t", "app")
    installed = kb.run("app", "cat", "/app/installed")
    (ctx / "package.json").write_text('{"name": "demo", "version": "2"}\n')
    out = kb.build(ctx, "-t", "app").stdout
    assert steps(out) == {1: "new", 2: "cache", 3: "new", 4: "run", 5: "new", 6: "new",
                          7: "new"}
    assert kb.run("app", "cat", "/app/installed") != installed


def test_mode_change_invalidates_copy(kb: Builder) -> None:
    ctx = kb.context(FILES)
    kb.build(ctx, "-t", "app")
    os.chmod(ctx / "server.js", 0o755)
    out = kb.build(ctx, "-t", "app").stdout
    assert steps(out)[4] == "cache" and steps(out)[5] == "new"


def test_no_cache_reruns_every_step_and_later_builds_reuse_the_new_images(kb: Builder) -> None:
    ctx = kb.context(FILES)
    first = kb.build(ctx, "-t", "app").stdout
    fresh = kb.build(ctx, "--no-cache", "-t", "app").stdout
    assert "Using cache" not in fresh
    assert steps(fresh)[4] == "run"
    assert built_id(fresh) != built_id(first)
    again = kb.build(ctx, "-t", "app").stdout
    assert built_id(again) == built_id(fresh)


def test_history_has_one_row_per_instruction(kb: Builder) -> None:
    ctx = kb.context(FILES)
    kb.build(ctx, "-t", "app")
    rows = kb("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Size}}",
              "app").stdout.splitlines()
    created_by = [r.rsplit("|", 1)[0] for r in rows]
    assert created_by[:6] == [
        '/bin/sh -c #(nop)  CMD ["node" "server.js"]',
        "/bin/sh -c #(nop)  EXPOSE 80/tcp",
        created_by[2],
        "/bin/sh -c echo installing; cat package.json; cat /proc/sys/kernel/random/uuid > /app/installed",
        created_by[4],
        "/bin/sh -c #(nop) WORKDIR /app",
    ]
    assert re.fullmatch(r"/bin/sh -c #\(nop\) COPY dir:[0-9a-f]{64} in /app ", created_by[2])
    assert re.fullmatch(r"/bin/sh -c #\(nop\) COPY file:[0-9a-f]{64} in /app ", created_by[4])
    sizes = [r.rsplit("|", 1)[1] for r in rows]
    assert sizes[0] == sizes[1] == sizes[5] == "0B"  # metadata steps add no layer
    assert sizes[3] != "0B"
    layers = kb.inspect("app", "{{len .RootFS.Layers}}")
    assert layers == "4"  # busybox + COPY + RUN + COPY


def test_cache_is_shared_between_contexts_with_equal_content(kb: Builder) -> None:
    a = kb.context(FILES, "a")
    b = kb.context(FILES, "b")
    first = kb.build(a, "-t", "one").stdout
    second = kb.build(b, "-t", "two").stdout
    assert built_id(first) == built_id(second)
    assert "Running in" not in second


def _age(ctx: Path) -> None:
    """Make every file of the context older than the checksum cache's racy window, so
    the first build remembers their digests (as for a checkout that sat for a while)."""
    old = time.time() - 3600
    for p in [ctx, *ctx.rglob("*")]:
        os.utime(p, (old, old))
    time.sleep(1.1)  # utime set the ctimes to now: let them leave the racy window too


def test_same_size_edit_with_the_mtime_put_back_still_misses(kb: Builder) -> None:
    """The remembered digest is keyed by more than size and mtime: an edit that keeps the
    size and restores the mtime (an editor, `touch -r`, a checkout) must re-run COPY."""
    ctx = kb.context(FILES)
    _age(ctx)
    kb.build(ctx, "-t", "app")
    assert steps(kb.build(ctx, "-t", "app").stdout)[5] == "cache"  # digests remembered
    server = ctx / "server.js"
    before = server.stat()
    server.write_text("console.log('v9')\n")  # same length as 'v1'
    os.utime(server, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert server.stat().st_size == before.st_size
    assert server.stat().st_mtime_ns == before.st_mtime_ns
    out = kb.build(ctx, "-t", "app").stdout
    assert steps(out) == {1: "new", 2: "cache", 3: "cache", 4: "cache", 5: "new",
                          6: "new", 7: "new"}
    assert kb.run("app", "cat", "/app/server.js") == "console.log('v9')\n"


def test_a_cached_step_whose_layer_is_gone_runs_again(kb: Builder) -> None:
    """A cache hit is checked against the store: an image whose layer directory is gone
    (a crash, or a removal racing the build) is not reused."""
    ctx = kb.context(FILES)
    kb.build(ctx, "-t", "app")
    top = kb.inspect("app", "{{json .GraphDriver.Data.UpperDir}}").strip('"')
    assert top.endswith("/diff") and Path(top).is_dir()  # the COPY . layer
    shutil.rmtree(top)
    out = kb.build(ctx, "-t", "app").stdout
    assert steps(out) == {1: "new", 2: "cache", 3: "cache", 4: "cache", 5: "new",
                          6: "new", 7: "new"}
    assert kb.run("app", "cat", "/app/server.js") == "console.log('v1')\n"


def test_unchanged_rebuild_loads_no_run_or_commit_machinery(kb: Builder) -> None:
    """A fully cached build only looks things up: the container, runtime, network,
    archive and snapshot code (and tarfile) load when a step misses, not before."""
    ctx = kb.context(FILES)
    kb.build(ctx, "-t", "app")
    env = dict(os.environ, KETCH_ROOT=str(kb.root), KETCH_RUN_ROOT=str(kb.root / "run"))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ketch", "build", "-t",
                           "app", str(ctx)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert set(steps(proc.stdout).values()) == {"new", "cache"}
    mods = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}
    unwanted = {m for m in mods if m.startswith((
        "ketch.containers", "ketch.runtime", "ketch.network", "ketch.archive",
        "ketch.builder.snapshot", "ketch.builder.watchdog", "ketch.oci.model", "tarfile"))}
    unwanted |= mods & {"ketch.builder.copy"}  # the copier; copyargs is what keys need
    assert not unwanted, unwanted


def test_builder_prune_all_drops_the_cache_of_images_that_stay(kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": "FROM busybox\nENV P=1\nRUN echo p > /p\n"})
    kb.build(ctx, "-t", "pruned")
    # without -a: dangling images only; the tagged image's steps are still cache
    kb("builder", "prune", "-f")
    assert kb.build(ctx, "-t", "pruned").stdout.count(" ---> Using cache") == 2
    kb("builder", "prune", "--all", "--force")
    out = kb.build(ctx, "-t", "pruned2").stdout
    assert " ---> Using cache" not in out
    assert kb.run("pruned2", "cat", "/p") == "p\n"
    assert kb.run("pruned", "cat", "/p") == "p\n"  # the image itself was kept


def test_builder_prune_filter_chooses_the_images_and_keep_storage_is_refused(
        kb: Builder) -> None:
    ctx = kb.context({"Dockerfile": "FROM busybox\nLABEL stage=old\nRUN echo a > /a\n"})
    first = kb.build(ctx, "-q").stdout.strip()
    kb.build(ctx, "-q", "--no-cache")  # the first image is now the only dangling one
    out = kb("builder", "prune", "-f", "--filter", "until=1000h").stdout
    assert first not in out  # newer than the cut-off: kept
    assert kb("image", "inspect", "-f", "{{.Id}}", first).stdout.strip() == first
    out = kb("builder", "prune", "-f", "--filter", "label=stage=old").stdout
    assert f"deleted: {first}" in out.lower()
    p = kb("builder", "prune", "-f", "--keep-storage", "1g", check=False)
    assert p.returncode == 1
    assert p.stderr == ("Error: --keep-storage is not supported: the classic builder's cache"
                        " is images, with no cache size to keep\n")
