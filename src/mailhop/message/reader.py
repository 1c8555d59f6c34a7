"""Read a message from a stream (sendmail's stdin) the way Postfix's sendmail does.

* Leading mbox ``From `` lines (also ``>From ``) are dropped, as Postfix drops them:
  a message piped out of a mailbox must not start with a non-header line.
* Without ``-i``/``-oi`` a line holding a single ``.`` ends the input ("archaic EOF",
  on by default in Postfix's sendmail and in classic sendmail; msmtp ignores it). We
  follow Postfix: the rest of stdin is left unread. ``.`` followed by LF, CRLF or the
  end of input all count.
* The header block ends at an empty line (kept as the separator), at the end of the
  input, or at the first line that is neither a header field nor a continuation. In
  that last case the line starts the body and, as Postfix's cleanup does, an empty
  line is inserted before it: ``echo hi | sendmail root`` is a message without headers
  whose body is ``hi``.
* The header block is held in memory, capped at ``MAX_HEADER_BLOCK_BYTES``; the body
  is spooled (see ``body.Spool``) and scanned in the same pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from mailhop._records import NamedTuple
from mailhop.message.body import CHUNK_OCTETS, BodyScan, Spool
from mailhop.message.errors import HeaderBlockTooLargeError, MalformedMessageError
from mailhop.message.headers import HeaderBlock, HeaderField, header_name_length

TYPE_CHECKING = False  # not typing's: the enqueue path never imports typing (CONVENTIONS)
if TYPE_CHECKING:
    from typing import Protocol

# Readable is for mypy only (under TYPE_CHECKING above): not a run-time name.
__all__ = ["MAX_HEADER_BLOCK_BYTES", "Message", "read_message"]

# The header block is parsed in memory. Postfix caps each header at 100 KiB
# (header_size_limit) and sendmail refuses 32 KiB in all; 1 MiB is generous for any
# real message (long Received chains, DKIM) and still bounds what a runaway or hostile
# producer can make us hold.
MAX_HEADER_BLOCK_BYTES = 1 << 20


# For mypy only: a Protocol class needs typing at run time (see TYPE_CHECKING above).
if TYPE_CHECKING:

    class Readable(Protocol):
        """What ``read_message`` needs from its input: ``sys.stdin.buffer`` has it."""

        def read(self, size: int = -1, /) -> bytes: ...

        def readline(self, size: int = -1, /) -> bytes: ...


class Message(NamedTuple):
    """A message as read: header fields, the separator line, and the spooled body.

    ``separator`` is the empty line that ended the header block as it was read (LF or
    CRLF), a synthesised one when a non-header line ended it, or ``b""`` when the input
    ended inside the header block. ``line_ending`` is what the message uses (from its
    first line) and what rewriting uses for the lines it adds. Close the message (or
    use it as a context manager) to release the spool; ``with_headers`` copies share
    the spool.
    """

    headers: HeaderBlock
    separator: bytes
    body: Spool
    line_ending: bytes = b"\n"

    @property
    def scan(self) -> BodyScan:
        return self.body.scan

    def with_headers(self, headers: HeaderBlock) -> Message:
        return self._replace(headers=headers)

    def chunks(self) -> Iterator[bytes]:
        """The whole message as it stands: headers, separator, body."""
        yield self.headers.to_bytes() + self.separator
        yield from self.body.chunks()

    def close(self) -> None:
        self.body.close()

    def __enter__(self) -> Message:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _is_lone_dot(line: bytes) -> bool:
    return line in (b".", b".\n", b".\r\n")


def _is_mbox_from_line(line: bytes) -> bool:
    return line.lstrip(b">").startswith(b"From ")


def read_message(
    stream: Readable,
    *,
    ignore_dots: bool = False,
    spool_directory: str | os.PathLike[str] | None = None,
) -> Message:
    """Read one message from ``stream``; ``ignore_dots`` is sendmail's ``-i``/``-oi``."""
    fields: list[HeaderField] = []
    current: list[bytes] = []  # physical lines of the field being read
    used = 0
    line_ending = b""
    separator = b""
    first_body_line = b""
    ended = False  # a lone dot ended the input
    at_start = True
    while True:
        line = stream.readline(MAX_HEADER_BLOCK_BYTES - used + 1)
        if not line:
            break
        used += len(line)
        if used > MAX_HEADER_BLOCK_BYTES:
            raise HeaderBlockTooLargeError(
                f"the message header block is larger than {MAX_HEADER_BLOCK_BYTES} bytes"
            )
        if at_start and _is_mbox_from_line(line) and line.endswith(b"\n"):
            continue
        at_start = False
        if not line_ending:
            line_ending = b"\r\n" if line.endswith(b"\r\n") else b"\n"
        if not ignore_dots and _is_lone_dot(line):
            ended = True
            break
        if line in (b"\n", b"\r\n"):
            separator = line
            break
        if current and line[:1] in (b" ", b"\t"):
            current.append(line)
            continue
        if header_name_length(line):
            if current:
                fields.append(HeaderField(b"".join(current)))
            current = [line]
            continue
        # Neither a field nor a continuation: the body starts here (Postfix inserts
        # the empty line that should have been there).
        separator = line_ending
        first_body_line = line
        break
    if current:
        fields.append(HeaderField(b"".join(current)))
    for field in fields:
        if b"\0" in field.raw:
            raise MalformedMessageError(
                f"the {field.name} header contains a NUL byte (RFC 5322 §3.5 forbids it)"
            )
    headers = HeaderBlock(fields)
    spool = Spool(spool_directory)
    try:
        if not ended:
            _spool_body(stream, spool, first_body_line, ignore_dots=ignore_dots)
        spool.finish()
    except BaseException:
        spool.close()
        raise
    return Message(
        headers=headers, separator=separator, body=spool, line_ending=line_ending or b"\n"
    )


