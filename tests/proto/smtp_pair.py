"""Back-to-back helpers: our SMTP client core against our server core, over bytes.

``ScriptedServer`` is a tiny application around :class:`ServerConnection` with a
fixed, permissive policy (h11's ``ConnectionPair`` idea): it records what it
accepted so tests can compare what was sent with what arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailhop.proto.smtp import (
    NEED_DATA,
    AuthCancelled,
    AuthRequest,
    AuthResponse,
    ClientConnection,
    ClientEvent,
    CommandRejected,
    ConnectionClosed,
    Data,
    DataChunk,
    Ehlo,
    EndOfData,
    Helo,
    MailFrom,
    Noop,
    OtherCommand,
    Quit,
    RcptTo,
    Reply,
    Rset,
    ServerConnection,
    StartTLS,
)

EHLO_KEYWORDS = (
    "PIPELINING",
    "SIZE 10240000",
    "8BITMIME",
    "SMTPUTF8",
    "DSN",
    "STARTTLS",
    "AUTH PLAIN LOGIN CRAM-MD5 SCRAM-SHA-256",
    "ENHANCEDSTATUSCODES",
)


@dataclass
class Delivered:
    sender: str
    recipients: list[str]
    content: bytes


@dataclass
class ScriptedServer:
    """A server application with a fixed policy, driven one event at a time."""

    connection: ServerConnection = field(default_factory=ServerConnection)
    refuse_recipients: set[str] = field(default_factory=set)
    password: bytes = b"\0user\0secret"
    delivered: list[Delivered] = field(default_factory=list)
    rejected: list[CommandRejected] = field(default_factory=list)
    sender: str = ""
    recipients: list[str] = field(default_factory=list)
    content: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        self.connection.send(Reply(code=220, lines=("mx.test ESMTP",)))

    def pump(self) -> None:
        """Handle every event the buffered bytes make."""
        while True:
            event = self.connection.next_event()
            if event is NEED_DATA or isinstance(event, ConnectionClosed):
                return
            reply = self.answer(event)
            if reply is not None:
                self.connection.send(reply)

    def answer(self, event: object) -> Reply | None:
        ok = Reply(code=250, enhanced_status="2.0.0", lines=("OK",))
        if isinstance(event, CommandRejected):
            self.rejected.append(event)
            return None
        if isinstance(event, Ehlo):
            return Reply(code=250, lines=("mx.test", *EHLO_KEYWORDS))
        if isinstance(event, MailFrom):
            self.sender, self.recipients = event.address, []
            return ok
        if isinstance(event, RcptTo):
            if event.address in self.refuse_recipients:
                return Reply(code=550, enhanced_status="5.1.1", lines=("No such user",))
            self.recipients.append(event.address)
            return ok
        if isinstance(event, Data):
            if not self.recipients:
                return Reply(code=554, enhanced_status="5.5.1", lines=("No valid recipients",))
            self.content = bytearray()
            return Reply(code=354, lines=("End data with <CR><LF>.<CR><LF>",))
        if isinstance(event, DataChunk):
            self.content += event.data
            return None
        if isinstance(event, EndOfData):
            if event.bare_line_endings or event.oversized:
                return Reply(code=550, enhanced_status="5.7.0", lines=("Refused",))
            self.delivered.append(Delivered(self.sender, self.recipients, bytes(self.content)))
            return Reply(code=250, enhanced_status="2.0.0", lines=("Queued",))
        if isinstance(event, StartTLS):
            return Reply(code=220, enhanced_status="2.0.0", lines=("Ready to start TLS",))
        if isinstance(event, AuthRequest):
            if event.initial_response is None:
                return Reply(code=334, lines=("",))
            return self._check_password(event.initial_response)
        if isinstance(event, AuthResponse):
            return self._check_password(event.data)
        if isinstance(event, AuthCancelled):
            return Reply(code=501, enhanced_status="5.7.0", lines=("Cancelled",))
        if isinstance(event, Quit):
            return Reply(code=221, enhanced_status="2.0.0", lines=("Bye",))
        if isinstance(event, Helo | Rset | Noop):
            return ok
        assert isinstance(event, OtherCommand)
        return Reply(code=252, enhanced_status="2.1.5", lines=("Cannot VRFY",))

    def _check_password(self, data: bytes) -> Reply:
        if data == self.password:
            return Reply(code=235, enhanced_status="2.7.0", lines=("Authenticated",))
        return Reply(code=535, enhanced_status="5.7.8", lines=("Bad credentials",))


def exchange(client: ClientConnection, server: ScriptedServer) -> list[ClientEvent]:
    """Move bytes both ways until neither side has anything to say; client events."""
    events: list[ClientEvent] = []
    while True:
        moved = False
        to_server = client.data_to_send()
        if to_server:
            server.connection.receive_data(to_server)
            server.pump()
            moved = True
        to_client = server.connection.data_to_send()
        if to_client:
            client.receive_data(to_client)
            moved = True
        while (event := client.next_event()) is not NEED_DATA:
            events.append(event)
        if not moved and not client.data_to_send():
            return events


def greeted_pair(**client_options: bool) -> tuple[ClientConnection, ScriptedServer]:
    """A client that has read the greeting and done EHLO against a ScriptedServer."""
    client, server = ClientConnection(**client_options), ScriptedServer()
    exchange(client, server)
    client.send(Ehlo(domain="client.test"))
    exchange(client, server)
    return client, server
