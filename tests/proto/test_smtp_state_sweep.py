# mypy: disable-error-code="unreachable, comparison-overlap"
"""Hypothesis sweeps over state x input (h2's test_state_machines).

Client: in every reachable state, every command either follows the transition
table, or raises LocalProtocolError, leaves nothing half-queued, and poisons the
connection. Server: every command line in every state is either surfaced (and
allowed by the table) or answered by the core without changing the state; every
reply either moves the state as the table says or raises and poisons.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailhop.proto import sasl
from mailhop.proto.errors import LocalProtocolError, ProtocolError
from mailhop.proto.smtp import (
    NEED_DATA,
    Auth,
    ClientConnection,
    ClientState,
    Command,
    CommandRejected,
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
    ServerConnection,
    ServerState,
    StartTLS,
)
from mailhop.proto.smtp._state import CLIENT_TRANSITIONS, SERVER_COMMANDS, SERVER_TRANSITIONS

EHLO = b"250-mx\r\n250-PIPELINING\r\n250-STARTTLS\r\n250-SIZE 100\r\n250 AUTH PLAIN\r\n"


def client_in(state: ClientState) -> ClientConnection:
    """A client driven into ``state`` through the public API only."""
    client = ClientConnection(tls_active=state is not ClientState.TLS_HANDSHAKE)
    scripts: dict[ClientState, list[Command | bytes]] = {
        ClientState.AWAIT_GREETING: [],
        ClientState.GREETING_REFUSED: [b"554 no\r\n"],
        ClientState.GREETED: [b"220 hi\r\n"],
        ClientState.READY: [b"220 hi\r\n", Ehlo(domain="c.test"), EHLO],
        ClientState.TLS_HANDSHAKE: [b"220 hi\r\n", Ehlo(domain="c.test"), EHLO, StartTLS()],
        ClientState.AUTHENTICATING: [b"220 hi\r\n", Ehlo(domain="c.test"), EHLO,
                                     Auth(mechanism=sasl.Plain("u", "p"))],
        ClientState.MAIL: [b"220 hi\r\n", Ehlo(domain="c.test"), EHLO,
                           MailFrom(address="a@x.test")],
        ClientState.RCPT: [b"220 hi\r\n", Ehlo(domain="c.test"), EHLO,
                           MailFrom(address="a@x.test"), RcptTo(address="b@x.test")],
        ClientState.DATA: [b"220 hi\r\n", Ehlo(domain="c.test"), EHLO,
                           MailFrom(address="a@x.test"), RcptTo(address="b@x.test"), Data()],
        ClientState.SEND_BODY: [b"220 hi\r\n", Ehlo(domain="c.test"), EHLO,
                                MailFrom(address="a@x.test"), RcptTo(address="b@x.test"), Data(),
                                b"250 ok\r\n250 ok\r\n354 go\r\n"],
        ClientState.QUITTING: [b"220 hi\r\n", Quit()],
        ClientState.CLOSED: [b"421 bye\r\n"],
        ClientState.ERROR: [b"999 bad\r\n"],
    }  # fmt: skip
    for step in scripts[state]:
        if isinstance(step, bytes):
            client.receive_data(step)
            try:
                while client.next_event() is not NEED_DATA:
                    pass
            except ProtocolError:
                pass
        else:
            client.send(step)
    assert client.state is state
    client.data_to_send()
    return client


COMMANDS: list[Command] = [
    Ehlo(domain="c.test"), Helo(domain="c.test"), StartTLS(),
    Auth(mechanism=sasl.Plain("u", "p")), MailFrom(address="a@x.test"),
    RcptTo(address="b@x.test"), Data(), DataChunk(data=b"x\n"), EndOfData(), Rset(), Noop(),
    Quit(),
]  # fmt: skip
INPUT_NAMES = {
    Ehlo: "SEND_EHLO", Helo: "SEND_HELO", StartTLS: "SEND_STARTTLS", Auth: "SEND_AUTH",
    MailFrom: "SEND_MAIL", RcptTo: "SEND_RCPT", Data: "SEND_DATA", DataChunk: "SEND_BODY",
    EndOfData: "SEND_END_OF_DATA", Rset: "SEND_RSET", Noop: "SEND_NOOP", Quit: "SEND_QUIT",
}  # fmt: skip


@given(state=st.sampled_from(ClientState), command=st.sampled_from(COMMANDS))
def test_client_state_by_command(state: ClientState, command: Command) -> None:
    client = client_in(state)
    allowed = {kind.name: target for kind, target in CLIENT_TRANSITIONS[state].items()}
    try:
        client.send(command)
    except LocalProtocolError:
        assert client.state is ClientState.ERROR
        assert client.data_to_send() == b""
        return
    assert INPUT_NAMES[type(command)] in allowed, "sent what the table forbids"
    assert client.state is allowed[INPUT_NAMES[type(command)]]
    assert client.data_to_send() != b""


def server_in(state: ServerState) -> ServerConnection:
    server = ServerConnection()
    ok = Reply(code=250)
    script: list[tuple[bytes, Reply]] = {
        ServerState.GREETING: [],
        ServerState.GREETED: [],
        ServerState.READY: [(b"EHLO c\r\n", ok)],
        ServerState.MAIL: [(b"EHLO c\r\n", ok), (b"MAIL FROM:<a@x.test>\r\n", ok)],
        ServerState.RCPT: [(b"EHLO c\r\n", ok), (b"MAIL FROM:<a@x.test>\r\n", ok),
                           (b"RCPT TO:<b@x.test>\r\n", ok)],
        ServerState.BODY: [(b"EHLO c\r\n", ok), (b"MAIL FROM:<a@x.test>\r\n", ok),
                           (b"RCPT TO:<b@x.test>\r\n", ok), (b"DATA\r\n", Reply(code=354))],
        ServerState.AUTH: [(b"EHLO c\r\n", ok), (b"AUTH PLAIN\r\n", Reply(code=334))],
        ServerState.TLS_HANDSHAKE: [(b"STARTTLS\r\n", Reply(code=220))],
        ServerState.CLOSED: [(b"QUIT\r\n", Reply(code=221))],
        ServerState.ERROR: [],
    }[state]  # fmt: skip
    if state is not ServerState.GREETING:
        server.send(Reply(code=220))
    for line, reply in script:
        server.receive_data(line)
        server.next_event()
        server.send(reply)
    if state is ServerState.ERROR:
        with pytest.raises(LocalProtocolError):
            server.send(Reply(code=250))
    assert server.state is state
    server.data_to_send()
    return server


LINES = [b"EHLO c\r\n", b"HELO c\r\n", b"STARTTLS\r\n", b"AUTH PLAIN AHUAcA==\r\n",
         b"MAIL FROM:<a@x.test>\r\n", b"RCPT TO:<b@x.test>\r\n", b"DATA\r\n", b"RSET\r\n",
         b"NOOP\r\n", b"QUIT\r\n", b"VRFY x\r\n", b"dGVzdA==\r\n", b"x\r\n.\r\n"]  # fmt: skip


@given(state=st.sampled_from(ServerState), line=st.sampled_from(LINES))
def test_server_state_by_command(state: ServerState, line: bytes) -> None:
    server = server_in(state)
    server.receive_data(line)
    try:
        event = server.next_event()
    except LocalProtocolError:
        assert state in (ServerState.GREETING, ServerState.ERROR)
        return
    if isinstance(event, CommandRejected):
        # A bad SASL response ends the exchange (RFC 4954 §4); nothing else moves.
        assert server.state is (ServerState.READY if state is ServerState.AUTH else state)
        verb = line.split()[0].decode().upper()
        assert verb not in SERVER_COMMANDS.get(state, frozenset()) or event.reply.code != 503
    elif state in SERVER_COMMANDS and event is not NEED_DATA:
        assert line.split()[0].decode().upper() in SERVER_COMMANDS[state]


REPLIES = [Reply(code=code) for code in (220, 221, 235, 250, 251, 334, 354, 421, 451, 550)]


@given(
    state=st.sampled_from(ServerState),
    line=st.sampled_from(LINES),
    reply=st.sampled_from(REPLIES),
)
def test_server_state_by_reply(state: ServerState, line: bytes, reply: Reply) -> None:
    server = server_in(state)
    server.receive_data(line)
    try:
        event = server.next_event()
    except LocalProtocolError:
        return
    if isinstance(event, CommandRejected):
        return
    before = server.state
    moves: Callable[[], None] = lambda: server.send(reply)  # noqa: E731
    try:
        moves()
    except ProtocolError:
        assert server.state is ServerState.ERROR
        return
    reachable = set(SERVER_TRANSITIONS[before].values()) | {before}
    assert server.state in reachable
