"""`cp` both ways and `export`, on running and stopped containers, with Docker's path
rules (`SRC/.`, `-`, `-a`, `-L`) and no way out of the container's root or the host
target, whatever symlinks the container holds."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from tests.containers.conftest import busybox_root
from tests.helpers.host import mounts_under, wait_for

SETUP = (
    "mkdir -p /d/sub /d/empty; echo a > /d/a; echo b > /d/sub/b; chmod 640 /d/a;"
    " chown 33:33 /d/sub/b; ln -s a /d/rel-link; ln -s /d/sub /d/abs-dirlink;"
    " ln -s / /escape; ln -s ../../../../../../.. /up;"
    " echo container-passwd > /tmp/passwd;"
    " echo vol > /data/v;"
)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A host file that symlinks in the container name by its absolute path."""
    p = tmp_path / "host-secret"
    p.write_text("HOST SECRET\n")
    return p


def start_ctr(ketch, name: str, state: str, secret: Path, sleep: str = "300") -> str:
    """A container `name` holding the files of SETUP, `running` or `stopped`."""
    script = SETUP + f" ln -s {secret} /leak; ln -s {secret.parent} /leakdir;"
    if state == "running":
        script += f" echo ready; sleep {sleep}"
    else:
        script += " echo ready"
    ketch("run", "-d", "--name", name, "-v", "cpvol:/data", "busybox", "sh", "-c", script)
    if state == "stopped":
        ketch("wait", name)
    else:
        wait_for(lambda: "ready" in ketch("logs", name).stdout, what="the setup")
    return name


@pytest.fixture(params=["running", "stopped"])
def ctr(request, ketch, secret: Path) -> str:
    return start_ctr(ketch, "cpc", request.param, secret)


@pytest.fixture(scope="module")
def cp_root(tmp_path_factory, busybox_tar, container_prereqs):
    """A root of its own for the tests that only copy out of a container."""
    with busybox_root(tmp_path_factory, busybox_tar) as cli:
        yield cli


@pytest.fixture(scope="module", params=["running", "stopped"])
def ctr_shared(request, cp_root, tmp_path_factory) -> str:
    """One container per state in `cp_root`, made once and only read by the tests."""
    secret = tmp_path_factory.mktemp("cp-secret") / "host-secret"
    secret.write_text("HOST SECRET\n")
    # running for as long as the module runs
    return start_ctr(cp_root, f"cpc-{request.param}", request.param, secret, sleep="3600")


