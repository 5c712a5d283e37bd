"""Stand-ins that cost nothing at import for three things of the standard library:
`value` for `dataclasses.dataclass`, `cached_property` for functools', `contextmanager`
for contextlib's.

`dataclasses.dataclass` writes and compiles the source of `__init__`, `__repr__`,
`__eq__` (and `__setattr__`, `__hash__` when frozen) for every class, about 1 ms a class
on our machines; the modules on `ketch run`'s path hold some twenty such classes, which
cost the command 15-20 ms before it did anything. `value` gives the same behaviour for
the simple records these modules use: keyword or positional construction in field order,
defaults and `field(default_factory=...)`, `==` over the fields, a dataclass-style
`repr`, and for `frozen=True` immutability and a hash. The methods are generic (they
loop over the field names) instead of generated; records are built a few times per
command, so the slower construction does not show. Type checkers see a dataclass
(PEP 681 `dataclass_transform`).

A value class may derive from another: its fields follow the base's, as with dataclasses.
Not supported: `ClassVar`/`InitVar` annotations, `__post_init__`, `order=True`,
`slots=True` (no module of ketch needs them; `dataclasses` is not used, see
ARCHITECTURE.md, "Start-up policy").

`functools` imports `collections` (and `types`, `operator`, `reprlib`, `keyword`), and
`contextlib` imports `functools`: 9.3 and 11.7 million instructions of a command's start
(callgrind, `python -I -S -c "import os, functools"` against `import os`; the whole of
`ketch image inspect` is about 60 million), for one decorator each. `cached_property`
here is functools' (the value computed once per instance, stored in its `__dict__`,
one lock per property as in Python 3.11); `contextmanager` runs a generator to its one
`yield` on entry and on to its end at exit, throwing the block's exception into it,
which may handle it (suppressed) or raise it or another. Type checkers see the
standard library's.
"""

from __future__ import annotations

TYPE_CHECKING = False  # `typing` costs milliseconds of every command's start-up
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
    from contextlib import contextmanager as contextmanager
    from functools import cached_property as cached_property
else:
    def dataclass_transform(**_: object) -> Callable[[T], T]:
        """At run time a no-op; type checkers see typing's (PEP 681)."""
        return lambda f: f

_MISSING = object()


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], T]) -> T:
    """A field whose default is made per instance, as `dataclasses.field(default_factory=)`."""
    return _Factory(default_factory)  # type: ignore[return-value]  # the decorator swaps the marker for the factory's value


def fields_of(obj: Any) -> tuple[str, ...]:
    """The field names of a value class or instance, in declaration order."""
    return obj.__value_fields__


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    cls = type(self)
    names: tuple[str, ...] = cls.__value_fields__
    if len(args) > len(names):
        raise TypeError(f"{cls.__name__}() takes {len(names)} positional arguments but "
                        f"{len(args)} were given")
    defaults: dict[str, Any] = cls.__value_defaults__
    setter = object.__setattr__
    for i, name in enumerate(names):
        if i < len(args):
            if name in kwargs:
                raise TypeError(f"{cls.__name__}() got multiple values for argument {name!r}")
            value = args[i]
        elif name in kwargs:
            value = kwargs.pop(name)
        else:
            default = defaults.get(name, _MISSING)
            if default is _MISSING:
                raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")
            value = default.make() if isinstance(default, _Factory) else default
        setter(self, name, value)
    if kwargs:
        raise TypeError(f"{cls.__name__}() got an unexpected keyword argument "
                        f"{next(iter(kwargs))!r}")


def from_fields(cls: type[T], fields: dict[str, Any]) -> T:
    """An instance from a mapping of every field to its value (a database row), without
    the per-field checks of `__init__`: for records read by the hundred."""
    obj = object.__new__(cls)
    if fields.keys() != set(cls.__value_fields__):  # type: ignore[attr-defined]  # set on the class by @value
        raise TypeError(f"{cls.__name__}: fields {sorted(fields)} do not match "
                        f"{list(cls.__value_fields__)}")  # type: ignore[attr-defined]  # set on the class by @value
    obj.__dict__.update(fields)
    return obj


def _repr(self: Any) -> str:
    inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__value_fields__)
    return f"{type(self).__qualname__}({inner})"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return all(getattr(self, n) == getattr(other, n) for n in self.__value_fields__)


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise AttributeError(f"cannot assign to field {name!r}: {type(self).__name__} is frozen")


def _frozen_delattr(self: Any, name: str) -> None:
    raise AttributeError(f"cannot delete field {name!r}: {type(self).__name__} is frozen")


