# mypy: disable-error-code="unreachable, comparison-overlap"
# (mypy keeps narrowing ``connection.state`` and similar attributes across the
# calls that change them; these tests check exactly such changes.)
"""The SMTP server core: command parsing, sequencing, DATA framing, AUTH, TLS rules."""

from __future__ import annotations

import pytest

from mailhop.proto.errors import LocalProtocolError, RemoteProtocolError
from mailhop.proto.smtp import (
    MAX_AUTH_LINE_LENGTH,
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
    Noop,
    OtherCommand,
    Quit,
    RcptTo,
    Reply,
    Rset,
    ServerConnection,
    ServerEvent,
    ServerState,
    StartTLS,
)

OK = Reply(code=250, lines=("OK",))


def events(server: ServerConnection, data: bytes | None = None) -> list[ServerEvent]:
    """Feed bytes (b"" is EOF), then collect events until one needs an answer."""
    if data is not None:
        server.receive_data(data)
    found = []
    while (event := server.next_event()) is not NEED_DATA:
        found.append(event)
        if not isinstance(event, CommandRejected | DataChunk):
            break
    return found


def one(server: ServerConnection, line: bytes | None) -> ServerEvent:
    [event] = events(server, line)
    return event


def greeted(**options: bool | int) -> ServerConnection:
    server = ServerConnection(**options)  # type: ignore[arg-type]
    server.send(Reply(code=220, lines=("mx.test ESMTP",)))
    assert server.data_to_send() == b"220 mx.test ESMTP\r\n"
    return server


def in_transaction(smtputf8: bool = False, **options: bool | int) -> ServerConnection:
    server = greeted(**options)
    for line in (b"EHLO c.test\r\n", b"MAIL FROM:<a@x.test>" + b" SMTPUTF8" * smtputf8 + b"\r\n",
                 b"RCPT TO:<b@x.test>\r\n"):  # fmt: skip
        one(server, line)
        server.send(OK)
    server.data_to_send()
    return server


PARSED = [
    (b"EHLO client.test\r\n", Ehlo(domain="client.test")),
    (b"ehlo [127.0.0.1]\r\n", Ehlo(domain="[127.0.0.1]")),
    (b"HELO c\r\n", Helo(domain="c")),
    (b"NOOP anything\r\n", Noop()),
    (b"VRFY root\r\n", OtherCommand(verb="VRFY", argument="root")),
    (b"STARTTLS\r\n", StartTLS()),
    (b"AUTH PLAIN\r\n", AuthRequest(mechanism="PLAIN")),
    (b"auth plain =\r\n", AuthRequest(mechanism="PLAIN", initial_response=b"")),
    (b"AUTH PLAIN AHUAcA==\r\n", AuthRequest(mechanism="PLAIN", initial_response=b"\0u\0p")),
    (b"MAIL FROM:<>\r\n", MailFrom(address="")),
    (b"mail from: <a@x.test>\r\n", MailFrom(address="a@x.test")),
    (b"MAIL FROM:<@relay.test,@r2.test:a@x.test>\r\n", MailFrom(address="a@x.test")),
    (
        b"MAIL FROM:<a@x.test> SIZE=100 BODY=8bitmime RET=hdrs ENVID=a+2Bb X-Y=z AUTH=<>\r\n",
        MailFrom(address="a@x.test", size=100, body="8BITMIME", ret="HDRS", envid="a+b",
                 parameters=(("X-Y", "z"), ("AUTH", "<>"))),
    ),
    (
        "MAIL FROM:<jörg@例え.jp> SMTPUTF8\r\n".encode(),
        MailFrom(address="jörg@例え.jp", smtputf8=True),
    ),
    (b'MAIL FROM:<"a b"@x.test>\r\n', MailFrom(address='"a b"@x.test')),
]  # fmt: skip


@pytest.mark.parametrize(("line", "expected"), PARSED)
def test_commands_parse(line: bytes, expected: ServerEvent) -> None:
    server = greeted()
    if isinstance(expected, MailFrom | AuthRequest):
        one(server, b"EHLO c.test\r\n")
        server.send(OK)
    assert one(server, line) == expected


