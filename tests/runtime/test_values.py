"""ketch.values: the stand-ins for dataclass, cached_property and contextmanager used on
the short commands' paths."""

from __future__ import annotations

import pytest

from ketch.network.config import NetworkConfig
from ketch.network.models import PortBinding
from ketch.runtime.spec import ContainerSpec, Mount, User
from ketch.values import cached_property, contextmanager, field, fields_of, value


@value
class Point:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)


@value(frozen=True)
class Key:
    name: str
    n: int = 1


def test_construction_positional_keyword_and_defaults() -> None:
    assert Point(1).y == 0
    assert Point(1, 2).y == 2
    assert Point(x=3, y=4).x == 3
    assert Point(1).tags == []


def test_default_factory_makes_a_new_object_per_instance() -> None:
    a, b = Point(1), Point(1)
    a.tags.append("t")
    assert b.tags == []
    assert "tags" not in vars(Point)


def test_bad_arguments_raise_type_error() -> None:
    with pytest.raises(TypeError, match="missing"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values"):
        Point(1, x=2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="unexpected keyword"):
        Point(1, z=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional"):
        Point(1, 2, [], 4)  # type: ignore[call-arg]


def test_equality_repr_and_hash() -> None:
    assert Point(1, 2) == Point(1, 2)
    assert Point(1, 2) != Point(1, 3)
    assert Point(1) != Key("a")
    assert repr(Point(1)) == "Point(x=1, y=0, tags=[])"
    assert Point.__hash__ is None  # mutable and comparable: unhashable, as a dataclass
    assert {Key("a"), Key("a"), Key("b")} == {Key("a"), Key("b")}


def test_frozen_refuses_changes() -> None:
    k = Key("a")
    with pytest.raises(AttributeError):
        k.n = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del k.name  # type: ignore[misc]
    assert k.n == 1


def test_fields_in_declaration_order() -> None:
    assert fields_of(Point) == ("x", "y", "tags")
    assert fields_of(Point(1)) == ("x", "y", "tags")


def test_non_default_after_default_is_refused() -> None:
    with pytest.raises(TypeError, match="follows default"):
        @value
        class Bad:
            a: int = 0
            b: int


def test_ketch_records_keep_their_behaviour() -> None:
    spec = ContainerSpec(id="c1", rootfs=__import__("pathlib").Path("/r"), args=["true"])
    assert spec.user == User() and spec.mounts == [] and spec.cgroups_path == "/ketch/c1"
    assert Mount("/x", "/y").to_oci()["options"] == ["rbind"]
    assert PortBinding(80) == PortBinding(80, "tcp")
    assert len({PortBinding(80), PortBinding(80)}) == 1
    cfg = NetworkConfig.load(None, env={})
    cfg.update({"mtu": "1400"})
    assert cfg.mtu == 1400
    with pytest.raises(Exception, match="unknown network setting"):
        cfg.update({"nope": 1})


def test_a_derived_value_has_its_bases_fields_first():
    @value
    class Node:
        pos: int
        text: str = ""

    @value
    class Named(Node):
        name: str = "x"

    n = Named(3, "t", "n")
    assert (n.pos, n.text, n.name) == (3, "t", "n")
    assert Named(pos=1) == Named(1, "", "x")
    assert Named(1) != Node(1)
    assert fields_of(Named) == ("pos", "text", "name")
    assert repr(Named(2, name="y")) == f"{Named.__qualname__}(pos=2, text='', name='y')"


# -- cached_property ----------------------------------------------------------------------
class Counted:
    def __init__(self) -> None:
        self.calls = 0

    @cached_property
    def answer(self) -> int:
        """Computed once."""
        self.calls += 1
        return 40 + self.calls + 1


def test_cached_property_computes_once_per_instance_and_can_be_reset() -> None:
    a, b = Counted(), Counted()
    assert (a.answer, a.answer, a.calls) == (42, 42, 1)
    assert (b.answer, b.calls) == (42, 1)
    a.answer = 7  # assignable, as functools' (it lives in the instance's __dict__)
    assert a.answer == 7
    del a.answer
    assert (a.answer, a.calls) == (43, 2)
    assert Counted.answer.__doc__ == "Computed once."
    assert isinstance(Counted.__dict__["answer"], cached_property)


def test_cached_property_refuses_two_names() -> None:
    def value_of(self: object) -> int:
        return 1

    shared = cached_property(value_of)
    with pytest.raises(RuntimeError) as info:  # Python 3.11 wraps __set_name__'s error
        type("Twice", (), {"a": shared, "b": shared})
    assert isinstance(info.value.__cause__, TypeError)
    assert "two names" in str(info.value.__cause__)


# -- contextmanager -----------------------------------------------------------------------
@contextmanager
def tracked(log: list[str], *, handle: type[BaseException] | None = None,
            replace: BaseException | None = None):
    log.append("enter")
    try:
        yield "thing"
    except BaseException as e:
        log.append(f"caught {type(e).__name__}")
        if replace is not None:
            raise replace from e
        if handle is None or not isinstance(e, handle):
            raise
    else:
        log.append("ok")
    finally:
        log.append("exit")


def test_contextmanager_runs_the_generator_around_the_block() -> None:
    log: list[str] = []
    with tracked(log) as got:
        log.append(f"body {got}")
    assert log == ["enter", "body thing", "ok", "exit"]


def test_contextmanager_passes_an_exception_it_does_not_handle() -> None:
    log: list[str] = []
    with pytest.raises(KeyError) as info:
        with tracked(log):
            raise KeyError("k")
    assert info.value.args == ("k",)
    assert log == ["enter", "caught KeyError", "exit"]


def test_contextmanager_suppresses_an_exception_the_generator_handles() -> None:
    log: list[str] = []
    with tracked(log, handle=ValueError):
        raise ValueError("handled")
    assert log == ["enter", "caught ValueError", "exit"]


def test_contextmanager_raises_what_the_generator_raises_instead() -> None:
    log: list[str] = []
    with pytest.raises(RuntimeError, match="replaced") as info:
        with tracked(log, replace=RuntimeError("replaced")):
            raise OSError("first")
    assert isinstance(info.value.__cause__, OSError)


def test_contextmanager_lets_stop_iteration_and_runtime_errors_of_the_block_through() -> None:
    for exc in (StopIteration("s"), RuntimeError("r")):
        log: list[str] = []
        with pytest.raises(type(exc)) as info:
            with tracked(log):
                raise exc
        assert info.value is exc


def test_contextmanager_refuses_generators_that_do_not_yield_once() -> None:
    @contextmanager
    def never():
        return
        yield

    @contextmanager
    def twice():
        yield 1
        yield 2

    with pytest.raises(RuntimeError, match="didn't yield"):
        with never():
            pass
    with pytest.raises(RuntimeError, match="didn't stop"):
        with twice():
            pass
