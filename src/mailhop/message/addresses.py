"""Envelope addresses: parsed from arguments and headers like RFC 5322 address lists.

Sendmail-compatible programs read each recipient argument as if it were the value of a
``To:`` header (Postfix and msmtp both do), so ``'"A, B" <a@x>, c@y'`` is two
recipients, a group ``undisclosed:;`` is none and comments are dropped. This module
is its own small RFC 5322 §3.4 parser rather than ``email.utils.getaddresses``: the
legacy parser picks the wrong part of hostile input (CVE-2019-16056, CVE-2023-27043),
its strict mode needs Python 3.11.10+, and ``email.headerregistry`` is a heavy import
on the sendmail hot path. Anything it cannot read exactly is an error that names the
address; an address is never dropped or guessed.

Every address that will go into ``MAIL FROM``/``RCPT TO`` is checked for what would
let it escape its SMTP command (CR, LF, NUL, other controls) or be read as an option
by a program we hand it to (a leading ``-``).
"""

from __future__ import annotations

from mailhop._records import NamedTuple
from mailhop.message.errors import AddressError

__all__ = [
    "MAX_PATH_OCTETS",
    "Address",
    "parse_address_list",
    "parse_envelope_sender",
]

# RFC 5321 §4.5.3.1.3: a reverse- or forward-path is at most 256 octets including the
# angle brackets, so an address is at most 254.
MAX_PATH_OCTETS = 256

_SPECIALS = '()<>[]:;@\\,."'
_QUOTE_NEEDED = set(_SPECIALS) | {" ", "\t"}
# Domain labels: letters, digits, hyphen (RFC 5321 §4.1.2 Let-dig / Ldh-str); also
# underscore (seen in real host names) and any non-ASCII character (RFC 6531 U-labels).
_DOMAIN_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


class Address(NamedTuple):
    """One mailbox: ``addr_spec`` as it goes between SMTP's angle brackets.

    The null sender (``-f '<>'``) is ``addr_spec == ""``. A local name such as
    ``root`` has no ``@``; routing decides what it means.
    """

    addr_spec: str
    display_name: str = ""

    @property
    def is_null(self) -> bool:
        return not self.addr_spec

    @property
    def local_part(self) -> str:
        return self.addr_spec.rpartition("@")[0] if "@" in self.addr_spec else self.addr_spec

    @property
    def domain(self) -> str:
        return self.addr_spec.rpartition("@")[2] if "@" in self.addr_spec else ""

    @property
    def needs_smtputf8(self) -> bool:
        """A non-ASCII local part or domain can only travel with SMTPUTF8 (RFC 6531)."""
        return not self.addr_spec.isascii()

    def formatted(self) -> str:
        """The mailbox as a header shows it: ``Name <addr>`` or just ``addr``."""
        if not self.display_name:
            return self.addr_spec
        return f"{quote_phrase(self.display_name)} <{self.addr_spec}>"


def quote_phrase(text: str) -> str:
    """``text`` as an RFC 5322 phrase: bare if it is atoms, else a quoted-string."""
    words = text.split(" ")
    if all(word and not (_QUOTE_NEEDED & set(word)) for word in words):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


class _Token(NamedTuple):
    kind: str  # "atom", "quoted", "literal", or the special character itself
    text: str