def _hash(self: Any) -> int:
    return hash(tuple(getattr(self, n) for n in self.__value_fields__))


@dataclass_transform(field_specifiers=(field,))
def value(cls: type[T] | None = None, /, *, frozen: bool = False) -> Any:
    """Class decorator: see the module's docstring."""

    def wrap(c: type[T]) -> type[T]:
        inherited: tuple[str, ...] = ()
        defaults: dict[str, Any] = {}
        for base in reversed(c.__mro__[1:]):
            base_fields = base.__dict__.get("__value_fields__", ())
            inherited += tuple(n for n in base_fields if n not in inherited)
            defaults.update(base.__dict__.get("__value_defaults__", {}))
        own = tuple(n for n in c.__dict__.get("__annotations__", {}) if n not in inherited)
        names = inherited + own
        for name in own:
            if name in c.__dict__:
                default = c.__dict__[name]
                defaults[name] = default
                if isinstance(default, _Factory):
                    delattr(c, name)
            elif defaults:
                raise TypeError(f"non-default argument {name!r} follows default argument")
        c.__value_fields__ = names  # type: ignore[attr-defined]  # @value's own class attributes
        c.__value_defaults__ = defaults  # type: ignore[attr-defined]  # @value's own class attributes
        c.__init__ = _init  # type: ignore[method-assign]  # @value writes the class's methods
        if "__repr__" not in c.__dict__:
            c.__repr__ = _repr  # type: ignore[method-assign]  # @value writes the class's methods
        c.__eq__ = _eq  # type: ignore[method-assign]  # @value writes the class's methods
        if frozen:
            c.__setattr__ = _frozen_setattr  # type: ignore[method-assign]  # @value writes the class's methods
            c.__delattr__ = _frozen_delattr  # type: ignore[method-assign]  # @value writes the class's methods
            c.__hash__ = _hash  # type: ignore[method-assign]  # @value writes the class's methods
        else:
            c.__hash__ = None  # type: ignore[assignment]  # unhashable, as a mutable dataclass
        return c

    return wrap if cls is None else wrap(cls)


if not TYPE_CHECKING:
    from _thread import RLock

    class cached_property:  # noqa: N801 - named as the standard library's
        """functools.cached_property (see the module's docstring)."""

        def __init__(self, func: Callable[[Any], Any]) -> None:
            self.func = func
            self.attrname: str | None = None
            self.__doc__ = func.__doc__
            self.lock = RLock()

        def __set_name__(self, owner: type, name: str) -> None:
            if self.attrname is None:
                self.attrname = name
            elif name != self.attrname:
                raise TypeError(f"cannot assign the same cached_property to two names"
                                f" ({self.attrname!r} and {name!r})")

        def __get__(self, instance: Any, owner: type | None = None) -> Any:
            if instance is None:
                return self
            name = self.attrname
            if name is None:
                raise TypeError("cached_property used without __set_name__")
            cache = instance.__dict__
            if name in cache:
                return cache[name]
            with self.lock:
                if name not in cache:  # another thread may have been first
                    cache[name] = self.func(instance)
                return cache[name]

    class _Generated:
        """The context manager `contextmanager` makes of one generator."""

        __slots__ = ("gen",)

        def __init__(self, gen: Any) -> None:
            self.gen = gen

        def __enter__(self) -> Any:
            try:
                return next(self.gen)
            except StopIteration:
                raise RuntimeError("generator didn't yield") from None

        def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
            if kind is None:
                try:
                    next(self.gen)
                except StopIteration:
                    return False
                raise RuntimeError("generator didn't stop")
            if exc is None:
                exc = kind()
            try:
                self.gen.throw(exc)
            except StopIteration as done:
                # the generator handled the exception and ended: the block's exception
                # is suppressed (unless it was that StopIteration)
                return done is not exc
            except RuntimeError as err:
                if err is exc or (isinstance(exc, StopIteration) and err.__cause__ is exc):
                    return False  # the block's own exception goes on (PEP 479's wrapper too)
                raise
            except BaseException as err:
                if err is exc:
                    return False
                raise
            raise RuntimeError("generator didn't stop after throw()")

    def contextmanager(func: Callable[..., Any]) -> Callable[..., Any]:
        """contextlib.contextmanager (see the module's docstring)."""

        def make(*args: Any, **kwargs: Any) -> _Generated:
            return _Generated(func(*args, **kwargs))

        make.__name__ = func.__name__
        make.__qualname__ = func.__qualname__
        make.__doc__ = func.__doc__
        make.__wrapped__ = func
        return make
