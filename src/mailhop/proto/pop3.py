"""The POP3 client core (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH).

Sans-IO like :mod:`mailhop.proto.smtp`::

    client = Pop3Client(tls_active=False)
    client.receive_data(sock.recv(...))        # b"" when the peer closed
    event = client.next_event()                # Greeting, Response, ..., or NEED_DATA
    client.send(Uidl())                        # queues bytes
    sock.sendall(client.data_to_send())

One command is outstanding at a time. A multi-line reply (CAPA, UIDL, LIST) is
delivered whole as :class:`Listing`, capped in lines; a RETR reply is streamed as
:class:`MessageChunk` events and ends with :class:`EndOfMessage`, so a message of
any size passes through a bounded buffer. Only ``CRLF . CRLF`` ends a multi-line
reply (RFC 1939 §3): a bare ``LF . LF`` inside a message is content, never a
terminator (CVE class C7: greenmail PR #1049). Lines are unstuffed (one leading
dot removed) and handed out with LF endings, the local mailbox convention.

What the core refuses: a command argument with CR, LF or NUL (RFC 1939 §3 sends
arguments inline, so they would become commands); USER/PASS/APOP or a password
mechanism without TLS unless allowed; bytes after the STLS ``+OK`` (RFC 2595 §4:
they would be read as if protected by TLS, CVE-2020-14954).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import hashlib
import re

from mailhop.proto._buffer import ByteStream, LineTooLongError
from mailhop.proto.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from mailhop.proto.sasl import Flow, Mechanism

__all__ = [
    "MAX_LISTING_LINES",
    "MAX_MESSAGE_LINE_LENGTH",
    "MAX_RESPONSE_LINE_LENGTH",
    "NEED_DATA",
    "Apop",
    "Auth",
    "Capa",
    "Command",
    "ConnectionClosed",
    "Dele",
    "EndOfMessage",
    "Greeting",
    "Listing",
    "MessageChunk",
    "Noop",
    "Pass",
    "Pop3Client",
    "Pop3Event",
    "Pop3State",
    "Quit",
    "Response",
    "Retr",
    "Rset",
    "Stat",
    "Stls",
    "TLSUpgradeRequired",
    "Uidl",
    "User",
    "parse_uidl_line",
]

# RFC 2449 §4: a response line is at most 512 octets with its CRLF. Servers stretch
# it (long greetings, long -ERR texts); 8 KiB is generous and still bounded.
MAX_RESPONSE_LINE_LENGTH = 8192
# RFC 1939 §3 lets message lines be as long as the message has them; a line longer
# than this is handed out in pieces so the buffer never holds more.
MAX_MESSAGE_LINE_LENGTH = 64 * 1024
# A UIDL or LIST listing has one line per message; a maildrop of a million messages
# is far beyond any real POP3 use, and a hostile endless listing stops here.
MAX_LISTING_LINES = 1_000_000
# RFC 1939 §7: a unique-id is 1 to 70 characters in 0x21..0x7E.
MAX_UID_LENGTH = 70
_UIDL_LINE = re.compile(rb"([0-9]{1,10}) ([\x21-\x7e]{1,70})")
# RFC 1939 §7 APOP: the timestamp is a msg-id in the greeting.
_APOP_TIMESTAMP = re.compile(rb"<[\x21-\x3d\x3f-\x7e]{1,250}>")


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


# --- commands -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Capa:
    """RFC 2449 §5: multi-line capability list."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stls:
    """RFC 2595 §4: upgrade to TLS."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class User:
    name: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Pass:
    password: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Apop:
    """RFC 1939 §7: MD5 of the greeting's timestamp and the shared secret."""

    name: str
    password: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Auth:
    """RFC 5034: SASL authentication with one of :mod:`mailhop.proto.sasl`'s mechanisms."""

    mechanism: Mechanism


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stat:
    pass


