"""One SMTP session with an account's server: the blocking pump around the sans-IO core.

``SmtpSession`` owns a ``net.Transport`` and a ``proto.smtp.ClientConnection`` and
turns the account's rules into a dialogue::

    greeting -> EHLO (HELO if refused) -> [STARTTLS -> handshake -> EHLO]
             -> [AUTH] -> MAIL, RCPT..., DATA (one PIPELINING batch) -> body -> "."
             -> QUIT

It decides policy (what the account requires, which reply means what) and maps
every refusal to a ``DeliveryError`` that knows its exit code; the core enforces
the wire rules. A session can carry several messages (the queue runner reuses it;
a refused transaction is closed with RSET); ``send`` is all-or-nothing per message:
if any recipient is refused, the transaction is abandoned and nothing is delivered.
``send_per_recipient`` (the queue's) delivers to the accepted recipients and
reports each refusal with its reply.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, cast

from mailhop._records import NamedTuple
from mailhop.config import Account, Auth, Protocol, get_password
from mailhop.deliver.errors import (
    AuthenticationRefusedError,
    ConnectionDroppedError,
    InsecureAuthenticationError,
    MissingCapabilityError,
    ProtocolViolationError,
    ServerReplyError,
)
from mailhop.errors import ConfigError, ExitCode, MailhopError
from mailhop.net.timeouts import Timeouts
from mailhop.net.tls import TLSPolicy, account_tls_settings, client_policy
from mailhop.net.transport import Endpoint, Transport, open_connection
from mailhop.proto import sasl
from mailhop.proto.errors import ProtocolError, RemoteProtocolError
from mailhop.proto.smtp import Auth as AuthCommand
from mailhop.proto.smtp import (
    ClientConnection,
    ClientState,
    Command,
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
    StartTLS,
    TLSUpgradeRequired,
)
from mailhop.proto.smtp.capabilities import Capabilities

# How much one read may take from the socket. A reply line is capped by the core
# (RFC 5321 §4.5.3.1.5); this only bounds a single recv.
READ_CHUNK_SIZE = 64 * 1024

# Message content is gathered into pieces of about this size before it is encoded
# and written. A small message then leaves with its end-of-data dot in one write
# instead of one write per chunk plus one for the dot (the queue runner sends
# thousands in a row); a large one is still streamed, never held whole.
CONTENT_WRITE_OCTETS = 64 * 1024

# Replies that mean "accepted" for each step (RFC 5321 §4.3.2).
_GREETING_OK = 220
_AUTH_OK = 235
_DATA_GO_AHEAD = 354

# Core states after which the connection carries nothing more (a 421, a broken rule).
_SESSION_OVER = frozenset({ClientState.CLOSED, ClientState.ERROR})

# Commands without arguments are immutable values: one of each serves every message.
_DATA = Data()
_END_OF_DATA = EndOfData()

_ReadEvent = Reply | TLSUpgradeRequired | ConnectionClosed

Transcript = Callable[[str], None]
DsnNotify = Literal["NEVER", "SUCCESS", "FAILURE", "DELAY"]


class Envelope(NamedTuple):
    """Who a message is from and to, as SMTP sees it (RFC 5321 §2.3.1)."""

    sender: str  # "" for the null reverse-path
    recipients: tuple[str, ...]
    smtputf8: bool = False  # an address is not ASCII (RFC 6531)


class Outgoing(NamedTuple):
    """The message as it will cross the wire, with what MAIL FROM must declare."""

    chunks: Iterable[bytes]
    size: int
    body_8bitmime: bool = False


class Acceptance(NamedTuple):
    """The server's final 250 for one message."""

    reply: Reply
    mailsize: int


class PerRecipientOutcome(NamedTuple):
    """What happened to each recipient of one message (``send_per_recipient``).

    ``acceptance`` is the final 250 that covers every ``accepted`` recipient; it is
    None when no recipient was accepted (then nothing was delivered).
    """

    accepted: tuple[str, ...]
    refused: tuple[tuple[str, Reply], ...]
    acceptance: Acceptance | None


