"""`ketch.Engine` as a library: pull and push are iterators of typed events that a front
door renders (the CLI as lines, the Engine API as JSON messages)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import KetchCLI, require_root

from ketch import Engine
from ketch.distribution.progress import PullResult, PushResult
from ketch.progress import Progress


@pytest.fixture(autouse=True)
def _as_root() -> None:
    require_root()


def test_engine_push_and_pull_yield_progress_then_a_result(
        ketch: KetchCLI, busybox_tar: Path, inproc_registry, other_root) -> None:
    reg = inproc_registry()
    name = f"{reg.host}/lib/busybox"
    image_id = ketch("import", str(busybox_tar), f"{name}:v1").stdout.strip()

    with Engine(ketch.root, ketch.root / "run") as engine:
        pushed = list(engine.push(f"{name}:v1"))
    assert all(isinstance(e, Progress) for e in pushed[:-1])
    assert str(pushed[0]) == f"The push refers to repository [{name}]"
    per_layer = [e for e in pushed if isinstance(e, Progress) and e.id]
    layer = per_layer[-1]
    assert per_layer[0].message() == {"status": "Preparing", "id": layer.id}
    assert layer.message() == {"status": "Pushed", "id": layer.id}
    assert len(layer.id) == 12
    # Bytes sent, as the API's progressDetail; the last one says all of them went.
    bars = [e.message() for e in per_layer if e.status == "Pushing"]
    assert bars and bars[-1]["progressDetail"]["current"] == bars[-1]["progressDetail"][
        "total"] > 0
    result = pushed[-1]
    assert isinstance(result, PushResult)
    assert result.tag == "v1" and result.digest.startswith("sha256:")
    assert result.message()["aux"] == {"Tag": "v1", "Digest": result.digest,
                                       "Size": result.size}

    other = other_root("other-root")
    with Engine(other.root, other.root / "run") as engine:
        events = engine.pull(f"{name}:v1")
        # nothing happens before the iterator is advanced
        assert engine.images.list() == []
        got = list(events)
        assert [str(e) for e in got if isinstance(e, Progress) and not e.id][-2:] == [
            f"Digest: {result.digest}", f"Status: Downloaded newer image for {name}:v1"]
        assert {"status": "Pulling from lib/busybox", "id": "v1"} in [
            e.message() for e in got if isinstance(e, Progress)]
        done = got[-1]
        assert isinstance(done, PullResult)
        assert (done.image_id, done.digest, done.downloaded) == (image_id, result.digest, True)
        assert str(done) == f"{name}:v1"
        again = list(engine.pull(f"{name}:v1", quiet=True))
        assert all(not e.id for e in again if isinstance(e, Progress))
        assert isinstance(again[-1], PullResult) and not again[-1].downloaded
    tags = other("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert tags == [f"{name}:v1"]
