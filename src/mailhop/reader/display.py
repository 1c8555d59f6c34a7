"""Showing a message on a terminal: MIME-aware, and never a raw control character.

A message is parsed with the stdlib ``email`` package (``policy.default``: RFC 2047
headers decoded). The body shown is the first ``text/plain`` part, else the first
``text/html`` part turned into readable text; other parts are listed as attachments
with name, type and decoded size. Text is decoded from its declared charset (unknown
charsets and bad bytes are replaced, not fatal) and the caller encodes it for the
terminal's charset with replacement.

Every character from a message that is not printable is shown escaped: C0 controls as
``^X`` (ESC is ``^[``, BEL ``^G``), DEL as ``^?``, C1 controls, format characters (bidi
overrides) and unassigned code points as ``\\u....``. Terminal escape sequences in a
subject or body therefore cannot retitle the window, clear the screen or move the cursor
(security.md E2; CWE-150; RFC 2047 §8: decoded data must not have side effects).
"""

from __future__ import annotations

import dataclasses
import email
import email.message
import email.policy
import html.parser
import re
import unicodedata
from collections.abc import Iterable

# Header fields ``print`` shows; ``Print`` shows all (POSIX ignore/retain defaults vary
# by distribution; this is the set every reader shows).
SHOWN_HEADERS = ("date", "from", "reply-to", "to", "cc", "subject")
# Unicode categories that must never reach a terminal raw: controls, format characters
# (U+202E RIGHT-TO-LEFT OVERRIDE can disguise text), surrogates, private use, unassigned.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
# HTML elements after which a line break makes the text readable.
_BLOCK_ELEMENTS = frozenset(
    {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "blockquote",
     "pre", "ul", "ol", "hr", "section", "article", "header", "footer"}
)  # fmt: skip
_INVISIBLE_ELEMENTS = frozenset({"script", "style", "head", "title"})


def escape_character(character: str) -> str:
    code = ord(character)
    if code < 0x20:
        return "^" + chr(code + 0x40)
    if code == 0x7F:
        return "^?"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape_for_terminal(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every unsafe character escaped (tabs and, if asked, newlines kept)."""
    allowed = "\t\n" if keep_newlines else ""
    if text.isascii() and text.isprintable():
        return text
    return "".join(
        character
        if character in allowed or unicodedata.category(character) not in _UNSAFE_CATEGORIES
        else escape_character(character)
        for character in text
    )


def parse(data: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    if not isinstance(message, email.message.EmailMessage):  # policy.default guarantees it
        raise TypeError("email.policy.default did not give an EmailMessage")
    return message


def parse_headers(data: bytes) -> email.message.EmailMessage:
    """Only the header section of ``data`` (summary lines must not parse every body)."""
    end = min(
        (found for found in (data.find(b"\n\n"), data.find(b"\r\n\r\n")) if found >= 0),
        default=len(data),
    )
    return parse(data[: end + 1])


def header_text(message: email.message.Message, name: str) -> str:
    """The decoded value of header ``name`` ('' if absent or undecodable), escaped."""
    value = message.get(name)
    if value is None:
        return ""
    try:
        text = str(value)
    except (ValueError, LookupError):
        text = str(message.get_all(name, [""])[0])
    return escape_for_terminal(" ".join(text.split()))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Attachment:
    number: int
    filename: str
    content_type: str
    size: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class Rendering:
    """What ``print`` shows: header lines, body text, attachments (all already escaped)."""

    header_lines: tuple[str, ...]
    body: str
    attachments: tuple[Attachment, ...]

    def text(self) -> str:
        lines = [*self.header_lines, ""]
        body = self.body if self.body.endswith("\n") or not self.body else self.body + "\n"
        parts = ["\n".join(lines) + "\n", body]
        for attachment in self.attachments:
            parts.append(
                f"[-- attachment {attachment.number}: {attachment.filename} "
                f"({attachment.content_type}, {attachment.size} bytes) --]\n"
            )
        return "".join(parts)


def decoded_payload(part: email.message.Message) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _text_of(part: email.message.Message) -> str:
    charset = part.get_content_charset() or "us-ascii"
    data = decoded_payload(part)
    try:
        return data.decode(charset, errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def attachments_of(
    message: email.message.EmailMessage,
) -> list[tuple[Attachment, email.message.Message]]:
    """The parts that are not the displayed text, numbered from 1, with their part."""
    shown = body_part(message)
    found: list[tuple[Attachment, email.message.Message]] = []
    for part in message.walk():
        if part.is_multipart() or part is shown:
            continue
        if part is message and shown is None and part.get_content_maintype() == "text":
            continue
        filename = part.get_filename() or ""
        found.append(
            (
                Attachment(
                    number=len(found) + 1,
                    filename=escape_for_terminal(filename) or "(no name)",
                    content_type=escape_for_terminal(part.get_content_type()),
                    size=len(decoded_payload(part)),
                ),
                part,
            )
        )
    return found


def body_part(message: email.message.EmailMessage) -> email.message.Message | None:
    try:
        part = message.get_body(preferencelist=("plain", "html"))
    except (KeyError, ValueError):
        return None
    if part is not None and part.get_content_disposition() == "attachment":
        return None
    return part


def render(data: bytes, *, all_headers: bool = False) -> Rendering:
    """Render a message for ``print`` (``Print`` with ``all_headers``)."""
    message = parse(data)
    if all_headers:
        names: Iterable[str] = [name for name in message.keys()]  # noqa: SIM118 - keeps order
    else:
        names = [name for name in SHOWN_HEADERS if message.get(name) is not None]
    header_lines = tuple(
        f"{escape_for_terminal(_display_name(name, all_headers))}: {header_text(message, name)}"
        for name in names
    )
    shown = body_part(message)
    if shown is None:
        body = ""
    elif shown.get_content_subtype() == "html":
        body = html_to_text(_text_of(shown))
    else:
        body = _text_of(shown)
    body = escape_for_terminal(body.replace("\r\n", "\n"), keep_newlines=True)
    return Rendering(
        header_lines=header_lines,
        body=body,
        attachments=tuple(attachment for attachment, _ in attachments_of(message)),
    )


def _display_name(name: str, as_is: bool) -> str:
    return name if as_is else "-".join(word.capitalize() for word in name.split("-"))


def body_lines(data: bytes) -> list[str]:
    """The displayed body as lines (for ``top``)."""
    return render(data).body.splitlines()


class _TextExtractor(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _INVISIBLE_ELEMENTS:
            self._hidden_depth += 1
        elif tag in _BLOCK_ELEMENTS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("* ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE_ELEMENTS:
            self._hidden_depth = max(0, self._hidden_depth - 1)
        elif tag in _BLOCK_ELEMENTS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            # Runs of white space become one space; the space at either end stays, so
            # "All <b>3</b> jobs" keeps its words apart.
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(markup: str) -> str:
    """Readable text of an HTML body: tags dropped, blocks on their own lines."""
    extractor = _TextExtractor()
    extractor.feed(markup)
    extractor.close()
    lines = [" ".join(line.split()) for line in "".join(extractor.parts).split("\n")]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip("\n") + "\n"
