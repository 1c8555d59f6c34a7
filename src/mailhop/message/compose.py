"""Compose a new message for ``mail``/``mailx`` with the standard library's ``email`` package.

What s-nail and Heirloom do, without their traps (mailx.md §3, security.md B2):

* text is UTF-8; a 7-bit body with short lines goes as ``7bit``; otherwise the body is
  quoted-printable or base64, whichever is shorter for this content (Chinese text is
  shorter in base64, accented Latin text in QP); lines over 998 octets are always
  encoded (RFC 5322 §2.1.1);
* a body that is not UTF-8 or holds NUL or a bare CR is sent unchanged as
  ``application/octet-stream`` base64 (s-nail does the same) rather than mangled;
* the subject and display names are RFC 2047 encoded-words when not ASCII;
* attachments: the type from the system's ``mime.types`` by extension, else sniffed from
  the first bytes; always base64, so every attachment arrives byte-identical whatever
  its line endings; the file name as RFC 2231 ``filename*=utf-8''...`` when not ASCII;
* Date, Message-ID, MIME-Version and User-Agent are always written;
* a CR, LF or other control character in the subject, the sender, a custom header or a
  display name is refused with exit 65 (``UnsafeValueError`` carrying DATAERR): it is
  never folded into a new header line.

Bcc recipients are never written into the message: the caller passes them in the
envelope only (as s-nail does unless ``mta-bcc-ok``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailhop.errors import ExitCode
from mailhop.message.addresses import Address
from mailhop.message.errors import MessageError, UnsafeValueError
from mailhop.message.headers import check_safe_value
from mailhop.message.rewrite import encode_display_name, format_date, make_message_id

if TYPE_CHECKING:
    from email.message import EmailMessage

__all__ = [
    "MAX_ATTACHMENT_BYTES",
    "MAX_BODY_BYTES",
    "OWN_HEADERS",
    "Attachment",
    "Composition",
    "check_header_value",
    "compose",
    "guess_type",
    "load_attachment",
]

# The message is built in memory by the email package; a body or attachment larger than
# this belongs on the sendmail path (which streams), not in a composed MIME message.
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_ATTACHMENT_BYTES = 64 * 1024 * 1024
# RFC 5322 §2.1.1: a line is at most 998 octets plus CRLF; longer ones must be encoded.
MAX_LINE_OCTETS = 998
# Bytes looked at to sniff the type of an attachment whose extension says nothing.
SNIFF_BYTES = 4096
# Header names a caller may not set with -C/-a: the composer writes these itself, and
# letting a caller repeat them makes two Subjects or a second body type.
OWN_HEADERS = frozenset(
    {"mime-version", "content-type", "content-transfer-encoding", "message-id", "date", "bcc"}
)
# Signatures of common binary formats (first bytes), for files without a known extension.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"BZh", "application/x-bzip2"),
    (b"\xfd7zXZ\x00", "application/x-xz"),
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Attachment:
    """One file to attach: its bytes, the name shown, and its MIME type."""

    filename: str
    content: bytes = dataclasses.field(repr=False)
    content_type: str  # "image/png"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Composition:
    """Everything a new message says; addresses are already parsed and checked."""

    body: bytes
    subject: str | None = None
    author: Address | None = None  # From; None: the sendmail path adds one
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    extra_headers: tuple[tuple[str, str], ...] = ()  # -C "Name: value", bsd -a
    attachments: tuple[Attachment, ...] = ()
    body_type: str = "text/plain"  # -M TYPE
    message_id_domain: str = "localhost"
    user_agent: str | None = None  # None: no User-Agent header
    timestamp: float | None = None  # Date; None: now


def check_header_value(value: str, what: str) -> str:
    """Return ``value`` if it can be a header value; CR, LF, NUL, controls: exit 65."""
    return _checked(value, what)


def _checked(value: str, what: str) -> str:
    try:
        return check_safe_value(value, what=what)
    except UnsafeValueError as error:
        raise UnsafeValueError(str(error), exit_code=ExitCode.DATAERR) from None


def _mailbox_list(addresses: Sequence[Address]) -> str:
    return ", ".join(
        f"{encode_display_name(a.display_name)} <{a.addr_spec}>" if a.display_name else a.addr_spec
        for a in addresses
    )


def guess_type(filename: str, content: bytes) -> str:
    """The MIME type of an attachment: ``mime.types`` by extension, else the content."""
    import mimetypes  # noqa: PLC0415 - reads /etc/mime.types once, only when attaching

    guessed, encoding = mimetypes.guess_type(filename, strict=False)
    if guessed is not None and encoding is None:
        return guessed
    if encoding == "gzip":
        return "application/gzip"
    head = content[:SNIFF_BYTES]
    for magic, content_type in _MAGIC:
        if head.startswith(magic):
            return content_type
    if b"\x00" not in head and _is_utf8_prefix(head):
        return "text/plain"
    return "application/octet-stream"


def _is_utf8_prefix(data: bytes) -> bool:
    # The sniffed prefix may end inside a multi-byte character: allow 3 missing bytes.
    for cut in range(4):
        try:
            data[: len(data) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return True
    return False


def load_attachment(path: str, *, display_name: str | None = None) -> Attachment:
    """Read ``path`` for attaching (``-a FILE``).

    Raises:
        MessageError: the file cannot be read (66) or is too large (65).
    """
    try:
        with open(path, "rb") as file:
            content = file.read(MAX_ATTACHMENT_BYTES + 1)
    except OSError as error:
        raise MessageError(
            f"cannot attach {path}: {error.strerror or error}", exit_code=ExitCode.NOINPUT
        ) from error
    if len(content) > MAX_ATTACHMENT_BYTES:
        raise MessageError(
            f"cannot attach {path}: larger than {MAX_ATTACHMENT_BYTES} bytes; "
            "send large files another way"
        )
    name = display_name or os.path.basename(path) or "attachment"
    _checked(name, f"the file name of {path!r}")
    return Attachment(filename=name, content=content, content_type=guess_type(name, content))


def _text_of(body: bytes) -> str | None:
    """``body`` as text with LF line ends, or None when it must travel as binary."""
    if b"\x00" in body:
        return None
    normalized = body.replace(b"\r\n", b"\n")
    if b"\r" in normalized:
        return None
    try:
        return normalized.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _text_encoding(text: str) -> str:
    """``7bit``, ``quoted-printable`` or ``base64`` for a UTF-8 text part."""
    data = text.encode("utf-8")
    long_lines = any(len(line) > MAX_LINE_OCTETS for line in data.split(b"\n"))
    # str.splitlines (used by the email package for 7bit text) also breaks at these.
    odd_breaks = any(character in text for character in "\x0b\x0c\x1c\x1d\x1e")
    if data.isascii() and not long_lines and not odd_breaks:
        return "7bit"
    # Quoted-printable writes each 8-bit octet as 3 characters; base64 writes 4 per 3.
    eight_bit = sum(1 for byte in data if byte >= 0x80 or byte == ord("="))
    quoted_printable = len(data) + 2 * eight_bit
    base64 = len(data) * 4 // 3
    return "quoted-printable" if quoted_printable <= base64 else "base64"


def _set_body(part: EmailMessage, body: bytes, body_type: str) -> None:
    maintype, _, subtype = body_type.partition("/")
    text = _text_of(body) if maintype == "text" else None
    if text is None:
        if maintype == "text":
            maintype, subtype = "application", "octet-stream"
        part.set_content(body, maintype=maintype, subtype=subtype, cte="base64")
        return
    encoding = _text_encoding(text)
    if encoding == "7bit":
        part.set_content(text, subtype=subtype, charset="us-ascii", cte=encoding)
        return
    # The bytes path encodes exactly what was given: the str path would split lines at
    # form feeds, U+2028 and friends (str.splitlines) and rewrite them as newlines.
    part.set_content(
        text.encode("utf-8"),
        maintype="text",
        subtype=subtype,
        cte=encoding,
        params={"charset": "utf-8"},
    )


def compose(composition: Composition) -> bytes:
    """The message as bytes with LF line ends, ready for sendmail or SMTP submission.

    Raises:
        UnsafeValueError: a header value holds CR, LF or another control character (65).
        MessageError: ``body_type`` is not ``type/subtype`` (64).
    """
    from email import policy  # noqa: PLC0415 - the email package is heavy
    from email.message import EmailMessage  # noqa: PLC0415

    if composition.body_type.count("/") != 1 or not all(composition.body_type.split("/")):
        raise MessageError(
            f"-M {composition.body_type!r}: give a MIME type such as text/html",
            exit_code=ExitCode.USAGE,
        )
    message = EmailMessage(policy=policy.default)
    message["Date"] = format_date(composition.timestamp)
    if composition.author is not None:
        message["From"] = _mailbox_list([composition.author])
    if composition.to:
        message["To"] = _mailbox_list(composition.to)
    if composition.cc:
        message["Cc"] = _mailbox_list(composition.cc)
    if composition.reply_to:
        message["Reply-To"] = _mailbox_list(composition.reply_to)
    if composition.subject is not None:
        message["Subject"] = _checked(composition.subject, "the subject")
    message["Message-ID"] = make_message_id(composition.message_id_domain)
    if composition.user_agent:
        message["User-Agent"] = _checked(composition.user_agent, "the User-Agent")
    for name, value in composition.extra_headers:
        _checked(name, "a header name")
        if not name or any(not (33 <= ord(c) <= 126) or c == ":" for c in name):
            raise UnsafeValueError(
                f"{name!r} is not a header name (RFC 5322 §2.2: printable ASCII, no colon)",
                exit_code=ExitCode.DATAERR,
            )
        if name.lower() in OWN_HEADERS:
            raise MessageError(
                f"header {name} is written by mail itself; use the matching option",
                exit_code=ExitCode.USAGE,
            )
        if name in message:
            del message[name]
        message[name] = _checked(value, f"the {name} header")
    if not composition.attachments:
        _set_body(message, composition.body, composition.body_type)
        return message.as_bytes()
    message.make_mixed()
    body_part = EmailMessage(policy=policy.default)
    _set_body(body_part, composition.body, composition.body_type)
    body_part["Content-Disposition"] = "inline"
    del body_part["MIME-Version"]  # RFC 2045 §4: once, in the top-level header
    message.attach(body_part)
    for attachment in composition.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        part = EmailMessage(policy=policy.default)
        part.set_content(
            attachment.content,
            maintype=maintype,
            subtype=subtype,
            cte="base64",
            disposition="attachment",
            filename=attachment.filename,
        )
        if maintype == "text" and _is_utf8_prefix(attachment.content[:SNIFF_BYTES]):
            part.set_param("charset", "utf-8")
        del part["MIME-Version"]
        message.attach(part)
    if "MIME-Version" not in message:
        message["MIME-Version"] = "1.0"
    return message.as_bytes()