# -- out of the container ---------------------------------------------------------------
class TestCopyingOut:
    """Copying out only reads the container: these tests share one per state
    (`ctr_shared`; `ketch` here is the CLI on their root)."""

    @pytest.fixture
    def ketch(self, cp_root):
        return cp_root

    @pytest.fixture
    def ctr(self, ctr_shared):
        return ctr_shared

    def test_copy_a_file_out(self, ketch, ctr, tmp_path: Path):
        ketch("cp", f"{ctr}:/d/a", str(tmp_path / "a-copy"))
        assert (tmp_path / "a-copy").read_text() == "a\n"
        assert (tmp_path / "a-copy").stat().st_mode & 0o777 == 0o640
        (tmp_path / "into").mkdir()
        ketch("cp", f"{ctr}:d/a", str(tmp_path / "into"))  # the leading "/" is optional
        assert (tmp_path / "into" / "a").read_text() == "a\n"
        (tmp_path / "existing").write_text("old")
        ketch("cp", f"{ctr}:/d/sub/b", str(tmp_path / "existing"))
        assert (tmp_path / "existing").read_text() == "b\n"

    def test_copy_a_directory_out(self, ketch, ctr, tmp_path: Path):
        ketch("cp", f"{ctr}:/d", str(tmp_path / "new"))
        assert sorted(os.listdir(tmp_path / "new")) == ["a", "abs-dirlink", "empty", "rel-link",
                                                         "sub"]
        assert (tmp_path / "new" / "sub" / "b").read_text() == "b\n"
        # symlinks inside come as symlinks, exactly as they were
        assert os.readlink(tmp_path / "new" / "abs-dirlink") == "/d/sub"
        # files copied to the host belong to the user running cp
        assert (tmp_path / "new" / "sub" / "b").stat().st_uid == os.getuid()
        (tmp_path / "there").mkdir()
        ketch("cp", f"{ctr}:/d", str(tmp_path / "there"))
        assert (tmp_path / "there" / "d" / "a").read_text() == "a\n"

    def test_copy_directory_contents_out_with_slash_dot(self, ketch, ctr, tmp_path: Path):
        (tmp_path / "there").mkdir()
        ketch("cp", f"{ctr}:/d/.", str(tmp_path / "there"))
        assert (tmp_path / "there" / "a").read_text() == "a\n"
        assert not (tmp_path / "there" / "d").exists()
        ketch("cp", f"{ctr}:/d/sub/.", str(tmp_path / "fresh"))
        assert os.listdir(tmp_path / "fresh") == ["b"]

    def test_copy_out_as_a_tar_stream(self, ketch, ctr):
        data = subprocess.run(ketch.argv("cp", f"{ctr}:/d", "-"), env=ketch.env(),
                              capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            names = sorted(m.name for m in tf.getmembers())
            b = tf.getmember("d/sub/b")
            assert (b.uid, b.gid) == (33, 33)
        assert names == ["d", "d/a", "d/abs-dirlink", "d/empty", "d/rel-link", "d/sub", "d/sub/b"]

    def test_follow_link_copies_the_target_under_the_links_name(self, ketch, ctr,
                                                                tmp_path: Path):
        ketch("cp", f"{ctr}:/d/rel-link", str(tmp_path / "plain"))
        assert os.readlink(tmp_path / "plain") == "a"
        ketch("cp", "-L", f"{ctr}:/d/rel-link", str(tmp_path / "followed"))
        assert (tmp_path / "followed").read_text() == "a\n"
        (tmp_path / "dir").mkdir()
        ketch("cp", "--follow-link", f"{ctr}:/d/abs-dirlink", str(tmp_path / "dir"))
        assert (tmp_path / "dir" / "abs-dirlink" / "b").read_text() == "b\n"

    def test_copy_out_errors(self, ketch, ctr, tmp_path: Path):
        p = ketch("cp", f"{ctr}:/nope", str(tmp_path / "x"), check=False)
        assert p.returncode == 1
        assert p.stderr == f"Error: Could not find the file /nope in container {ctr}\n"
        p = ketch("cp", f"{ctr}:/d", str(tmp_path / "missing" / "x"), check=False)
        assert (p.returncode, p.stderr) == (1, "Error: invalid output path: directory"
                                               f' "{tmp_path / "missing"}" does not exist\n')
        # an empty path in the container is refused (it copied the whole root)
        p = ketch("cp", f"{ctr}:", str(tmp_path / "all"), check=False)
        assert (p.returncode, p.stderr) == (1, "Error: path cannot be empty\n")
        assert not (tmp_path / "all").exists()
        (tmp_path / "file").write_text("")
        p = ketch("cp", f"{ctr}:/d", str(tmp_path / "file"), check=False)
        assert p.stderr == "Error: cannot copy directory\n"
        p = ketch("cp", f"{ctr}:/d/a", str(tmp_path / "nodir") + "/", check=False)
        assert p.stderr == "Error: no such directory\n"
        p = ketch("cp", "nosuch:/x", str(tmp_path), check=False)
        assert p.stderr == "Error: No such container: nosuch\n"
        p = ketch("cp", str(tmp_path), str(tmp_path / "y"), check=False)
        assert p.stderr == "Error: must specify at least one container source\n"
        p = ketch("cp", f"{ctr}:/d", f"{ctr}:/e", check=False)
        assert p.stderr == "Error: copying between containers is not supported\n"

    def test_container_symlinks_never_reach_host_files_when_copying_out(self, ketch, ctr,
                                                                        tmp_path: Path):
        # /escape -> / and /up -> ../../.. resolve inside the container's root
        for path in ("/escape/tmp/passwd", "/up/tmp/passwd", "/escape/up/escape/tmp/passwd"):
            ketch("cp", f"{ctr}:{path}", str(tmp_path / "out"))
            assert (tmp_path / "out").read_text() == "container-passwd\n"
            (tmp_path / "out").unlink()
        # links naming a host file by its absolute path find nothing in the container
        for args in (["-L", f"{ctr}:/leak"], [f"{ctr}:/leakdir/host-secret"],
                     ["-L", f"{ctr}:/leakdir"]):
            p = ketch("cp", *args, str(tmp_path / "got"), check=False)
            assert p.returncode == 1 and "Could not find the file" in p.stderr
            assert not (tmp_path / "got").exists()
        # without -L the link itself is copied, and it stays a link
        ketch("cp", f"{ctr}:/leak", str(tmp_path / "link"))
        assert (tmp_path / "link").is_symlink()


def test_volumes_are_copied_through(ketch, ctr, tmp_path: Path):
    ketch("cp", f"{ctr}:/data/v", str(tmp_path / "v"))
    assert (tmp_path / "v").read_text() == "vol\n"
    (tmp_path / "nv").write_text("new in volume\n")
    ketch("cp", str(tmp_path / "nv"), f"{ctr}:/data/")
    vol = ketch("volume", "inspect", "-f", "{{.Mountpoint}}", "cpvol").stdout.strip()
    assert Path(vol, "nv").read_text() == "new in volume\n"


# -- symlink escapes --------------------------------------------------------------------
def test_container_symlinks_never_lead_writes_to_the_host(ketch, ctr, tmp_path: Path,
                                                          secret: Path):
    src = tmp_path / "payload"
    src.write_text("payload\n")
    victim = f"ketch-cp-victim-{os.getpid()}"
    ketch("cp", str(src), f"{ctr}:/escape/tmp/{victim}")
    ketch("cp", str(src), f"{ctr}:/up/tmp/")
    assert not (Path("/tmp") / victim).exists()
    # a link naming a host path leads to that path inside the container, which is missing
    for dest in (f"{ctr}:/leak", f"{ctr}:/leakdir/", f"{ctr}:/leakdir/host-secret"):
        p = ketch("cp", str(src), dest, check=False)
        assert p.returncode == 1 and "Could not find the file" in p.stderr, dest
    assert secret.read_text() == "HOST SECRET\n"
    assert sorted(os.listdir(secret.parent)) == ["host-secret", "payload"]
    # the copies landed in the container's own /tmp
    out = tmp_path / "check"
    for name in (victim, "payload"):
        ketch("cp", f"{ctr}:/tmp/{name}", str(out))
        assert out.read_text() == "payload\n"
        out.unlink()


def test_a_hostile_tar_on_stdin_stays_inside(ketch, ctr, tmp_path: Path):
    victim = tmp_path / "victim"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        link = tarfile.TarInfo("evil")
        link.type = tarfile.SYMTYPE
        link.linkname = str(tmp_path)
        tf.addfile(link)
        data = b"owned\n"
        f = tarfile.TarInfo(f"evil/{victim.name}")
        f.size = len(data)
        tf.addfile(f, io.BytesIO(data))
    ketch("cp", "-", f"{ctr}:/tmp", input=buf.getvalue().decode("latin-1"))
    assert not victim.exists()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        f = tarfile.TarInfo(f"../../../../../../../{victim}")
        f.size = 3
        tf.addfile(f, io.BytesIO(b"no\n"))
    p = ketch("cp", "-", f"{ctr}:/tmp", input=buf.getvalue().decode("latin-1"), check=False)
    assert p.returncode == 1 and "outside" in p.stderr
    assert not victim.exists()


# -- into the container -----------------------------------------------------------------
def test_copy_a_file_in(ketch, ctr, tmp_path: Path):
    src = tmp_path / "f.txt"
    src.write_text("hello\n")
    os.chown(src, 1234, 4321)
    ketch("cp", str(src), f"{ctr}:/tmp/")
    ketch("cp", str(src), f"{ctr}:/tmp/renamed")
    ketch("cp", "-a", str(src), f"{ctr}:/tmp/kept")
    out = tmp_path / "back"
    raw = subprocess.run(ketch.argv("cp", f"{ctr}:/tmp/", "-"), env=ketch.env(),
                         capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        owners = {m.name: (m.uid, m.gid) for m in tf.getmembers()}
    # without -a files belong to the container's root; with -a they keep their owner
    assert owners["tmp/f.txt"] == (0, 0)
    assert owners["tmp/renamed"] == (0, 0)
    assert owners["tmp/kept"] == (1234, 4321)
    ketch("cp", f"{ctr}:/tmp/renamed", str(out))
    assert out.read_text() == "hello\n"


def test_copy_a_directory_in_and_its_contents(ketch, ctr, tmp_path: Path):
    src = tmp_path / "tree"
    (src / "inner").mkdir(parents=True)
    (src / "inner" / "x").write_text("x\n")
    (src / "top").write_text("t\n")
    os.symlink("inner/x", src / "lnk")
    ketch("cp", str(src), f"{ctr}:/d")
    ketch("cp", str(src) + "/.", f"{ctr}:/newdir")
    ketch("cp", str(src) + "/.", f"{ctr}:/d/empty")
    back = tmp_path / "back"
    back.mkdir()
    for path in ("/d/tree", "/newdir", "/d/empty"):
        ketch("cp", f"{ctr}:{path}/.", str(back / path.strip("/").replace("/", "_")))
    for name in ("d_tree", "newdir", "d_empty"):
        assert sorted(os.listdir(back / name)) == ["inner", "lnk", "top"], name
        assert (back / name / "inner" / "x").read_text() == "x\n"
        assert os.readlink(back / name / "lnk") == "inner/x"


def test_copy_in_from_a_tar_stream(ketch, ctr, tmp_path: Path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        d = tarfile.TarInfo("fromtar")
        d.type = tarfile.DIRTYPE
        d.mode = 0o755
        tf.addfile(d)
        f = tarfile.TarInfo("fromtar/file")
        f.size = 4
        f.uid = f.gid = 77
        tf.addfile(f, io.BytesIO(b"tar\n"))
    ketch("cp", "-", f"{ctr}:/tmp", input=buf.getvalue().decode("latin-1"))
    ketch("cp", f"{ctr}:/tmp/fromtar/file", str(tmp_path / "f"))
    assert (tmp_path / "f").read_text() == "tar\n"
    p = ketch("cp", "-", f"{ctr}:/d/a", input="", check=False)
    assert p.stderr == f'Error: destination "{ctr}:/d/a" must be a directory\n'


def test_copy_in_errors(ketch, ctr, tmp_path: Path):
    p = ketch("cp", str(tmp_path / "none"), f"{ctr}:/tmp", check=False)
    assert p.returncode == 1 and "no such file or directory" in p.stderr
    p = ketch("cp", str(tmp_path), f"{ctr}:/d/a", check=False)
    assert p.stderr == "Error: cannot copy directory\n"
    (tmp_path / "f").write_text("f")
    p = ketch("cp", str(tmp_path / "f"), f"{ctr}:/missing/deeper/f", check=False)
    # the directory that is missing is named, as docker cp names it
    assert p.stderr == f"Error: Could not find the file /missing/deeper in container {ctr}\n"
    p = ketch("cp", str(tmp_path / "f"), f"{ctr}:/nodir/", check=False)
    assert p.stderr == "Error: no such directory\n"


def test_copy_leaves_no_mount_behind(ketch, ctr, tmp_path: Path):
    before = mounts_under(ketch.root)
    ketch("cp", f"{ctr}:/data/v", str(tmp_path / "v"))
    ketch("cp", str(tmp_path / "v"), f"{ctr}:/tmp/")
    assert mounts_under(ketch.root) == before


def test_copy_into_a_read_only_root_is_refused(ketch, run_d, tmp_path: Path):
    run_d("--name", "ro", "--read-only", "-v", "rovol:/data", "busybox", "sleep", "300")
    (tmp_path / "f").write_text("f")
    p = ketch("cp", str(tmp_path / "f"), "ro:/tmp/", check=False)
    assert p.stderr == "Error: container rootfs is marked read-only\n"
    ketch("cp", str(tmp_path / "f"), "ro:/data/")
    assert ketch("exec", "ro", "cat", "/data/f").stdout == "f"


# -- export -----------------------------------------------------------------------------
def test_export_writes_the_root_filesystem(ketch, ctr, tmp_path: Path):
    out = tmp_path / "fs.tar"
    ketch("export", "-o", str(out), ctr)
    with tarfile.open(out) as tf:
        names = set(tf.getnames())
        assert tf.extractfile("d/a").read() == b"a\n"  # type: ignore[union-attr]
    assert {"bin/busybox", "etc/passwd", "d/sub/b", "escape", "tmp/passwd"} <= names
    assert "data/v" not in names  # volumes are not part of export
    # a missing directory is named as it is (not a temporary file's name), nothing made
    p = ketch("export", "-o", str(tmp_path / "no" / "fs.tar"), ctr, check=False)
    assert (p.returncode, p.stderr) == (1, "Error: failed to export container: invalid output"
                                           f" path: stat {tmp_path / 'no'}: no such file or"
                                           " directory\n")
    # a directory is refused before the work (it failed at the end, naming the
    # temporary file it had written the whole archive to), and nothing is left in it
    p = ketch("export", "-o", str(tmp_path), ctr, check=False)
    assert (p.returncode, p.stderr) == (1, "Error: failed to export container: invalid output"
                                           f' path: "{tmp_path}" is a directory\n')
    assert not list(tmp_path.parent.glob(f"{tmp_path.name}.ketch-*"))
    raw = subprocess.run(ketch.argv("container", "export", ctr), env=ketch.env(),
                         capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        assert "d/sub/b" in tf.getnames()
