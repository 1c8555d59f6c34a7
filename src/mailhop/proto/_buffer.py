"""A receive buffer that hands out CRLF-terminated lines, each read capped.

Every protocol core keeps the peer's unread bytes here. A line is only handed out
once its LF has arrived; a line longer than the cap the caller names raises
:class:`LineTooLongError` instead of growing the buffer without bound
(DESIGN.md §4 invariant 6).
"""

from __future__ import annotations

from mailhop.proto.errors import LocalProtocolError

__all__ = ["ByteStream", "LineTooLongError", "ReceiveBuffer"]


class LineTooLongError(Exception):
    """No LF within the allowed length: the caller decides what that means."""


class ReceiveBuffer:
    """Bytes received and not yet consumed."""

    def __init__(self) -> None:
        self._data = bytearray()

    def __len__(self) -> int:
        return len(self._data)

    def append(self, data: bytes) -> None:
        self._data += data

    def extract_line(self, max_length: int) -> bytes | None:
        """Remove and return one line including its LF, or None if it is incomplete.

        ``max_length`` counts the line ending too. The search looks at most
        ``max_length`` bytes ahead, so a flood without LF costs O(cap) per call.
        """
        end = self._data.find(b"\n", 0, max_length)
        if end == -1:
            if len(self._data) >= max_length:
                raise LineTooLongError
            return None
        line = bytes(self._data[: end + 1])
        del self._data[: end + 1]
        return line

    def discard_through_newline(self) -> bool:
        """Drop bytes up to and including the next LF; True if an LF was found."""
        end = self._data.find(b"\n")
        if end == -1:
            self._data.clear()
            return False
        del self._data[: end + 1]
        return True

    def extract_all(self) -> bytes:
        data = bytes(self._data)
        self._data.clear()
        return data


class ByteStream:
    """The byte plumbing every core shares (h11's verbs, h2's output buffer).

    ``receive_data`` feeds what the driver read (``b""`` means the peer closed);
    ``data_to_send`` hands over everything queued for the peer since the last call.
    """

    def __init__(self) -> None:
        self._buffer = ReceiveBuffer()
        self._outgoing = bytearray()
        self._eof = False

    @property
    def has_data_to_send(self) -> bool:
        """Something is queued for the peer (``data_to_send`` would not be empty)."""
        return bool(self._outgoing)

    def data_to_send(self) -> bytes:
        """Everything queued since the last call, to be written to the peer."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the peer; ``b""`` means the peer closed."""
        if self._eof:
            raise LocalProtocolError("data received after the connection was closed")
        if data:
            self._buffer.append(data)
        else:
            self._eof = True
