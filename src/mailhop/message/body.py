"""The body of a message: spooled as it is read, and scanned in the same pass.

A cron job may pipe a 200 MB log into sendmail, so the body is never held whole in
memory: up to ``MAX_BODY_IN_MEMORY`` it stays in a buffer (most mail is small, and a
disk write per cron mail is a cost for nothing), beyond that it moves to an anonymous
temporary file. While the bytes pass, one scan notes what the transfer decision needs:
8-bit bytes, NUL, bare CR, the longest line, the size and the final newline.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

from mailhop._records import NamedTuple
from mailhop.errors import ExitCode
from mailhop.message.errors import MessageError

TYPE_CHECKING = False  # not typing's: the enqueue path never imports typing (CONVENTIONS)
if TYPE_CHECKING:
    from typing import BinaryIO

__all__ = ["CHUNK_OCTETS", "MAX_BODY_IN_MEMORY", "BodyScan", "Spool"]

# Bodies up to this size stay in memory; larger ones go to a temporary file. 1 MiB
# keeps every ordinary cron or script mail off the disk while bounding memory.
MAX_BODY_IN_MEMORY = 1 << 20
# Read and write unit: large enough that Python overhead per chunk is negligible,
# small enough to keep the streaming path's memory flat.
CHUNK_OCTETS = 1 << 16


class BodyScan(NamedTuple):
    """What one pass over the body found.

    ``longest_line`` counts octets without the line ending (LF or CRLF), as RFC 5322
    §2.1.1 counts its 998. ``line_feeds`` and ``crlf_pairs`` let the SIZE estimate
    account for the CRLF normalisation the SMTP encoder will do.
    """

    size: int = 0
    has_8bit: bool = False
    has_nul: bool = False
    has_bare_cr: bool = False
    longest_line: int = 0
    ends_with_newline: bool = True  # an empty body needs no final newline
    line_feeds: int = 0
    crlf_pairs: int = 0
    bare_crs: int = 0

    @property
    def wire_size(self) -> int:
        """Octets on the wire after CRLF normalisation, without dot-stuffing."""
        lone_line_feeds = self.line_feeds - self.crlf_pairs
        final = 0 if self.ends_with_newline else 2
        return self.size + lone_line_feeds + self.bare_crs + final


class _Scanner:
    """Accumulates a BodyScan over consecutive chunks."""

    def __init__(self) -> None:
        self.size = 0
        self.has_8bit = False
        self.has_nul = False
        self.longest = 0
        self.partial = 0  # length of the line not yet ended, CR included
        self.partial_ends_with_cr = False
        self.line_feeds = 0
        self.crlf_pairs = 0
        self.carriage_returns = 0
        self.last_byte = b""

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.size += len(chunk)
        if not self.has_8bit and not chunk.isascii():
            self.has_8bit = True
        if not self.has_nul and b"\0" in chunk:
            self.has_nul = True
        line_feeds = chunk.count(b"\n")
        self.line_feeds += line_feeds
        self.carriage_returns += chunk.count(b"\r")
        self.crlf_pairs += chunk.count(b"\r\n")
        if self.partial_ends_with_cr and chunk[0:1] == b"\n":
            self.crlf_pairs += 1
        if line_feeds == 0:
            self.partial += len(chunk)
        else:
            first = chunk.index(b"\n")
            ended = self.partial + first
            if (first and chunk[first - 1] == 13) or (first == 0 and self.partial_ends_with_cr):
                ended -= 1
            self.longest = max(self.longest, ended)
            last = chunk.rindex(b"\n")
            if last > first:
                self._scan_whole_lines(chunk[first + 1 : last])
            self.partial = len(chunk) - last - 1
        self.partial_ends_with_cr = chunk[-1] == 13
        self.last_byte = chunk[-1:]

    def _scan_whole_lines(self, lines: bytes) -> None:
        # max(map(len, ...)) runs in C; the exact pass that discounts a CR before the
        # LF only runs when this chunk may hold a new longest line.
        candidate = max(map(len, lines.split(b"\n")))
        if candidate > self.longest:
            self.longest = max(
                self.longest,
                *(len(line) - line.endswith(b"\r") for line in lines.split(b"\n")),
            )

    def result(self) -> BodyScan:
        longest = max(self.longest, self.partial)
        return BodyScan(
            size=self.size,
            has_8bit=self.has_8bit,
            has_nul=self.has_nul,
            has_bare_cr=self.carriage_returns > self.crlf_pairs,
            longest_line=longest,
            ends_with_newline=self.size == 0 or self.last_byte == b"\n",
            line_feeds=self.line_feeds,
            crlf_pairs=self.crlf_pairs,
            bare_crs=self.carriage_returns - self.crlf_pairs,
        )


class Spool:
    """Bytes written once, then read back any number of times, with their scan.

    Write with ``write``, then ``finish()``; afterwards ``chunks()`` yields the bytes
    (each call starts again at the beginning, independent of other calls) and
    ``scan`` describes them. ``close()`` releases the temporary file; the spool is
    also a context manager.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self._directory = directory
        self._memory: bytearray | None = bytearray()
        self._file: BinaryIO | None = None
        self._scanner: _Scanner | None = _Scanner()
        self._scan: BodyScan | None = None

    def write(self, data: bytes) -> None:
        if self._scanner is None:
            raise ValueError("spool already finished")
        self._scanner.feed(data)
        if self._memory is not None:
            if len(self._memory) + len(data) <= MAX_BODY_IN_MEMORY:
                self._memory += data
                return
            self._spill()
        try:
            self._require_file().write(data)
        except OSError as error:
            raise MessageError(
                f"cannot write the message to a temporary file: {error.strerror}",
                exit_code=_os_exit_code(error),
            ) from error

    def _require_file(self) -> BinaryIO:
        if self._file is None:
            raise ValueError("spool closed")
        return self._file

    def _spill(self) -> None:
        import tempfile  # noqa: PLC0415 - only large messages pay for this import

        try:
            self._file = tempfile.TemporaryFile(dir=self._directory)  # noqa: SIM115
            self._file.write(self._memory or b"")
        except OSError as error:
            raise MessageError(
                f"cannot create a temporary file for the message: {error.strerror}",
                exit_code=_os_exit_code(error),
            ) from error
        self._memory = None

    def finish(self) -> BodyScan:
        if self._scanner is not None:
            self._scan = self._scanner.result()
            self._scanner = None
            if self._file is not None:
                self._file.flush()
        return self.scan

    @property
    def scan(self) -> BodyScan:
        if self._scan is None:
            raise ValueError("spool not finished")
        return self._scan

    @property
    def in_memory(self) -> bool:
        return self._memory is not None

    def chunks(self) -> Iterator[bytes]:
        """The spooled bytes in pieces of at most CHUNK_OCTETS."""
        self.finish()
        if self._memory is not None:
            view = bytes(self._memory)
            for start in range(0, len(view), CHUNK_OCTETS):
                yield view[start : start + CHUNK_OCTETS]
            return
        descriptor = self._require_file().fileno()
        offset = 0
        while True:
            piece = os.pread(descriptor, CHUNK_OCTETS, offset)
            if not piece:
                return
            offset += len(piece)
            yield piece

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._memory = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _os_exit_code(error: OSError) -> ExitCode:
    """Full disk and the like will pass: 75, so the caller keeps the mail and retries."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EAGAIN, errno.ENOMEM, errno.EMFILE):
        return ExitCode.TEMPFAIL
    return ExitCode.CANTCREAT