def _spool_body(stream: Readable, spool: Spool, first_line: bytes, *, ignore_dots: bool) -> None:
    if ignore_dots:
        if first_line:
            spool.write(first_line)
        while chunk := stream.read(CHUNK_OCTETS):
            spool.write(chunk)
        return
    terminator = _DotTerminator()
    pending = first_line
    while True:
        chunk = stream.read(CHUNK_OCTETS)
        data, finished = terminator.feed(pending + chunk, at_end=not chunk)
        pending = b""
        if data:
            spool.write(data)
        if finished or not chunk:
            return


class _DotTerminator:
    """Finds the first line that is a single dot, across chunk boundaries.

    The last few bytes of each chunk are held back until the next one arrives, so a
    ``LF . CR LF`` split over two reads is still seen. The body is searched as if a
    line feed preceded it, so a dot on its first line counts too.
    """

    _HOLD = 3  # len(b"\n.\r\n") - 1: the longest pattern minus one byte

    def __init__(self) -> None:
        self._held = b"\n"  # virtual line start before the body
        self._virtual = 1  # how many leading held bytes are not real data

    def feed(self, chunk: bytes, *, at_end: bool) -> tuple[bytes, bool]:
        """Return (bytes to keep, whether the dot line was found)."""
        data = self._held + chunk
        virtual = self._virtual
        found = -1
        for pattern in (b"\n.\n", b"\n.\r\n"):
            position = data.find(pattern)
            if position >= 0 and (found < 0 or position < found):
                found = position
        if at_end and found < 0 and data.endswith(b"\n."):
            found = len(data) - 2
        if found >= 0:
            # Keep everything up to and including the LF that ends the last body line.
            return data[virtual : max(found + 1, virtual)], True
        if at_end:
            self._held = b""
            return data[virtual:], False
        keep = max(len(data) - self._HOLD, 0)
        self._held = data[keep:]
        self._virtual = max(virtual - keep, 0)
        return (data[virtual:keep] if keep > virtual else b""), False
