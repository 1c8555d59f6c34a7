# mypy: disable-error-code="unreachable, comparison-overlap"
# (mypy keeps narrowing ``connection.state`` and similar attributes across the
# calls that change them; these tests check exactly such changes.)
"""Our client core against our server core, back to back over bytes."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from mailhop.proto import sasl
from mailhop.proto.smtp import (
    Auth,
    ClientConnection,
    ClientState,
    Command,
    Data,
    DataChunk,
    Ehlo,
    EndOfData,
    MailFrom,
    Quit,
    RcptTo,
    Reply,
    ServerState,
    StartTLS,
    TLSUpgradeRequired,
)
from tests.proto.smtp_pair import ScriptedServer, exchange, greeted_pair

PIECES = [b"a", b"xyz", b" ", b".", b"..", b"\r", b"\n", b"\r\n", b"\xff", b"\t"]


def normalise(data: bytes) -> bytes:
    data = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    return data if data == b"" or data.endswith(b"\r\n") else data + b"\r\n"


def send_message(
    client: ClientConnection, server: ScriptedServer, recipients: list[str], chunks: list[bytes]
) -> list[Reply]:
    commands: list[Command] = [
        MailFrom(address="sender@x.test", size=sum(map(len, chunks)), body="8BITMIME"),
        *(RcptTo(address=address) for address in recipients),
        Data(),
    ]
    for command in commands:
        client.send(command)
    replies = [event for event in exchange(client, server) if isinstance(event, Reply)]
    if client.state is ClientState.SEND_BODY:
        for chunk in chunks:
            client.send(DataChunk(data=chunk))
        client.send(EndOfData())
        replies += [event for event in exchange(client, server) if isinstance(event, Reply)]
    return replies


def test_a_whole_session() -> None:
    client = ClientConnection()
    server = ScriptedServer(refuse_recipients={"nobody@y.test"})
    exchange(client, server)
    client.send(Ehlo(domain="c.test"))
    exchange(client, server)
    client.send(StartTLS())
    [upgrade] = exchange(client, server)
    assert isinstance(upgrade, TLSUpgradeRequired)
    client.start_tls_done()
    server.connection.start_tls_done()
    client.send(Ehlo(domain="c.test"))
    exchange(client, server)
    assert client.capabilities.pipelining and client.tls_active
    client.send(Auth(mechanism=sasl.Login("user", "secret")))
    server.password = b"secret"
    replies = exchange(client, server)
    # The scripted server checks the first response against its password: 535.
    assert [r.code for r in replies if isinstance(r, Reply)] == [334, 535]
    assert not client.authenticated
    server.password = b"\0user\0secret"
    client.send(Auth(mechanism=sasl.Plain("user", "secret")))
    exchange(client, server)
    assert client.authenticated and server.connection.authenticated
    replies = send_message(client, server, ["a@y.test", "nobody@y.test"], [b"Hi\n.\n"])
    assert [r.code for r in replies] == [250, 250, 550, 354, 250]
    assert server.delivered[0].recipients == ["a@y.test"]
    assert server.delivered[0].content == b"Hi\r\n.\r\n"
    client.send(Quit())
    exchange(client, server)
    assert client.state is ClientState.CLOSED and server.connection.state is ServerState.CLOSED


def test_no_valid_recipient_means_no_data() -> None:
    client, server = greeted_pair()
    server.refuse_recipients = {"x@y.test"}
    replies = send_message(client, server, ["x@y.test"], [b"body"])
    # No RCPT was accepted, so the server core itself answers DATA: 503 (RFC 5321 §4.1.4).
    assert [r.code for r in replies] == [250, 550, 503]
    assert client.state is ClientState.READY and server.delivered == []


def test_messages_pipelined_behind_each_others_end_of_data() -> None:
    # The client writes the next message's MAIL, RCPT and DATA right behind the end
    # of data (RFC 2920 §3.1); our server core takes them from the same bytes.
    client, server = greeted_pair()
    server.refuse_recipients = {"nobody@y.test"}
    for command in (MailFrom(address="s@x.test"), RcptTo(address="a@y.test"), Data()):
        client.send(command)
    exchange(client, server)
    client.send(DataChunk(data=b"first\n"))
    client.send(EndOfData())
    for command in (MailFrom(address="s@x.test"), RcptTo(address="b@y.test"), Data()):
        client.send(command)  # before the reply to the first end of data
    replies = [event for event in exchange(client, server) if isinstance(event, Reply)]
    assert [(r.code, type(r.command)) for r in replies] == [
        (250, EndOfData), (250, MailFrom), (250, RcptTo), (354, Data),
    ]  # fmt: skip
    client.send(DataChunk(data=b"second\n"))
    client.send(EndOfData())
    for command in (MailFrom(address="s@x.test"), RcptTo(address="nobody@y.test"), Data()):
        client.send(command)
    replies = [event for event in exchange(client, server) if isinstance(event, Reply)]
    # The third's only recipient is refused, so the server core refuses DATA (503).
    assert [(r.code, type(r.command)) for r in replies] == [
        (250, EndOfData), (250, MailFrom), (550, RcptTo), (503, Data),
    ]  # fmt: skip
    assert [(d.recipients, d.content) for d in server.delivered] == [
        (["a@y.test"], b"first\r\n"), (["b@y.test"], b"second\r\n"),
    ]  # fmt: skip
    assert client.state is ClientState.READY


def test_cancelled_auth() -> None:
    client, server = greeted_pair(tls_active=True)
    client.send(Auth(mechanism=sasl.CramMD5("user", "secret")))
    replies = exchange(client, server)
    # Our scripted server sends an empty 334 and gets the CRAM response, which is
    # not its password: 535.
    assert [r.code for r in replies if isinstance(r, Reply)] == [334, 535]


@settings(max_examples=60, deadline=None)
@given(
    # Pieces rather than st.binary(): under python -bb, hypothesis's shrinker
    # compares mixed bytes/int choice keys and raises BytesWarning.
    message=st.lists(st.sampled_from(PIECES), max_size=40),
    cuts=st.lists(st.integers(0, 400), max_size=5),
)
def test_any_message_arrives_as_sent_with_line_ends_normalised(
    message: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(message)
    points = sorted({min(cut, len(data)) for cut in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    client, server = greeted_pair()
    replies = send_message(client, server, ["a@y.test"], chunks)
    assert replies[-1].code == 250
    [delivered] = server.delivered
    assert delivered.content == normalise(data)
    # msmtp's mailsize: the input with each line end as 1 octet, nothing added.
    assert client.message_size == len(re.sub(rb"\r\n|\r|\n", b"\n", data))
