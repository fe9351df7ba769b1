"""``@record``: frozen dataclasses that cost next to nothing to define.

``@dataclass(frozen=True)`` compiles six methods with ``exec`` for every class when its module is
imported: about 1 ms per class, and a cached rebuild imports over a hundred of them, most never
instantiated. That was a third of forklift's start-up. A record is a real dataclass
(``dataclasses.fields``, ``replace``, ``asdict`` and ``is_dataclass`` work, and mypy checks it as a
frozen dataclass through ``dataclass_transform``), but:

- ``__init__`` is compiled on the class's first instantiation, not at import;
- ``__eq__``, ``__hash__`` and ``__repr__`` are shared functions driven by per-class field lists;
- assignment and deletion of attributes always raise ``FrozenInstanceError``.

Not supported (none is used here): ``InitVar`` fields, ``slots`` and a record inheriting
from a ``@dataclass(frozen=True)`` class.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform, overload

_T = TypeVar("_T")

# Per-class attributes set by @record (dunder-free names keep them out of dataclass field scans).
_KEY = "_record_key_"  # attrgetter of the compared fields: __eq__
_HASH_KEY = "_record_hash_key_"  # attrgetter of the hashed fields: __hash__
_REPR = "_record_repr_"  # names shown by __repr__


def _empty(_obj: object) -> tuple[()]:
    return ()


def _getter(names: tuple[str, ...]) -> Callable[[object], object]:
    # attrgetter of one name returns the value itself: fine, eq and hash only compare like with like.
    return attrgetter(*names) if names else _empty


def _comparison(compare: Callable[[Any, Any], bool]) -> Callable[[object, object], Any]:
    """``__eq__``/``__lt__``/...: ``compare`` on the compared fields of two records of one class."""

    def method(self: object, other: object) -> Any:  # bool, or NotImplemented
        if other.__class__ is not self.__class__:
            return NotImplemented
        key: Callable[[object], object] = getattr(self, _KEY)
        return compare(key(self), key(other))

    return method


_eq = _comparison(operator.eq)


def _hash(self: object) -> int:
    key: Callable[[object], object] = getattr(self, _HASH_KEY)
    return hash(key(self))


def _repr(self: object) -> str:
    names: tuple[str, ...] = getattr(self, _REPR)
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
    return f"{type(self).__qualname__}({shown})"


def _frozen_setattr(self: object, name: str, value: object) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: object, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


def _init_source(cls: type) -> tuple[str, dict[str, Any]]:
    """The source of ``cls.__init__`` and the names it refers to, as dataclasses would write it."""
    names: dict[str, Any] = {"_set": object.__setattr__, "_FACTORY": _HasFactory}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for f in dataclasses.fields(cls):
        has_factory = f.default_factory is not dataclasses.MISSING
        if has_factory:
            names[f"_factory_{f.name}"] = f.default_factory
        elif f.default is not dataclasses.MISSING:
            names[f"_default_{f.name}"] = f.default
        if f.init:
            if has_factory:
                param = f"{f.name}=_FACTORY"
                value = f"_factory_{f.name}() if {f.name} is _FACTORY else {f.name}"
            elif f.default is not dataclasses.MISSING:
                param, value = f"{f.name}=_default_{f.name}", f.name
            else:
                param, value = f.name, f.name
            (keyword if f.kw_only else positional).append(param)
        elif has_factory:
            value = f"_factory_{f.name}()"
        elif f.default is not dataclasses.MISSING:
            value = f"_default_{f.name}"
        else:
            continue
        body.append(f"    _set(self, {f.name!r}, {value})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    params = ["self", *positional, *(["*", *keyword] if keyword else [])]
    source = f"def __init__({', '.join(params)}) -> None:\n" + ("\n".join(body) or "    pass") + "\n"
    return source, names


class _HasFactory:
    """The default of a parameter whose field has a default_factory (None may be a real value)."""


def _lazy_init(cls: type) -> Callable[..., None]:
    def __init__(self: object, *args: Any, **kwargs: Any) -> None:
        source, names = _init_source(cls)
        exec(source, names)
        init: Callable[..., None] = names["__init__"]
        init.__qualname__ = f"{cls.__qualname__}.__init__"
        cls.__init__ = init  # type: ignore[misc]  # replace this stub: compiled once per class
        init(self, *args, **kwargs)

    return __init__


def _make_record(cls: type[_T], kw_only: bool, order: bool) -> type[_T]:
    for base in cls.__mro__[1:]:
        params = getattr(base, "__dataclass_params__", None)
        if params is not None and params.frozen:
            raise TypeError(f"@record class {cls.__qualname__} cannot inherit the frozen dataclass {base}")
    cls = dataclasses.dataclass(init=False, repr=False, eq=False, kw_only=kw_only)(cls)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    compared = tuple(f.name for f in fields if f.compare)
    hashed = tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash))
    setattr(cls, _KEY, staticmethod(_getter(compared)))
    setattr(cls, _HASH_KEY, staticmethod(_getter(hashed)))
    setattr(cls, _REPR, tuple(f.name for f in fields if f.repr))
    own = cls.__dict__
    methods: dict[str, Callable[..., Any]] = {
        "__init__": _lazy_init(cls),
        "__repr__": _repr,
        "__eq__": _eq,
        "__setattr__": _frozen_setattr,
        "__delattr__": _frozen_delattr,
    }
    for name, method in methods.items():
        if name not in own:
            setattr(cls, name, method)
    if order:
        for name, compare in (
            ("__lt__", operator.lt),
            ("__le__", operator.le),
            ("__gt__", operator.gt),
            ("__ge__", operator.ge),
        ):
            setattr(cls, name, _comparison(compare))
    # A class body that defines __eq__ gets __hash__ = None from Python: keep its choice, as dataclasses does.
    if "__hash__" not in own:
        cls.__hash__ = _hash  # type: ignore[method-assign]
    return cls


@overload
@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: type[_T], /) -> type[_T]: ...


@overload
def record(*, kw_only: bool = False, order: bool = False) -> Callable[[type[_T]], type[_T]]: ...


def record(
    cls: type[_T] | None = None, /, *, kw_only: bool = False, order: bool = False
) -> type[_T] | Callable[[type[_T]], type[_T]]:
    """Make ``cls`` a frozen dataclass (``@record`` or ``@record(kw_only=True)``); see the module doc."""
    if cls is None:
        return lambda c: _make_record(c, kw_only, order)
    return _make_record(cls, kw_only, order)
