"""The notes' sample app end to end on a real `node` image made from Debian packages:
build, the cache when only the source changes, and the page through `-p HOST:80`."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.build.conftest import REPO, Builder
from tests.build.test_build_cache import steps
from tests.helpers.host import fetch
from tests.helpers.ports import free_port
from tests.helpers.shared_images import link_images


def test_sample_app_builds_caches_and_serves_its_page(kb: Builder, node_template: Path
                                                      ) -> None:
    link_images(node_template, kb.root)
    app = kb.tmp / "node-app"
    shutil.copytree(REPO / "examples" / "node-app", app)
    first = kb.build(app, "-t", "node-hello", timeout=600).stdout
    assert steps(first)[4] == "run"  # RUN npm install, offline: no dependencies
    assert "Successfully tagged node-hello:latest" in first

    (app / "server.js").write_text((app / "server.js").read_text().replace(
        "Hello from ketch!", "Hello again from ketch!"))
    second = kb.build(app, "-t", "node-hello", timeout=600).stdout
    assert steps(second) == {1: "new", 2: "cache", 3: "cache", 4: "cache", 5: "new",
                             6: "new", 7: "new"}

    port = free_port()
    kb("run", "-d", "-p", f"{port}:80", "--name", "node-hello", "node-hello")
    try:
        page = fetch(f"http://127.0.0.1:{port}/")
        assert "<h1>Hello again from ketch!</h1>" in page
    finally:
        kb("rm", "-f", "node-hello", check=False)