class Transaction:
    """One message of ``send_per_recipient``, between its three steps.

    ``SmtpSession.begin`` sends the commands, ``transfer`` reads their replies and
    queues the content, ``finish`` reads the reply to the end of data. The runner
    calls ``begin`` for the next message before ``finish`` for this one, so both
    travel in one round trip (RFC 2920 §3.1).
    """

    def __init__(self, *, envelope: Envelope, message: Outgoing, pipelined: bool) -> None:
        self.envelope = envelope
        self.message = message
        self.pipelined = pipelined  # the replies to MAIL, RCPT and DATA are still unread
        self.mail_reply: Reply | None = None
        self.data_reply: Reply | None = None
        self.accepted: list[str] = []
        self.refused: list[tuple[str, Reply]] = []
        self.content_sent = False  # the content and its end of data are sent or queued
        self.mailsize = 0

    def note_recipient(self, recipient: str, reply: Reply) -> None:
        if reply.is_positive:
            self.accepted.append(recipient)
        else:
            self.refused.append((recipient, reply))


class SmtpSession:
    """An open, greeted, secured and authenticated connection to the account's server."""

    def __init__(
        self,
        account: Account,
        *,
        transcript: Transcript | None = None,
        warn: Transcript | None = None,
    ) -> None:
        self.account = account
        self._warn = warn
        self.timeouts = Timeouts.from_setting(account.timeout)
        self._transcript = transcript
        self._transport: Transport | None = None
        self._core = ClientConnection(
            tls_active=False,
            allow_plaintext_auth=account.allow_plaintext_auth,
            keep_transcript=transcript is not None,
        )
        # Events the core has read and the dialogue has not asked for yet, oldest
        # first: the replies to a pipelined group arrive, and are parsed, together.
        self._events: collections.deque[_ReadEvent] = collections.deque()
        self.authenticated_as: str | None = None
        # What serverinfo shows: the greeting and the capabilities seen before TLS.
        self.greeting: Reply | None = None
        self.capabilities_before_tls: Capabilities | None = None

    # --- opening ----------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        """What the server offers now (after TLS, when it was started)."""
        return self._core.capabilities

    @property
    def is_open(self) -> bool:
        """The connection can carry another message (open, and no 421 received)."""
        return (
            self._transport is not None
            and not self._transport.is_closed
            and self._core.state not in _SESSION_OVER
        )

    @property
    def transport(self) -> Transport:
        """The open connection (for its TLS and certificate details)."""
        if self._transport is None:
            raise ConnectionDroppedError("the connection is not open")
        return self._transport

    def open(self, *, authenticate: bool = True) -> Capabilities:
        """Connect and run the dialogue up to the first MAIL; return the capabilities.

        ``authenticate=False`` stops before AUTH (serverinfo looks, never logs in).

        Raises:
            TransportError, DeliveryError, ConfigError: with their exit codes.
        """
        account = self.account
        if account.protocol is not Protocol.SMTP:
            # LMTP (RFC 2033) answers per recipient after DATA; sending it SMTP's
            # all-or-nothing dialogue would misreport partial deliveries.
            raise ConfigError(
                f"{account.where}: protocol {account.protocol.value} is not supported yet; "
                "use protocol smtp"
            )
        host = account.host or ""
        policy = None
        if account.tls:
            policy = client_policy(account_tls_settings(account), host)
            for warning in policy.warnings:
                if self._warn is not None:
                    self._warn(warning)
        endpoint = Endpoint(
            host=host,
            port=account.port or 25,
            unix_socket=account.socket,
            source_ip=account.source_ip,
            proxy_host=account.proxy_host,
            proxy_port=account.proxy_port or 1080,
        )
        implicit_tls = account.tls and not account.tls_starttls
        self._transport = open_connection(
            endpoint, timeout=self.timeouts.connect, tls=policy if implicit_tls else None
        )
        self._core.tls_active = implicit_tls
        self.greeting = greeting = self._read_reply(self.timeouts.greeting)
        if greeting.code != _GREETING_OK:
            raise _refusal("the server refused the connection", greeting, greeting=True)
        self._hello()
        if account.tls and account.tls_starttls:
            self.capabilities_before_tls = self._core.capabilities
            self._start_tls(policy)
        if account.dsn_notify or account.dsn_return:
            self._require(self._core.capabilities.dsn, "DSN", "dsn_notify/dsn_return")
        if authenticate and account.auth is not Auth.NONE:
            self._authenticate()
        return self._core.capabilities

    def _hello(self) -> None:
        self._command(Ehlo(domain=self.account.domain))
        reply = self._read_reply(self.timeouts.command)
        if reply.is_transient:
            raise _refusal("the server refused EHLO", reply)
        if not reply.is_positive:
            # RFC 5321 §3.2: a server that does not know EHLO gets HELO.
            self._command(Helo(domain=self.account.domain))
            reply = self._read_reply(self.timeouts.command)
            if not reply.is_positive:
                if reply.is_transient:
                    raise _refusal("the server refused HELO", reply)
                raise ProtocolViolationError(
                    "the server refused both EHLO and HELO", details=reply.lines
                )

    def _start_tls(self, policy: TLSPolicy | None) -> None:
        # Invariant 3 (DESIGN.md §4): STARTTLS configured means STARTTLS required.
        # Not offered, refused or failed: the attempt ends. Never a plaintext fallback.
        self._require(self._core.capabilities.starttls, "STARTTLS", "tls_starttls on")
        self._command(StartTLS())
        event = self._read_event(self.timeouts.command)
        if isinstance(event, Reply):
            raise _refusal(
                "the server refused STARTTLS; not continuing without TLS",
                event,
                permanent_code=ExitCode.UNAVAILABLE,
            )
        assert self._transport is not None and policy is not None  # noqa: S101 - tls is on
        self._transport.start_tls(policy, timeout=self.timeouts.command)
        self._core.start_tls_done()
        self._hello()

    def _authenticate(self) -> None:
        account, capabilities = self.account, self._core.capabilities
        tls_active = self._core.tls_active
        if not capabilities.auth:
            raise MissingCapabilityError(
                "the server does not support authentication"
                + ("" if tls_active else " (it may offer it after STARTTLS: set tls on)")
            )
        if account.auth is Auth.CHOOSE:
            try:
                name = sasl.choose_mechanism(
                    capabilities.auth,
                    tls_active=tls_active,
                    allow_plaintext=account.allow_plaintext_auth,
                )
            except sasl.NoSuitableMechanismError as error:
                raise InsecureAuthenticationError(
                    f"cannot authenticate: {error}"
                    + ("" if tls_active else " (set tls on, or allow_plaintext_auth on)")
                ) from error
        else:
            name = account.auth.mechanism or ""
            self._require(name in capabilities.auth, f"AUTH {name}", f"auth {account.auth.value}")
        mechanism = self._mechanism(name, tls_active)
        self._command(AuthCommand(mechanism=mechanism))
        while True:
            reply = self._read_reply(self.timeouts.command)
            if reply.code != 334:
                break
            self._flush(self.timeouts.command)
        if reply.code != _AUTH_OK:
            if reply.is_transient:
                raise _refusal("authentication failed temporarily", reply)
            raise AuthenticationRefusedError(
                f"authentication as {account.user} failed ({name})",
                code=reply.code,
                lines=reply_lines(reply),
                exit_code=ExitCode.NOPERM,
            )
        self.authenticated_as = account.user

    def _mechanism(self, name: str, tls_active: bool) -> sasl.Mechanism:
        account = self.account
        if name == "EXTERNAL":
            return sasl.External(account.user or "")
        if account.user is None:
            raise ConfigError(f"{account.where}: auth is on but user is not set; add a 'user' line")
        if not tls_active and not account.allow_plaintext_auth and name in (
            "PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER",
        ):  # fmt: skip
            raise InsecureAuthenticationError(
                f"AUTH {name} would send the password in clear without TLS; "
                "set tls on (or allow_plaintext_auth on to accept the risk)"
            )
        # For OAuth2 accounts this is the (refreshed) access token.
        secret = get_password(account)
        if secret is None:
            raise ConfigError(
                f"{account.where}: authentication method {name} needs a password; set "
                "password, passwordeval, a keyring entry or a netrc entry"
            )
        if name == "XOAUTH2":
            return sasl.XOAuth2(account.user, secret)
        if name == "OAUTHBEARER":
            return sasl.OAuthBearer(
                account.user, secret, host=account.host or "", port=account.port or 0
            )
        if name not in sasl.PASSWORD_MECHANISMS:
            raise ConfigError(f"{account.where}: authentication method {name} is not supported")
        return sasl.password_mechanism(name, account.user, secret)

    def _require(self, offered: bool, what: str, setting: str) -> None:
        if not offered:
            raise MissingCapabilityError(
                f"the server does not offer {what}, which the account requires ({setting}); "
                "not continuing"
            )

    # --- sending ----------------------------------------------------------------------

    def send(self, envelope: Envelope, message: Outgoing) -> Acceptance:
        """Deliver one message to every recipient, or to none.

        Raises:
            ServerReplyError: a step was refused (4xx -> 75, 5xx -> 65).
            MissingCapabilityError: the message needs what the server lacks.
        """
        capabilities = self._core.capabilities
        if capabilities.size and message.size > capabilities.size:
            raise ServerReplyError(
                f"the message is {message.size} octets but the server accepts at most "
                f"{capabilities.size} (SIZE, RFC 1870)",
                code=552,
                lines=(),
                exit_code=ExitCode.DATAERR,
            )
        account = self.account
        notify = _dsn_notify(account.dsn_notify)
        self._command(
            MailFrom(
                address=envelope.sender,
                size=message.size if capabilities.size is not None else None,
                body="8BITMIME" if message.body_8bitmime else None,
                smtputf8=envelope.smtputf8,
                ret=account.dsn_return.value if account.dsn_return else None,
            ),
            flush=not capabilities.pipelining,
        )
        if not capabilities.pipelining:
            self._expect_ok(self._read_reply(self.timeouts.mail), "sender", envelope.sender)
        refusals: list[tuple[str, Reply]] = []
        for recipient in envelope.recipients:
            self._command(
                RcptTo(address=recipient, notify=notify), flush=not capabilities.pipelining
            )
            if not capabilities.pipelining:
                reply = self._read_reply(self.timeouts.rcpt)
                if not reply.is_positive:
                    refusals.append((recipient, reply))
        if capabilities.pipelining:
            # RFC 2920 §3.1: DATA closes the batch; the replies come back in order.
            self._command(Data())
            mail_reply = self._read_reply(self.timeouts.mail)
            for recipient in envelope.recipients:
                reply = self._read_reply(self.timeouts.rcpt)
                if not reply.is_positive:
                    refusals.append((recipient, reply))
            data_reply = self._read_reply(self.timeouts.data_initiation)
            if mail_reply.is_positive and not refusals and data_reply.code == _DATA_GO_AHEAD:
                return self._send_content(message)
            if data_reply.code == _DATA_GO_AHEAD:
                # The server is waiting for content it must not deliver: closing the
                # connection without the final dot abandons the transaction
                # (RFC 5321 §4.1.1.4), where a dot would deliver an empty message
                # to the recipients that were accepted.
                self.abandon()
            else:
                self._reset()
            self._expect_ok(mail_reply, "sender", envelope.sender)
            _raise_for_refusals(refusals)
            raise _refusal("the server refused DATA", data_reply)
        if refusals:
            self._reset()
            _raise_for_refusals(refusals)
        self._command(Data())
        data_reply = self._read_reply(self.timeouts.data_initiation)
        if data_reply.code != _DATA_GO_AHEAD:
            self._reset()
            raise _refusal("the server refused DATA", data_reply)
        return self._send_content(message)

    def send_per_recipient(self, envelope: Envelope, message: Outgoing) -> PerRecipientOutcome:
        """Deliver one message to the recipients the server accepts; report each refusal.

        The queue runner's send: unlike ``send``, a refused recipient stops only
        itself (RFC 5321 §3.3: RCPT replies are per recipient), so the message goes
        to every accepted recipient and the refused ones are reported with their reply
        for a retry (4xx) or a bounce (5xx). MAIL, the RCPTs and DATA travel in one
        PIPELINING batch when the server offers it (RFC 2920 §3.1). The three steps
        (``begin``, ``transfer``, ``finish``) are public so that the runner can send
        the next message's commands behind this one's end of data.

        Raises:
            ServerReplyError: MAIL, DATA or the final reply refused: the outcome then
                concerns every recipient that was accepted (4xx -> 75, 5xx -> 65).
            TransportError, DeliveryError: the connection failed (nothing accepted).
        """
        transaction = self.begin(envelope, message)
        self.transfer(transaction)
        return self.finish(transaction)

    def begin(self, envelope: Envelope, message: Outgoing) -> Transaction:
        """Send (with PIPELINING: queue) MAIL, the RCPTs and DATA of one message.

        With PIPELINING nothing is read here: the commands leave with the next read,
        which may first be the reply to the previous message's end of data (RFC 2920
        §3.1: message content may be the first "command" of a group). Without it,
        each reply is read as it comes, and DATA is only sent if a recipient was
        accepted.

        Raises:
            ServerReplyError: the message exceeds the server's SIZE (nothing was
                sent), or (without PIPELINING) MAIL was refused.
        """
        capabilities = self._core.capabilities
        if capabilities.size and message.size > capabilities.size:
            raise ServerReplyError(
                f"the message is {message.size} octets but the server accepts at most "
                f"{capabilities.size} (SIZE, RFC 1870)",
                code=552,
                lines=(),
                exit_code=ExitCode.DATAERR,
            )
        account = self.account
        notify = _dsn_notify(account.dsn_notify)
        pipelining = capabilities.pipelining
        transaction = Transaction(envelope=envelope, message=message, pipelined=pipelining)
        mail = MailFrom(
            address=envelope.sender,
            size=message.size if capabilities.size is not None else None,
            body="8BITMIME" if message.body_8bitmime else None,
            smtputf8=envelope.smtputf8,
            ret=account.dsn_return.value if account.dsn_return else None,
        )
        if pipelining:
            # One group, queued in one call; it leaves with the next flush.
            recipients = [RcptTo(address=address, notify=notify) for address in envelope.recipients]
            self._commands([mail, *recipients, _DATA])
            return transaction
        # Without PIPELINING, each reply is read before the next command goes.
        self._command(mail)
        transaction.mail_reply = mail_reply = self._read_reply(self.timeouts.mail)
        if not mail_reply.is_positive:
            self._reset()
            self._expect_ok(mail_reply, "sender", envelope.sender)
        for recipient in envelope.recipients:
            self._command(RcptTo(address=recipient, notify=notify))
            transaction.note_recipient(recipient, self._read_reply(self.timeouts.rcpt))
        if transaction.accepted:
            self._command(_DATA)
            transaction.data_reply = self._read_reply(self.timeouts.data_initiation)
        return transaction

    def transfer(self, transaction: Transaction) -> None:
        """Read what ``begin`` left unread; on 354, queue the content and its end.

        The end of data is not flushed here: it leaves with the next read, so the
        next message's commands can share its segment. Nothing is delivered when
        no recipient was accepted (``transaction.content_sent`` stays False).

        Raises:
            ServerReplyError: MAIL or DATA refused (for every recipient).
        """
        envelope = transaction.envelope
        if transaction.pipelined:
            transaction.mail_reply = self._read_reply(self.timeouts.mail)
            for recipient in envelope.recipients:
                transaction.note_recipient(recipient, self._read_reply(self.timeouts.rcpt))
            transaction.data_reply = self._read_reply(self.timeouts.data_initiation)
        mail_reply, data_reply = transaction.mail_reply, transaction.data_reply
        assert mail_reply is not None  # noqa: S101 - read in begin or just above
        if not mail_reply.is_positive or not transaction.accepted:
            # Nothing may be delivered: a 354 waits for content we must not send
            # (RFC 5321 §4.1.1.4: closing without the dot abandons the transaction).
            if data_reply is not None and data_reply.code == _DATA_GO_AHEAD:
                self.abandon()
            else:
                self._reset()
            self._expect_ok(mail_reply, "sender", envelope.sender)
            return
        assert data_reply is not None  # noqa: S101 - set whenever a recipient was accepted
        if data_reply.code != _DATA_GO_AHEAD:
            self._reset()
            raise _refusal("the server refused DATA", data_reply)
        self._write_content(transaction.message)
        transaction.content_sent = True
        transaction.mailsize = self._core.message_size

    def finish(self, transaction: Transaction) -> PerRecipientOutcome:
        """Send what is queued and read the reply to the end of data (if it was sent).

        Raises:
            ServerReplyError: the message was refused (for every accepted recipient).
            TransportError, DeliveryError: no reply (the message may not be counted
                as delivered).
        """
        refused = tuple(transaction.refused)
        if not transaction.content_sent:
            return PerRecipientOutcome(accepted=(), refused=refused, acceptance=None)
        self._flush(self.timeouts.data_block)
        reply = self._read_reply(self.timeouts.data_termination)
        if not isinstance(reply.command, EndOfData):  # pragma: no cover - replies come in order
            raise ProtocolViolationError("a reply out of order where the end of data was due")
        if not reply.is_positive:
            raise _refusal("the server did not accept the message", reply)
        return PerRecipientOutcome(
            accepted=tuple(transaction.accepted),
            refused=refused,
            acceptance=Acceptance(reply=reply, mailsize=transaction.mailsize),
        )

    def _send_content(self, message: Outgoing) -> Acceptance:
        self._write_content(message)
        self._flush(self.timeouts.data_block)
        reply = self._read_reply(self.timeouts.data_termination)
        if not reply.is_positive:
            raise _refusal("the server did not accept the message", reply)
        return Acceptance(reply=reply, mailsize=self._core.message_size)

    def _write_content(self, message: Outgoing) -> None:
        """Queue the message and its end of data, writing in CONTENT_WRITE_OCTETS blocks.

        The end of data is queued, not flushed: the caller flushes it, alone or with
        the next transaction's commands behind it (RFC 2920 §3.1).
        """
        parts: list[bytes] = []
        buffered = 0
        for chunk in message.chunks:
            parts.append(chunk)
            buffered += len(chunk)
            if buffered >= CONTENT_WRITE_OCTETS:
                self._commands([DataChunk(data=b"".join(parts))])
                self._flush(self.timeouts.data_block)
                parts, buffered = [], 0
        if parts:
            self._commands([DataChunk(data=b"".join(parts)), _END_OF_DATA])
        else:
            self._commands([_END_OF_DATA])

    def close(self) -> None:
        """Say QUIT (best effort) and close the connection."""
        transport, self._transport = self._transport, None
        if transport is None:
            return
        try:
            if not transport.is_closed:
                self._transport = transport
                self._command(Quit())
                self._read_reply(self.timeouts.command)
        except MailhopError:
            pass  # the message is already accepted or refused; QUIT is a courtesy
        finally:
            self._transport = None
            transport.close()

    def __enter__(self) -> SmtpSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the pump ---------------------------------------------------------------------

    def _command(self, command: Command, *, flush: bool = True) -> None:
        try:
            self._core.send(command)
        except ProtocolError as error:
            raise ProtocolViolationError(f"SMTP protocol error: {error}") from error
        if flush:
            self._flush(self.timeouts.command)

    def _commands(self, commands: Sequence[Command]) -> None:
        """Queue several commands (a pipelined group, or content), without a flush."""
        try:
            self._core.send_all(commands)
        except ProtocolError as error:
            raise ProtocolViolationError(f"SMTP protocol error: {error}") from error

    def _flush(self, timeout: float) -> None:
        data = self._core.data_to_send()
        if self._transcript is not None:
            for line in self._core.pop_transcript():
                self._transcript(f"--> {line}")
        if data:
            assert self._transport is not None  # noqa: S101 - only called while open
            self._transport.send_all(data, timeout=timeout)

    def _read_event(self, timeout: float) -> Reply | TLSUpgradeRequired:
        """The next event: one the core has read already, else one from the server."""
        events = self._events
        if not events:
            self._receive_events(timeout)
        event = events.popleft()
        if isinstance(event, ConnectionClosed):
            raise ConnectionDroppedError("the server closed the connection unexpectedly")
        if self._transcript is not None and isinstance(event, Reply):
            for line in reply_lines(event):
                self._transcript(f"<-- {line}")
        return event

    def _receive_events(self, timeout: float) -> None:
        """Send what is queued, then read until the core has events (in ``_events``)."""
        if self._core.has_data_to_send:  # a pipelined batch has several replies to read
            self._flush(timeout)
        assert self._transport is not None  # noqa: S101 - only called while open
        while True:
            try:
                events = self._core.next_events()
            except RemoteProtocolError as error:
                raise ProtocolViolationError(
                    f"the server broke the SMTP protocol: {error}"
                ) from error
            except ProtocolError as error:
                raise ProtocolViolationError(f"SMTP protocol error: {error}") from error
            if events:
                self._events.extend(events)
                return
            self._core.receive_data(self._transport.receive(READ_CHUNK_SIZE, timeout=timeout))

    def _read_reply(self, timeout: float) -> Reply:
        events = self._events
        if events and self._transcript is None and type(first := events[0]) is Reply:
            # The common case (a reply already read, no transcript), in one step:
            # a queue run reads four replies per message.
            events.popleft()
            return first
        event = self._read_event(timeout)
        if not isinstance(event, Reply):
            raise ProtocolViolationError("unexpected TLS upgrade request")
        return event

    def _expect_ok(self, reply: Reply, what: str, address: str) -> None:
        if not reply.is_positive:
            raise _refusal(f"{what} address <{address}> not accepted by the server", reply)

    def _reset(self) -> None:
        try:
            self._command(Rset())
            self._read_reply(self.timeouts.command)
        except (ProtocolViolationError, ConnectionDroppedError):
            self.abandon()

    def abandon(self) -> None:
        """Close the connection at once, without QUIT (its state is unknown, or the
        server waits for content that must not be sent)."""
        transport, self._transport = self._transport, None
        self._events.clear()  # read from the connection now closed: never answers
        if transport is not None:
            transport.close()