@dataclasses.dataclass(frozen=True, kw_only=True)
class Uidl:
    """Multi-line: ``msg-number unique-id`` for every message (RFC 1939 §7)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Retr:
    number: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class Dele:
    number: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class Noop:
    pass


@dataclasses.dataclass(frozen=True, kw_only=True)
class Rset:
    pass


@dataclasses.dataclass(frozen=True, kw_only=True)
class Quit:
    """In TRANSACTION state QUIT commits the DELEs (RFC 1939 §6 UPDATE state)."""


Command = Capa | Stls | User | Pass | Apop | Auth | Stat | Uidl | Retr | Dele | Noop | Rset | Quit


# --- events ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Greeting:
    ok: bool
    text: str
    apop_timestamp: bytes | None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Response:
    """A single-line reply, or the status line of a multi-line one that failed."""

    command: Command
    ok: bool
    text: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Listing:
    """A whole multi-line reply (CAPA, UIDL): its unstuffed lines without CRLF."""

    command: Command
    lines: tuple[bytes, ...]


@dataclasses.dataclass(frozen=True, kw_only=True)
class MessageChunk:
    """Part of a RETR reply: unstuffed message bytes, LF line endings."""

    data: bytes


@dataclasses.dataclass(frozen=True, kw_only=True)
class EndOfMessage:
    command: Retr
    size: int  # octets handed out in MessageChunks


@dataclasses.dataclass(frozen=True, kw_only=True)
class TLSUpgradeRequired:
    """STLS was accepted: the driver performs the handshake, then calls start_tls_done."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConnectionClosed:
    pass


Pop3Event = (
    Greeting | Response | Listing | MessageChunk | EndOfMessage | TLSUpgradeRequired
    | ConnectionClosed
)  # fmt: skip


# --- states ---------------------------------------------------------------------------


class Pop3State(enum.Enum):
    AWAIT_GREETING = enum.auto()
    AUTHORIZATION = enum.auto()  # RFC 1939 §4
    TLS_HANDSHAKE = enum.auto()  # STLS accepted; the driver does TLS
    TRANSACTION = enum.auto()  # RFC 1939 §5
    CLOSED = enum.auto()  # QUIT answered or the peer closed
    ERROR = enum.auto()  # a ProtocolError happened; terminal


class _Input(enum.Enum):
    GREETING_OK = enum.auto()
    GREETING_REFUSED = enum.auto()
    AUTHENTICATED = enum.auto()
    STLS_ACCEPTED = enum.auto()
    TLS_DONE = enum.auto()
    CLOSED = enum.auto()


# The one table of state changes caused by replies: (state, input) -> new state.
_TRANSITIONS: dict[tuple[Pop3State, _Input], Pop3State] = {
    (Pop3State.AWAIT_GREETING, _Input.GREETING_OK): Pop3State.AUTHORIZATION,
    (Pop3State.AWAIT_GREETING, _Input.GREETING_REFUSED): Pop3State.CLOSED,
    (Pop3State.AUTHORIZATION, _Input.STLS_ACCEPTED): Pop3State.TLS_HANDSHAKE,
    (Pop3State.TLS_HANDSHAKE, _Input.TLS_DONE): Pop3State.AUTHORIZATION,
    (Pop3State.AUTHORIZATION, _Input.AUTHENTICATED): Pop3State.TRANSACTION,
    **{(state, _Input.CLOSED): Pop3State.CLOSED for state in Pop3State
       if state is not Pop3State.ERROR},
}  # fmt: skip

# Which commands each state allows (RFC 1939 §4-§6, RFC 2449, RFC 2595 §4).
_ALLOWED: dict[Pop3State, tuple[type[Command], ...]] = {
    Pop3State.AUTHORIZATION: (Capa, Stls, User, Pass, Apop, Auth, Quit),
    Pop3State.TRANSACTION: (Capa, Stat, Uidl, Retr, Dele, Noop, Rset, Quit),
}

_MULTI_LINE = (Capa, Uidl)


def _check_argument(text: str, what: str) -> bytes:
    """An inline argument: no CR, LF, NUL (they would end the command line)."""
    if any(character in text for character in "\r\n\0"):
        raise LocalProtocolError(f"{what} contains CR, LF or NUL")
    if not text:
        raise LocalProtocolError(f"{what} is empty")
    return text.encode("utf-8")


