"""Parsing SMTP replies (RFC 5321 §4.2), shared by everything that reads them.

A reply is one or more lines ``NNN-text`` ending with ``NNN text`` (or a bare
``NNN``). Every line must carry the same code, end in CRLF, and hold no control
characters but TAB; the first line may start with an RFC 3463 enhanced status code,
which is split off. Anything else is a :class:`RemoteProtocolError`: a client that
guesses what a malformed reply meant is how reply-desync attacks work
(security.md C8).
"""

from __future__ import annotations

import re

from mailhop.proto.errors import RemoteProtocolError
from mailhop.proto.smtp.events import Command, Reply

__all__ = [
    "MAX_REPLY_LINES",
    "MAX_REPLY_LINE_LENGTH",
    "MAX_REPLY_SIZE",
    "ReplyParser",
    "parse_reply",
]

# RFC 5321 §4.5.3.1.5 limits a reply line to 512 octets including CRLF, and
# §4.5.3.1 asks implementations to be liberal about such limits. Real servers
# exceed 512 in 334 challenges and long 5xx explanations; Postfix's SMTP client
# reads lines up to line_length_limit = 2048 and aiosmtplib caps a line at 8192.
# We take 8192: generous to honest servers, bounded against a hostile one.
MAX_REPLY_LINE_LENGTH = 8192

# RFC 5321 sets no limit on the number of lines. An EHLO reply from a large
# provider has about 15; a hostile server could send lines forever and make us
# accumulate them. 100 lines and 64 KiB in total are far above any real reply.
MAX_REPLY_LINES = 100
MAX_REPLY_SIZE = 64 * 1024

# RFC 3463 §2: class "." subject "." detail, where class is 2, 4 or 5 and subject
# and detail are 1 to 3 digits. It must agree with the first digit of the code.
_ENHANCED_STATUS = re.compile(rb"([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")
# RFC 5321 §4.2: Reply-code = %x32-35 %x30-35 %x30-39; then "-", " " or nothing.
_REPLY_LINE = re.compile(rb"([2-5][0-5][0-9])([- ]?)(.*)", re.DOTALL)
# textstring = 1*(%d09 / %d32-126), widened to 8-bit for SMTPUTF8 (RFC 6531 §3.7.4.2).
_FORBIDDEN_IN_TEXT = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# The common case in one match: a whole one-line reply (code, space, textstring,
# CRLF), with every rule above checked at once, and its enhanced status split off
# when it has one whose class (2, 4 or 5) is the code's first digit (the back
# reference).
# Groups: code, class, status (or None), text. Anything else takes the long way.
_ONE_LINE_REPLY = re.compile(
    rb"(([2-5])[0-5][0-9]) "
    rb"(?:(?=[245])(\2\.\d{1,3}\.\d{1,3})(?: |(?=\r\n)))?"
    rb"([\t\x20-\x7e\x80-\xff]*)\r\n"
)


class ReplyParser:
    """Turns complete CRLF lines into :class:`Reply` objects, one reply at a time."""

    def __init__(self) -> None:
        self._code: int | None = None
        self._texts: list[bytes] = []
        self._size = 0

    @property
    def in_progress(self) -> bool:
        """True between the first and the last line of a multi-line reply."""
        return self._code is not None

    def feed_line(self, line: bytes, *, command: Command | None = None) -> Reply | None:
        """Take one line (with its CRLF); return the reply when its last line came.

        ``command`` is what the reply answers, set on the :class:`Reply` built from
        its last line (the client passes the oldest outstanding command).
        """
        if self._code is None and (one_line := _ONE_LINE_REPLY.fullmatch(line)) is not None:
            code, _, status, text = one_line.groups()
            return Reply(
                code=int(code),
                lines=(text.decode("utf-8", "surrogateescape"),),
                enhanced_status=None if status is None else status.decode("ascii"),
                command=command,
            )
        return self.feed_line_checked(line, command=command)

    def feed_line_checked(self, line: bytes, *, command: Command | None = None) -> Reply | None:
        """``feed_line`` without its shortcut for one-line replies: rule by rule."""
        if not line.endswith(b"\r\n"):
            raise RemoteProtocolError("reply line does not end in CRLF")
        body = line[:-2]
        match = _REPLY_LINE.fullmatch(body)
        if match is None:
            raise RemoteProtocolError(f"malformed reply line {_show(body)}")
        code = int(match[1])
        separator, text = match[2], match[3]
        if separator == b"" and text:
            raise RemoteProtocolError(f"malformed reply line {_show(body)}")
        if _FORBIDDEN_IN_TEXT.search(text):
            raise RemoteProtocolError("control character in reply text")
        if self._code is not None and code != self._code:
            raise RemoteProtocolError(
                f"reply code changed within a multi-line reply ({self._code} then {code})"
            )
        self._code = code
        self._texts.append(text)
        self._size += len(line)
        if len(self._texts) > MAX_REPLY_LINES or self._size > MAX_REPLY_SIZE:
            raise RemoteProtocolError("reply too long")
        if separator == b"-":
            return None
        texts, self._code, self._texts, self._size = self._texts, None, [], 0
        return _build(code, texts, command)


def _build(code: int, texts: list[bytes], command: Command | None) -> Reply:
    status: bytes | None = None
    match = _ENHANCED_STATUS.match(texts[0])
    if match is not None and int(match[1]) == code // 100:
        status = match[0].rstrip(b" ")
    lines = []
    for text in texts:
        stripped = text
        if status is not None and (text == status or text.startswith(status + b" ")):
            stripped = text[len(status) + 1 :]
        lines.append(stripped.decode("utf-8", "surrogateescape"))
    return Reply(
        code=code,
        lines=tuple(lines),
        enhanced_status=None if status is None else status.decode("ascii"),
        command=command,
    )


def parse_reply(data: bytes) -> Reply:
    """Parse exactly one complete reply (a convenience for tests and tools)."""
    parser = ReplyParser()
    lines = data.split(b"\n")
    if lines[-1] != b"":
        raise RemoteProtocolError("reply does not end in CRLF")
    for index, raw in enumerate(lines[:-1]):
        if len(raw) + 1 > MAX_REPLY_LINE_LENGTH:
            raise RemoteProtocolError("reply line too long")
        reply = parser.feed_line(raw + b"\n")
        if reply is not None:
            if index != len(lines) - 2:
                raise RemoteProtocolError("bytes after the end of the reply")
            return reply
    raise RemoteProtocolError("incomplete reply")


def _show(data: bytes) -> str:
    """A short, printable excerpt of peer bytes for an error message."""
    return repr(data[:60])
