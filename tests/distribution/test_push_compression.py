"""`push` compresses the layers ketch stores uncompressed, remembers what it sent, and
shows Docker's progress: bars redrawn in place on a terminal, plain lines otherwise."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import pty
import select
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import KetchCLI, ketch_command, require_root, require_tool

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


@pytest.fixture(autouse=True)
def _as_root() -> None:
    require_root()  # unpacking the pulled layers keeps ownership and device nodes


def _skopeo_manifest(ref: str) -> dict:
    skopeo = require_tool("skopeo")
    raw = subprocess.run([skopeo, "inspect", "--raw", "--tls-verify=false",
                          f"docker://{ref}"], check=True, capture_output=True,
                         timeout=60).stdout
    return json.loads(raw)


def _get_blob(host: str, repo: str, digest: str) -> bytes:
    conn = http.client.HTTPConnection(host, timeout=30)
    try:
        conn.request("GET", f"/v2/{repo}/blobs/{digest}")
        resp = conn.getresponse()
        assert resp.status == 200, resp.status
        return resp.read()
    finally:
        conn.close()


def _diff_ids(ketch: KetchCLI, name: str) -> list[str]:
    return json.loads(ketch("image", "inspect", "--format", "{{json .RootFS.Layers}}",
                            name).stdout)


@pytest.mark.parametrize("fmt", ["gzip", "zstd"])
def test_push_compresses_uncompressed_layers_readable_by_skopeo_and_pull(
        fmt: str, ketch: KetchCLI, busybox_tar: Path, inproc_registry, other_root) -> None:
    reg = inproc_registry()
    name = f"{reg.host}/comp/{fmt}:1"
    image_id = ketch("import", str(busybox_tar), name).stdout.strip()
    args = ["push", name] if fmt == "gzip" else ["push", "--compression-format", fmt, name]
    pushed = ketch(*args).stdout
    digest = pushed.strip().splitlines()[-1].split("digest: ")[1].split()[0]

    manifest = _skopeo_manifest(name)
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == (GZIP if fmt == "gzip" else ZSTD)
    blob = _get_blob(reg.host, f"comp/{fmt}", layer["digest"])
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
    assert len(blob) == layer["size"]
    if fmt == "gzip":
        plain = gzip.decompress(blob)
    else:
        import zstandard

        plain = zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    assert "sha256:" + hashlib.sha256(plain).hexdigest() == _diff_ids(ketch, name)[0]
    # Compressed: smaller than the tar it came from.
    assert layer["size"] < busybox_tar.stat().st_size * 0.8

    other = other_root("puller")
    out = other("pull", name).stdout
    assert f"Digest: {digest}" in out
    assert other("image", "inspect", "--format", "{{.Id}}", name).stdout.strip() == image_id


def test_push_without_compression_sends_the_tar_as_it_is(ketch: KetchCLI, busybox_tar: Path,
                                                        inproc_registry) -> None:
    reg = inproc_registry()
    name = f"{reg.host}/plain:1"
    ketch("import", str(busybox_tar), name)
    ketch("push", "--compression-format", "none", name)
    (layer,) = _skopeo_manifest(name)["layers"]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    assert layer["digest"] == _diff_ids(ketch, name)[0]


class _CountingProxy:
    """A loopback TCP relay counting the bytes clients send through it."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.sent = 0
        self.mounts = 0  # cross-repository mount requests seen
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, True),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False),
                             daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if count:
                    with self.lock:
                        self.sent += len(data)
                        self.mounts += data.count(b"/blobs/uploads/?mount=")
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def counting_proxy(inproc_registry) -> Iterator[_CountingProxy]:
    proxy = _CountingProxy(inproc_registry().host)
    yield proxy
    proxy.close()


def test_second_push_of_a_compressed_layer_sends_no_layer_bytes(
        ketch: KetchCLI, busybox_tar: Path, counting_proxy: _CountingProxy) -> None:
    name = f"{counting_proxy.host}/again:1"
    ketch("import", str(busybox_tar), name)
    ketch("push", name)
    first = counting_proxy.sent
    (layer,) = _skopeo_manifest(name)["layers"]
    assert first > layer["size"]  # the compressed layer went through once

    counting_proxy.sent = 0
    out = ketch("push", name).stdout
    assert ": Layer already exists" in out
    # HEADs, the config check and the manifest: a few kB, not the layer again.
    assert counting_proxy.sent < 16 * 1024, counting_proxy.sent

    # Under another name of the same registry: mounted from the first repository.
    ketch("tag", name, f"{counting_proxy.host}/elsewhere:1")
    counting_proxy.sent = 0
    out = ketch("push", f"{counting_proxy.host}/elsewhere:1").stdout
    assert ": Mounted from again" in out
    assert counting_proxy.sent < 16 * 1024, counting_proxy.sent


