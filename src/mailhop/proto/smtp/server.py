"""The SMTP server core: bytes in, command events out; reply events in, bytes out.

The application answers every event that needs an answer with
``send(Reply(...))`` before asking for the next one; so pipelined commands are
handled strictly in order (RFC 2920 §3.1). The core answers by itself what needs
no application decision, and reports it as :class:`CommandRejected`: unknown
verbs and syntax errors (500/501), commands out of sequence (503), commands
before a required STARTTLS (530), over-long lines (500).

Message content after the 354 comes out as :class:`DataChunk` events, already
unstuffed, then :class:`EndOfData`. Only ``CRLF.CRLF`` ends the data (security.md
C2); a message with a bare CR or LF, or over ``max_message_size``, can only be
refused: a 2xx reply to its ``EndOfData`` raises LocalProtocolError.
"""

from __future__ import annotations

import collections
import re

from mailhop.proto._buffer import ByteStream, LineTooLongError
from mailhop.proto.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from mailhop.proto.smtp._grammar import (
    CommandSyntaxError,
    ParsedCommand,
    command_verb,
    decode_base64,
    parse_command,
)
from mailhop.proto.smtp._state import (
    ALLOWED_BEFORE_TLS,
    POSITIVE_REPLIES,
    SERVER_COMMANDS,
    SERVER_TRANSITIONS,
    ServerInput,
    ServerState,
)
from mailhop.proto.smtp.dotstuff import DataDecoder
from mailhop.proto.smtp.events import (
    NEED_DATA,
    AuthCancelled,
    AuthRequest,
    AuthResponse,
    CommandRejected,
    ConnectionClosed,
    Data,
    DataChunk,
    Ehlo,
    EndOfData,
    Helo,
    MailFrom,
    Quit,
    RcptTo,
    Reply,
    Rset,
    Sentinel,
    StartTLS,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_AUTH_LINE_LENGTH",
    "MAX_COMMAND_LINE_LENGTH",
    "MAX_PARAMETER_LINE_LENGTH",
    "ServerConnection",
    "ServerEvent",
]

ServerEvent = (
    ParsedCommand | AuthRequest | AuthResponse | AuthCancelled | DataChunk | EndOfData
    | CommandRejected | ConnectionClosed
)  # fmt: skip

# RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its CRLF.
MAX_COMMAND_LINE_LENGTH = 512
# RFC 5321 §4.5.3.1.4 lets extensions raise that for MAIL and RCPT: SIZE adds 26
# (RFC 1870 §3), DSN 100 on MAIL and 500 on RCPT (RFC 3461 §5), SMTPUTF8 addresses
# are longer in octets. 2048 covers all of them together with room to spare.
MAX_PARAMETER_LINE_LENGTH = 2048
# RFC 4954 §4: an AUTH command or SASL response line may be up to 12288 octets.
MAX_AUTH_LINE_LENGTH = 12288
# Postfix's message_size_limit default (10240000 octets); the application can
# choose another limit and should advertise it with SIZE (RFC 1870).
DEFAULT_MAX_MESSAGE_SIZE = 10_240_000

_LINE_CAPS = {"MAIL": MAX_PARAMETER_LINE_LENGTH, "RCPT": MAX_PARAMETER_LINE_LENGTH,
              "AUTH": MAX_AUTH_LINE_LENGTH}  # fmt: skip
_ENHANCED_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_FORBIDDEN_IN_REPLY = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_SERVICE_CLOSING = 421

Pending = ParsedCommand | AuthRequest | AuthResponse | AuthCancelled | EndOfData


