"""The base of protocol events: frozen, keyword-only records built without ``exec``.

``@dataclass(frozen=True, kw_only=True)`` writes the source of each class's
``__init__``, ``__eq__``, ``__hash__``, ``__repr__`` and ``__setattr__`` and compiles
it as the class is built, and importing ``dataclasses`` brings in ``inspect`` and
``ast``: the 20 SMTP events cost every send and every queue run 12-17 ms before the
first byte left. ``Event`` gives them the same behaviour from shared methods that
read the fields the class lists once (h11 does the same): built with keywords only
(missing or unknown ones raise ``TypeError``), immutable, equal only to an event of
the same class with equal fields (a field declared ``field(compare=False)`` is left
out of equality and hash), hashable, and shown as ``Reply(code=250, ...)`` (a field
declared ``field(repr=False)``, such as a decoded SASL response, as ``<hidden>``).
``dataclass_transform`` makes mypy check constructor calls as for a dataclass::

    class MailFrom(Event):
        address: str
        size: int | None = None
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, dataclass_transform, overload

__all__ = ["Event", "FrozenEventError", "field"]

_T = TypeVar("_T")


class FrozenEventError(AttributeError):
    """An event's field was assigned or deleted: events never change."""


class _FieldSpecification:
    """What ``field(...)`` leaves in a class body until the class is built."""

    __slots__ = ("compare", "default", "default_factory", "shown")

    def __init__(
        self,
        default: object,
        default_factory: Callable[[], object] | None,
        compare: bool,
        shown: bool,
    ) -> None:
        self.default = default
        self.default_factory = default_factory
        self.compare = compare
        self.shown = shown


_NO_DEFAULT = object()


@overload
def field(*, default: _T, compare: bool = True, repr: bool = True) -> _T: ...
@overload
def field(*, default_factory: Callable[[], _T], compare: bool = True, repr: bool = True) -> _T: ...
@overload
def field(*, compare: bool = True, repr: bool = True) -> Any: ...  # noqa: ANN401 - as dataclasses.field: the annotation types it
def field(
    *,
    default: object = _NO_DEFAULT,
    default_factory: Callable[[], object] | None = None,
    compare: bool = True,
    repr: bool = True,
) -> object:
    """A field, with a default (or a factory of a fresh one per event, for a mutable
    value) or none; equality and hash leave it out when ``compare`` is false, and
    ``repr`` shows ``<hidden>`` for its value when ``repr`` is false (a secret)."""
    return _FieldSpecification(default, default_factory, compare, repr)


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(field,))
class Event:
    """Base class of events: see the module docstring."""

    # Keyword-only fields have no positional pattern (as dataclasses with kw_only).
    __match_args__ = ()
    # Filled in for each subclass by __init_subclass__, in declaration order.
    _fields: ClassVar[tuple[str, ...]] = ()
    _compared: ClassVar[tuple[str, ...]] = ()
    _hidden: ClassVar[frozenset[str]] = frozenset()  # fields repr does not show
    _defaults: ClassVar[dict[str, object]] = {}
    _factories: ClassVar[dict[str, Callable[[], object]]] = {}
    _field_names: ClassVar[frozenset[str]] = frozenset()
    _compares_all: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        fields = list(cls._fields)
        compared = list(cls._compared)
        hidden = set(cls._hidden)
        defaults = dict(cls._defaults)
        factories = dict(cls._factories)
        annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 - not inspect's cost
        for name, annotation in annotations.items():
            if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
                continue
            compare = True
            specification = cls.__dict__.get(name)
            if isinstance(specification, _FieldSpecification):
                compare = specification.compare
                if not specification.shown:
                    hidden.add(name)
                if specification.default_factory is not None:
                    factories[name] = specification.default_factory
                if specification.default is _NO_DEFAULT:
                    delattr(cls, name)
                else:
                    setattr(cls, name, specification.default)
            if name in cls.__dict__:
                defaults[name] = cls.__dict__[name]
            elif name not in factories and (defaults or factories):
                # What dataclasses refuses too, though keywords would make it work.
                raise TypeError(f"{cls.__name__}.{name} has no default but follows one that has")
            fields.append(name)
            if compare:
                compared.append(name)
        cls._fields = tuple(fields)
        cls._compared = tuple(compared)
        cls._hidden = frozenset(hidden)
        cls._defaults = defaults
        cls._factories = factories
        cls._field_names = frozenset(fields)
        cls._compares_all = cls._compared == cls._fields

    def __init__(self, **values: object) -> None:
        # Events are built per command and reply: the fields go straight into the
        # instance's dict (no __setattr__, which refuses), with no call per field.
        fields = self.__dict__
        fields.update(self._defaults)
        fields.update(values)
        if self._factories:
            for name, factory in self._factories.items():
                if name not in values:
                    fields[name] = factory()
        if fields.keys() != self._field_names:
            self._refuse(values)

    def _refuse(self, values: dict[str, object]) -> None:
        name = type(self).__name__
        for unknown in values.keys() - self._field_names:
            raise TypeError(f"{name}.__init__() got an unexpected keyword argument {unknown!r}")
        defaulted = self._defaults.keys() | self._factories.keys()
        missing = [field for field in self._fields if field not in defaulted | values.keys()]
        raise TypeError(f"{name}.__init__() missing keyword arguments: {', '.join(missing)}")

    def _compared_values(self) -> tuple[object, ...]:
        values = self.__dict__
        return tuple([values[name] for name in self._compared])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event) or type(other) is not type(self):
            return NotImplemented
        if self._compares_all:  # the same keys on both sides: compare the dicts
            return self.__dict__ == other.__dict__
        return self._compared_values() == other._compared_values()

    def __hash__(self) -> int:
        return hash(self._compared_values())

    def __repr__(self) -> str:
        values, hidden = self.__dict__, self._hidden
        shown = ", ".join(
            f"{name}=<hidden>" if name in hidden else f"{name}={values[name]!r}"
            for name in self._fields
        )
        return f"{type(self).__qualname__}({shown})"

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenEventError(f"cannot assign to field {name!r} of {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise FrozenEventError(f"cannot delete field {name!r} of {type(self).__name__}")