def test_push_rejects_an_unknown_compression_format_in_one_line(ketch: KetchCLI) -> None:
    proc = ketch("push", "--compression-format", "bogus", "127.0.0.1:1/x", check=False)
    assert proc.returncode == 125
    assert proc.stderr == ('Error: unsupported compression format "bogus": use gzip, zstd'
                           " or none\n")
    proc = ketch("push", "--compression-format", "zstd", "--compression-level", "99",
                 "127.0.0.1:1/x", check=False)
    assert proc.returncode == 125
    assert proc.stderr == "Error: compression level 99 is out of range for zstd (1-22)\n"


def _run_on_pty(root: Path, *args: str) -> tuple[int, str]:
    """Run ketch with its stdout on a pseudo-terminal; returns (exit code, output)."""
    master, slave = pty.openpty()
    env = dict(os.environ, KETCH_ROOT=str(root), KETCH_RUN_ROOT=str(root / "run"))
    proc = subprocess.Popen([*ketch_command(), *args], stdout=slave,
                            stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                raise AssertionError("no output from ketch for 60 s")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the slave side is closed, the process is done
                break
            if not data:
                break
            chunks.append(data)
        rc = proc.wait(60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rc, b"".join(chunks).decode()


def test_push_and_pull_on_a_terminal_redraw_layer_lines_in_place(
        ketch: KetchCLI, busybox_tar: Path, inproc_registry, other_root) -> None:
    reg = inproc_registry()
    name = f"{reg.host}/tty:1"
    ketch("import", str(busybox_tar), name)
    rc, out = _run_on_pty(ketch.root, "push", name)
    assert rc == 0, out
    # The layer's line is first "Preparing", then rewritten: cursor up, clear line.
    assert "\x1b[1A\r\x1b[2K" in out
    assert "Pushing [" in out
    assert ": Pushed" in out
    assert out.rstrip().splitlines()[-1].startswith("1: digest: sha256:")

    other = other_root("tty-puller")
    rc, out = _run_on_pty(other.root, "pull", name)
    assert rc == 0, out
    assert ": Pull complete" in out
    assert f"Status: Downloaded newer image for {name}" in out


def test_push_and_pull_without_a_terminal_print_plain_lines(
        ketch: KetchCLI, busybox_tar: Path, inproc_registry, other_root) -> None:
    reg = inproc_registry()
    name = f"{reg.host}/plainout:1"
    ketch("import", str(busybox_tar), name)
    out = ketch("push", name).stdout
    assert "\x1b[" not in out
    lines = out.splitlines()
    short = [ln.split(":")[0] for ln in lines if ln.endswith(": Preparing")]
    assert len(short) == 1
    assert f"{short[0]}: Pushed" in lines
    assert not any("Pushing" in ln for ln in lines)  # bars only on a terminal

    other = other_root("plain-puller")
    out = other("pull", name).stdout
    assert "\x1b[" not in out and "Pull complete" in out
    quiet = other_root("quiet-puller")("pull", "-q", name).stdout
    assert quiet == f"{name}\n"


def test_load_on_a_terminal_shows_loading_layer_bars_and_plain_output_without(
        ketch: KetchCLI, busybox_tar: Path, other_root, tmp_path: Path) -> None:
    ketch("import", str(busybox_tar), "saved/bb:1")
    archive = tmp_path / "bb.tar"
    ketch("save", "-o", str(archive), "saved/bb:1")

    rc, out = _run_on_pty(other_root("tty-loader").root, "load", "-i", str(archive))
    assert rc == 0, out
    assert ": Loading layer [" in out
    assert "\x1b[1A\r\x1b[2K" in out  # the layer's bar redrawn in place
    assert out.rstrip().splitlines()[-1] == "Loaded image: saved/bb:1"

    plain = other_root("plain-loader")("load", "-i", str(archive)).stdout
    assert plain == "Loaded image: saved/bb:1\n"


def test_a_pulled_image_is_pushed_with_its_compressed_blobs_as_they_are(
        ketch: KetchCLI, busybox_tar: Path, inproc_registry, other_root) -> None:
    first, second = inproc_registry(), inproc_registry()
    name = f"{first.host}/orig:1"
    ketch("import", str(busybox_tar), name)
    digest = ketch("push", name).stdout.strip().split("digest: ")[1].split()[0]

    other = other_root("repusher")
    other("pull", name)
    again = f"{second.host}/copy:1"
    other("tag", name, again)
    # zstd asked for: layers already compressed are not recompressed.
    out = other("push", "--compression-format", "zstd", again).stdout
    assert ": Pushed" in out
    assert out.strip().splitlines()[-1].split("digest: ")[1].split()[0] == digest
    assert _skopeo_manifest(again)["layers"] == _skopeo_manifest(name)["layers"]


def test_each_compression_level_is_its_own_blob(ketch: KetchCLI, busybox_tar: Path,
                                                inproc_registry) -> None:
    reg = inproc_registry()
    name = f"{reg.host}/levels:1"
    ketch("import", str(busybox_tar), name)
    ketch("push", "--compression-level", "1", name)
    fast = _skopeo_manifest(name)["layers"][0]
    # Another level: not the blob remembered for level 1, so compressed and sent again.
    out = ketch("push", "--compression-level", "9", name).stdout
    assert ": Pushed" in out
    best = _skopeo_manifest(name)["layers"][0]
    assert best["digest"] != fast["digest"] and best["size"] < fast["size"]
    # Back to level 1: the registry still has that blob.
    out = ketch("push", "--compression-level", "1", name).stdout
    assert ": Layer already exists" in out
    assert _skopeo_manifest(name)["layers"][0] == fast


def test_push_tries_one_mount_source_at_most(ketch: KetchCLI, busybox_tar: Path,
                                             counting_proxy: _CountingProxy) -> None:
    host = counting_proxy.host
    ketch("import", str(busybox_tar), f"{host}/t0:1")
    for i in range(1, 6):  # tagged in five other repositories, none of them pushed
        ketch("tag", f"{host}/t0:1", f"{host}/t{i}:1")
    out = ketch("push", f"{host}/t0:1").stdout
    assert ": Pushed" in out
    assert counting_proxy.mounts == 0  # no repository is known to hold the layer

    ketch("tag", f"{host}/t0:1", f"{host}/new:1")
    out = ketch("push", f"{host}/new:1").stdout
    assert ": Mounted from t0" in out
    assert counting_proxy.mounts == 1


def _remembered(root: Path) -> tuple[set[str], set[str]]:
    import sqlite3

    conn = sqlite3.connect(root / "ketch.db")
    try:
        pushed = {r[0] for r in conn.execute("SELECT diff_id FROM pushed_blobs")}
        repos = {r[0] for r in conn.execute("SELECT digest FROM blob_repositories")}
    finally:
        conn.close()
    return pushed, repos


def test_push_forgets_the_compressed_blobs_of_layers_removed_since(
        ketch: KetchCLI, ketch_root: Path, busybox_tar: Path, inproc_registry,
        tmp_path: Path) -> None:
    import io
    import tarfile

    reg = inproc_registry()
    ketch("import", str(busybox_tar), f"{reg.host}/gone:1")
    ketch("push", f"{reg.host}/gone:1")
    gone = _diff_ids(ketch, f"{reg.host}/gone:1")
    gone_blob = _skopeo_manifest(f"{reg.host}/gone:1")["layers"][0]["digest"]
    assert set(gone) <= _remembered(ketch_root)[0]

    small = tmp_path / "small.tar"
    with tarfile.open(small, "w") as tf:
        info = tarfile.TarInfo("hello.txt")
        info.size = 6
        tf.addfile(info, io.BytesIO(b"hello\n"))
    ketch("import", str(small), f"{reg.host}/kept:1")
    ketch("rmi", f"{reg.host}/gone:1")
    ketch("push", f"{reg.host}/kept:1")

    pushed, repos = _remembered(ketch_root)
    assert pushed == set(_diff_ids(ketch, f"{reg.host}/kept:1"))
    assert gone_blob not in repos
    assert _skopeo_manifest(f"{reg.host}/kept:1")["layers"][0]["digest"] in repos
