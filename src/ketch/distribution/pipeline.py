"""The layers of a pull in one pass each: network → blob file → decompress → extract.

A download thread (up to three at once, Docker's default) writes a layer's bytes, as the
registry sent them, to a file in the store's tmp/ and hashes them on the way; the
extraction thread reads that same file as it grows (the file is the buffer between the
two, so a fast download never waits for a slow disk and nothing is read twice from the
network), decompresses it, hashes the tar (the DiffID) and unpacks it into staging.

Nothing is committed until its digests match: the blob is fsynced once and renamed into
the content store only when its digest and size are right; the unpacked tree is renamed
into the layer store only when its DiffID is right *and* its blob was committed. Each
layer unpacks into its own directory (a lower dir of the overlay: nothing in it depends
on the layers below), so two layers extract at once, taken in manifest order, while
later layers keep downloading; "Pull complete" is still reported in manifest order, as
Docker's sequential extraction reports it. After a failure no new download or
extraction starts, but those under way finish: what was complete is kept and the next
pull resumes.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from functools import partial

from ketch.errors import DigestMismatch, KetchError
from ketch.fdio import write_all
from ketch.progress import Progress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Generator
    from typing import Any

    from ketch.distribution.transport import Transport
    from ketch.images.service import ImageService
    from ketch.oci.model import Descriptor

CHUNK = 1 << 20
# Layers extracted at once: decompression and file creation of two layers keep two
# cores busy (ISA-L and system calls release the GIL); more only share them.
EXTRACTORS = 2
# A Downloading/Extracting progress event every this many (compressed) bytes.
PROGRESS_STEP = 1 << 20


def _short(digest: str) -> str:
    return digest.split(":", 1)[1][:12]


class _Cancelled(Exception):
    pass


class Spool:
    """One blob on its way in: the file its download writes, readable while it grows."""

    def __init__(self, desc: Descriptor) -> None:
        self.desc = desc
        self.cond = threading.Condition()
        self.path: str | None = None
        self.written = 0
        self.finished = False  # the download ended, committed or failed
        self.error: BaseException | None = None
        self.committed = False

    def open(self, cancel: threading.Event) -> int:
        """A descriptor on the blob's file once its download has started. Under the lock:
        the download renames the file into the store under it too."""
        with self.cond:
            while self.path is None and not self.finished:
                if cancel.is_set():
                    raise _Cancelled()
                self.cond.wait(0.2)
            if self.error is not None:
                raise self.error
            assert self.path is not None
            return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)

    def wait_committed(self, cancel: threading.Event) -> None:
        with self.cond:
            while not self.finished:
                if cancel.is_set():
                    raise _Cancelled()
                self.cond.wait(0.2)
            if self.error is not None:
                raise self.error


class SpoolReader:
    """Reads a spool's file up to what has been written, waiting for more until the
    download is over; the download's error (a digest mismatch, a stall) surfaces here."""

    def __init__(self, spool: Spool, cancel: threading.Event,
                 progress: Callable[[int], None] | None = None) -> None:
        self._spool = spool
        self._cancel = cancel
        self._fd = spool.open(cancel)
        self._pos = 0
        self._progress = progress
        self._next_report = PROGRESS_STEP
        self.closed = False

    def readable(self) -> bool:
        return True

    def _available(self) -> int:
        """Bytes written past our position, waiting for some unless the download is
        over (0 then: the end)."""
        sp = self._spool
        if self._cancel.is_set():
            raise _Cancelled()
        with sp.cond:
            while self._pos >= sp.written and not sp.finished:
                if self._cancel.is_set():
                    raise _Cancelled()
                sp.cond.wait(0.2)
            if sp.error is not None:
                raise sp.error
            return sp.written - self._pos

    def _advance(self, n: int) -> None:
        self._pos += n
        if self._progress is not None and self._pos >= self._next_report:
            self._progress(self._pos)
            self._next_report = self._pos + PROGRESS_STEP

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        avail = self._available()
        if avail <= 0:
            return 0
        n = os.preadv(self._fd, [view[:min(len(view), avail)]], self._pos)
        self._advance(n)
        return n

    def read(self, size: int = -1) -> bytes:
        # The gzip reader asks for bytes objects: one pread makes one, with no buffer to
        # allocate and copy from (which cost a third of the decompression thread's time).
        avail = self._available()
        if avail <= 0:
            return b""
        data = os.pread(self._fd, min(CHUNK if size is None or size < 0 else size, avail),
                        self._pos)
        self._advance(len(data))
        return data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._fd)