RCPTS = [
    (b"RCPT TO:<Postmaster>\r\n", RcptTo(address="Postmaster")),
    (
        b"RCPT TO:<b@x.test> NOTIFY=success,delay ORCPT=rfc822;b+2Bx@x.test\r\n",
        RcptTo(address="b@x.test", notify=("SUCCESS", "DELAY"), orcpt="b+x@x.test"),
    ),
    (b"RCPT TO:<b@x.test> NOTIFY=NEVER\r\n", RcptTo(address="b@x.test", notify=("NEVER",))),
]


@pytest.mark.parametrize(("line", "expected"), RCPTS)
def test_rcpt_parses(line: bytes, expected: RcptTo) -> None:
    server = in_transaction()
    assert one(server, line) == expected


REJECTED = [
    (b"BOGUS\r\n", 500),
    (b"EHLO\r\n", 501),
    (b"EHLO a b\r\n", 501),
    (b"DATA now\r\n", 501),
    (b"MAIL TO:<a@x.test>\r\n", 501),
    (b"MAIL FROM:a@x.test\r\n", 501),
    (b"MAIL FROM:<a@x.test\r\n", 501),
    (b"MAIL FROM:<postmaster>\r\n", 501),
    (b"MAIL FROM:<a@x.test> SIZE=x\r\n", 501),
    (b"MAIL FROM:<a@x.test> SIZE\r\n", 501),
    (b"MAIL FROM:<a@x.test> SIZE=1 SIZE=2\r\n", 501),
    (b"MAIL FROM:<a@x.test> BODY=BINARYMIME\r\n", 555),
    (b"MAIL FROM:<a@x.test> SMTPUTF8=yes\r\n", 501),
    (b"MAIL FROM:<a@x.test> RET=ALL\r\n", 501),
    (b"MAIL FROM:<a@x.test> ENVID=a+zz\r\n", 501),
    (b"MAIL FROM:<a@x.test> ENVID\r\n", 501),
    (b"MAIL FROM:<a@x.test> ENVID=+FF\r\n", 501),
    (b"MAIL FROM:<a@x.test> =x\r\n", 501),
    (b"MAIL FROM:<a@x.test> X=a=b\r\n", 501),
    ("MAIL FROM:<jörg@x.test>\r\n".encode(), 553),
    (b"MAIL FROM:<" + b"a" * 250 + b"@x.test>\r\n", 501),
    (b"MAIL FROM:<;touch /tmp/p;@x.test>\r\n", 501),  # security.md B7: not an address
    (b"MAIL FROM:<a@x.test>\n", 500),  # bare LF ends no command
    (b"MAIL FROM:<a\xff@x.test>\r\n", 500),
    (b"MAIL FROM:<a\x00@x.test>\r\n", 500),
    (b"MAIL FROM:<a@x.test> " + b"X" * 2048 + b"\r\n", 500),
    (b"NOOP " + b"x" * 600 + b"\r\n", 500),
    (b"AUTH PLAIN !!!\r\n", 501),
    (b"AUTH PLAIN a b\r\n", 501),
    (b"AUTH THIS-NAME-IS-FAR-TOO-LONG\r\n", 501),
    (b"RCPT TO:<b@x.test>\r\n", 503),  # no MAIL yet
    (b"DATA\r\n", 503),
]


@pytest.mark.parametrize(("line", "code"), REJECTED)
def test_bad_commands_are_answered_by_the_core(line: bytes, code: int) -> None:
    server = greeted()
    one(server, b"EHLO c.test\r\n")
    server.send(OK)
    server.data_to_send()
    event = one(server, line)
    assert isinstance(event, CommandRejected) and event.reply.code == code
    assert server.data_to_send().startswith(b"%d " % code)
    assert server.state is ServerState.READY
    assert one(server, b"NOOP\r\n") == Noop()  # the session goes on


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"RCPT TO:<b@x.test> NOTIFY=NEVER,DELAY\r\n", 501),
        (b"RCPT TO:<b@x.test> NOTIFY=SOMETIMES\r\n", 501),
        (b"RCPT TO:<b@x.test> NOTIFY=DELAY,DELAY\r\n", 501),
        (b"RCPT TO:<b@x.test> ORCPT=x400;b\r\n", 501),
        (b"RCPT TO:<>\r\n", 501),
        ("RCPT TO:<ü@x.test>\r\n".encode(), 553),  # the MAIL had no SMTPUTF8
        (b"MAIL FROM:<a@x.test>\r\n", 503),  # nested transaction
        (b"AUTH PLAIN\r\n", 503),  # RFC 4954 §4: not during a transaction
    ],
)
def test_bad_recipient_commands(line: bytes, code: int) -> None:
    event = one(in_transaction(), line)
    assert isinstance(event, CommandRejected) and event.reply.code == code


