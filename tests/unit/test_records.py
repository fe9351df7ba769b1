"""@record behaves as @dataclass(frozen=True) does, for everything forklift relies on."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from forklift.records import record


@record
class Point:
    """A plain record."""

    x: int
    y: int = 0
    tags: tuple[str, ...] = ()
    notes: list[str] = dataclasses.field(default_factory=list, compare=False)


@record(kw_only=True)
class Labelled(Point):
    """A keyword-only record that extends another."""

    label: str
    hidden: str = dataclasses.field(default="h", repr=False)


@record
class Normalised:
    """A record whose __post_init__ rewrites a field, as several forklift records do."""

    name: str
    length: int = dataclasses.field(init=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.name.lower())
        object.__setattr__(self, "length", len(self.name))


@record(order=True)
class Version:
    """An ordered record."""

    major: int
    minor: int


def test_init_defaults_and_factories() -> None:
    p = Point(1)
    assert (p.x, p.y, p.tags, p.notes) == (1, 0, (), [])
    assert Point(1).notes is not p.notes  # a fresh list each time
    assert Point(1, 2, ("a",), ["n"]).notes == ["n"]
    assert Point(x=3, y=4) == Point(3, 4)
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, z=2)  # type: ignore[call-arg]


def test_keyword_only_subclass() -> None:
    item = Labelled(1, 2, label="a")
    assert (item.x, item.y, item.label, item.hidden) == (1, 2, "a", "h")
    with pytest.raises(TypeError):
        Labelled(1, 2, "a")  # type: ignore[call-arg,arg-type]
    assert [f.name for f in dataclasses.fields(item)] == ["x", "y", "tags", "notes", "label", "hidden"]


def test_equality_and_hash_follow_compared_fields() -> None:
    assert Point(1, 2, notes=["a"]) == Point(1, 2, notes=["b"])  # notes: compare=False
    assert Point(1, 2) != Point(1, 3)
    assert hash(Point(1, 2, ("t",))) == hash(Point(1, 2, ("t",)))
    assert len({Point(1), Point(1), Point(2)}) == 2
    assert Point(1) != Labelled(1, label="x")  # another class is never equal, as in dataclasses
    assert Point(1).__eq__(object()) is NotImplemented


def test_frozen() -> None:
    p = Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.x
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.other = 1  # type: ignore[attr-defined]


def test_repr_skips_repr_false_fields() -> None:
    assert repr(Point(1)) == "Point(x=1, y=0, tags=(), notes=[])"
    assert repr(Labelled(1, label="a")) == "Labelled(x=1, y=0, tags=(), notes=[], label='a')"


def test_post_init_and_init_false_fields() -> None:
    n = Normalised("ABC")
    assert (n.name, n.length) == ("abc", 3)
    assert dataclasses.replace(n, name="XY") == Normalised("xy")


def test_dataclass_functions_work() -> None:
    item = Labelled(1, label="a")
    assert dataclasses.is_dataclass(item)
    assert dataclasses.replace(item, label="b").label == "b"
    assert dataclasses.asdict(item) == {"x": 1, "y": 0, "tags": (), "notes": [], "label": "a", "hidden": "h"}
    assert dataclasses.astuple(Point(1, 2)) == (1, 2, (), [])


def test_order() -> None:
    assert Version(1, 2) < Version(1, 10) <= Version(1, 10) < Version(2, 0)
    assert sorted([Version(2, 0), Version(1, 5)]) == [Version(1, 5), Version(2, 0)]
    assert Version(3, 0) > Version(2, 9) >= Version(2, 9)


def test_copy_and_pickle() -> None:
    item = Labelled(1, 2, ("t",), label="a")
    assert copy.copy(item) == item
    assert copy.deepcopy(item) == item
    assert pickle.loads(pickle.dumps(item)) == item


def test_cannot_extend_a_frozen_dataclass() -> None:
    @dataclasses.dataclass(frozen=True)
    class Base:
        a: int

    with pytest.raises(TypeError, match="cannot inherit"):

        @record
        class Child(Base):
            b: int


def test_the_package_defines_its_frozen_classes_with_record() -> None:
    # One @dataclass(frozen=True) costs ~1 ms of start-up on every command; @record is the house style.
    import re
    from pathlib import Path

    import forklift

    package = Path(forklift.__file__).parent
    offenders = [
        f"{path.relative_to(package)}:{number}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "records.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.match(r"\s*@(dataclasses\.)?dataclass\(.*frozen=True", line)
    ]
    assert offenders == [], "use @record (forklift.records) instead of @dataclass(frozen=True)"
