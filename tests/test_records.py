"""mailhop._records.NamedTuple builds the class typing.NamedTuple would, but cheaply."""

from __future__ import annotations

import typing

import pytest

from mailhop._records import NamedTuple


class Record(NamedTuple):
    """A record with a default, a property and its own repr."""

    name: str
    size: int = 0

    @property
    def label(self) -> str:
        return f"{self.name}:{self.size}"

    def __repr__(self) -> str:
        return f"<{self.name}>"


class TypingRecord(typing.NamedTuple):
    name: str
    size: int = 0


def test_a_record_is_the_namedtuple_typing_would_build() -> None:
    record = Record(name="a")
    assert record == ("a", 0)
    assert tuple(record) == tuple(TypingRecord(name="a"))
    assert record._replace(size=3).label == "a:3"
    assert Record._fields == TypingRecord._fields
    assert Record._field_defaults == TypingRecord._field_defaults == {"size": 0}
    assert repr(record) == "<a>"
    assert Record.__doc__ == "A record with a default, a property and its own repr."
    assert (Record.__module__, Record.__qualname__) == (__name__, "Record")
    assert isinstance(record, tuple)
    with pytest.raises(AttributeError):
        setattr(record, "name", "b")  # noqa: B010 - mypy would refuse the plain form


def test_what_typing_refuses_is_refused() -> None:
    with pytest.raises(TypeError, match="no default"):

        class MissingDefault(NamedTuple):
            size: int = 0
            name: str  # type: ignore[misc]

    with pytest.raises(AttributeError, match="_replace"):

        class Overwrites(NamedTuple):
            name: str

            def _replace(self, **changes: object) -> Overwrites:  # type: ignore[misc]
                return self