def test_utf8_recipient_after_smtputf8_mail() -> None:
    assert one(in_transaction(smtputf8=True), "RCPT TO:<ü@x.test>\r\n".encode()) == RcptTo(
        address="ü@x.test"
    )


def test_sequence_before_hello() -> None:
    server = greeted()
    event = one(server, b"MAIL FROM:<a@x.test>\r\n")
    assert isinstance(event, CommandRejected) and event.reply.code == 503
    assert event.reply.enhanced_status == "5.5.1"


def test_an_overlong_line_is_discarded_and_answered() -> None:
    server = greeted()
    server.receive_data(b"X" * (MAX_AUTH_LINE_LENGTH + 10))
    assert server.next_event() is NEED_DATA
    server.receive_data(b"Y" * 100)
    assert server.next_event() is NEED_DATA
    rejected, noop = events(server, b"tail\r\nNOOP\r\n")
    assert isinstance(rejected, CommandRejected) and rejected.reply.code == 500
    assert noop == Noop()


def test_greeting_and_reply_discipline() -> None:
    server = ServerConnection()
    with pytest.raises(LocalProtocolError, match="greeting first"):
        server.next_event()
    with pytest.raises(LocalProtocolError, match="must be 220"):
        ServerConnection().send(Reply(code=250))
    server = greeted()
    with pytest.raises(LocalProtocolError, match="no command"):
        server.send(OK)
    server = greeted()
    one(server, b"NOOP\r\nNOOP\r\n")
    with pytest.raises(LocalProtocolError, match="reply to Noop first"):
        server.next_event()
    with pytest.raises(LocalProtocolError, match="ERROR"):
        server.next_event()
    for bad in (
        Reply(code=250, lines=("a\r\nRSET",)),
        Reply(code=250, lines=("a\0",)),
        Reply(code=250, lines=()),
        Reply(code=199),
        Reply(code=600),
        Reply(code=250, enhanced_status="5.0.0"),
        Reply(code=250, enhanced_status="2.0"),
        Reply(code=354),  # not an answer to NOOP
    ):
        server = greeted()
        one(server, b"NOOP\r\n")
        with pytest.raises(LocalProtocolError):
            server.send(bad)
        assert server.state is ServerState.ERROR


def test_421_closes_from_anywhere() -> None:
    server = in_transaction()
    one(server, b"DATA\r\n")
    server.send(Reply(code=421, enhanced_status="4.3.0", lines=("bye",)))
    assert server.state is ServerState.CLOSED
    assert server.data_to_send() == b"421 4.3.0 bye\r\n"
    server.receive_data(b"more\r\n")
    assert server.next_event() is NEED_DATA
    assert one(server, b"") == ConnectionClosed()


def test_quit_and_eof() -> None:
    server = greeted()
    assert one(server, b"QUIT\r\n") == Quit()
    server.send(Reply(code=221, lines=("bye",)))
    assert server.state is ServerState.CLOSED
    server = greeted()
    server.receive_data(b"NOOP")  # a partial line at EOF is dropped
    assert one(server, b"") == ConnectionClosed() and server.state is ServerState.CLOSED
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"x")


def start_data(server: ServerConnection) -> None:
    assert one(server, b"DATA\r\n") == Data()
    server.send(Reply(code=354, lines=("go",)))
    server.data_to_send()


def receive_message(server: ServerConnection, wire: bytes) -> tuple[bytes, EndOfData]:
    start_data(server)
    server.receive_data(wire)
    content = bytearray()
    while True:
        event = server.next_event()
        if isinstance(event, DataChunk):
            content += event.data
        else:
            assert isinstance(event, EndOfData)
            return bytes(content), event


