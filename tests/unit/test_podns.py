"""The hand-over of a pod infra's start to the members that wait on it (containers.podns)."""

from __future__ import annotations

import threading

from ketch.containers.podns import InfraStart
from ketch.runtime.monitor import ContainerStartError


class _FailingInfra:
    """An Engine whose infra start makes the namespaces, then (once `go` is set) fails
    as runc's create does for an image without its shell: what a member's start waits
    on."""

    def __init__(self) -> None:
        self.go = threading.Event()

    def reopen(self) -> _FailingInfra:
        return self

    def __enter__(self) -> _FailingInfra:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    @property
    def containers(self) -> _FailingInfra:
        return self

    def start(self, cid: str, *, namespaces_ready) -> None:
        namespaces_ready()
        self.go.wait(30)
        error = ContainerStartError('OCI runtime create failed: exec: "/bin/sh": stat'
                                    " /bin/sh: no such file or directory", 127)
        error.exit_code_is_specific = True
        raise error


def test_each_member_waiting_on_a_failed_infra_gets_the_error_as_an_exception_of_its_own():
    infra = _FailingInfra()
    start = InfraStart(infra, "infra")  # type: ignore[arg-type]  # a stand-in Engine
    barrier = threading.Barrier(4, timeout=30)
    got: list[BaseException] = []

    def member() -> None:
        barrier.wait()
        try:
            start.wait()
        except ContainerStartError as e:
            got.append(e)

    threads = [threading.Thread(target=member) for _ in range(3)]
    for t in threads:
        t.start()
    barrier.wait()  # (all three wait on the start before it fails)
    infra.go.set()
    for t in threads:
        t.join()
    assert [(str(e), e.exit_code, e.exit_code_is_specific) for e in got] == [(
        'OCI runtime create failed: exec: "/bin/sh": stat /bin/sh: no such file or'
        " directory", 127, True)] * 3
    assert len({id(e) for e in got}) == 3
    assert not any(e is start.error for e in got)
