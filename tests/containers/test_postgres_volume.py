"""The real case behind volume seeding: PostgreSQL 15 from Debian, its cluster made by
`initdb` at build time under a `VOLUME`, starts with that data in a named volume; the
data survives `rm` and a new container on the same volume sees it."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.containers.conftest import TrackingCLI
from tests.helpers.host import wait_for
from tests.helpers.rootfs import debian_rootfs_tar

DOCKERFILE = """FROM pgbase
ENV PGDATA=/var/lib/postgresql/data
RUN mkdir -p "$PGDATA" && chown postgres:postgres "$PGDATA" && chmod 700 "$PGDATA"
USER postgres
RUN /usr/lib/postgresql/15/bin/initdb --auth=trust -D "$PGDATA"
VOLUME /var/lib/postgresql/data
CMD ["/usr/lib/postgresql/15/bin/postgres", "-c", "unix_socket_directories=/tmp", \
     "-c", "listen_addresses="]
"""


@pytest.fixture(scope="session")
def postgres_rootfs_tar() -> Path:
    """A bookworm root with Debian's postgresql, kept between test sessions."""
    return debian_rootfs_tar("postgres")


@pytest.fixture(scope="module")
def postgres_image(image_root: Path, postgres_rootfs_tar: Path) -> str:
    cli = TrackingCLI(image_root)
    cli("import", str(postgres_rootfs_tar), "pgbase", timeout=600)
    ctx = image_root / "pg-context"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    cli("build", "-q", "-t", "pgseeded", str(ctx), timeout=600)
    return "pgseeded"


def _query(ketch: TrackingCLI, cid: str, sql: str, check: bool = True):
    return ketch("exec", cid, "psql", "-h", "/tmp", "-Atc", sql, check=check)


def test_postgres_starts_on_its_seeded_named_volume_and_keeps_data(ketch, run_d,
                                                                   postgres_image):
    vol = "pgdata:/var/lib/postgresql/data"
    first = run_d("-v", vol, postgres_image)
    wait_for(lambda: _query(ketch, first, "select 1", check=False).returncode == 0,
             timeout=60, what="postgres to accept connections")
    p = ketch("exec", first, "stat", "-c", "%U %a", "/var/lib/postgresql/data")
    assert p.stdout == "postgres 700\n"
    _query(ketch, first, "create table t (x text); insert into t values ('kept')")
    ketch("stop", first)
    assert ketch("inspect", "-f", "{{.State.ExitCode}}", first).stdout == "0\n"
    ketch("rm", first)
    second = run_d("-v", vol, postgres_image)
    wait_for(lambda: _query(ketch, second, "select 1", check=False).returncode == 0,
             timeout=60, what="postgres to accept connections again")
    assert _query(ketch, second, "select x from t").stdout == "kept\n"