def test_data_with_pipelined_commands_after_it() -> None:
    server = in_transaction()
    content, end = receive_message(server, b"..a\r\nb\r\n.\r\nQUIT\r\n")
    assert content == b".a\r\nb\r\n" and end == EndOfData(size=7)
    server.send(Reply(code=250, lines=("queued",)))
    assert server.state is ServerState.READY
    assert one(server, None) == Quit()


@pytest.mark.parametrize(
    "smuggled",
    # security.md C2 / smtpsmug: a listener must never see two messages here.
    [b"a\n.\nMAIL FROM:<x@y.test>\nRCPT TO:<v@z.test>\nDATA\nspoof\n",
     b"a\r\n.\nMAIL FROM:<x@y.test>\r\n", b"a\n.\r\nMAIL FROM:<x@y.test>\r\n",
     b"a\r.\rMAIL FROM:<x@y.test>\r\n", b"a\r\r\n.\r\r\nMAIL FROM:<x@y.test>\r\n"],
)  # fmt: skip
def test_smuggling_is_one_message_and_can_only_be_refused(smuggled: bytes) -> None:
    server = in_transaction()
    content, end = receive_message(server, smuggled + b"\r\n.\r\n")
    assert b"MAIL FROM:<x@y.test>" in content and end.bare_line_endings
    with pytest.raises(LocalProtocolError, match="must be refused"):
        server.send(Reply(code=250))
    server = in_transaction()
    receive_message(server, smuggled + b"\r\n.\r\n")
    server.send(Reply(code=550, enhanced_status="5.7.0", lines=("bare LF",)))
    assert server.next_event() is NEED_DATA  # no second transaction


def test_bare_line_endings_allowed_by_choice() -> None:
    server = in_transaction(allow_bare_line_endings=True)
    receive_message(server, b"a\nb\r\n.\r\n")
    server.send(Reply(code=250))


def test_oversized_message() -> None:
    server = in_transaction(max_message_size=10)
    content, end = receive_message(server, b"0123456789\r\n" * 3 + b".\r\n")
    assert content == b"" and end.oversized and end.size == 36
    with pytest.raises(LocalProtocolError):
        server.send(Reply(code=250))
    server = in_transaction(max_message_size=10)
    start_data(server)
    assert events(server, b"01234\r\n") == [DataChunk(data=b"01234\r\n")]
    assert events(server, b"56789\r\n.\r\n") == [EndOfData(size=14, oversized=True)]
    server.send(Reply(code=552, enhanced_status="5.3.4", lines=("too big",)))
    assert server.state is ServerState.READY


def test_eof_during_data() -> None:
    server = in_transaction()
    start_data(server)
    assert events(server, b"partial") == [DataChunk(data=b"partial")]
    assert one(server, b"") == ConnectionClosed()


def test_auth_exchange() -> None:
    server = greeted()
    one(server, b"EHLO c.test\r\n")
    server.send(OK)
    assert one(server, b"AUTH LOGIN\r\n") == AuthRequest(mechanism="LOGIN")
    server.send(Reply(code=334, lines=("VXNlcm5hbWU6",)))
    assert server.state is ServerState.AUTH
    assert one(server, b"dXNlcg==\r\n") == AuthResponse(data=b"user")
    server.send(Reply(code=334, lines=("UGFzc3dvcmQ6",)))
    assert one(server, b"*\r\n") == AuthCancelled()
    with pytest.raises(LocalProtocolError):
        server.send(Reply(code=235))  # a cancelled exchange cannot succeed
    server = greeted()
    one(server, b"EHLO c.test\r\n")
    server.send(OK)
    one(server, b"AUTH PLAIN\r\n")
    server.send(Reply(code=334, lines=("",)))
    event = one(server, b"!!\r\n")
    assert isinstance(event, CommandRejected) and event.reply.code == 501
    assert server.state is ServerState.READY
    one(server, b"AUTH PLAIN AHUAcA==\r\n")
    server.send(Reply(code=235, lines=("ok",)))
    assert server.authenticated
    event = one(server, b"AUTH PLAIN\r\n")
    assert isinstance(event, CommandRejected) and event.reply.code == 503