def parse_uidl_line(line: bytes) -> tuple[int, str]:
    """``msg-number unique-id`` of one UIDL line (RFC 1939 §7)."""
    match = _UIDL_LINE.fullmatch(line)
    if match is None:
        raise RemoteProtocolError(f"malformed UIDL line {line[:80]!r}")
    return int(match.group(1)), match.group(2).decode("ascii")


class Pop3Client(ByteStream):
    """One POP3 session. ``tls_active``: TLS from the first byte (port 995)."""

    def __init__(self, *, tls_active: bool = False, allow_plaintext_auth: bool = False) -> None:
        super().__init__()
        self.tls_active = tls_active
        self.allow_plaintext_auth = allow_plaintext_auth
        self.apop_timestamp: bytes | None = None
        self._state = Pop3State.AWAIT_GREETING
        self._pending: Command | None = None
        self._awaiting_greeting = True
        self._flow: Flow | None = None
        # Multi-line reply in progress: the listing so far, or the RETR being streamed.
        self._listing: list[bytes] | None = None
        self._retr: Retr | None = None
        self._retr_size = 0
        self._partial_line = bytearray()  # RETR: a line not yet ended by CRLF
        self._at_line_start = True
        self._queued_end: EndOfMessage | None = None

    @property
    def state(self) -> Pop3State:
        return self._state

    @property
    def pending(self) -> Command | None:
        return self._pending

    # --- public API -------------------------------------------------------------------

    def send(self, command: Command) -> None:
        try:
            self._send(command)
        except ProtocolError:
            self._state = Pop3State.ERROR
            raise

    def next_event(self) -> Pop3Event | _NeedData:
        if self._state is Pop3State.ERROR:
            raise LocalProtocolError("the connection is in the ERROR state")
        try:
            return self._next_event()
        except ProtocolError:
            self._state = Pop3State.ERROR
            raise

    def start_tls_done(self) -> None:
        """The handshake after STLS completed (RFC 2595 §4: forget what came before)."""
        try:
            if self._state is not Pop3State.TLS_HANDSHAKE:
                raise LocalProtocolError("no STLS +OK to complete")
            if len(self._buffer):
                raise RemoteProtocolError("the server sent data during the TLS handshake")
            self._transition(_Input.TLS_DONE)
            self.tls_active = True
            self.apop_timestamp = None
        except ProtocolError:
            self._state = Pop3State.ERROR
            raise

    # --- sending ----------------------------------------------------------------------

    def _transition(self, event: _Input) -> None:
        try:
            self._state = _TRANSITIONS[(self._state, event)]
        except KeyError:
            raise RemoteProtocolError(
                f"{event.name.lower()} is not possible in state {self._state.name}"
            ) from None

    def _send(self, command: Command) -> None:
        if self._pending is not None or self._awaiting_greeting:
            raise LocalProtocolError("a reply is still outstanding")
        if not isinstance(command, _ALLOWED.get(self._state, ())):
            raise LocalProtocolError(
                f"cannot send {type(command).__name__.upper()} in state {self._state.name}"
            )
        clear_ok = self.tls_active or self.allow_plaintext_auth
        if isinstance(command, Stls):
            if self.tls_active:
                raise LocalProtocolError("TLS is already active")
            line = b"STLS"
        elif isinstance(command, User):
            if not clear_ok:
                raise LocalProtocolError("USER/PASS would send the password in clear without TLS")
            line = b"USER " + _check_argument(command.name, "the user name")
        elif isinstance(command, Pass):
            if not clear_ok:
                raise LocalProtocolError("USER/PASS would send the password in clear without TLS")
            line = b"PASS " + _check_argument(command.password, "the password")
        elif isinstance(command, Apop):
            if self.apop_timestamp is None:
                raise LocalProtocolError("the greeting carried no APOP timestamp (RFC 1939 §7)")
            name = _check_argument(command.name, "the user name")
            digest = hashlib.md5(  # RFC 1939 §7 defines APOP with MD5
                self.apop_timestamp + command.password.encode("utf-8"), usedforsecurity=False
            ).hexdigest()
            line = b"APOP " + name + b" " + digest.encode("ascii")
        elif isinstance(command, Auth):
            mechanism = command.mechanism
            if mechanism.sends_secret_in_clear and not clear_ok:
                raise LocalProtocolError(
                    f"AUTH {mechanism.name} would send the secret in clear without TLS"
                )
            self._flow = mechanism.flow()
            initial = next(self._flow)
            line = b"AUTH " + mechanism.name.encode("ascii")
            if initial is not None:
                # RFC 5034 §4: an empty initial response is sent as "=".
                line += b" " + (base64.b64encode(initial) if initial else b"=")
        elif isinstance(command, Retr | Dele):
            if command.number < 1:
                raise LocalProtocolError("message numbers start at 1 (RFC 1939 §5)")
            line = type(command).__name__.upper().encode() + b" %d" % command.number
        else:
            line = type(command).__name__.upper().encode()
        self._outgoing += line + b"\r\n"
        self._pending = command

    # --- receiving --------------------------------------------------------------------

    def _next_event(self) -> Pop3Event | _NeedData:
        if self._queued_end is not None:
            end, self._queued_end = self._queued_end, None
            return end
        if self._retr is not None:
            chunk = self._stream_message()
            if chunk is not None:
                return chunk
        else:
            while True:
                try:
                    line = self._buffer.extract_line(MAX_RESPONSE_LINE_LENGTH)
                except LineTooLongError:
                    raise RemoteProtocolError("POP3 response line too long") from None
                if line is None:
                    break
                event = self._handle_line(line)
                if event is not None:
                    return event
        if not self._eof:
            return NEED_DATA
        if len(self._buffer) or self._listing is not None or self._retr is not None:
            raise RemoteProtocolError("the connection closed in the middle of a reply")
        if self._pending is not None and not isinstance(self._pending, Quit):
            raise RemoteProtocolError(
                f"the server closed the connection without answering "
                f"{type(self._pending).__name__.upper()}"
            )
        self._pending = None
        if self._state is not Pop3State.CLOSED:
            self._transition(_Input.CLOSED)
        return ConnectionClosed()

    def _handle_line(self, line: bytes) -> Pop3Event | None:
        if not line.endswith(b"\r\n"):
            raise RemoteProtocolError("POP3 line not ended by CRLF (RFC 1939 §3)")
        line = line[:-2]
        if self._listing is not None:
            return self._listing_line(line)
        if self._state is Pop3State.TLS_HANDSHAKE:
            raise RemoteProtocolError("the server sent data after its STLS +OK")
        if self._awaiting_greeting:
            return self._greeting(line)
        if self._pending is None:
            raise RemoteProtocolError(f"unsolicited POP3 response {line[:80]!r}")
        if line.startswith(b"+ ") or line == b"+":
            self._challenge(line)
            return None
        ok, text = self._status(line)
        command = self._pending
        if isinstance(command, Auth):
            self._finish_auth(ok)
        if not ok:
            self._pending = None
            return Response(command=command, ok=False, text=text)
        if isinstance(command, _MULTI_LINE):
            self._listing = []
            return None
        if isinstance(command, Retr):
            self._retr, self._retr_size = command, 0
            self._at_line_start = True
            return self._stream_message()
        self._pending = None
        if isinstance(command, Stls):
            # RFC 2595 §4 / CVE-2020-14954: nothing may follow the +OK in the clear.
            if len(self._buffer):
                raise RemoteProtocolError("the server sent data after its STLS +OK")
            self._transition(_Input.STLS_ACCEPTED)
            return TLSUpgradeRequired()
        if isinstance(command, Pass | Apop | Auth):
            self._transition(_Input.AUTHENTICATED)
        elif isinstance(command, Quit):
            self._transition(_Input.CLOSED)
        return Response(command=command, ok=True, text=text)

    def _greeting(self, line: bytes) -> Greeting:
        ok, text = self._status(line)
        self._awaiting_greeting = False
        self._transition(_Input.GREETING_OK if ok else _Input.GREETING_REFUSED)
        match = _APOP_TIMESTAMP.search(line)
        self.apop_timestamp = match.group(0) if match else None
        return Greeting(ok=ok, text=text, apop_timestamp=self.apop_timestamp)

    @staticmethod
    def _status(line: bytes) -> tuple[bool, str]:
        if line == b"+OK" or line.startswith(b"+OK "):
            ok = True
        elif line == b"-ERR" or line.startswith(b"-ERR "):
            ok = False
        else:
            raise RemoteProtocolError(f"POP3 response is neither +OK nor -ERR: {line[:80]!r}")
        return ok, line[4 if ok else 5 :].decode("utf-8", "replace")

    def _challenge(self, line: bytes) -> None:
        """RFC 5034 §4: ``+ base64`` continues an AUTH exchange; answer it."""
        if not isinstance(self._pending, Auth) or self._flow is None:
            raise RemoteProtocolError("a '+' continuation outside AUTH")
        try:
            challenge = base64.b64decode(line[2:], validate=True)
        except binascii.Error:
            raise RemoteProtocolError("AUTH challenge is not base64") from None
        try:
            response = self._flow.send(challenge)
        except StopIteration:
            response = None
        self._outgoing += b"*\r\n" if response is None else base64.b64encode(response) + b"\r\n"

    def _finish_auth(self, ok: bool) -> None:
        flow, self._flow = self._flow, None
        if flow is None:
            return
        if ok:
            try:
                flow.send(None)
            except StopIteration:
                pass
            else:
                flow.close()
                raise RemoteProtocolError("the server declared success before the exchange ended")
        flow.close()

    def _listing_line(self, line: bytes) -> Listing | None:
        assert self._listing is not None  # noqa: S101 - caller checked
        if line == b".":
            command = self._pending
            assert command is not None  # noqa: S101 - a listing answers a command
            lines, self._listing, self._pending = tuple(self._listing), None, None
            return Listing(command=command, lines=lines)
        if len(self._listing) >= MAX_LISTING_LINES:
            raise RemoteProtocolError(f"multi-line reply longer than {MAX_LISTING_LINES} lines")
        self._listing.append(line[1:] if line.startswith(b".") else line)
        return None

    def _stream_message(self) -> MessageChunk | EndOfMessage | None:
        """Hand out what has arrived of a RETR reply, unstuffed, CRLF -> LF.

        Lines end only at CRLF; a bare LF or CR is content (RFC 1939 §3, C7).
        """
        assert self._retr is not None  # noqa: S101 - caller checked
        data = self._partial_line + self._buffer.extract_all()
        self._partial_line = bytearray()
        out = bytearray()
        position = 0
        while True:
            end = data.find(b"\r\n", position)
            if end == -1:
                break
            line = data[position:end]
            position = end + 2
            if self._at_line_start:
                if line == b".":
                    command, self._retr = self._retr, None
                    self._pending = None
                    self._buffer.append(bytes(data[position:]))
                    if out:
                        # Hand out the last chunk first; the end comes next call.
                        self._retr_size += len(out)
                        self._queued_end = EndOfMessage(command=command, size=self._retr_size)
                        return MessageChunk(data=bytes(out))
                    return EndOfMessage(command=command, size=self._retr_size)
                if line.startswith(b"."):
                    line = line[1:]
            out += line
            out += b"\n"
            self._at_line_start = True
        rest = data[position:]
        if len(rest) > MAX_MESSAGE_LINE_LENGTH:
            # A very long line: hand it out in pieces, keeping a possible CR at the end.
            keep = 1 if rest.endswith(b"\r") else 0
            piece = rest[: len(rest) - keep]
            if self._at_line_start and piece.startswith(b"."):
                piece = piece[1:]
            out += piece
            rest = rest[len(rest) - keep :]
            self._at_line_start = False
        self._partial_line = bytearray(rest)
        if out:
            self._retr_size += len(out)
            return MessageChunk(data=bytes(out))
        return None
