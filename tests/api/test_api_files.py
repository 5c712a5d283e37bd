"""A container's files through the Engine API: archive (cp), export, changes (diff) and
commit, with the docker CLI 28, docker-py 7 and raw HTTP."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from tests.api.conftest import Api


def _tar(*members: tuple[str, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_docker_cp_copies_files_both_ways(api: Api, tmp_path: Path) -> None:
    api.docker("run", "-d", "--name", "cp1", "busybox", "sleep", "300")
    src = tmp_path / "in.txt"
    src.write_text("from the host\n")
    api.docker("cp", str(src), "cp1:/tmp/")
    assert api.docker("exec", "cp1", "cat", "/tmp/in.txt").stdout == "from the host\n"
    api.docker("exec", "cp1", "sh", "-c", "mkdir -p /data/sub && echo inside >"
               " /data/sub/f && ln -s sub/f /data/link")
    api.docker("cp", "cp1:/data", str(tmp_path / "out"))
    assert (tmp_path / "out" / "sub" / "f").read_text() == "inside\n"
    assert (tmp_path / "out" / "link").is_symlink()
    # into a stopped container too
    api.docker("stop", "-t", "0", "cp1")
    api.docker("cp", str(src), "cp1:/tmp/again.txt")
    api.docker("cp", "cp1:/tmp/again.txt", str(tmp_path / "again.txt"))
    assert (tmp_path / "again.txt").read_text() == "from the host\n"


def test_docker_cp_of_a_missing_path_says_could_not_find(api: Api, tmp_path: Path) -> None:
    api.docker("create", "--name", "cp2", "busybox", "true")
    res = api.docker("cp", "cp2:/no/such/file", str(tmp_path / "x"), check=False)
    assert res.returncode == 1
    assert "Could not find the file /no/such/file in container cp2" in res.stderr
    assert not (tmp_path / "x").exists()


def test_docker_export_streams_the_root_filesystem(api: Api) -> None:
    api.docker("run", "--name", "ex1", "busybox", "sh", "-c", "echo x > /exported")
    export = subprocess.run(["docker", "export", "ex1"], capture_output=True,
                            env=api.docker_env(), timeout=60, check=True)
    names = tarfile.open(fileobj=io.BytesIO(export.stdout)).getnames()
    assert "exported" in names and "bin/busybox" in names


def test_docker_diff_lists_the_changes(api: Api) -> None:
    api.docker("run", "--name", "df1", "busybox", "sh", "-c",
               "echo x > /added; rm /etc/hostname.x 2>/dev/null; rm -f /bin/ls")
    lines = api.docker("diff", "df1").stdout.splitlines()
    assert "A /added" in lines
    assert "D /bin/ls" in lines
    assert "C /bin" in lines


def test_docker_commit_makes_an_image_with_the_changes(api: Api) -> None:
    api.docker("run", "--name", "cm1", "busybox", "sh", "-c", "echo committed > /mark")
    image_id = api.docker("commit", "-c", "ENV FROM_COMMIT=yes", "-m", "a message",
                          "cm1", "committed:v1").stdout.strip()
    assert image_id.startswith("sha256:")
    res = api.docker("run", "--rm", "committed:v1", "sh", "-c", "cat /mark; echo $FROM_COMMIT")
    assert res.stdout == "committed\nyes\n"
    comment = api.docker("image", "inspect", "-f", "{{.Comment}}", "committed:v1").stdout
    assert comment.strip() == "a message"
    api.docker("rmi", "committed:v1")


def test_docker_py_put_archive_and_get_archive_with_the_path_stat(api: Api) -> None:
    client = api.client()
    c = client.containers.run("busybox", ["sleep", "300"], detach=True, name="pa1")
    assert c.put_archive("/tmp", _tar(("dir", None), ("dir/a.txt", b"alpha\n"))) is True
    assert c.exec_run(["cat", "/tmp/dir/a.txt"]).output == b"alpha\n"
    chunks, st = c.get_archive("/tmp/dir/a.txt")
    assert st["name"] == "a.txt" and st["size"] == 6 and st["linkTarget"] == ""
    assert st["mode"] & 0o777 == 0o644 and st["mode"] >> 31 == 0
    tf = tarfile.open(fileobj=io.BytesIO(b"".join(chunks)))
    assert tf.getnames() == ["a.txt"]
    assert tf.extractfile("a.txt").read() == b"alpha\n"  # type: ignore[union-attr]
    _, st = c.get_archive("/tmp/dir")
    assert st["mode"] >> 31 == 1  # Go's ModeDir
    c.exec_run(["ln", "-s", "/tmp/dir/a.txt", "/tmp/ln"])
    _, st = c.get_archive("/tmp/ln")
    assert st["linkTarget"] == "/tmp/dir/a.txt" and st["mode"] & (1 << 27)


def test_archive_head_answers_the_stat_and_404_for_a_missing_path(api: Api) -> None:
    api.docker("run", "-d", "--name", "hd1", "busybox", "sleep", "300")
    conn = api.http()
    conn.request("HEAD", "/v1.45/containers/hd1/archive?path=/etc/passwd")
    r = conn.getresponse()
    r.read()
    assert r.status == 200
    st = json.loads(base64.b64decode(r.getheader("X-Docker-Container-Path-Stat") or ""))
    assert st["name"] == "passwd" and st["size"] > 0
    conn.request("GET", "/v1.45/containers/hd1/archive?path=/nope")
    r = conn.getresponse()
    assert r.status == 404
    assert json.loads(r.read())["message"] == \
        "Could not find the file /nope in container hd1"
    conn.close()


@pytest.mark.parametrize("path", ["../../etc", "/tmp/../../x"])
def test_archive_path_leading_outside_the_container_is_refused(api: Api, path: str) -> None:
    api.docker("run", "-d", "--name", "esc1", "busybox", "sleep", "300")
    conn = api.http()
    for method in ("GET", "HEAD", "PUT"):
        conn.request(method, f"/containers/esc1/archive?path={path}",
                     _tar(("f", b"x")) if method == "PUT" else None)
        r = conn.getresponse()
        r.read()
        assert r.status == 400, method
    conn.close()
    # the docker CLI's request for the same is refused too
    res = api.docker("cp", f"esc1:{path}", "-", check=False)
    assert res.returncode != 0 and "outside the container" in res.stderr


def test_archive_put_of_an_unsafe_tar_is_refused_and_writes_nothing(api: Api) -> None:
    api.docker("run", "-d", "--name", "put1", "busybox", "sleep", "300")
    conn = api.http()
    for bad in (_tar(("first", b"1"), ("../escaped", b"x")),
                _tar(("first", b"1"), ("/abs", b"x")), b"not a tar at all" * 100):
        conn.request("PUT", "/containers/put1/archive?path=/tmp", bad)
        r = conn.getresponse()
        assert r.status == 400
        assert json.loads(r.read())["message"]
    conn.close()
    ls = api.docker("exec", "put1", "ls", "-A", "/tmp").stdout
    assert ls == ""


def test_archive_put_refuses_replacing_a_directory_with_a_file(api: Api) -> None:
    api.docker("run", "-d", "--name", "put2", "busybox", "sleep", "300")
    api.docker("exec", "put2", "mkdir", "/tmp/d")
    conn = api.http()
    conn.request("PUT", "/containers/put2/archive?path=/tmp&noOverwriteDirNonDir=true",
                 _tar(("new", b"n"), ("d", b"file now")))
    r = conn.getresponse()
    assert r.status == 400
    assert "cannot overwrite directory" in json.loads(r.read())["message"]
    conn.request("PUT", "/containers/put2/archive?path=/nonexistent", _tar(("f", b"x")))
    r = conn.getresponse()
    assert r.status == 404
    r.read()
    conn.close()
    assert api.docker("exec", "put2", "ls", "-A", "/tmp").stdout == "d\n"


def test_docker_py_commit_merges_the_given_config_over_the_containers(api: Api) -> None:
    client = api.client()
    c = client.containers.run("busybox", ["sh", "-c", "echo x > /f"], detach=True,
                              environment=["KEEP=1", "OVER=old"], name="cm2")
    c.wait(timeout=30)
    img = c.commit(repository="merged", tag="v1", message="via docker-py",
                   conf={"Env": ["OVER=new"], "Cmd": ["cat", "/f"],
                         "Labels": {"from": "commit"}})
    cfg = img.attrs["Config"]
    c.reload()
    expected = ["OVER=new"] + [e for e in c.attrs["Config"]["Env"] if not e.startswith("OVER=")]
    assert cfg["Env"] == expected
    assert cfg["Cmd"] == ["cat", "/f"] and cfg["Labels"] == {"from": "commit"}
    assert client.containers.run("merged:v1", remove=True) == b"x\n"
    assert img.attrs["Comment"] == "via docker-py"
    client.images.remove("merged:v1")
    conn = api.http()
    conn.request("POST", "/commit?container=nosuch&repo=x")
    r = conn.getresponse()
    assert r.status == 404
    r.read()
    conn.request("POST", "/commit?container=cm2&repo=x", "{bad json")
    r = conn.getresponse()
    assert r.status == 400
    r.read()
    conn.close()


def test_file_endpoints_of_an_unknown_container_are_404(api: Api) -> None:
    conn = api.http()
    for method, path in (("GET", "/containers/nosuch/export"),
                         ("GET", "/containers/nosuch/changes"),
                         ("GET", "/containers/nosuch/archive?path=/"),
                         ("HEAD", "/containers/nosuch/archive?path=/"),
                         ("PUT", "/containers/nosuch/archive?path=/")):
        conn.request(method, path, _tar(("f", b"x")) if method == "PUT" else None)
        r = conn.getresponse()
        body = r.read()
        assert r.status == 404, (method, path)
        if method != "HEAD":
            assert json.loads(body)["message"] == "No such container: nosuch"
    conn.request("GET", "/containers/nosuch/archive")
    r = conn.getresponse()
    assert r.status == 400
    r.read()
    conn.close()


def test_docker_cp_streams_tars_through_stdin_and_stdout(api: Api, tmp_path: Path) -> None:
    api.docker("run", "-d", "--name", "cp3", "busybox", "sleep", "300")
    proc = subprocess.run(["docker", "cp", "-", "cp3:/tmp"],
                          input=_tar(("t", None), ("t/in.txt", b"piped\n")),
                          capture_output=True, env=api.docker_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run(["docker", "cp", "cp3:/tmp/t/.", "-"], capture_output=True,
                         env=api.docker_env(), timeout=60, check=True)
    tf = tarfile.open(fileobj=io.BytesIO(out.stdout))
    files = {m.name: tf.extractfile(m).read() for m in tf if m.isfile()}  # type: ignore[union-attr]
    assert list(files.values()) == [b"piped\n"]
    assert list(files)[0].endswith("in.txt")


def test_archive_put_keeps_the_tars_owners_only_with_copy_uid_gid(api: Api) -> None:
    api.docker("run", "-d", "--name", "own1", "busybox", "sleep", "300")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name in ("kept", "reset"):
            info = tarfile.TarInfo(name)
            info.size, info.uid, info.gid = 2, 1234, 4321
            tf.addfile(info, io.BytesIO(b"x\n"))
    data = buf.getvalue()
    conn = api.http()
    for name, query in (("kept", "&copyUIDGID=true"), ("reset", "")):
        conn.request("PUT", f"/containers/own1/archive?path=/tmp{query}", data)
        r = conn.getresponse()
        r.read()
        assert r.status == 200
        owner = api.docker("exec", "own1", "stat", "-c", "%u:%g", f"/tmp/{name}").stdout
        assert owner == ("1234:4321\n" if name == "kept" else "0:0\n")
    conn.close()
