"""The `net_ketch` fixture: a test root with its own network names and two images."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import KetchCLI, import_image, require_root, require_tool


@pytest.fixture
def net_ketch(ketch: KetchCLI, busybox_tar: Path) -> KetchCLI:
    require_root()
    for tool in ("runc", "conmon", "iptables", "ip"):
        require_tool(tool)
    import_image(ketch.root, busybox_tar, "busybox", 'CMD ["sh"]')
    import_image(ketch.root, busybox_tar, "web", "EXPOSE 80",
                 'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]')
    return ketch