class _Parser:
    def __init__(self, text: str, *, source: str, from_command_line: bool) -> None:
        self.text = text
        self.source = source
        self.from_command_line = from_command_line
        self.tokens: list[_Token] = []
        self.position = 0

    def fail(self, reason: str) -> AddressError:
        return AddressError(
            f"cannot use the {self.source} {self.text!r}: {reason}",
            address=self.text,
            from_command_line=self.from_command_line,
        )

    # -- tokens ---------------------------------------------------------------

    def tokenize(self) -> None:
        text = self.text
        index = 0
        length = len(text)
        while index < length:
            character = text[index]
            if character in " \t":
                index += 1
            elif _is_control(character):
                raise self.fail(f"it contains the control character {character!r}")
            elif character == "(":
                index = self._skip_comment(index)
            elif character == '"':
                index = self._read_quoted(index)
            elif character == "[":
                end = text.find("]", index)
                if end < 0:
                    raise self.fail("a domain literal '[' is not closed")
                content = text[index : end + 1]
                if "[" in content[1:] or "\\" in content:
                    raise self.fail("a domain literal may not contain '[' or '\\'")
                self.tokens.append(_Token("literal", content))
                index = end + 1
            elif character in ")]\\":
                raise self.fail(f"unexpected {character!r}")
            elif character in _SPECIALS:
                self.tokens.append(_Token(character, character))
                index += 1
            else:
                start = index
                while index < length and not (
                    text[index] in _SPECIALS or text[index] in " \t" or _is_control(text[index])
                ):
                    index += 1
                self.tokens.append(_Token("atom", text[start:index]))

    def _skip_comment(self, index: int) -> int:
        depth = 0
        text = self.text
        while index < len(text):
            character = text[index]
            if character == "\\":
                index += 2
                continue
            if _is_control(character):
                raise self.fail(f"it contains the control character {character!r}")
            if character == "(":
                depth += 1
            elif character == ")":
                depth -= 1
                if depth == 0:
                    return index + 1
            index += 1
        raise self.fail("a comment '(' is not closed")

    def _read_quoted(self, index: int) -> int:
        text = self.text
        content: list[str] = []
        index += 1
        while index < len(text):
            character = text[index]
            if character == "\\" and index + 1 < len(text):
                content.append(text[index + 1])
                index += 2
                continue
            if character == '"':
                self.tokens.append(_Token("quoted", "".join(content)))
                return index + 1
            content.append(character)
            index += 1
        raise self.fail("a quoted string is not closed")

    # -- grammar --------------------------------------------------------------

    def peek(self) -> str:
        return self.tokens[self.position].kind if self.position < len(self.tokens) else ""

    def parse_list(self) -> list[Address]:
        self.tokenize()
        addresses: list[Address] = []
        while self.position < len(self.tokens):
            if self.peek() == ",":
                self.position += 1  # empty list elements (obs-addr-list, RFC 5322 §4.4)
                continue
            self.parse_address(addresses, in_group=False)
            if self.peek() not in ("", ","):
                raise self.fail(f"unexpected {self.tokens[self.position].text!r}")
        return addresses

    def parse_address(self, addresses: list[Address], *, in_group: bool) -> None:
        phrase = self.collect_words()
        kind = self.peek()
        if kind == "<":
            self.position += 1
            addr_spec = self.parse_angle_content()
            addresses.append(Address(addr_spec=addr_spec, display_name=_display_name(phrase)))
        elif kind == ":" and not in_group:
            if not phrase:
                raise self.fail("a group has no name")
            self.position += 1
            while self.peek() not in (";", ""):
                if self.peek() == ",":
                    self.position += 1
                    continue
                self.parse_address(addresses, in_group=True)
                if self.peek() not in (",", ";", ""):
                    raise self.fail(f"unexpected {self.tokens[self.position].text!r}")
            if self.peek() == ";":
                self.position += 1
        elif kind == "@":
            self.position += 1
            local = _local_part(phrase, self)
            addresses.append(Address(addr_spec=f"{local}@{self.parse_domain()}"))
        elif not phrase:
            raise self.fail("an address is empty" if not kind else f"unexpected {kind!r}")
        else:
            # A bare local name such as "root" (no "@"): sendmail accepts it.
            addresses.append(Address(addr_spec=_local_part(phrase, self)))

    def collect_words(self) -> list[_Token]:
        words: list[_Token] = []
        while self.peek() in ("atom", "quoted", "."):
            words.append(self.tokens[self.position])
            self.position += 1
        return words

    def parse_angle_content(self) -> str:
        if self.peek() == ">":
            self.position += 1
            return ""
        if self.peek() == "@":  # obs-route "@a,@b:" (RFC 5322 §4.4): dropped
            while self.peek() in ("@", ","):
                self.position += 1
                if self.tokens[self.position - 1].kind == "@":
                    self.parse_domain()
            if self.peek() != ":":
                raise self.fail("a source route is not ended by ':'")
            self.position += 1
        local = _local_part(self.collect_words(), self)
        addr_spec = local
        if self.peek() == "@":
            self.position += 1
            addr_spec = f"{local}@{self.parse_domain()}"
        if self.peek() != ">":
            raise self.fail("'<' is not closed by '>' right after the address")
        self.position += 1
        return addr_spec

    def parse_domain(self) -> str:
        if self.peek() == "literal":
            self.position += 1
            return self.tokens[self.position - 1].text
        labels: list[str] = []
        while True:
            if self.peek() != "atom":
                raise self.fail("the domain is missing or malformed")
            label = self.tokens[self.position].text
            if not all(c in _DOMAIN_CHARACTERS or not c.isascii() for c in label):
                raise self.fail(f"the domain part {label!r} is not a host name")
            # RFC 5321 §4.1.2: a label begins and ends with a letter or digit. The
            # SMTP client refuses anything else, so a queued one would wait in vain.
            if label.startswith("-") or label.endswith("-"):
                raise self.fail(f"the domain part {label!r} begins or ends with '-'")
            labels.append(label)
            self.position += 1
            if self.peek() != ".":
                return ".".join(labels)
            self.position += 1


