"""Whether a stored message goes on the wire exactly as it is stored.

The queue runner reads each stored message with ``read_message`` and fits it to the
server with ``prepare_transfer`` (about 70 us of a delivery that costs a few
hundred). Most queued messages need neither: ``SentAsStored`` watches the bytes once,
as they are written to the queue, and says whether both steps would hand the very
same bytes back, for any server: then the runner sends the stored bytes (the SMTP
core still dot-stuffs them and adds the end of data, RFC 5321 §4.5.2). That holds
when the message is

* 7-bit, with no NUL (no 8BITMIME, SMTPUTF8 or re-encoding, RFC 6152 / RFC 6531);
* made of lines that each end in CRLF, the last one included (nothing for the
  encoder to normalise, so the SIZE is the stored size, RFC 1870 §3);
* free of lines over 998 octets (RFC 5322 §2.1.1; ``prepare_transfer`` re-encodes
  those);
* headed by a header block ``read_message`` keeps byte for byte: no leading mbox
  ``From `` line (dropped), only fields and continuation lines up to the empty line
  (another line would start the body after an inserted empty line), and at most
  ``MAX_HEADER_BLOCK_BYTES`` (refused).

Anything else takes the full path, as every message did before.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from mailhop.message.headers import MAX_LINE_OCTETS, header_name_length
from mailhop.message.reader import MAX_HEADER_BLOCK_BYTES

__all__ = ["SentAsStored"]

_CRLF = b"\r\n"
_FOLDING_WHITESPACE = (b" ", b"\t")  # a continuation line starts with one (RFC 5322 §2.2.3)


class SentAsStored:
    """Pass chunks through; once they are all through, ``holds`` gives the verdict."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self._possible = True
        self._in_header = True
        self._header_octets = 0
        self._first_line = True
        self._unfinished = b""  # the last line, while its LF has not come
        self._done = False

    @property
    def holds(self) -> bool:
        """The stored bytes are what reading and fitting would send, to any server."""
        return self._done and self._possible and not self._unfinished

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if self._possible:
                self._feed(chunk)
            yield chunk
        self._done = True

    def _feed(self, chunk: bytes) -> None:
        if not chunk.isascii() or b"\0" in chunk:
            self._possible = False
            return
        data = self._unfinished + chunk
        end = data.rfind(b"\n") + 1
        self._unfinished = data[end:]
        # A CR is part of a line until its LF comes; the line is too long already
        # when what has come of it exceeds the limit and a CR.
        if len(self._unfinished) > MAX_LINE_OCTETS + 1:
            self._possible = False
            return
        lines = data[:end]
        if self._in_header:
            lines = self._header_lines(lines)
        if not lines:
            return
        # Every LF has its CR, every CR its LF: three counts in C.
        line_ends = lines.count(_CRLF)
        if lines.count(b"\n") != line_ends or lines.count(b"\r") != line_ends:
            self._possible = False
            return
        if len(lines) > MAX_LINE_OCTETS + len(_CRLF):
            self._possible = max(map(len, lines.split(_CRLF))) <= MAX_LINE_OCTETS

    def _header_lines(self, lines: bytes) -> bytes:
        """Check the header block's lines; return the rest (the body's lines)."""
        position = 0
        while position < len(lines):
            end = lines.index(b"\n", position) + 1
            line = lines[position:end]
            position = end
            if line == _CRLF:  # the empty line: the body follows
                self._in_header = False
                return lines[position:]
            self._header_octets += len(line)
            first, self._first_line = self._first_line, False
            if (
                not line.endswith(_CRLF)
                or b"\r" in line[:-2]
                or len(line) - len(_CRLF) > MAX_LINE_OCTETS
                or self._header_octets > MAX_HEADER_BLOCK_BYTES
                or (first and line.lstrip(b">").startswith(b"From "))  # an mbox line
                or (first and line.startswith(_FOLDING_WHITESPACE))
                or not (line.startswith(_FOLDING_WHITESPACE) or header_name_length(line))
            ):
                self._possible = False
                return b""
        return b""
