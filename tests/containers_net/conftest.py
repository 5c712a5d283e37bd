"""The `net_ketch` fixture: a test root with its own network names and two images."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import KetchCLI, require_root, require_tool


@pytest.fixture
def net_ketch(ketch: KetchCLI, busybox_tar: Path) -> KetchCLI:
    require_root()
    for tool in ("runc", "conmon", "iptables", "ip"):
        require_tool(tool)
    ketch("import", "--change", 'CMD ["sh"]', str(busybox_tar), "busybox")
    ketch("import", "--change", "EXPOSE 80", "--change",
          'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]', str(busybox_tar), "web")
    return ketch


