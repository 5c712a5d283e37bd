"""`build --cache-from`: an image pulled from a registry into a fresh state root is the
build cache there, as with Docker's classic builder (its history says which step made
each entry): every step "Using cache" and the same image ID as where it was built."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.conftest import KetchCLI, require_root

DOCKERFILE = """\
FROM {base}
ENV GREETING=hello
ARG FLAVOUR=plain
RUN echo "$GREETING $FLAVOUR" > /greeting && mkdir /app
COPY app.txt /app/
WORKDIR /app
CMD ["cat", "/greeting", "/app/app.txt"]
"""


@pytest.fixture(autouse=True)
def _as_root() -> None:
    require_root()


def _context(tmp_path: Path, base: str, app: str = "the app\n") -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base))
    (ctx / "app.txt").write_text(app)
    return ctx


def _steps(build_output: str) -> list[str]:
    """Each step's line followed by " ---> Using cache" or not."""
    out = []
    for part in re.split(r"^Step \d+/\d+ : ", build_output, flags=re.M)[1:]:
        out.append(part.splitlines()[0] + (" [cached]" if " ---> Using cache" in part else ""))
    return out


def _published(ketch: KetchCLI, busybox_tar: Path, inproc_registry, tmp_path: Path
               ) -> tuple[str, str, str, Path]:
    """busybox and an app built on it, pushed: (registry, base name, app ID, context)."""
    reg = inproc_registry()
    base = f"{reg.host}/busybox:1"
    ketch("import", "-c", 'CMD ["sh"]', str(busybox_tar), base)
    ketch("push", base)
    ctx = _context(tmp_path, base)
    ketch("build", "-q", "-t", f"{reg.host}/app:1", str(ctx))
    app_id = ketch("image", "inspect", "-f", "{{.Id}}", f"{reg.host}/app:1").stdout.strip()
    ketch("push", f"{reg.host}/app:1")
    return reg.host, base, app_id, ctx


def test_build_cache_from_a_pulled_image_uses_the_cache_for_every_step(
        ketch: KetchCLI, busybox_tar: Path, inproc_registry, other_root,
        tmp_path: Path) -> None:
    host, base, app_id, ctx = _published(ketch, busybox_tar, inproc_registry, tmp_path)
    fresh = other_root("fresh")
    fresh("pull", base)
    fresh("pull", f"{host}/app:1")
    # without --cache-from nothing of the pulled image is cache
    plain = fresh("build", "-t", "plain", str(ctx)).stdout
    assert not any(s.endswith("[cached]") for s in _steps(plain)[1:])
    assert fresh("image", "inspect", "-f", "{{.Id}}", "plain").stdout.strip() != app_id

    other = other_root("fresh2")
    other("pull", base)
    other("pull", f"{host}/app:1")
    out = other("build", "--cache-from", f"{host}/app:1", "-t", "again", str(ctx)).stdout
    steps = _steps(out)
    assert len(steps) == 7
    assert all(s.endswith("[cached]") for s in steps[1:]), steps
    assert f"Successfully built {app_id[7:19]}" in out
    assert other("image", "inspect", "-f", "{{.Id}}", "again").stdout.strip() == app_id
    run = other("run", "--rm", "--network", "none", "again").stdout
    assert run == "hello plain\nthe app\n"


def test_build_cache_from_stops_matching_at_the_first_changed_step(
        ketch: KetchCLI, busybox_tar: Path, inproc_registry, other_root,
        tmp_path: Path) -> None:
    host, base, app_id, ctx = _published(ketch, busybox_tar, inproc_registry, tmp_path)
    fresh = other_root("fresh")
    fresh("pull", base)
    fresh("pull", f"{host}/app:1")
    (ctx / "app.txt").write_text("changed\n")
    out = fresh("build", "--cache-from", f"{host}/app:1", "--cache-from", "missing:1",
                "-t", "changed", str(ctx)).stdout
    cached = [s.endswith("[cached]") for s in _steps(out)]
    # ENV, ARG and RUN come from the pulled image; COPY and what follows run again
    assert cached == [False, True, True, True, False, False, False]
    assert fresh("run", "--rm", "--network", "none", "changed").stdout == \
        "hello plain\nchanged\n"
    # an intermediate image made from the source is cache for the next local build
    again = fresh("build", "-t", "changed2", str(ctx)).stdout
    assert all(s.endswith("[cached]") for s in _steps(again)[1:])

