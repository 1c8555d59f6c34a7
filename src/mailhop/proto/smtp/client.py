"""The SMTP client core: command events in, bytes out; bytes in, reply events out.

Drive it like h11 with h2's output buffer::

    client = ClientConnection()
    client.receive_data(sock.recv(...))       # b"" when the peer closed
    event = client.next_event()               # a Reply, ..., or NEED_DATA
    client.send(Ehlo(domain="host.example"))  # queues bytes
    sock.sendall(client.data_to_send())       # after every send and every next_event

Every reply carries ``command``: the command it answers, matched in order, so a
PIPELINING batch ``MAIL, RCPT..., DATA`` can be written at once (RFC 2920):
``send_all`` queues such a group in one call, and ``next_events`` returns every
reply the buffered bytes complete, each checked as ``next_event`` checks it.
What may be sent when is decided by :mod:`mailhop.proto.smtp._state` alone.

The core enforces the rules a careless caller could break: no command argument
with CR/LF/NUL; no extension parameter the server did not advertise; no password
mechanism without TLS unless allowed; STARTTLS fails closed when bytes follow its
220 (RFC 3207 §4.2, CVE-2011-0411 class) and forgets the capabilities after the
handshake; AUTH payloads never reach :meth:`ClientConnection.pop_transcript`.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from mailhop.proto._buffer import ByteStream, LineTooLongError
from mailhop.proto.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from mailhop.proto.sasl import Flow
from mailhop.proto.smtp._grammar import decode_base64, format_auth_response, format_command
from mailhop.proto.smtp._state import (
    CLIENT_TRANSITIONS,
    ENDS_GROUP,
    POSITIVE_REPLIES,
    ClientInput,
    ClientState,
    may_pipeline,
)
from mailhop.proto.smtp.capabilities import Capabilities
from mailhop.proto.smtp.dotstuff import DataEncoder
from mailhop.proto.smtp.events import (
    NEED_DATA,
    Auth,
    Command,
    ConnectionClosed,
    Data,
    DataChunk,
    Ehlo,
    EndOfData,
    Helo,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Reply,
    Rset,
    Sentinel,
    StartTLS,
    TLSUpgradeRequired,
)
from mailhop.proto.smtp.replies import MAX_REPLY_LINE_LENGTH, ReplyParser

__all__ = [
    "DEFAULT_REPLY_TIMEOUT",
    "REDACTED",
    "REPLY_TIMEOUTS",
    "ClientConnection",
    "ClientEvent",
]

ClientEvent = Reply | TLSUpgradeRequired | ConnectionClosed

REDACTED = "<redacted>"

# RFC 4954 §4: an AUTH command with its initial response must fit the 512-octet
# command line of RFC 5321 §4.5.3.1.4; a longer initial response is sent after an
# empty 334 instead.
MAX_AUTH_LINE_LENGTH = 512

_SEND_INPUT: dict[type[Command], ClientInput] = {
    Ehlo: ClientInput.SEND_EHLO,
    Helo: ClientInput.SEND_HELO,
    StartTLS: ClientInput.SEND_STARTTLS,
    Auth: ClientInput.SEND_AUTH,
    MailFrom: ClientInput.SEND_MAIL,
    RcptTo: ClientInput.SEND_RCPT,
    Data: ClientInput.SEND_DATA,
    DataChunk: ClientInput.SEND_BODY,
    EndOfData: ClientInput.SEND_END_OF_DATA,
    Rset: ClientInput.SEND_RSET,
    Noop: ClientInput.SEND_NOOP,
    Quit: ClientInput.SEND_QUIT,
}

# The command classes after which nothing may be sent before their reply (see
# ``may_pipeline``): the client counts how many of them are outstanding.
_ENDS_GROUP_TYPES = frozenset(
    command_type for command_type, kind in _SEND_INPUT.items() if kind in ENDS_GROUP
)

# Replies that change nothing in the core once the command is matched: the state
# moved when the command was sent (RCPT, the end of data) or does not move at all.
# The reply to every RCPT and end of data takes this way out first.
_REPLY_CHANGES_NOTHING: frozenset[type[Command]] = frozenset({RcptTo, EndOfData, Rset, Noop})

_SERVICE_CLOSING = 421  # RFC 5321 §3.8: may come at any time, then the server closes

# The Enum members the per-message paths test, as module names: reading a member
# off its class goes through the Enum metaclass's attribute hook (about 0.2 us
# each on Python 3.11), and a queue run tests a dozen per message.
_SEND_BODY = ClientInput.SEND_BODY
_DATA_GO_AHEAD = ClientInput.DATA_GO_AHEAD
_DATA_FAILED = ClientInput.DATA_FAILED
_CLOSED = ClientState.CLOSED
_SEND_BODY_STATE = ClientState.SEND_BODY
_ERROR = ClientState.ERROR

# RFC 5321 §4.5.3.2: the minimum time a client should wait for each reply, in
# seconds (None: the greeting). Between content writes §4.5.3.2.5 allows 3
# minutes per send. The driver applies them; the core has no clock.
REPLY_TIMEOUTS: dict[type[Command] | None, float] = {
    None: 300, MailFrom: 300, RcptTo: 300, Data: 120, EndOfData: 600,
}  # fmt: skip
DEFAULT_REPLY_TIMEOUT = 300  # for the commands RFC 5321 does not name


class ClientConnection(ByteStream):
    """One SMTP client session over one connection (plain, or TLS from the start).

    ``tls_active``: the connection is already encrypted (port 465, RFC 8314).
    ``allow_plaintext_auth``: permit PLAIN/LOGIN/XOAUTH2/OAUTHBEARER without TLS.
    ``keep_transcript``: record the lines sent for :meth:`pop_transcript` (a driver
    that shows none spares the work on every command).
    """

    def __init__(
        self,
        *,
        tls_active: bool = False,
        allow_plaintext_auth: bool = False,
        keep_transcript: bool = True,
    ) -> None:
        super().__init__()
        self.tls_active = tls_active
        self.allow_plaintext_auth = allow_plaintext_auth
        self.keep_transcript = keep_transcript
        self.capabilities = Capabilities()
        """What the last EHLO advertised; empty before it, after HELO and after TLS."""
        self.authenticated = False
        self._state = ClientState.AWAIT_GREETING
        self._parser = ReplyParser()
        self._transcript: list[str] = []
        # Commands whose replies have not arrived yet, oldest first; None is the
        # greeting the server sends unasked.
        self._outstanding: collections.deque[Command | None] = collections.deque([None])
        # How many of them end a group (_ENDS_GROUP_TYPES): kept with every change
        # to ``_outstanding``, so that ``may_pipeline`` never walks it.
        self._group_enders = 0
        # A protocol error met by ``next_events`` after events it still returned:
        # raised by the next call (or send), as ``next_event`` would have raised it then.
        self._deferred_error: ProtocolError | None = None
        self._upgrade_ready = False
        self._current_mail: MailFrom | None = None
        self._encoder = DataEncoder()  # replaced at each 354
        self._flow: Flow | None = None
        self._deferred_initial_response: bytes | None = None

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def outstanding(self) -> tuple[Command | None, ...]:
        """Commands awaiting replies, oldest first (None: the greeting).

        The driver picks its read timeout from the oldest (RFC 5321 §4.5.3.2,
        see :data:`REPLY_TIMEOUTS`).
        """
        return tuple(self._outstanding)

    @property
    def message_size(self) -> int:
        """Octets of the last message as msmtp's ``mailsize`` counts them."""
        return self._encoder.message_size

    # --- public API -----------------------------------------------------------------

    def send(self, command: Command) -> None:
        """Queue a command (or message content) for :meth:`data_to_send`.

        A fault that :meth:`next_events` held back is raised here too: nothing more
        goes to a server that broke the protocol (content it might accept, with a
        reply never read, would be sent again later).
        """
        try:
            if self._deferred_error is not None:
                self._raise_deferred_error()
            self._send(command)
        except ProtocolError:
            self._state = ClientState.ERROR
            raise

    def send_all(self, commands: Iterable[Command]) -> None:
        """Queue several commands in order, each checked as :meth:`send` checks it.

        A queue run's path: a message's ``MAIL, RCPT..., DATA`` group (RFC 2920
        §3.1), and later its content with the end of data, each in one call.

        A group of commands refused by a local check (an address that is not one)
        is taken back whole, and the connection left as it was: what was queued
        before the call, such as the previous message's end of data whose reply
        is still to be read, can still go and be answered. After content or AUTH
        (which cannot be taken back), and for any other fault, the commands before
        the refused one stay queued and the connection is in ERROR, as the same
        calls to ``send`` would leave them.
        """
        if self._deferred_error is not None:
            self._state = ClientState.ERROR
            self._raise_deferred_error()
        outgoing_size, transcript_size = len(self._outgoing), len(self._transcript)
        outstanding_size, group_enders = len(self._outstanding), self._group_enders
        state, current_mail, flow = self._state, self._current_mail, self._flow
        try:
            for command in commands:
                self._send(command)
        except LocalProtocolError:
            # Content goes only after a 354 (so in a call that began in SEND_BODY)
            # and moves the encoder on; AUTH starts a mechanism's exchange.
            if state is _SEND_BODY_STATE or self._flow is not flow:
                self._state = ClientState.ERROR
                raise
            del self._outgoing[outgoing_size:]
            del self._transcript[transcript_size:]
            while len(self._outstanding) > outstanding_size:
                self._outstanding.pop()
            self._group_enders, self._state, self._current_mail = group_enders, state, current_mail
            raise
        except ProtocolError:
            self._state = ClientState.ERROR
            raise

    def next_event(self) -> ClientEvent | Sentinel:
        """The next reply (or other event), or NEED_DATA if more bytes are needed."""
        try:
            self._raise_deferred_error()
            events = self._read_events(1)
        except ProtocolError:
            self._state = ClientState.ERROR
            raise
        return events[0] if events else NEED_DATA

    def next_events(self) -> list[ClientEvent]:
        """Every event the bytes received so far complete, in order; [] if none.

        What :meth:`next_event` returns one call at a time, in one call: the
        replies to a pipelined group arrive together (RFC 2920 §3.1), and each
        is matched to its command and checked by the state machine all the same.
        The list ends with an event after which nothing more may be read now
        (TLSUpgradeRequired, ConnectionClosed, a reply that closed the session).
        A protocol error met after some events: they are returned, and the next
        call raises it (so a reply that came before the fault is never lost).
        """
        events: list[ClientEvent] = []
        try:
            if self._deferred_error is not None:
                self._raise_deferred_error()
            self._read_events(None, events)
        except ProtocolError as error:
            if not events:
                self._state = ClientState.ERROR
                raise
            self._deferred_error = error
        return events

    def start_tls_done(self) -> None:
        """The driver completed the TLS handshake after :class:`TLSUpgradeRequired`.

        RFC 3207 §4.2: the client MUST discard what it learned from the server
        before TLS and send EHLO again; so capabilities are forgotten here.
        """
        try:
            if not self._upgrade_ready:
                raise LocalProtocolError("no STARTTLS 220 reply to complete")
            if len(self._buffer):
                raise RemoteProtocolError("the server sent data during the TLS handshake")
            self._upgrade_ready = False
            self._transition(ClientInput.TLS_DONE)
            self.tls_active = True
            self.authenticated = False
            self.capabilities = Capabilities()
        except ProtocolError:
            self._state = ClientState.ERROR
            raise

    def pop_transcript(self) -> list[str]:
        """Lines sent since the last call, for ``-v``: AUTH payloads as ``<redacted>``.

        Always empty when the connection was made with ``keep_transcript=False``.
        """
        lines, self._transcript = self._transcript, []
        return lines

    def _raise_deferred_error(self) -> None:
        error = self._deferred_error
        if error is not None:
            self._deferred_error = None
            raise error

    # --- sending --------------------------------------------------------------------

    def _transition(self, event: ClientInput) -> None:
        try:
            self._state = CLIENT_TRANSITIONS[self._state][event]
        except KeyError:  # pragma: no cover - send() checks first; replies by construction
            raise LocalProtocolError(
                f"{event.name} is not allowed in state {self._state.name}"
            ) from None

    def _send(self, command: Command) -> None:
        command_type = type(command)
        kind = _SEND_INPUT.get(command_type)
        if kind is None:
            raise LocalProtocolError(f"not an SMTP command: {command_type.__name__}")
        outstanding = self._outstanding
        # Message content follows the 354 whatever is outstanding (RFC 2920 §3.1);
        # the greeting (None, first if at all) is no command sent.
        if (
            outstanding
            and kind is not _SEND_BODY
            and not may_pipeline(
                len(outstanding) - (outstanding[0] is None),
                self._group_enders,
                pipelining=self.capabilities.pipelining,
            )
        ):
            raise LocalProtocolError(
                f"cannot send {type(command).__name__} before earlier replies arrive"
                + ("" if self.capabilities.pipelining else " (no PIPELINING)")
            )
        next_state = CLIENT_TRANSITIONS[self._state].get(kind)
        if next_state is None:
            raise LocalProtocolError(
                f"cannot send {type(command).__name__} in state {self._state.name}"
            )
        # The commands of every message first (_SEND_INPUT matched the exact type).
        line = None
        if isinstance(command, RcptTo):
            mail = self._current_mail
            if command.notify or command.orcpt:  # the only parameters an extension governs
                self._check_extensions(command)
            line = format_command(command, smtputf8=mail is not None and mail.smtputf8)
        elif isinstance(command, MailFrom):
            self._check_extensions(command)
            line = format_command(command, smtputf8=command.smtputf8)
            self._current_mail = command
        elif isinstance(command, DataChunk):
            self._check_content(command.data)
            self._outgoing += self._encoder.encode(command.data)
        elif isinstance(command, EndOfData):
            self._send_end_of_data()
        elif isinstance(command, Auth):
            self._send_auth(command)
        else:
            if isinstance(command, StartTLS):  # the only one left an extension governs
                self._check_extensions(command)
            line = format_command(command)
        if line is not None:
            self._outgoing += line
            if self.keep_transcript:
                self._transcript.append(line[:-2].decode("utf-8"))
        self._state = next_state
        if kind is not _SEND_BODY:
            outstanding.append(command)
            if kind in ENDS_GROUP:
                self._group_enders += 1

    def _check_extensions(self, command: Command) -> None:
        """Refuse what the server did not advertise (each extension RFC says so)."""
        capabilities, missing = self.capabilities, None
        if isinstance(command, StartTLS):
            if self.tls_active:
                raise LocalProtocolError("TLS is already active")
            missing = None if capabilities.starttls else "STARTTLS"
        elif isinstance(command, MailFrom):
            if command.size is not None and capabilities.size is None:
                missing = "SIZE"
            elif command.body == "8BITMIME" and not capabilities.eightbitmime:
                missing = "8BITMIME"
            elif command.smtputf8 and not capabilities.smtputf8:
                missing = "SMTPUTF8"
            elif (command.ret or command.envid) and not capabilities.dsn:
                missing = "DSN"
        elif isinstance(command, RcptTo) and (command.notify or command.orcpt):
            missing = None if capabilities.dsn else "DSN"
        if missing is not None:
            raise LocalProtocolError(f"the server did not advertise {missing}")

    def _check_content(self, data: bytes) -> None:
        """DESIGN.md §4 invariant 5: 8-bit octets only where the MAIL declared them.

        The message layer must downgrade (QP/base64) first; this is the safety net.
        Raising here leaves the DATA unterminated, so the server discards it.
        """
        if b"\0" in data:
            raise LocalProtocolError("NUL in message content (RFC 5322 §3.5, RFC 6152 §2)")
        mail = self._current_mail
        eight_bit_declared = mail is not None and (mail.body == "8BITMIME" or mail.smtputf8)
        if not eight_bit_declared and not data.isascii():
            raise LocalProtocolError("8-bit content needs BODY=8BITMIME (RFC 6152 §3)")

    def _send_auth(self, command: Auth) -> None:
        mechanism = command.mechanism
        if self.authenticated:
            raise LocalProtocolError("already authenticated (RFC 4954 §4)")
        if mechanism.name not in self.capabilities.auth:
            raise LocalProtocolError(f"the server did not advertise AUTH {mechanism.name}")
        if mechanism.sends_secret_in_clear and not (self.tls_active or self.allow_plaintext_auth):
            raise LocalProtocolError(
                f"AUTH {mechanism.name} would send the secret in clear without TLS"
            )
        self._flow = mechanism.flow()
        initial = next(self._flow)
        line = format_command(command, initial_response=initial)
        if len(line) > MAX_AUTH_LINE_LENGTH:
            self._deferred_initial_response = initial
            line = format_command(command, initial_response=None)
            initial = None
        self._outgoing += line
        if self.keep_transcript:
            self._transcript.append(
                f"AUTH {mechanism.name}" + ("" if initial is None else f" {REDACTED}")
            )

    def _send_end_of_data(self) -> None:
        self._outgoing += self._encoder.end()
        if self.keep_transcript:
            self._transcript.append(f"<message: {self._encoder.message_size} octets>")
            self._transcript.append(".")

    # --- receiving ------------------------------------------------------------------

    def _read_events(
        self, limit: int | None, events: list[ClientEvent] | None = None
    ) -> list[ClientEvent]:
        """Parse what the buffer holds into ``events`` (up to ``limit``); return it.

        One loop for both ``next_event`` (a limit of 1) and ``next_events``. It
        stops early after an event that changes what may be read next.
        """
        if self._state is _ERROR:
            raise LocalProtocolError("the connection is in the ERROR state")
        if events is None:
            events = []
        buffer, parser, outstanding = self._buffer, self._parser, self._outstanding
        while True:
            try:
                line = buffer.extract_line(MAX_REPLY_LINE_LENGTH)
            except LineTooLongError:
                raise RemoteProtocolError("reply line too long") from None
            if line is None:
                if self._eof:
                    events.append(self._end_of_input())
                return events
            # The reply answers the oldest outstanding command (RFC 2920 §3.1: in
            # order); building it with its command saves a copy per reply.
            reply = parser.feed_line(line, command=outstanding[0] if outstanding else None)
            if reply is None:
                continue
            event = self._handle_reply(reply)
            events.append(event)
            if event is not reply or self._state is _CLOSED or len(events) == limit:
                return events

    def _end_of_input(self) -> ConnectionClosed:
        """The peer closed and every complete line is read."""
        if len(self._buffer) or self._parser.in_progress:
            raise RemoteProtocolError("the connection closed in the middle of a reply")
        if self._state is not ClientState.CLOSED:
            self._outstanding.clear()
            self._group_enders = 0
            self._transition(ClientInput.CLOSED)
        return ConnectionClosed()

    def _handle_reply(self, reply: Reply) -> ClientEvent:
        code, outstanding = reply.code, self._outstanding
        if self._upgrade_ready or self._state is _CLOSED or not outstanding:
            return self._handle_unmatched_reply(reply)
        command = outstanding.popleft()
        kind = None if command is None else type(command)
        if kind in _ENDS_GROUP_TYPES:
            self._group_enders -= 1
        if code == _SERVICE_CLOSING:
            outstanding.clear()
            self._group_enders = 0
            self._transition(ClientInput.CLOSED)
            return reply
        if code < 400 and code not in POSITIVE_REPLIES[kind]:
            name = "the greeting" if command is None else type(command).__name__
            raise RemoteProtocolError(f"unexpected reply {code} to {name}")
        if kind in _REPLY_CHANGES_NOTHING:
            return reply
        ok = code < 400
        # The commands of every message first.
        if isinstance(command, MailFrom):
            if not ok and command is self._current_mail:
                self._transition(ClientInput.MAIL_FAILED)
        elif isinstance(command, Data):
            if ok:
                self._encoder = DataEncoder()
            self._transition(_DATA_GO_AHEAD if ok else _DATA_FAILED)
        elif command is None:
            self._transition(ClientInput.GREETING_OK if ok else ClientInput.GREETING_REFUSED)
        elif isinstance(command, Ehlo | Helo):
            if ok:
                self.capabilities = (
                    Capabilities.from_ehlo_reply(reply) if isinstance(command, Ehlo)
                    else Capabilities(domain=reply.lines[0].split(" ", 1)[0])
                )  # fmt: skip
            else:
                self._transition(ClientInput.HELLO_FAILED)
        elif isinstance(command, StartTLS):
            if not ok:
                self._transition(ClientInput.STARTTLS_FAILED)
                return reply
            # RFC 3207 §4.2 / CVE-2011-0411: whatever follows the 220 in the clear
            # could be an attacker's; it must never be read as if it came over TLS.
            if len(self._buffer):
                raise RemoteProtocolError("the server sent data after its STARTTLS 220 reply")
            self._upgrade_ready = True
            return TLSUpgradeRequired(reply=reply)
        elif isinstance(command, Auth):
            self._handle_auth_reply(command, reply)
        elif isinstance(command, Quit):
            self._transition(ClientInput.CLOSED)
        return reply

    def _handle_unmatched_reply(self, reply: Reply) -> ClientEvent:
        """A reply with no command to answer now: only an unsolicited 421 is one."""
        if self._upgrade_ready:
            raise RemoteProtocolError(f"reply {reply.code} before the TLS handshake")
        if self._state is ClientState.CLOSED:
            raise RemoteProtocolError(f"unexpected reply {reply.code} after the session ended")
        if reply.code != _SERVICE_CLOSING:
            raise RemoteProtocolError(f"reply {reply.code} to no command")
        self._transition(ClientInput.CLOSED)
        return reply

    def _handle_auth_reply(self, command: Auth, reply: Reply) -> None:
        assert self._flow is not None  # noqa: S101 - set when the Auth was sent
        if reply.code == 334:
            # RFC 4954 §4: a 334 carries one base64 challenge; we answer it.
            if len(reply.lines) != 1:
                raise RemoteProtocolError("multi-line 334 challenge")
            response: bytes | None
            if self._deferred_initial_response is not None:
                response, self._deferred_initial_response = self._deferred_initial_response, None
            else:
                challenge = decode_base64(reply.lines[0]) if reply.lines[0] else b""
                if challenge is None:
                    raise RemoteProtocolError("334 challenge is not base64")
                try:
                    response = self._flow.send(challenge)
                except StopIteration:
                    response = None  # the mechanism has nothing more: cancel
            self._outgoing += format_auth_response(response)
            if self.keep_transcript:
                self._transcript.append("*" if response is None else REDACTED)
            self._outstanding.appendleft(command)  # the exchange goes on
            self._group_enders += 1
            return
        flow, self._flow = self._flow, None
        if reply.code == 235:
            try:
                flow.send(None)
            except StopIteration:
                self.authenticated = True
            else:
                raise RemoteProtocolError("the server declared success before the exchange ended")
        flow.close()
        self._transition(ClientInput.AUTH_DONE)
