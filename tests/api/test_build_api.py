"""POST /build and /build/prune driven by the stock docker CLI 28 (classic builder,
DOCKER_BUILDKIT=0) and docker-py 7, against `ketch system service`."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from urllib.parse import quote

import pytest
from tests.api.conftest import Api

docker = pytest.importorskip("docker")


def _context(tmp_path: Path, dockerfile: str, **files: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (ctx / name.replace("__", ".")).write_text(text)
    return ctx


def _image_ids(api: Api) -> set[str]:
    return set(api.docker("images", "-aq", "--no-trunc").stdout.split())


def _rmi(api: Api, *names: str) -> None:
    api.docker("rmi", "-f", *names, check=False)
    api.docker("image", "prune", "-f", check=False)


def test_docker_build_twice_uses_the_cache_for_every_step(api: Api, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nENV A=1\nRUN echo built > /f\nCMD cat /f\n")
    first = api.docker("build", "-t", "cached:1", str(ctx), timeout=120)
    assert "Step 1/4 : FROM busybox" in first.stdout
    assert "Step 3/4 : RUN echo built > /f" in first.stdout
    assert " ---> Running in " in first.stdout
    assert "Successfully tagged cached:1" in first.stdout
    second = api.docker("build", "-t", "cached:1", str(ctx), timeout=120)
    assert second.stdout.count(" ---> Using cache") == 3  # ENV, RUN, CMD
    assert " ---> Running in " not in second.stdout
    built = [ln for ln in first.stdout.splitlines() if ln.startswith("Successfully built")]
    assert built and built == [ln for ln in second.stdout.splitlines()
                               if ln.startswith("Successfully built")]
    out = api.docker("run", "--rm", "cached:1").stdout
    assert out == "built\n"
    _rmi(api, "cached:1")


def test_docker_build_with_two_tags_build_args_and_a_target(api: Api, tmp_path: Path) -> None:
    ctx = _context(tmp_path,
                   "FROM busybox AS base\nARG WHO=nobody\nRUN echo \"hi $WHO\" > /greet\n"
                   "FROM base AS final\nRUN false\n")
    res = api.docker("build", "-t", "multi-a", "-t", "multi-b:v2", "--build-arg",
                     "WHO=ketch", "--target", "base", str(ctx), timeout=120)
    assert "Successfully tagged multi-a:latest" in res.stdout
    assert "Successfully tagged multi-b:v2" in res.stdout
    assert "RUN false" not in res.stdout  # the stage after the target is not built
    ids = {api.docker("image", "inspect", "-f", "{{.Id}}", n).stdout.strip()
           for n in ("multi-a", "multi-b:v2")}
    assert len(ids) == 1
    assert api.docker("run", "--rm", "multi-a", "cat", "/greet").stdout == "hi ketch\n"
    _rmi(api, "multi-a", "multi-b:v2")


def test_docker_build_failing_run_exits_with_its_status_and_the_builders_message(
        api: Api, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nRUN echo about to fail; exit 3\n")
    before = _image_ids(api)
    res = api.docker("build", "-t", "broken", str(ctx), check=False, timeout=120)
    # the stream's error carries the RUN's status (errorDetail.code), as dockerd's
    # classic builder: the docker CLI exits with it
    assert res.returncode == 3
    assert "about to fail" in res.stdout
    assert ("The command '/bin/sh -c echo about to fail; exit 3' returned a non-zero code: 3"
            in res.stderr)
    assert api.docker("image", "inspect", "broken", check=False).returncode == 1
    assert _image_ids(api) == before
    assert api.docker("ps", "-aq").stdout == ""  # the step's container is gone


def test_docker_build_leaves_out_what_dockerignore_names(api: Api, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nCOPY . /ctx/\n", keep="k\n", secret="s\n",
                   __dockerignore="secret\n")
    api.docker("build", "-t", "ignoring", str(ctx), timeout=120)
    listing = api.docker("run", "--rm", "ignoring", "ls", "-a", "/ctx").stdout.split()
    assert "keep" in listing and "Dockerfile" in listing
    assert "secret" not in listing
    _rmi(api, "ignoring")


def test_docker_build_quiet_prints_only_the_image_id(api: Api, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nLABEL quiet=yes\n")
    res = api.docker("build", "-q", "-t", "quiet", str(ctx), timeout=120)
    image_id = api.docker("image", "inspect", "-f", "{{.Id}}", "quiet").stdout.strip()
    assert res.stdout == image_id + "\n"
    _rmi(api, "quiet")


def _raw_build(api: Api, body: bytes, query: str = "") -> tuple[int, bytes]:
    conn = api.http()
    conn.request("POST", f"/v1.45/build{query}", body=body,
                 headers={"Content-Type": "application/x-tar"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("bad", ["../escape", "/etc/escape", "sub/../../escape"])
def test_build_refuses_a_context_with_members_outside_it(api: Api, bad: str) -> None:
    before = _image_ids(api)
    body = _tar({"Dockerfile": b"FROM busybox\nCOPY . /\n", bad: b"x"})
    status, data = _raw_build(api, body, "?t=escaped")
    assert status == 400
    assert "outside" in json.loads(data)["message"]
    assert _image_ids(api) == before
    assert not list((api.root / "tmp").glob("context-*"))


def test_build_streams_docker_json_messages_from_a_gzip_context(api: Api) -> None:
    import gzip

    body = gzip.compress(_tar({"df/Build.file": b"FROM busybox\nRUN echo from-run\n"}))
    status, data = _raw_build(api, body, "?dockerfile=df/Build.file&t=gz&rm=1")
    assert status == 200
    messages = [json.loads(line) for line in data.splitlines() if line.strip()]
    streams = "".join(m.get("stream", "") for m in messages)
    assert "Step 1/2 : FROM busybox\n" in streams
    assert "from-run\n" in streams
    aux = [m["aux"]["ID"] for m in messages if "aux" in m]
    assert len(aux) == 1 and aux[0].startswith("sha256:")
    assert f"Successfully built {aux[0][7:19]}\n" in streams
    assert streams.endswith("Successfully tagged gz:latest\n")
    assert not [m for m in messages if "error" in m]
    _rmi(api, "gz")


def test_build_reads_no_dockerfile_outside_its_context(api: Api) -> None:
    body = _tar({"Dockerfile": b"FROM busybox\n"})
    status, data = _raw_build(api, body, "?dockerfile=../../../../etc/passwd")
    assert "root:" not in data.decode()
    assert status == 500  # moby's Detect error carries no class: a 500, before any stream
    assert json.loads(data)["message"] == ("Cannot locate specified Dockerfile:"
                                           " ../../../../etc/passwd")


def test_docker_py_build_streams_and_returns_the_image(api: Api, tmp_path: Path) -> None:
    client = api.client()
    ctx = _context(tmp_path, "FROM busybox\nARG V\nRUN echo \"v=$V\"\nLABEL v=$V\n")
    image, logs = client.images.build(path=str(ctx), tag="dpy-built:1",
                                      buildargs={"V": "7"}, rm=True)
    logs = list(logs)
    text = "".join(m.get("stream", "") for m in logs)
    assert "v=7" in text
    assert image.id == [m["aux"]["ID"] for m in logs if "aux" in m][0]
    assert image.labels == {"v": "7"}
    assert "dpy-built:1" in image.tags
    with pytest.raises(docker.errors.BuildError) as exc:
        client.images.build(path=str(_context(tmp_path / "x", "FROM busybox\nRUN exit 5\n")))
    assert "returned a non-zero code: 5" in str(exc.value)
    assert list(exc.value.build_log)[-1]["errorDetail"]["code"] == 5
    client.images.remove("dpy-built:1")


def test_build_prune_removes_the_dangling_cache(api: Api, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\nRUN echo one > /one\n")
    api.docker("build", "-t", "prunable", str(ctx), timeout=120)
    api.docker("rmi", "prunable")  # its layers are dangling cache now
    conn = api.http()
    # filters are read (they were ignored): a bad one is refused, one that keeps the
    # fresh cache removes nothing
    conn.request("POST", "/v1.45/build/prune?filters=" + quote('{"until": ["abc"]}'))
    resp = conn.getresponse()
    assert resp.status == 400, resp.status
    assert 'failed to parse value as time or duration: \\"abc\\"' in resp.read().decode()
    before = api.docker("images", "-aq").stdout.split()
    conn.request("POST", "/v1.45/build/prune?filters=" + quote('{"until": ["1h"]}'))
    resp = conn.getresponse()
    assert (resp.status, json.loads(resp.read())["CachesDeleted"]) == (200, [])
    assert api.docker("images", "-aq").stdout.split() == before
    conn.request("POST", "/v1.45/build/prune")
    resp = conn.getresponse()
    report = json.loads(resp.read())
    conn.close()
    assert resp.status == 200
    assert set(report) == {"CachesDeleted", "SpaceReclaimed"}
    assert api.docker("images", "-aq").stdout.split() == \
        api.docker("images", "-q", "busybox").stdout.split()


def test_docker_build_passes_add_host_network_and_labels(api: Api, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM busybox\n"
                   "RUN grep -q '10.1.2.3[[:space:]]*buildhost' /etc/hosts && echo host-ok\n"
                   "RUN echo links=$(ls /sys/class/net)\n")
    res = api.docker("build", "--add-host", "buildhost:10.1.2.3", "--network", "none",
                     "--label", "made.by=api", "-t", "flags", str(ctx), timeout=120)
    assert "host-ok\n" in res.stdout
    assert "links=lo\n" in res.stdout  # --network none: loopback only
    labels = api.docker("image", "inspect", "-f", "{{json .Config.Labels}}", "flags").stdout
    assert json.loads(labels) == {"made.by": "api"}
    _rmi(api, "flags")


def test_build_stops_and_cleans_up_when_the_client_goes_away(api: Api) -> None:
    from tests.containers.conftest import wait_for

    body = _tar({"Dockerfile": b"FROM busybox\n"
                 b"RUN i=0; while [ $i -lt 120 ]; do echo tick $i; i=$((i+1)); sleep 0.5;"
                 b" done\n"})
    conn = api.http()
    conn.request("POST", "/v1.45/build?t=abandoned", body=body,
                 headers={"Content-Type": "application/x-tar"})
    resp = conn.getresponse()
    assert resp.status == 200
    seen = b""
    while b"tick 1" not in seen:
        seen += resp.fp.readline()
    conn.sock.close()
    conn.close()
    assert api.ketch("ps", "-aq").stdout.strip() != ""  # the step's container, running
    wait_for(lambda: api.ketch("ps", "-aq").stdout.strip() == "", timeout=20,
             what="the abandoned build's step container to go")
    assert api.docker("image", "inspect", "abandoned", check=False).returncode == 1


def test_docker_build_reads_a_dockerfile_from_stdin(api: Api, tmp_path: Path) -> None:
    alone = api.docker("build", "-t", "stdin-only", "-", input="FROM busybox\nLABEL s=1\n",
                       timeout=120)
    assert "Successfully tagged stdin-only:latest" in alone.stdout
    ctx = _context(tmp_path, "FROM busybox\nRUN false\n", data="from-context\n")
    # -f - with a directory context: the CLI adds the Dockerfile to the context tar
    res = api.docker("build", "-t", "stdin-file", "-f", "-", str(ctx),
                     input="FROM busybox\nCOPY data /data\n", timeout=120)
    assert "Step 2/2 : COPY data /data" in res.stdout
    assert api.docker("run", "--rm", "stdin-file", "cat", "/data").stdout == "from-context\n"
    _rmi(api, "stdin-only", "stdin-file")


def test_docker_build_resource_flags_reach_the_run_steps(api: Api, tmp_path: Path) -> None:
    from tests.conftest import require

    require(Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists(), "cgroup v1")
    ctx = _context(tmp_path, "FROM busybox\nRUN cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
                             " /sys/fs/cgroup/cpu/cpu.shares > /r; ulimit -n >> /r\n")
    api.docker("build", "-m", "48m", "--cpu-shares", "256", "--ulimit", "nofile=300:400",
               "-t", "limited", str(ctx), timeout=120)
    assert api.docker("run", "--rm", "limited", "cat", "/r").stdout.split() == [
        str(48 << 20), "256", "300"]
    r = api.docker("build", "--cpu-period", "10", "-t", "refused", str(ctx), check=False,
                   timeout=120)
    assert r.returncode != 0 and "CPU cfs period can not be less than 1ms" in r.stderr
    _rmi(api, "limited")


def test_build_cachefrom_takes_steps_from_a_loaded_images_history(api: Api,
                                                                   tmp_path: Path) -> None:
    body = _tar({"Dockerfile": b"FROM busybox\nENV CF=1\nRUN echo cf > /cf\nCMD cat /cf\n"})
    status, _ = _raw_build(api, body, "?t=cfsrc")
    assert status == 200
    built = api.docker("image", "inspect", "-f", "{{.Id}}", "cfsrc").stdout.strip()
    archive = tmp_path / "cfsrc.tar"
    api.docker("save", "-o", str(archive), "cfsrc")
    api.docker("rmi", "cfsrc")  # its intermediate images (the local cache) go with it
    api.docker("load", "-i", str(archive))
    status, data = _raw_build(api, body, "?t=cfyes&cachefrom=" + '["cfsrc"]')
    assert status == 200
    assert data.count(b"Using cache") == 3
    assert api.docker("image", "inspect", "-f", "{{.Id}}", "cfyes").stdout.strip() == built
    status, data = _raw_build(api, body, "?t=cfbad&cachefrom=cfsrc")
    assert status == 400
    assert json.loads(data)["message"] == "invalid cachefrom: not JSON"
    _rmi(api, "cfsrc", "cfyes")


def test_a_killed_docker_build_stops_its_silent_step_at_once(api: Api, tmp_path: Path) -> None:
    """The client of a build goes away during a RUN that prints nothing: as under
    dockerd, the build stops and its step's container goes. Before, the service noticed
    only at the step's next output, here after its 60 s sleep."""
    import subprocess
    import time

    from tests.helpers.host import wait_for

    ctx = _context(tmp_path, "FROM busybox\nRUN echo st''arted; sleep 60\n")
    client = subprocess.Popen(["docker", "build", "--no-cache", "-t", "never:1", str(ctx)],
                              env=api.docker_env(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert client.stdout is not None
    seen = ""
    deadline = time.monotonic() + 60
    while "\nstarted\n" not in seen and time.monotonic() < deadline:  # the step's output
        line = client.stdout.readline()
        if not line:
            break
        seen += line
    assert "\nstarted\n" in seen, seen
    step = api.docker("ps", "-aq", "--no-trunc").stdout.split()
    assert len(step) == 1  # the RUN's container, running its sleep
    client.kill()
    client.wait()
    wait_for(lambda: api.docker("ps", "-aq").stdout == "", timeout=15,
             what="the build's step container to go")
    assert api.docker("images", "-q", "never:1").stdout == ""
