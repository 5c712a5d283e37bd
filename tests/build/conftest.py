"""Fixtures for the builder tests: a ketch root with a busybox image, build contexts
written from dicts, and a check after every test that the build left nothing behind
(no container, no mount, no staging directory)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import KetchCLI, import_image, require_root, require_tool
from tests.helpers.host import mounts_under
from tests.helpers.rootfs import debian_rootfs_tar
from tests.helpers.shared_images import template_root

REPO = Path(__file__).resolve().parents[2]


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    return root


def leftovers(root: Path) -> list[str]:
    """What a finished build must not leave in a ketch root."""
    problems = []
    run = root / "run"
    # run/netns itself is the network service's shared mount (like /run/netns); the
    # namespaces below it belong to containers and must be gone.
    mnts = [m for m in mounts_under(root, run) if m != str(run / "netns")]
    if mnts:
        problems.append(f"mounts: {mnts}")
    containers = root / "containers"
    if containers.is_dir() and any(containers.iterdir()):
        problems.append(f"container dirs: {sorted(p.name[:12] for p in containers.iterdir())}")
    tmp = root / "tmp"
    if tmp.is_dir():
        staging = [p.name for p in tmp.iterdir()]
        if staging:
            problems.append(f"tmp/: {staging}")
    build_run = run / "build"
    if build_run.is_dir() and any(build_run.iterdir()):
        problems.append(f"run/build: {sorted(p.name for p in build_run.iterdir())}")
    return problems


@pytest.fixture(scope="session")
def build_prereqs() -> None:
    require_root()
    require_tool("runc")
    require_tool("conmon")


class Builder:
    """The `ketch` CLI with build helpers, on one test's ketch root."""

    def __init__(self, cli: KetchCLI, tmp: Path) -> None:
        self.cli = cli
        self.root = cli.root
        self.tmp = tmp
        self.allow_containers = False

    def __call__(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.cli(*args, **kw)  # type: ignore[arg-type]

    def context(self, files: dict[str, str | bytes], name: str = "ctx") -> Path:
        return write_tree(self.tmp / name, files)

    def build(self, ctx: Path | str, *args: str, check: bool = True,
              input: str | bytes | None = None, timeout: float = 180
              ) -> subprocess.CompletedProcess[str]:
        return self.cli("build", *args, str(ctx), check=check, input=input, timeout=timeout)

    def image_id(self, name: str) -> str:
        return self.cli("image", "inspect", "--format", "{{.Id}}", name).stdout.strip()

    def inspect(self, name: str, fmt: str) -> str:
        return self.cli("image", "inspect", "--format", fmt, name).stdout.strip()

    def run(self, image: str, *cmd: str) -> str:
        return self.cli("run", "--rm", image, *cmd).stdout


@pytest.fixture
def kb(build_prereqs: None, ketch: KetchCLI, busybox_tar: Path, tmp_path: Path
       ) -> Iterator[Builder]:
    import_image(ketch.root, busybox_tar, "busybox", 'CMD ["sh"]')
    b = Builder(ketch, tmp_path)
    yield b
    problems = leftovers(ketch.root)
    if problems and not b.allow_containers:
        # Leave the machine clean for the next test before failing this one.
        for c in ketch("ps", "-aq", "--no-trunc", check=False).stdout.split():
            ketch("rm", "-f", c, check=False)
        pytest.fail("the build left things behind: " + "; ".join(problems))
    if b.allow_containers:
        for c in ketch("ps", "-aq", "--no-trunc", check=False).stdout.split():
            ketch("rm", "-f", c, check=False)


# -- the real node image (Debian's nodejs + npm via mmdebstrap), made once ----------------


@pytest.fixture(scope="session")
def node_rootfs_tar() -> Path:
    """A bookworm root with Debian's nodejs and npm, kept between test sessions."""
    return debian_rootfs_tar("node")


@pytest.fixture(scope="session")
def node_template(tmp_path_factory: pytest.TempPathFactory, node_rootfs_tar: Path) -> Path:
    """`node:latest` (CMD ["node"]) imported once per test run, for link_images()."""
    return template_root(tmp_path_factory, node_rootfs_tar, "node:latest", 'CMD ["node"]')