class ServerConnection(ByteStream):
    """One SMTP server session. The application sends the greeting first.

    ``require_tls``: before STARTTLS, only EHLO/HELO/NOOP/RSET/STARTTLS/QUIT.
    ``allow_bare_line_endings``: accept messages with lone CR or LF (not advised).
    """

    def __init__(
        self,
        *,
        require_tls: bool = False,
        tls_active: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        allow_bare_line_endings: bool = False,
    ) -> None:
        super().__init__()
        self.require_tls = require_tls
        self.tls_active = tls_active
        self.max_message_size = max_message_size
        self.allow_bare_line_endings = allow_bare_line_endings
        self.authenticated = False
        self._state = ServerState.GREETING
        self._discarding = False  # skipping the rest of an over-long line
        self._pending: Pending | None = None
        self._events: collections.deque[DataChunk | EndOfData] = collections.deque()
        self._decoder = DataDecoder()  # replaced at each 354
        self._message_size = 0
        self._transaction_smtputf8 = False

    @property
    def state(self) -> ServerState:
        return self._state

    # --- public API -----------------------------------------------------------------

    def send(self, reply: Reply) -> None:
        """Queue the application's reply to the pending command (or the greeting)."""
        try:
            self._send(reply)
        except ProtocolError:
            self._state = ServerState.ERROR
            raise

    def next_event(self) -> ServerEvent | Sentinel:
        try:
            return self._next_event()
        except ProtocolError:
            self._state = ServerState.ERROR
            raise

    def start_tls_done(self) -> None:
        """The driver completed the handshake: the session starts over (RFC 3207 §4.2)."""
        try:
            if len(self._buffer):
                raise RemoteProtocolError("the client sent data before the TLS handshake")
            self._transition(ServerInput.TLS_DONE)
            self.tls_active = True
            self.authenticated = False
            self._transaction_smtputf8 = False
        except ProtocolError:
            self._state = ServerState.ERROR
            raise

    # --- replies --------------------------------------------------------------------

    def _transition(self, event: ServerInput) -> None:
        try:
            self._state = SERVER_TRANSITIONS[self._state][event]
        except KeyError:
            raise LocalProtocolError(
                f"{event.name} is not allowed in state {self._state.name}"
            ) from None

    def _send(self, reply: Reply) -> None:
        _check_reply(reply)
        if reply.code == _SERVICE_CLOSING:
            self._transition(ServerInput.CLOSE)
        elif self._state is ServerState.GREETING:
            if reply.code != 220:
                raise LocalProtocolError("the greeting must be 220 (or 421)")
            self._transition(ServerInput.GREETING_SENT)
        else:
            self._answer(reply)
        self._pending = None
        self._outgoing += reply.to_bytes()

    def _answer(self, reply: Reply) -> None:
        pending = self._pending
        if pending is None:
            raise LocalProtocolError("there is no command to reply to")
        if reply.code < 400 and reply.code not in POSITIVE_REPLIES[type(pending)]:
            raise LocalProtocolError(f"{reply.code} is not a reply to {type(pending).__name__}")
        ok = reply.code < 400
        if isinstance(pending, Ehlo | Helo):
            if ok:
                self._transaction_smtputf8 = False
                self._transition(ServerInput.HELLO_OK)
        elif isinstance(pending, MailFrom):
            if ok:
                self._transaction_smtputf8 = pending.smtputf8
                self._transition(ServerInput.MAIL_OK)
        elif isinstance(pending, RcptTo):
            if ok:
                self._transition(ServerInput.RCPT_OK)
        elif isinstance(pending, Data):
            if ok:
                self._decoder, self._message_size = DataDecoder(), 0
                self._transition(ServerInput.DATA_GO_AHEAD)
        elif isinstance(pending, EndOfData):
            if ok and (
                pending.oversized
                or (pending.bare_line_endings and not self.allow_bare_line_endings)
            ):
                raise LocalProtocolError("this message must be refused, not accepted")
            self._transition(ServerInput.MESSAGE_DONE)
        elif isinstance(pending, Rset):
            if ok:
                self._transition(ServerInput.RSET_OK)
        elif isinstance(pending, AuthRequest | AuthResponse | AuthCancelled):
            if reply.code == 334:
                self._transition(ServerInput.AUTH_CHALLENGE)
            else:
                self.authenticated = reply.code == 235
                self._transition(ServerInput.AUTH_DONE)
        elif isinstance(pending, StartTLS):
            if ok:
                # CVE-2011-0411: commands the client pipelined after STARTTLS were
                # sent in the clear; they must never run inside the TLS session.
                if len(self._buffer):
                    raise RemoteProtocolError("the client sent data after STARTTLS")
                self._transition(ServerInput.STARTTLS_OK)
        elif isinstance(pending, Quit):
            self._transition(ServerInput.CLOSE)

    def _reject(self, verb: str, code: int, status: str, text: str) -> CommandRejected:
        reply = Reply(code=code, enhanced_status=status, lines=(text,))
        self._outgoing += reply.to_bytes()
        return CommandRejected(verb=verb, reply=reply)

    # --- commands -------------------------------------------------------------------

    def _next_event(self) -> ServerEvent | Sentinel:
        if self._state is ServerState.ERROR:
            raise LocalProtocolError("the connection is in the ERROR state")
        if self._pending is not None:
            raise LocalProtocolError(f"reply to {type(self._pending).__name__} first")
        if self._state is ServerState.GREETING:
            raise LocalProtocolError("send the greeting first")
        if self._events:
            return self._take_content_event()
        if self._state in (ServerState.CLOSED, ServerState.TLS_HANDSHAKE):
            return NEED_DATA if not self._eof else self._closed()
        if self._state is ServerState.BODY:
            return self._next_content()
        if self._discarding and not self._buffer.discard_through_newline():
            return NEED_DATA if not self._eof else self._closed()
        if self._discarding:
            self._discarding = False
            return self._reject_long_line()
        cap = MAX_AUTH_LINE_LENGTH
        try:
            line = self._buffer.extract_line(cap)
        except LineTooLongError:
            self._discarding = True
            return self._next_event()
        if line is None:
            return NEED_DATA if not self._eof else self._closed()
        if self._state is ServerState.AUTH:
            return self._auth_response(line)
        return self._command(line)

    def _closed(self) -> ConnectionClosed:
        if self._state is not ServerState.CLOSED:
            self._transition(ServerInput.CLOSE)
        return ConnectionClosed()

    def _reject_long_line(self) -> CommandRejected:
        if self._state is ServerState.AUTH:
            self._transition(ServerInput.AUTH_DONE)
        return self._reject("", 500, "5.5.6", "Line too long")

    def _command(self, raw: bytes) -> ServerEvent:
        if not raw.endswith(b"\r\n"):
            return self._reject("", 500, "5.5.2", "Line must end in CRLF")
        try:
            line = raw[:-2].decode("utf-8")
        except UnicodeDecodeError:
            return self._reject("", 500, "5.5.2", "Invalid UTF-8 in command")
        verb = command_verb(line)
        if len(raw) > _LINE_CAPS.get(verb, MAX_COMMAND_LINE_LENGTH):
            return self._reject(verb[:20], 500, "5.5.6", "Line too long")
        try:
            command = parse_command(line)
        except CommandSyntaxError as exc:
            self._outgoing += exc.reply.to_bytes()
            return CommandRejected(verb=exc.verb, reply=exc.reply)
        if self.require_tls and not self.tls_active and verb not in ALLOWED_BEFORE_TLS:
            return self._reject(verb, 530, "5.7.0", "Must issue a STARTTLS command first")
        if verb not in SERVER_COMMANDS[self._state]:
            return self._reject(verb, 503, "5.5.1", "Bad sequence of commands")
        if (verb == "STARTTLS" and self.tls_active) or (verb == "AUTH" and self.authenticated):
            return self._reject(verb, 503, "5.5.1", f"Already done: {verb}")
        if isinstance(command, RcptTo) and not (
            command.address.isascii() or self._transaction_smtputf8
        ):
            return self._reject(verb, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
        self._pending = command
        return command

    def _auth_response(self, raw: bytes) -> ServerEvent:
        line = raw.rstrip(b"\r\n")
        if line == b"*":  # RFC 4954 §4: the client cancels
            self._pending = AuthCancelled()
            return self._pending
        decoded = decode_base64(line.decode("ascii", "replace"))
        if decoded is None or not raw.endswith(b"\r\n"):
            self._transition(ServerInput.AUTH_DONE)
            return self._reject("AUTH", 501, "5.5.2", "Invalid base64 data")
        self._pending = AuthResponse(data=decoded)
        return self._pending

    # --- message content ------------------------------------------------------------

    def _next_content(self) -> ServerEvent | Sentinel:
        data = self._buffer.extract_all()
        content, end = self._decoder.feed(data)
        self._message_size += len(content)
        if content and self._message_size <= self.max_message_size:
            self._events.append(DataChunk(data=content))
        if end is not None:
            self._buffer.append(data[end:])
            self._events.append(
                EndOfData(
                    size=self._message_size,
                    oversized=self._message_size > self.max_message_size,
                    bare_line_endings=self._decoder.bare_line_endings,
                )
            )
        if self._events:
            return self._take_content_event()
        return NEED_DATA if not self._eof else self._closed()

    def _take_content_event(self) -> DataChunk | EndOfData:
        event = self._events.popleft()
        if isinstance(event, EndOfData):
            self._pending = event
        return event


def _check_reply(reply: Reply) -> None:
    """What the application sends must be a well-formed reply (RFC 5321 §4.2)."""
    if not 200 <= reply.code <= 559 or not reply.lines:
        raise LocalProtocolError(f"not a valid reply: {reply.code}")
    if reply.enhanced_status is not None and not (
        _ENHANCED_STATUS.fullmatch(reply.enhanced_status)
        and reply.enhanced_status[0] == str(reply.code)[0]
    ):
        raise LocalProtocolError(f"not a valid enhanced status: {reply.enhanced_status!r}")
    if any(_FORBIDDEN_IN_REPLY.search(line) for line in reply.lines):
        raise LocalProtocolError("control character (CR, LF, NUL, ...) in reply text")
