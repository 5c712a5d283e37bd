"""Volumes seeded from the image: an empty named or anonymous volume mounted where the
image has content gets that content, with owners, modes and symlinks, and the mount
point's own owner and mode (Docker's copy-up); a volume with data is never overwritten,
and `nocopy` / `volume-nocopy` leave it empty."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.containers.conftest import TrackingCLI

DOCKERFILE = """FROM busybox
RUN mkdir /data && echo seeded > /data/f && chown 1234:1234 /data /data/f \\
    && chmod 750 /data && ln -s /etc/passwd /data/link && mkdir /data/sub \\
    && ln -s /../../../../../../../../tmp/ketch-seed-escape /escape
VOLUME /data
"""
# what a container sees of a seeded /data
SEEDED = "1234:1234 750\nseeded\n1234:1234 644 f\n/etc/passwd\n"
SHOW = ("stat -c '%u:%g %a' /data; cat /data/f; stat -c '%u:%g %a %n' /data/f | "
        "sed 's|/data/||'; readlink /data/link")


@pytest.fixture(scope="module")
def seeded_image(image_root: Path) -> str:
    ctx = image_root / "seed-context"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    TrackingCLI(image_root)("build", "-q", "-t", "seeded", str(ctx))
    return "seeded"


def _volume_dir(ketch: TrackingCLI, name: str) -> Path:
    return Path(ketch("volume", "inspect", "-f", "{{.Mountpoint}}", name).stdout.strip())


@pytest.mark.parametrize("how", [["-v", "vol:/data"],
                                 ["--mount", "type=volume,src=vol,dst=/data"]])
def test_named_volume_is_seeded_from_the_image_with_owner_and_mode(ketch, seeded_image,
                                                                   how):
    p = ketch("run", "--rm", *how, seeded_image, "sh", "-c", SHOW)
    assert p.stdout == SEEDED
    data = _volume_dir(ketch, "vol")
    # the symlink was copied as a link, not followed
    assert (data / "link").is_symlink() and (data / "sub").is_dir()
    st = data.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 1234, 0o750)


@pytest.mark.parametrize("how", [[], ["-v", "/data"], ["--mount", "type=volume,dst=/data"]])
def test_anonymous_volume_is_seeded_from_the_image(ketch, seeded_image, how):
    p = ketch("run", "--rm", *how, seeded_image, "sh", "-c", SHOW)
    assert p.stdout == SEEDED


def test_named_volume_keeps_its_data_and_is_not_seeded_again(ketch, seeded_image):
    ketch("run", "--name", "first", "-v", "kept:/data", seeded_image, "sh", "-c",
          "rm /data/f; echo mine > /data/g")
    ketch("rm", "first")
    assert ketch("volume", "ls", "-q").stdout.split() == ["kept"]
    p = ketch("run", "--rm", "-v", "kept:/data", seeded_image, "sh", "-c",
              "ls /data; cat /data/g")
    assert p.stdout == "g\nlink\nsub\nmine\n"


@pytest.mark.parametrize("how", [["-v", "empty:/data:nocopy"],
                                 ["--mount", "type=volume,src=empty,dst=/data,volume-nocopy"],
                                 ["--mount", "type=volume,src=empty,dst=/data,volume-nocopy=true"]])
def test_nocopy_leaves_the_volume_empty(ketch, seeded_image, how):
    p = ketch("run", "--rm", *how, seeded_image, "sh", "-c",
              "ls -A /data; stat -c '%u:%g %a' /data")
    assert p.stdout == "0:0 755\n"


def test_seeding_follows_no_symlink_out_of_the_image(ketch, seeded_image):
    # /escape in the image points far above its root: resolved inside the image it is
    # the image's /tmp/ketch-seed-escape (missing), never the host's directory.
    host = Path("/tmp/ketch-seed-escape")
    host.mkdir(exist_ok=True)
    try:
        (host / "host-secret").write_text("secret\n")
        p = ketch("run", "--rm", "-v", "esc:/escape", seeded_image, "ls", "-A", "/escape")
        assert p.stdout == ""
        assert list(_volume_dir(ketch, "esc").iterdir()) == []
        assert sorted(p.name for p in host.iterdir()) == ["host-secret"]
    finally:
        import shutil

        shutil.rmtree(host, ignore_errors=True)


def test_volume_emptied_by_its_container_is_not_seeded_again_on_restart(ketch,
                                                                       seeded_image):
    ketch("create", "--name", "emptier", "-v", "once:/data", seeded_image, "sh", "-c",
          "ls /data; rm -rf /data/*")
    assert ketch("start", "-a", "emptier").stdout == "f\nlink\nsub\n"
    assert ketch("start", "-a", "emptier").stdout == ""