def _is_control(character: str) -> bool:
    code = ord(character)
    return (code < 32 and character != "\t") or code == 127 or 0xD800 <= code <= 0xDFFF


def _display_name(phrase: list[_Token]) -> str:
    return " ".join(token.text for token in phrase if token.kind != ".")


def _local_part(words: list[_Token], parser: _Parser) -> str:
    if not words:
        raise parser.fail("the local part is empty")
    # word *("." word): alternate words and dots, starting and ending with a word.
    for index, token in enumerate(words):
        expect_word = index % 2 == 0
        if expect_word == (token.kind == "."):
            raise parser.fail("the local part is not word.word...")
    if len(words) % 2 == 0:
        raise parser.fail("the local part ends with '.'")
    parts = [token.text for token in words if token.kind != "."]
    if all(part and not (_QUOTE_NEEDED & set(part)) for part in parts):
        return ".".join(parts)
    joined = ".".join(parts).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{joined}"'


def _check_envelope(address: Address, parser: _Parser) -> None:
    spec = address.addr_spec
    if spec.startswith("-"):
        raise parser.fail(f"{spec!r} starts with '-' and could be taken for an option")
    if len(spec.encode("utf-8", "surrogatepass")) + 2 > MAX_PATH_OCTETS:
        raise parser.fail(f"it is longer than {MAX_PATH_OCTETS - 2} octets (RFC 5321 §4.5.3.1.3)")


def parse_address_list(
    text: str, *, source: str = "recipient", from_command_line: bool = True
) -> list[Address]:
    """All mailboxes in ``text``, read as the value of a ``To:`` header.

    ``source`` names where the text came from in error messages ("recipient",
    "To header"); ``from_command_line`` selects exit 64 (argument) or 65 (header).
    """
    parser = _Parser(text, source=source, from_command_line=from_command_line)
    addresses = parser.parse_list()
    for address in addresses:
        if address.is_null:
            raise parser.fail("an empty address '<>' cannot be a recipient")
        _check_envelope(address, parser)
    return addresses


def parse_envelope_sender(text: str) -> Address:
    """The envelope sender given with ``-f``/``-r``.

    ``""``, ``<>`` and ``MAILER-DAEMON`` (any case, as msmtp) are the null sender. The
    argument must hold exactly one address.
    """
    stripped = text.strip(" \t")
    if stripped in ("", "<>") or stripped.upper() == "MAILER-DAEMON":
        if _has_control(text):
            raise AddressError(
                f"cannot use the sender {text!r}: it contains a control character",
                address=text,
                from_command_line=True,
            )
        return Address(addr_spec="")
    parser = _Parser(text, source="sender", from_command_line=True)
    addresses = parser.parse_list()
    if len(addresses) != 1:
        raise parser.fail(f"it holds {len(addresses)} addresses, not one")
    if not addresses[0].is_null:
        _check_envelope(addresses[0], parser)
    return addresses[0]


def _has_control(text: str) -> bool:
    return any(_is_control(character) for character in text)