def reply_lines(reply: Reply) -> tuple[str, ...]:
    """The reply as the server wrote it (``250-first``, ``250 last``), for people."""
    status = f"{reply.enhanced_status} " if reply.enhanced_status else ""
    last = len(reply.lines) - 1
    return tuple(
        f"{reply.code}{' ' if index == last else '-'}{status}{line}".rstrip()
        for index, line in enumerate(reply.lines)
    )


def _refusal(
    what: str,
    reply: Reply,
    *,
    greeting: bool = False,
    permanent_code: ExitCode = ExitCode.DATAERR,
    recipient: str | None = None,
) -> ServerReplyError:
    """The error for a refused step: 4xx is temporary (75), 5xx permanent."""
    if reply.is_transient:
        code = ExitCode.TEMPFAIL
    elif greeting:
        code = ExitCode.UNAVAILABLE
    else:
        code = permanent_code
    return ServerReplyError(
        what, code=reply.code, lines=reply_lines(reply), exit_code=code, recipient=recipient
    )


def _raise_for_refusals(refusals: list[tuple[str, Reply]]) -> None:
    """All-or-nothing: one refused recipient stops the message (5xx wins over 4xx)."""
    if not refusals:
        return
    permanent = [item for item in refusals if item[1].is_permanent]
    recipient, reply = (permanent or refusals)[0]
    others = len(refusals) - 1
    raise _refusal(
        f"recipient address <{recipient}> not accepted by the server"
        + (f" (and {others} more)" if others else "")
        + "; nothing was sent",
        reply,
        recipient=recipient,
    )


def _dsn_notify(setting: str | None) -> tuple[DsnNotify, ...]:
    if not setting:
        return ()
    return tuple(cast("DsnNotify", part.strip().upper()) for part in setting.split(","))
