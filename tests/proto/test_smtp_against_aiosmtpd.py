"""Our client core against aiosmtpd, an independent SMTP server, over loopback.

aiosmtpd runs in its own thread (its Controller); the test pumps our core over a
blocking socket, the way ``net/`` will.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from mailhop.proto import sasl
from mailhop.proto.smtp import (
    NEED_DATA,
    Auth,
    ClientConnection,
    ClientState,
    Command,
    ConnectionClosed,
    Data,
    DataChunk,
    Ehlo,
    EndOfData,
    MailFrom,
    Quit,
    RcptTo,
    Reply,
)


class Recorder:
    """aiosmtpd handler: keeps envelopes, refuses one recipient."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.startswith("refused@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 2.0.0 Message accepted"


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = data.login == b"user" and data.password == b"secret"
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd sends the 535


@pytest.fixture
def aiosmtpd_server() -> Iterator[tuple[int, Recorder]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    recorder = Recorder()
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_require_tls=False,
        enable_SMTPUTF8=True,
    )
    controller.start()
    try:
        yield port, recorder
    finally:
        controller.stop()


class Pump:
    """A minimal blocking driver: what net/blocking.py will do, in test form."""

    def __init__(self, port: int, client: ClientConnection) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.client = client

    def next(self) -> Any:
        while True:
            self.sock.sendall(self.client.data_to_send())
            event = self.client.next_event()
            if event is not NEED_DATA:
                self.sock.sendall(self.client.data_to_send())
                return event
            self.client.receive_data(self.sock.recv(65536))

    def command(self, *commands: Command) -> list[Reply]:
        """Send commands, pipelined if the server allows it, and return their replies."""
        if not self.client.capabilities.pipelining:
            return [reply for command in commands for reply in self.command_batch(command)]
        return self.command_batch(*commands)

    def command_batch(self, *commands: Command) -> list[Reply]:
        for command in commands:
            self.client.send(command)
        replies = []
        for _ in commands:
            reply = self.next()
            while reply.code == 334:  # the core answers challenges itself
                reply = self.next()
            replies.append(reply)
        return replies

    def close(self) -> None:
        self.sock.close()


def test_send_a_message(aiosmtpd_server: tuple[int, Recorder]) -> None:
    port, recorder = aiosmtpd_server
    pump = Pump(port, ClientConnection(allow_plaintext_auth=True))
    try:
        assert pump.next().code == 220
        [ehlo] = pump.command(Ehlo(domain="client.test"))
        assert ehlo.code == 250 and pump.client.capabilities.smtputf8
        assert "PLAIN" in pump.client.capabilities.auth
        [auth] = pump.command(Auth(mechanism=sasl.Login("user", "secret")))
        assert auth.code == 235 and pump.client.authenticated
        message = b"Subject: test\n\n.leading dot\n.\nno final newline"
        replies = pump.command(
            MailFrom(address="sender@x.test", size=len(message), body="8BITMIME"),
            RcptTo(address="a@y.test"),
            RcptTo(address="refused@y.test"),
            Data(),
        )
        assert [r.code for r in replies] == [250, 250, 550, 354]
        pump.client.send(DataChunk(data=message[:20]))
        pump.client.send(DataChunk(data=message[20:]))
        pump.client.send(EndOfData())
        assert pump.next().code == 250
        [bye] = pump.command(Quit())
        assert bye.code == 221 and pump.client.state is ClientState.CLOSED
    finally:
        pump.close()
    [envelope] = recorder.envelopes
    assert envelope.mail_from == "sender@x.test" and envelope.rcpt_tos == ["a@y.test"]
    assert envelope.content == (b"Subject: test\r\n\r\n.leading dot\r\n.\r\nno final newline\r\n")


def test_auth_failure_and_plain(aiosmtpd_server: tuple[int, Recorder]) -> None:
    port, _ = aiosmtpd_server
    pump = Pump(port, ClientConnection(allow_plaintext_auth=True))
    try:
        pump.next()
        pump.command(Ehlo(domain="client.test"))
        [refused] = pump.command(Auth(mechanism=sasl.Plain("user", "wrong")))
        assert refused.code == 535 and not pump.client.authenticated
        [accepted] = pump.command(Auth(mechanism=sasl.Plain("user", "secret")))
        assert accepted.code == 235
        transcript = "\n".join(pump.client.pop_transcript())
        assert "secret" not in transcript and "wrong" not in transcript
        assert "AUTH PLAIN <redacted>" in transcript
    finally:
        pump.close()


def test_smtputf8_and_close(aiosmtpd_server: tuple[int, Recorder]) -> None:
    port, recorder = aiosmtpd_server
    pump = Pump(port, ClientConnection())
    try:
        pump.next()
        pump.command(Ehlo(domain="client.test"))
        replies = pump.command(
            MailFrom(address="jörg@例え.jp", smtputf8=True), RcptTo(address="ü@y.test"), Data()
        )
        assert [r.code for r in replies] == [250, 250, 354]
        pump.client.send(DataChunk(data="Subject: é\n\nbody\n".encode()))
        pump.client.send(EndOfData())
        assert pump.next().code == 250
        pump.command(Quit())
        pump.client.receive_data(pump.sock.recv(100))
        assert pump.client.next_event() == ConnectionClosed()
    finally:
        pump.close()
    assert recorder.envelopes[0].rcpt_tos == ["ü@y.test"]
