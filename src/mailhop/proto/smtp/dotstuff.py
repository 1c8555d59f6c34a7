"""The DATA section on the wire (RFC 5321 §4.5.2, §2.3.8): encoder and decoder.

:class:`DataEncoder` (client) turns arbitrary message bytes, in chunks split
anywhere, into SMTP-safe lines: every CR, LF and CRLF becomes CRLF, a line that
starts with "." gets a second ".", and :meth:`DataEncoder.end` adds the final
``.CRLF`` (after a CRLF if the last line had none). So no smuggling sequence
(``LF.LF``, ``CR.CR``, ``CRLF.LF``, ...) can ever leave (security.md C1).

:class:`DataDecoder` (server) does the reverse, and only ``CRLF.CRLF`` ends the
data; a lone CR or LF is kept as content and reported, never taken as a line end
(Postfix's ``smtpd_forbid_bare_newline``, security.md C2).

Both keep O(1) state between chunks, so a message of any size streams through
in bounded memory.
"""

from __future__ import annotations

import enum
import re

__all__ = ["DataDecoder", "DataEncoder"]

# A CR not followed by LF, or an LF not preceded by CR (within one stretch).
_LONE_CR_OR_LF = re.compile(rb"\r(?!\n)|(?<!\r)\n")


class DataEncoder:
    """Normalise line endings and dot-stuff a message, chunk by chunk."""

    def __init__(self) -> None:
        # The previous chunk ended in CR, already sent as CRLF: an LF that starts
        # the next chunk is the second half of that line ending.
        self._after_cr = False
        self._at_line_start = True
        self.message_size = 0
        """Octets as msmtp's ``mailsize`` counts them: a line end is 1, no stuffing."""
        self.wire_size = 0
        """Octets sent on the wire, stuffing and the final ``.CRLF`` included."""

    def encode(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        if self._after_cr and chunk[0] == 0x0A:
            chunk = chunk[1:]
            if not chunk:
                self._after_cr = False
                return b""
        self._after_cr = chunk[-1] == 0x0D
        # Three C-level passes: CRLF and lone CR to LF, then every LF to CRLF.
        as_lf = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        normalised = as_lf.replace(b"\n", b"\r\n")
        stuffed = normalised.replace(b"\r\n.", b"\r\n..")
        if self._at_line_start and stuffed[0] == 0x2E:
            stuffed = b"." + stuffed
        self._at_line_start = normalised[-1] == 0x0A
        self.message_size += len(as_lf)
        self.wire_size += len(stuffed)
        return stuffed

    def end(self) -> bytes:
        """The end-of-data mark, with a CRLF first if the last line is unterminated."""
        tail = b".\r\n" if self._at_line_start else b"\r\n.\r\n"
        self._at_line_start = True
        self.wire_size += len(tail)
        return tail


class _DecoderState(enum.Enum):
    LINE_START = enum.auto()  # after CRLF, or at the start of the data
    MIDDLE = enum.auto()  # inside a line
    CR = enum.auto()  # inside a line, a CR whose LF has not arrived yet
    DOT = enum.auto()  # a "." at the start of a line
    DOT_CR = enum.auto()  # ".CR" at the start of a line: CRLF.CRLF if an LF follows


class DataDecoder:
    """Undo dot-stuffing and find the end of the data (only ``CRLF.CRLF``)."""

    def __init__(self) -> None:
        self._state = _DecoderState.LINE_START
        self.bare_line_endings = False
        """A CR or LF not part of a CRLF was seen (kept as content)."""

    def feed(self, data: bytes) -> tuple[bytes, int | None]:
        """Return (content, end): ``end`` is the index just past ``.CRLF``, or None."""
        out = bytearray()
        index, length = 0, len(data)
        while index < length:
            state = self._state
            if state is _DecoderState.MIDDLE:
                index = self._inside_line(data, index, out)
            elif state is _DecoderState.CR:
                if data[index] == 0x0A:
                    out += b"\r\n"
                    index += 1
                    self._state = _DecoderState.LINE_START
                else:  # CR without LF: content; look at this byte again
                    self.bare_line_endings = True
                    out += b"\r"
                    self._state = _DecoderState.MIDDLE
            elif state is _DecoderState.LINE_START:
                if data[index] == 0x2E:
                    index += 1
                    self._state = _DecoderState.DOT
                else:
                    self._state = _DecoderState.MIDDLE
            elif state is _DecoderState.DOT:
                if data[index] == 0x0D:
                    index += 1
                    self._state = _DecoderState.DOT_CR
                else:  # RFC 5321 §4.5.2: drop the first "." of a longer line
                    self._state = _DecoderState.MIDDLE
            elif data[index] == 0x0A:  # DOT_CR, and the LF: CRLF.CRLF
                self._state = _DecoderState.LINE_START
                return bytes(out), index + 1
            else:  # ".CR" then something else: the "." was stuffing, the CR is bare
                self.bare_line_endings = True
                out += b"\r"
                self._state = _DecoderState.MIDDLE
        return bytes(out), None

    def _inside_line(self, data: bytes, index: int, out: bytearray) -> int:
        """Copy content up to the next line that starts with "."; return the new index.

        Ordinary CRLF lines need no work, so a whole stretch is copied at C speed.
        A CR at the very end waits for the next chunk (its LF may be there). A lone
        CR or LF is content: it is copied, reported, and scanning goes on after it.
        """
        dot = data.find(b"\r\n.", index)
        pending_cr = dot == -1 and data.endswith(b"\r")
        end = len(data) - pending_cr if dot == -1 else dot + 2
        stretch = data[index:end]
        lone = _LONE_CR_OR_LF.search(stretch)
        if lone is not None:
            self.bare_line_endings = True
            out += stretch[: lone.end()]
            return index + lone.end()
        out += stretch
        if dot != -1:
            self._state = _DecoderState.DOT
            return dot + 3
        if pending_cr:
            self._state = _DecoderState.CR
        elif stretch.endswith(b"\r\n"):
            self._state = _DecoderState.LINE_START
        return len(data)
