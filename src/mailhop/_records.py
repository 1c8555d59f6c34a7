"""``NamedTuple`` for the value records, without typing's cost per field at import.

``typing.NamedTuple`` checks every field's annotation as the class is built, and
under ``from __future__ import annotations`` each annotation is a string it compiles
into a ``ForwardRef``. The sendmail start path builds 22 records of 171 fields, and
that check was a fifth of the instructions its imports execute (callgrind). Nothing
reads a record's annotations at run time: they are for mypy. So this ``NamedTuple``
is typing's to mypy (under ``TYPE_CHECKING``) and at run time builds the same class
from the field names and defaults alone: a ``collections.namedtuple`` with the class
body's docstring, methods and properties, as typing does. Use it exactly like
typing's class form::

    from mailhop._records import NamedTuple

    class Entry(NamedTuple):
        name: str
        size: int = 0
"""

from __future__ import annotations

__all__ = ["NamedTuple"]

TYPE_CHECKING = False  # not typing's: the enqueue path never imports typing (CONVENTIONS)
if TYPE_CHECKING:
    from typing import Any, NamedTuple
else:
    import collections

    # What typing.NamedTuple (3.11) refuses in a class body, and what it does not copy.
    _PROHIBITED = frozenset(
        {
            "__new__",
            "__init__",
            "__slots__",
            "__getnewargs__",
            "_fields",
            "_field_defaults",
            "_make",
            "_replace",
            "_asdict",
            "_source",
        }
    )
    _SPECIAL = frozenset({"__module__", "__name__", "__annotations__"})

    class _RecordMeta(type):
        def __new__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> type:
            annotations = namespace.get("__annotations__", {})
            defaults: list[object] = []
            for field in annotations:
                if field in namespace:
                    defaults.append(namespace[field])
                elif defaults:
                    raise TypeError(f"{name}.{field} has no default but follows a field with one")
            record = collections.namedtuple(
                name, annotations, defaults=defaults, module=namespace["__module__"]
            )
            record.__annotations__ = annotations  # the strings, as written
            for key, value in namespace.items():
                if key in _PROHIBITED:
                    raise AttributeError(f"Cannot overwrite NamedTuple attribute {key}")
                if key not in _SPECIAL and key not in record._fields:
                    setattr(record, key, value)
            return record

    _Record = type.__new__(_RecordMeta, "NamedTuple", (), {})

    def NamedTuple(typename: str, fields: object = None, /, **kwargs: object) -> type:
        raise TypeError("mailhop._records.NamedTuple supports the class form only")

    # ``class Entry(NamedTuple)`` derives from _Record, whose metaclass builds it.
    NamedTuple.__mro_entries__ = lambda bases: (_Record,)