class LayerPipeline:
    """Downloads and unpacks the missing parts of one image's layers; `run` yields the
    progress events as they happen and returns when every layer is in the stores."""

    def __init__(self, images: ImageService, transport: Transport, repo_path: str,
                 scope: str, plan: list[tuple[Descriptor, str, str | None, str]],
                 missing_blobs: set[str], missing_chains: set[str],
                 max_downloads: int) -> None:
        self.images = images
        self.transport = transport
        self.repo_path = repo_path
        self.scope = scope
        self.plan = plan
        self.missing_chains = missing_chains
        self.spools: dict[str, Spool] = {}
        for desc, _, _, _ in plan:
            if desc.digest in missing_blobs and desc.digest not in self.spools:
                self.spools[desc.digest] = Spool(desc)
        self.max_downloads = max_downloads
        self.events: queue.SimpleQueue[Progress | None] = queue.SimpleQueue()
        self.cancel = threading.Event()
        self.errors: list[BaseException] = []
        self._todo = list(self.spools.values())
        self._todo_lock = threading.Lock()
        self._transports: list[Transport] = []
        # Extraction jobs (plan indexes, in order), what each reports when done, and the
        # next index whose "Pull complete" is due (they are reported in order).
        self._jobs = list(range(len(plan)))
        self._job_lock = threading.Lock()
        self._seen: set[str] = set()
        self._done: dict[int, str | None] = {}
        self._next_done = 0

    # -- the caller's side ---------------------------------------------------------------
    def run(self) -> Generator[Progress, None, None]:
        threads = [threading.Thread(target=self._guard, args=(self._download_loop,),
                                    name=f"pull-download-{i}", daemon=True)
                   for i in range(min(self.max_downloads, len(self.spools)))]
        extractions = len({c for _, _, _, c in self.plan if c in self.missing_chains})
        threads += [threading.Thread(target=self._guard, args=(self._extract_loop,),
                                     name=f"pull-extract-{i}", daemon=True)
                    for i in range(max(1, min(EXTRACTORS, extractions)))]
        emit = self.events.put
        for desc, _, _, chain in self.plan:
            short = _short(desc.digest)
            if desc.digest in self.spools:
                emit(Progress("Pulling fs layer", short))
            elif chain not in self.missing_chains:
                emit(Progress("Already exists", short))
        for th in threads:
            th.start()
        running = len(threads)
        try:
            while running:
                event = self.events.get()
                if event is None:
                    running -= 1
                    continue
                yield event
        finally:
            self.cancel.set()
            self._unblock()
            for th in threads:
                th.join()
        if self.errors:
            raise self._first_error()

    def _unblock(self) -> None:
        """Wake downloads blocked in a read (an abandoned pull, Ctrl-C) instead of
        waiting up to the read timeout for them."""
        import _socket

        with self._todo_lock:
            transports = list(self._transports)
        for t in transports:
            for conn in list(t._conns.values()):
                sock = getattr(conn, "sock", None)
                if sock is not None:
                    try:
                        sock.shutdown(_socket.SHUT_RDWR)
                    except OSError:
                        pass

    def _first_error(self) -> BaseException:
        # A digest mismatch or a stall is the cause; an extraction that stopped because
        # its download failed reports that same error, so any one of them will do, but
        # never report the cancellation itself.
        real = [e for e in self.errors if not isinstance(e, _Cancelled)]
        return real[0] if real else KetchError("pull cancelled")

    def _guard(self, loop: Any) -> None:
        try:
            loop()
        except BaseException as e:  # reported by `run`, in the caller's thread
            self.errors.append(e)
        finally:
            self.events.put(None)

    # -- downloads -------------------------------------------------------------------------
    def _download_loop(self) -> None:
        t = self.transport.clone()
        with self._todo_lock:
            self._transports.append(t)
        try:
            while not self.cancel.is_set():
                with self._todo_lock:
                    # After a failure no new download starts; those under way finish,
                    # so what completes is kept for the next pull.
                    if not self._todo or self.errors:
                        self._fail_rest()
                        return
                    spool = self._todo.pop(0)
                try:
                    self._download(t, spool)
                except BaseException as e:
                    with spool.cond:
                        spool.error = e
                        spool.finished = True
                        spool.cond.notify_all()
                    with self._todo_lock:
                        self.errors.append(e)
                        self._fail_rest()
                    return
        finally:
            t.close()

    def _fail_rest(self) -> None:
        """Mark the downloads that will not start as failed (the extraction waits on
        them). Called with the to-do lock held."""
        for spool in self._todo:
            with spool.cond:
                spool.error = _Cancelled()
                spool.finished = True
                spool.cond.notify_all()
        self._todo.clear()

    def _download(self, t: Transport, spool: Spool) -> None:
        import tempfile

        from ketch.store.intents import owner_tag

        desc = spool.desc
        short = _short(desc.digest)
        emit = self.events.put
        try:
            resp = t.request("GET", f"/v2/{self.repo_path}/blobs/{desc.digest}",
                             scope=self.scope, stream=True)
        except KetchError as e:
            raise type(e)(f"error pulling layer {short}: {e}") from None
        raw = resp.raw
        assert raw is not None
        content = self.images.content
        fd, path = tempfile.mkstemp(prefix=f"blob-{owner_tag()}-", dir=content.tmp)
        done = False
        try:
            with spool.cond:
                spool.path = path
                spool.cond.notify_all()
            h = hashlib.sha256()
            total = desc.size
            emit(Progress("Downloading", short, 0, total))
            got = 0
            next_report = PROGRESS_STEP
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            while True:
                if self.cancel.is_set():
                    raise _Cancelled()
                try:
                    n = raw.readinto(view)
                except TimeoutError:
                    from ketch.distribution.transport import read_timeout

                    raise KetchError(
                        f"error pulling layer {short}: {t.host} sent nothing for"
                        f" {read_timeout():g}s (read timed out)") from None
                except OSError as e:
                    raise KetchError(f"error pulling layer {short}: reading from {t.host}:"
                                     f" {e.strerror or e}") from None
                if not n:
                    break
                if total >= 0 and got + n > total:
                    raise DigestMismatch(f"content size mismatch for {desc.digest}:"
                                         f" the registry sent more than {total} bytes")
                chunk = view[:n]
                h.update(chunk)
                write_all(fd, chunk)
                got += n
                with spool.cond:
                    spool.written = got
                    spool.cond.notify_all()
                if got >= next_report:
                    emit(Progress("Downloading", short, got, total))
                    next_report = got + PROGRESS_STEP
            emit(Progress("Verifying Checksum", short))
            digest = "sha256:" + h.hexdigest()
            if digest != desc.digest:
                raise DigestMismatch(f"content digest mismatch for layer {short}: expected"
                                     f" {desc.digest}, got {digest}")
            if total >= 0 and got != total:
                raise DigestMismatch(f"content size mismatch for layer {short}: expected"
                                     f" {total} bytes, got {got}")
            os.fsync(fd)  # the one fsync, before the rename makes the blob visible
            final = content.path(desc.digest)
            with spool.cond:
                if os.path.exists(final):
                    os.unlink(path)
                else:
                    os.rename(path, final)
                spool.path = final
            done = True
        finally:
            os.close(fd)
            if not done:
                # An open reader keeps the file readable until it is done with it; one
                # that has yet to open it waits for the error (path unset, not finished).
                with spool.cond:
                    spool.path = None
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
        with spool.cond:
            spool.committed = True
            spool.finished = True
            spool.cond.notify_all()
        emit(Progress("Download complete", short))

    # -- extraction --------------------------------------------------------------------------
    def _extract_loop(self) -> None:
        """One extraction worker: takes the next layer in manifest order until none is
        left or a worker failed."""
        while True:
            if self.cancel.is_set():
                raise _Cancelled()
            with self._job_lock:
                if not self._jobs or self.errors:
                    return
                i = self._jobs.pop(0)
                desc, diff_id, parent, chain = self.plan[i]
                # The first job naming a chain extracts it; a blob named again (the same
                # layer elsewhere in the image) is waited for, not fetched twice.
                extract = chain in self.missing_chains and chain not in self._seen
                first_of_blob = desc.digest not in self._seen
                self._seen.update((chain, desc.digest) if extract else (desc.digest,))
            short = _short(desc.digest)
            spool = self.spools.get(desc.digest)
            if extract:
                self._extract(desc, diff_id, parent, chain, spool)
                self._report_done(i, short)
            elif spool is not None and first_of_blob:
                spool.wait_committed(self.cancel)
                self._report_done(i, short)
            else:
                self._report_done(i, None)

    def _report_done(self, index: int, short: str | None) -> None:
        """Record job `index` done and emit every "Pull complete" now due, in order."""
        with self._job_lock:
            self._done[index] = short
            while self._next_done in self._done:
                due = self._done.pop(self._next_done)
                self._next_done += 1
                if due is not None:
                    self.events.put(Progress("Pull complete", due))

    def _extract(self, desc: Descriptor, diff_id: str, parent: str | None, chain: str,
                 spool: Spool | None) -> None:
        emit = self.events.put
        short = _short(desc.digest)
        if spool is None:
            stream: Any = self.images.content.open(desc.digest)
            size = self.images.content.size(desc.digest)
            before_commit = None
        else:
            size = desc.size
            stream = SpoolReader(spool, self.cancel, partial(_extracting, emit, short, size))

            def before_commit(spool: Spool = spool) -> None:
                spool.wait_committed(self.cancel)
        try:
            emit(Progress("Extracting", short, 0, size))
            try:
                self.images.layers.unpack(
                    stream, chain_id=chain, diff_id=diff_id, parent=parent,
                    blob_digest=desc.digest, media_type=desc.media_type,
                    blob_size=desc.size, before_commit=before_commit)
            except BaseException as e:
                # The download's own error explains an extraction that broke off.
                if spool is not None and spool.error is not None:
                    raise spool.error from None
                if isinstance(e, DigestMismatch):
                    raise DigestMismatch(f"layer {short}: {e}") from None
                raise
        finally:
            stream.close()
        emit(Progress("Extracting", short, size, size))


def _extracting(emit: Callable[[Progress], None], short: str, size: int, done: int) -> None:
    emit(Progress("Extracting", short, done, size))
