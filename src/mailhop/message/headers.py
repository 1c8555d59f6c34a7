"""The header block of a message: original bytes for output, parsed access for logic.

A field keeps the exact bytes it was read with (name, colon, value, continuation lines
and line endings), so a message that nothing rewrites leaves byte for byte as it came.
Logic reads names case-insensitively and values unfolded (RFC 5322 §2.2.3: remove
each line break that is followed by white space) and decoded as UTF-8 (RFC 6532),
with undecodable bytes kept as surrogate escapes so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from mailhop.message.errors import MalformedMessageError, UnsafeValueError

__all__ = [
    "MAX_LINE_OCTETS",
    "HeaderBlock",
    "HeaderField",
    "check_safe_value",
    "header_name_length",
]

# RFC 5322 §2.1.1: a line MUST NOT be longer than 998 characters, excluding CRLF.
MAX_LINE_OCTETS = 998
# Where folding prefers to break a line we write (RFC 5322 §2.1.1 "SHOULD" 78).
PREFERRED_LINE_OCTETS = 78

_WHITESPACE = b" \t"
# RFC 5322 §3.6.8: ftext, the octets a field name is made of (printable US-ASCII but
# colon; the name ends at the first colon, so no colon reaches the check).
_FIELD_NAME_OCTETS = bytes(range(33, 127))


def header_name_length(line: bytes) -> int:
    """Length of the field name if ``line`` starts a header field, else 0.

    A name is one or more printable US-ASCII characters except colon (RFC 5322 §3.6.8),
    followed by a colon; white space before the colon is the obsolete form that RFC
    5322 §4.5 still asks readers to accept, as Postfix does.
    """
    colon = line.find(b":")
    if colon <= 0:
        return 0
    name = line[:colon].rstrip(_WHITESPACE)
    # Deleting every ftext octet leaves nothing of a valid name (one pass in C: the
    # queue runner reads every header of every message it sends).
    if not name or name.translate(None, _FIELD_NAME_OCTETS):
        return 0
    return len(name)


def check_safe_value(value: str, *, what: str) -> str:
    """Return ``value`` if it holds no control character; else raise UnsafeValueError.

    CR, LF and NUL would start a new header line (or end the header block); the other
    C0 controls and DEL have no place in a header value either.
    """
    for character in value:
        if (ord(character) < 32 and character != "\t") or character == "\x7f":
            raise UnsafeValueError(
                f"{what} contains the control character {character!r}; refusing to"
                " write it into a header"
            )
    return value


class HeaderField:
    """One header field: its original bytes and, derived from them, name and value."""

    __slots__ = ("_value", "name", "raw")

    def __init__(self, raw: bytes) -> None:
        length = header_name_length(raw)
        if length == 0:
            raise ValueError(f"not a header field: {raw[:40]!r}")
        self.raw = raw
        self.name = raw[:length].decode("ascii")
        self._value: str | None = None

    @classmethod
    def build(cls, name: str, value: str, *, line_ending: bytes = b"\n") -> HeaderField:
        """A new field ``name: value``, folded at spaces to stay near 78 octets.

        The value must already be safe (see ``check_safe_value``); this is checked again
        here because a field that injects a header is worse than any exception.
        """
        check_safe_value(value, what=f"the {name} header")
        text = fold(f"{name}: {value}".encode("utf-8", "surrogateescape"), line_ending)
        return cls(text + line_ending)

    @property
    def lower_name(self) -> str:
        return self.name.lower()

    @property
    def value(self) -> str:
        """The value unfolded, without leading white space or the final line ending."""
        if self._value is None:
            body = self.raw[self.raw.index(b":") + 1 :]
            unfolded = body.replace(b"\r\n", b"\n").replace(b"\n ", b" ").replace(b"\n\t", b"\t")
            text = unfolded.rstrip(b"\r\n").lstrip(_WHITESPACE)
            self._value = text.decode("utf-8", "surrogateescape")
        return self._value

    def __repr__(self) -> str:
        return f"HeaderField({self.raw!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HeaderField) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)


def fold(line: bytes, line_ending: bytes) -> bytes:
    """Fold one logical header line at spaces so physical lines stay short.

    Breaks before a space once a line passes 78 octets (RFC 5322 §2.2.3); a run without
    spaces longer than 998 octets cannot be folded and is refused.
    """
    if len(line) <= PREFERRED_LINE_OCTETS:
        return line
    pieces: list[bytes] = []
    current = b""
    for word in line.split(b" "):
        if current and len(current) + 1 + len(word) > PREFERRED_LINE_OCTETS:
            pieces.append(current)
            current = b" " + word
        else:
            current = current + b" " + word if current else word
    pieces.append(current)
    if any(len(piece) > MAX_LINE_OCTETS for piece in pieces):
        raise MalformedMessageError(
            f"a header line has more than {MAX_LINE_OCTETS} octets without a space to fold at"
        )
    return line_ending.join(pieces)


class HeaderBlock(Sequence[HeaderField]):
    """The ordered header fields of a message; immutable, rewriting makes a new block."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[HeaderField] = ()) -> None:
        self._fields = tuple(fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __getitem__(self, index: int) -> HeaderField:  # type: ignore[override]
        return self._fields[index]

    def __iter__(self) -> Iterator[HeaderField]:
        return iter(self._fields)

    def __contains__(self, name: object) -> bool:
        """``"from" in block``: is there a field of that name, in any case?"""
        if isinstance(name, HeaderField):
            return name in self._fields
        if not isinstance(name, str):
            return False
        lower = name.lower()
        return any(field.lower_name == lower for field in self._fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HeaderBlock) and other._fields == self._fields

    def __hash__(self) -> int:
        return hash(self._fields)

    def __repr__(self) -> str:
        return f"HeaderBlock({list(self._fields)!r})"

    def get(self, name: str) -> str | None:
        """The unfolded value of the first field called ``name``, or None."""
        lower = name.lower()
        for field in self._fields:
            if field.lower_name == lower:
                return field.value
        return None

    def get_all(self, name: str) -> list[str]:
        """The unfolded values of every field called ``name``, in order."""
        lower = name.lower()
        return [field.value for field in self._fields if field.lower_name == lower]

    def without(self, *names: str) -> HeaderBlock:
        """A copy without any field whose name is one of ``names`` (any case)."""
        lowered = {name.lower() for name in names}
        return HeaderBlock(field for field in self._fields if field.lower_name not in lowered)

    def prepend(self, fields: Iterable[HeaderField]) -> HeaderBlock:
        """A copy with ``fields`` placed before the existing ones, as msmtp places them."""
        return HeaderBlock((*fields, *self._fields))

    def to_bytes(self) -> bytes:
        return b"".join(field.raw for field in self._fields)