def test_overlong_auth_response_aborts_the_exchange() -> None:
    server = greeted()
    one(server, b"EHLO c.test\r\n")
    server.send(OK)
    one(server, b"AUTH PLAIN\r\n")
    server.send(Reply(code=334, lines=("",)))
    event = one(server, b"A" * (MAX_AUTH_LINE_LENGTH + 4) + b"\r\n")
    assert isinstance(event, CommandRejected) and server.state is ServerState.READY


def test_tls_required() -> None:
    server = greeted(require_tls=True)
    assert one(server, b"EHLO c.test\r\n") == Ehlo(domain="c.test")
    server.send(OK)
    for line in (b"MAIL FROM:<a@x.test>\r\n", b"AUTH PLAIN AHUAcA==\r\n", b"VRFY root\r\n"):
        event = one(server, line)
        assert isinstance(event, CommandRejected) and event.reply.code == 530
    assert one(server, b"STARTTLS\r\n") == StartTLS()
    server.send(Reply(code=220, lines=("go",)))
    assert server.state is ServerState.TLS_HANDSHAKE
    assert server.next_event() is NEED_DATA
    server.start_tls_done()
    assert server.tls_active and server.state is ServerState.GREETED
    one(server, b"EHLO c.test\r\n")
    server.send(OK)
    assert one(server, b"MAIL FROM:<a@x.test>\r\n") == MailFrom(address="a@x.test")
    server.send(OK)
    event = one(server, b"RSET\r\n")
    server.send(OK)
    assert event == Rset() and server.state is ServerState.READY
    event = one(server, b"STARTTLS\r\n")
    assert isinstance(event, CommandRejected) and event.reply.code == 503


def test_starttls_with_pipelined_plaintext_is_refused() -> None:
    """CVE-2011-0411: commands sent with STARTTLS must not run inside TLS."""
    server = greeted()
    one(server, b"EHLO c.test\r\n")
    server.send(OK)
    one(server, b"STARTTLS\r\nMAIL FROM:<evil@x.test>\r\n")
    with pytest.raises(RemoteProtocolError, match="after STARTTLS"):
        server.send(Reply(code=220, lines=("go",)))
    assert server.state is ServerState.ERROR
    server = greeted()
    one(server, b"STARTTLS\r\n")
    server.send(Reply(code=220, lines=("go",)))
    server.receive_data(b"EHLO early\r\n")
    with pytest.raises(RemoteProtocolError, match="before the TLS handshake"):
        server.start_tls_done()
    server = greeted()
    with pytest.raises(LocalProtocolError):
        server.start_tls_done()


def test_refused_replies_keep_the_state() -> None:
    server = greeted()
    for line, state in ((b"EHLO c.test\r\n", ServerState.GREETED),
                        (b"RSET\r\n", ServerState.GREETED),
                        (b"STARTTLS\r\n", ServerState.GREETED)):  # fmt: skip
        one(server, line)
        server.send(Reply(code=502, lines=("no",)))
        assert server.state is state
    one(server, b"HELO c\r\n")
    server.send(OK)
    for line in (b"MAIL FROM:<a@x.test>\r\n", b"VRFY x\r\n"):
        one(server, line)
        server.send(Reply(code=550, lines=("no",)))
        assert server.state is ServerState.READY
    one(server, b"MAIL FROM:<a@x.test>\r\n")
    server.send(OK)
    for line in (b"RCPT TO:<b@x.test>\r\n", b"RSET\r\n"):
        one(server, line)
        server.send(Reply(code=451, lines=("later",)))
        assert server.state is ServerState.MAIL
    one(server, b"RCPT TO:<b@x.test>\r\n")
    server.send(OK)
    one(server, b"DATA\r\n")
    server.send(Reply(code=451, lines=("later",)))
    assert server.state is ServerState.RCPT
    one(server, b"QUIT\r\n")
    server.send(Reply(code=500, lines=("odd but final",)))
    assert server.state is ServerState.CLOSED
