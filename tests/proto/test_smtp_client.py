# mypy: disable-error-code="unreachable, comparison-overlap"
# (mypy keeps narrowing ``connection.state`` and similar attributes across the
# calls that change them; these tests check exactly such changes.)
"""The SMTP client core against scripted server bytes (table-driven transcripts)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from mailhop.proto import sasl
from mailhop.proto.errors import LocalProtocolError, RemoteProtocolError
from mailhop.proto.smtp import (
    NEED_DATA,
    Auth,
    ClientConnection,
    ClientEvent,
    ClientState,
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
    StartTLS,
    TLSUpgradeRequired,
)

EHLO_REPLY = (
    b"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
    b"250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250-AUTH PLAIN LOGIN SCRAM-SHA-256 XOAUTH2\r\n"
    b"250 CHUNKING\r\n"
)


def feed(client: ClientConnection, data: bytes) -> list[Any]:
    """Feed bytes and collect the events (typed Any: tests know which ones come)."""
    client.receive_data(data)
    events: list[ClientEvent] = []
    while (event := client.next_event()) is not NEED_DATA:
        events.append(event)
        if isinstance(event, ConnectionClosed):
            break
    return events


def ready_client(ehlo_reply: bytes = EHLO_REPLY, **options: bool) -> ClientConnection:
    client = ClientConnection(**options)
    feed(client, b"220 mx.test ESMTP\r\n")
    client.send(Ehlo(domain="client.test"))
    client.data_to_send()
    feed(client, ehlo_reply)
    return client


def test_full_session_with_starttls_auth_and_pipelining() -> None:
    client = ClientConnection()
    assert client.outstanding == (None,)  # the greeting
    [greeting] = feed(client, b"220 mx.test ESMTP\r\n")
    assert greeting == Reply(code=220, lines=("mx.test ESMTP",)) and greeting.command is None
    client.send(Ehlo(domain="client.test"))
    assert client.data_to_send() == b"EHLO client.test\r\n"
    feed(client, b"250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
    assert client.capabilities.starttls
    client.send(StartTLS())
    assert client.data_to_send() == b"STARTTLS\r\n"
    [upgrade] = feed(client, b"220 2.0.0 Ready\r\n")
    assert isinstance(upgrade, TLSUpgradeRequired) and upgrade.reply.enhanced_status == "2.0.0"
    client.start_tls_done()
    assert client.tls_active and client.state is ClientState.GREETED
    assert not client.capabilities.starttls  # forgotten (RFC 3207 §4.2)
    client.send(Ehlo(domain="client.test"))
    client.data_to_send()
    feed(client, EHLO_REPLY)
    client.send(Auth(mechanism=sasl.Plain("user", "secret")))
    assert client.data_to_send() == b"AUTH PLAIN AHVzZXIAc2VjcmV0\r\n"
    [authenticated] = feed(client, b"235 2.7.0 OK\r\n")
    assert client.authenticated and authenticated.code == 235
    mail = MailFrom(address="a@x.test", size=12, body="8BITMIME")
    rcpts = [RcptTo(address="b@y.test"), RcptTo(address="c@y.test", notify=("FAILURE",))]
    for command in (mail, *rcpts, Data()):
        client.send(command)
    assert client.data_to_send() == (
        b"MAIL FROM:<a@x.test> SIZE=12 BODY=8BITMIME\r\nRCPT TO:<b@y.test>\r\n"
        b"RCPT TO:<c@y.test> NOTIFY=FAILURE\r\nDATA\r\n"
    )
    replies = feed(client, b"250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n")
    assert [(r.code, r.command) for r in replies if isinstance(r, Reply)] == [
        (250, mail), (250, rcpts[0]), (550, rcpts[1]), (354, Data())
    ]  # fmt: skip
    client.send(DataChunk(data=b"Subject: hi\n\n.hello\n"))
    client.send(EndOfData())
    assert client.data_to_send() == b"Subject: hi\r\n\r\n..hello\r\n.\r\n"
    assert client.message_size == len(b"Subject: hi\n\n.hello\n")
    [queued] = feed(client, b"250 2.0.0 queued as X\r\n")
    assert queued.command == EndOfData() and client.state is ClientState.READY
    client.send(Quit())
    assert client.data_to_send() == b"QUIT\r\n"
    feed(client, b"221 bye\r\n")
    assert client.state is ClientState.CLOSED
    assert feed(client, b"") == [ConnectionClosed()]


@pytest.mark.parametrize(
    "after_220",
    [b"250-evil\r\n250 AUTH PLAIN\r\n", b"2", b"\r\n"],
)
def test_starttls_refuses_bytes_after_the_220(after_220: bytes) -> None:
    client = ready_client(EHLO_REPLY.replace(b"250 CHUNKING", b"250 STARTTLS"))
    client.send(StartTLS())
    with pytest.raises(RemoteProtocolError, match="after its STARTTLS"):
        feed(client, b"220 2.0.0 Ready\r\n" + after_220)
    assert client.state is ClientState.ERROR
    with pytest.raises(LocalProtocolError):
        client.send(Quit())


def test_bytes_during_the_handshake_are_refused() -> None:
    client = ready_client(b"250-mx.test\r\n250 STARTTLS\r\n")
    client.send(StartTLS())
    feed(client, b"220 go\r\n")
    client.receive_data(b"250 injected\r\n")
    with pytest.raises(RemoteProtocolError, match="during the TLS handshake"):
        client.start_tls_done()
    assert client.state is ClientState.ERROR
    client = ready_client(b"250-mx.test\r\n250 STARTTLS\r\n")
    client.send(StartTLS())
    feed(client, b"220 go\r\n")
    with pytest.raises(RemoteProtocolError, match="before the TLS handshake"):
        feed(client, b"250 injected\r\n")  # a driver that kept reading


def test_starttls_rules() -> None:
    client = ready_client(b"250 mx.test\r\n")
    with pytest.raises(LocalProtocolError, match="did not advertise STARTTLS"):
        client.send(StartTLS())
    client = ready_client(b"250-mx.test\r\n250 STARTTLS\r\n")
    with pytest.raises(LocalProtocolError, match="no STARTTLS 220"):
        client.start_tls_done()
    client = ready_client(b"250-mx.test\r\n250 STARTTLS\r\n")
    client.send(StartTLS())
    assert client.outstanding == (StartTLS(),)
    with pytest.raises(LocalProtocolError, match="no STARTTLS 220"):
        client.start_tls_done()  # the 220 has not arrived yet
    client = ready_client(b"250-mx.test\r\n250 STARTTLS\r\n")
    client.send(StartTLS())
    [refused] = feed(client, b"454 4.7.0 TLS not available\r\n")
    assert refused.code == 454 and client.state is ClientState.READY and not client.tls_active
    client = ready_client(b"250-mx.test\r\n250 STARTTLS\r\n", tls_active=True)
    with pytest.raises(LocalProtocolError, match="already active"):
        client.send(StartTLS())


def test_no_mail_before_ehlo_after_tls() -> None:
    client = ready_client(b"250-mx.test\r\n250 STARTTLS\r\n")
    client.send(StartTLS())
    feed(client, b"220 go\r\n")
    client.start_tls_done()
    with pytest.raises(LocalProtocolError, match="GREETED"):
        client.send(MailFrom(address="a@x.test"))


def test_421_at_any_time_closes() -> None:
    client = ready_client()
    client.send(MailFrom(address="a@x.test"))
    client.send(RcptTo(address="b@x.test"))
    [closing] = feed(client, b"421 4.3.2 shutting down\r\n")
    assert closing.code == 421 and closing.command == MailFrom(address="a@x.test")
    assert client.state is ClientState.CLOSED
    client = ready_client()
    [unsolicited] = feed(client, b"421 idle too long\r\n")
    assert unsolicited.command is None and client.state is ClientState.CLOSED
    client = ClientConnection()
    feed(client, b"421 busy\r\n")
    assert client.state is ClientState.CLOSED


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (Ehlo(domain="c.test"), b"354 what\r\n"),
        (Noop(), b"221 bye\r\n"),
        (Rset(), b"354 go\r\n"),
        (MailFrom(address="a@x.test"), b"235 ok\r\n"),
        (None, b"250 hello\r\n"),  # a greeting must be 220
    ],
)
def test_desynchronised_replies_fail(
    command: Ehlo | Noop | Rset | MailFrom | None, reply: bytes
) -> None:
    client = ready_client() if command is not None else ClientConnection()
    if command is not None:
        client.send(command)
    with pytest.raises(RemoteProtocolError, match="unexpected reply"):
        feed(client, reply)
    assert client.state is ClientState.ERROR


def test_unexpected_reply_after_quit_or_without_command() -> None:
    client = ready_client()
    with pytest.raises(RemoteProtocolError, match="to no command"):
        feed(client, b"250 surprise\r\n")
    client = ready_client()
    client.send(Quit())
    with pytest.raises(RemoteProtocolError, match="after the session ended"):
        feed(client, b"221 bye\r\n250 more\r\n")


def test_greeting_554_allows_only_quit() -> None:
    client = ClientConnection()
    [refused] = feed(client, b"554 5.7.1 go away\r\n")
    assert refused.is_permanent and client.state is ClientState.GREETING_REFUSED
    with pytest.raises(LocalProtocolError):
        client.send(Ehlo(domain="c.test"))
    client = ClientConnection()
    feed(client, b"554 no\r\n")
    client.send(Quit())
    assert client.data_to_send() == b"QUIT\r\n"


def test_helo_fallback_after_failed_ehlo() -> None:
    client = ClientConnection()
    feed(client, b"220 old\r\n")
    client.send(Ehlo(domain="c.test"))
    feed(client, b"502 what is EHLO\r\n")
    assert client.state is ClientState.GREETED
    client.send(Helo(domain="c.test"))
    assert client.data_to_send() == b"EHLO c.test\r\nHELO c.test\r\n"
    feed(client, b"250 old.test hello\r\n")
    assert client.capabilities.domain == "old.test" and not client.capabilities.pipelining
    with pytest.raises(LocalProtocolError, match="SIZE"):
        client.send(MailFrom(address="a@x.test", size=10))


@pytest.mark.parametrize(
    ("ehlo", "command", "missing"),
    [
        (b"250 mx\r\n", MailFrom(address="a@x.test", size=1), "SIZE"),
        (b"250 mx\r\n", MailFrom(address="a@x.test", body="8BITMIME"), "8BITMIME"),
        (b"250 mx\r\n", MailFrom(address="ä@x.test", smtputf8=True), "SMTPUTF8"),
        (b"250 mx\r\n", MailFrom(address="a@x.test", ret="HDRS"), "DSN"),
        (b"250 mx\r\n", MailFrom(address="a@x.test", envid="x"), "DSN"),
        (b"250 mx\r\n", RcptTo(address="a@x.test", notify=("NEVER",)), "DSN"),
        (b"250 mx\r\n", RcptTo(address="a@x.test", orcpt="a@x.test"), "DSN"),
    ],
)
def test_extensions_need_the_servers_word(
    ehlo: bytes, command: MailFrom | RcptTo, missing: str
) -> None:
    client = ready_client(ehlo)
    if isinstance(command, RcptTo):
        client.send(MailFrom(address="s@x.test"))
        feed(client, b"250 ok\r\n")
    with pytest.raises(LocalProtocolError, match=missing):
        client.send(command)


INJECTIONS = [
    MailFrom(address="a@x.test>\r\nRSET"),
    MailFrom(address="v@x.test\r\nRCPT TO:<evil@x.test>"),
    MailFrom(address="a\0@x.test"),
    MailFrom(address="a@x.test", envid="x\r\nRSET"),  # xtext makes this harmless
    MailFrom(address="a b@x.test"),
    MailFrom(address="<a@x.test>"),
    MailFrom(address="a@x.test", parameters=(("X", "a\nb"),)),
    MailFrom(address="a@x.test", parameters=(("X Y", None),)),
    MailFrom(address="a@x.test", parameters=(("X", "a=b"),)),
    MailFrom(address="a@x.test", size=-1),
    MailFrom(address="a" * 250 + "@x.test"),
    MailFrom(address="ä@x.test"),  # non-ASCII without SMTPUTF8
    MailFrom(address="postmaster"),
    RcptTo(address="a@x.test", notify=("NEVER", "DELAY")),
    RcptTo(address="a@x.test", orcpt="jörg@x.test"),
    RcptTo(address=""),
    Ehlo(domain="c.test\r\nMAIL FROM:<a@b>"),
    Ehlo(domain=""),
    Helo(domain="a b"),
]


@pytest.mark.parametrize("command", INJECTIONS)
def test_unsafe_arguments_are_refused(command: MailFrom | RcptTo | Ehlo | Helo) -> None:
    client = ready_client()
    if isinstance(command, RcptTo):
        client.send(MailFrom(address="s@x.test"))
        client.data_to_send()
    try:
        client.send(command)
    except LocalProtocolError:
        assert client.state is ClientState.ERROR
        assert client.data_to_send() == b""
    else:  # only the ENVID case: encoded, so the CR LF cannot break the line
        assert client.data_to_send() == b"MAIL FROM:<a@x.test> ENVID=x+0D+0ARSET\r\n"


def test_valid_unusual_addresses() -> None:
    client = ready_client()
    for address in ('"john doe"@x.test', "a@[127.0.0.1]", "a+tag@sub.x.test", ""):
        client.send(MailFrom(address=address))
        feed(client, b"250 ok\r\n")
        client.send(Rset())
        feed(client, b"250 ok\r\n")
    client.send(MailFrom(address="jörg@例え.jp", smtputf8=True, ret="FULL", envid="id 1"))
    client.send(RcptTo(address="Postmaster"))
    client.send(RcptTo(address="ü@x.test", orcpt="u+x=@x.test", parameters=(("X-Y", None),)))
    wire = client.data_to_send()
    assert wire.endswith(
        "MAIL FROM:<jörg@例え.jp> SMTPUTF8 RET=FULL ENVID=id+201\r\n"
        "RCPT TO:<Postmaster>\r\nRCPT TO:<ü@x.test> ORCPT=rfc822;u+2Bx+3D@x.test X-Y\r\n".encode()
    )


def test_pipelining_needs_the_extension() -> None:
    client = ready_client(b"250 mx.test\r\n")
    client.send(MailFrom(address="a@x.test"))
    with pytest.raises(LocalProtocolError, match="no PIPELINING"):
        client.send(RcptTo(address="b@x.test"))
    client = ready_client()
    client.send(MailFrom(address="a@x.test"))
    client.send(RcptTo(address="b@x.test"))
    client.send(Data())
    with pytest.raises(LocalProtocolError, match="before earlier replies"):
        client.send(Rset())  # DATA ends a group (RFC 2920 §3.1)


def test_the_next_transaction_may_follow_the_end_of_data_with_pipelining() -> None:
    # RFC 2920 §3.1: message content may be the first "command" of a group.
    client = ready_client()
    for command in (MailFrom(address="a@x.test"), RcptTo(address="b@x.test"), Data()):
        client.send(command)
    client.data_to_send()
    feed(client, b"250 ok\r\n250 ok\r\n354 go\r\n")
    client.send(DataChunk(data=b"one\n"))
    client.send(EndOfData())
    second = MailFrom(address="c@x.test")
    for command in (second, RcptTo(address="d@x.test"), Data()):
        client.send(command)
    assert client.data_to_send() == (
        b"one\r\n.\r\nMAIL FROM:<c@x.test>\r\nRCPT TO:<d@x.test>\r\nDATA\r\n"
    )
    # Replies in order: the first message's is refused, the second's transaction
    # goes on regardless (the end of data closed the first one either way).
    replies = feed(client, b"554 5.6.0 refused\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    assert [(r.code, type(r.command)) for r in replies] == [
        (554, EndOfData), (250, MailFrom), (250, RcptTo), (354, Data),
    ]  # fmt: skip
    assert replies[1].command is second and client.state is ClientState.SEND_BODY
    client.send(DataChunk(data=b"two\n"))
    client.send(EndOfData())
    assert client.data_to_send() == b"two\r\n.\r\n"


def test_send_all_queues_what_sends_one_by_one_would() -> None:
    def group() -> list[MailFrom | RcptTo | Data]:
        return [MailFrom(address="a@x.test", size=10), RcptTo(address="b@x.test"), Data()]

    one_by_one, grouped = ready_client(), ready_client()
    for command in group():
        one_by_one.send(command)
    grouped.send_all(group())
    grouped_lines = grouped.data_to_send()
    assert grouped_lines == one_by_one.data_to_send()
    assert grouped.outstanding == one_by_one.outstanding
    assert grouped.state is one_by_one.state is ClientState.DATA
    # A group refused part way is taken back whole: nothing of it queued, the
    # connection as it was (the same group can go once it is right).
    client = ready_client()
    with pytest.raises(LocalProtocolError, match="before earlier replies"):
        client.send_all([MailFrom(address="a@x.test"), RcptTo(address="b@x.test"), Data(), Rset()])
    with pytest.raises(LocalProtocolError, match="not a valid RFC 5321 address"):
        client.send_all([MailFrom(address="a@x.test"), RcptTo(address="b@x.test-")])
    assert client.state is ClientState.READY and client.outstanding == ()
    assert client.data_to_send() == b""
    client.send_all(group())
    assert client.data_to_send() == grouped_lines
    # Content cannot be taken back: a refusal after it leaves the connection in ERROR.
    feed(client, b"250 ok\r\n250 ok\r\n354 go\r\n")
    with pytest.raises(LocalProtocolError, match="NUL"):
        client.send_all([DataChunk(data=b"one\r\n"), DataChunk(data=b"\0")])
    assert client.state is ClientState.ERROR
    assert client.data_to_send() == b"one\r\n"


def test_next_events_reads_a_pipelined_group_in_one_call() -> None:
    client = ready_client()
    assert client.next_events() == []  # nothing buffered: more bytes are needed
    client.send_all([MailFrom(address="a@x.test"), RcptTo(address="b@x.test"), Data()])
    client.receive_data(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n250 early")
    replies: list[Any] = client.next_events()
    assert [(r.code, type(r.command)) for r in replies] == [
        (250, MailFrom), (250, RcptTo), (354, Data),
    ]  # fmt: skip
    assert client.state is ClientState.SEND_BODY
    # A reply that ends the session ends the list; nothing after it is read.
    client = ready_client()
    client.send_all([MailFrom(address="a@x.test"), RcptTo(address="b@x.test")])
    client.receive_data(b"250 ok\r\n421 4.3.2 bye\r\n")
    closing: list[Any] = client.next_events()
    assert [r.code for r in closing] == [250, 421]
    assert client.state is ClientState.CLOSED
    client.receive_data(b"")
    assert [type(event) for event in client.next_events()] == [ConnectionClosed]


def test_next_events_returns_the_replies_before_a_fault_then_raises_it() -> None:
    # The reply to an end of data decides whether a message is delivered: one
    # that arrived before a broken line must reach the caller.
    client = ready_client()
    client.send_all([MailFrom(address="a@x.test"), RcptTo(address="b@x.test")])
    client.receive_data(b"250 ok\r\n354 not a reply to RCPT\r\n250 ok\r\n")
    [mail_reply] = client.next_events()
    assert isinstance(mail_reply, Reply) and mail_reply.code == 250
    assert client.state is ClientState.RCPT
    with pytest.raises(RemoteProtocolError, match="unexpected reply 354 to RcptTo"):
        client.next_events()
    assert client.state is ClientState.ERROR
    with pytest.raises(LocalProtocolError, match="ERROR state"):
        client.next_events()


def test_nothing_more_is_sent_after_a_fault_that_next_events_held_back() -> None:
    # The fault is known once next_events has read it: a message's content sent
    # after it could be accepted by a server whose reply will never be read, and
    # that message would be sent twice.
    client = ready_client()
    client.send_all([MailFrom(address="a@x.test"), RcptTo(address="b@x.test"), Data()])
    client.receive_data(b"250 ok\r\n250 ok\r\n354 go ahead\r\n250 reply to no command\r\n")
    replies: list[Any] = client.next_events()
    assert [reply.code for reply in replies] == [250, 250, 354]
    client.data_to_send()
    with pytest.raises(RemoteProtocolError, match="reply 250 to no command"):
        client.send_all([DataChunk(data=b"Subject: x\r\n\r\nbody\r\n"), EndOfData()])
    assert client.state is ClientState.ERROR
    assert client.data_to_send() == b""
    with pytest.raises(LocalProtocolError, match="ERROR state"):
        client.next_events()


def test_groups_end_where_rfc_2920_says_as_replies_arrive() -> None:
    client = ready_client()
    client.send_all([MailFrom(address="a@x.test"), RcptTo(address="b@x.test"), Data()])
    feed(client, b"250 ok\r\n250 ok\r\n")
    with pytest.raises(LocalProtocolError, match="before earlier replies"):
        client.send(Rset())  # DATA is still outstanding, and ends its group
    client = ready_client()
    client.send_all([MailFrom(address="a@x.test"), RcptTo(address="b@x.test"), Data()])
    feed(client, b"250 ok\r\n250 ok\r\n554 no\r\n")
    client.send_all([Rset(), MailFrom(address="a@x.test")])  # nothing ends a group now
    assert client.data_to_send().endswith(b"RSET\r\nMAIL FROM:<a@x.test>\r\n")


def test_without_pipelining_the_end_of_data_is_answered_first() -> None:
    client = ready_client(b"250 mx.test\r\n")
    client.send(MailFrom(address="a@x.test"))
    feed(client, b"250 ok\r\n")
    client.send(RcptTo(address="b@x.test"))
    feed(client, b"250 ok\r\n")
    client.send(Data())
    feed(client, b"354 go\r\n")
    client.send(DataChunk(data=b"one\n"))
    client.send(EndOfData())
    with pytest.raises(LocalProtocolError, match="no PIPELINING"):
        client.send(MailFrom(address="c@x.test"))


def test_failed_mail_in_a_pipelined_batch() -> None:
    client = ready_client()
    for command in (MailFrom(address="a@x.test"), RcptTo(address="b@x.test"), Data()):
        client.send(command)
    replies = feed(client, b"550 5.7.1 no\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n")
    assert [r.code for r in replies if isinstance(r, Reply)] == [550, 503, 503]
    assert client.state is ClientState.READY
    # MAIL, RCPT, RSET, MAIL: the first MAIL failing must not end the second one.
    first, second = MailFrom(address="a@x.test"), MailFrom(address="b@x.test")
    for pipelined in (first, RcptTo(address="c@x.test"), Rset(), second):
        client.send(pipelined)
    feed(client, b"451 later\r\n503 no\r\n250 ok\r\n")
    assert client.state is ClientState.MAIL
    client.send(Quit())
    feed(client, b"550 no\r\n")  # the second MAIL fails while QUIT is outstanding
    assert client.state is ClientState.QUITTING


def test_failed_data_and_mail_during_data() -> None:
    client = ready_client()
    client.send(MailFrom(address="a@x.test"))
    client.send(RcptTo(address="b@x.test"))
    client.send(Data())
    feed(client, b"550 no\r\n250 ok\r\n354 go\r\n")
    # RFC 2920 §3.1: DATA accepted although MAIL failed: the caller sends an empty end.
    assert client.state is ClientState.SEND_BODY
    client.send(EndOfData())
    assert client.data_to_send().endswith(b".\r\n")


def test_auth_policies() -> None:
    client = ready_client()
    with pytest.raises(LocalProtocolError, match="in clear without TLS"):
        client.send(Auth(mechanism=sasl.Plain("u", "p")))
    client = ready_client(allow_plaintext_auth=True)
    client.send(Auth(mechanism=sasl.Plain("u", "p")))
    feed(client, b"235 ok\r\n")
    with pytest.raises(LocalProtocolError, match="already authenticated"):
        client.send(Auth(mechanism=sasl.Plain("u", "p")))
    client = ready_client(tls_active=True)
    with pytest.raises(LocalProtocolError, match="did not advertise AUTH CRAM-MD5"):
        client.send(Auth(mechanism=sasl.CramMD5("u", "p")))


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_auth_login_exchange_and_redaction() -> None:
    client = ready_client(tls_active=True)
    client.pop_transcript()
    client.send(Auth(mechanism=sasl.Login("user@x.test", "hunter2")))
    assert client.data_to_send() == b"AUTH LOGIN\r\n"
    feed(client, b"334 " + b64(b"Username:") + b"\r\n")
    assert client.data_to_send() == b64(b"user@x.test") + b"\r\n"
    feed(client, b"334 " + b64(b"Password:") + b"\r\n")
    assert client.data_to_send() == b64(b"hunter2") + b"\r\n"
    [reply] = feed(client, b"235 2.7.0 ok\r\n")
    assert reply.code == 235 and client.authenticated
    assert client.pop_transcript() == ["AUTH LOGIN", "<redacted>", "<redacted>"]


@pytest.mark.parametrize(
    "mechanism",
    [
        sasl.Plain("user@x.test", "hunter2"),
        sasl.XOAuth2("user@x.test", "ya29.token-hunter2"),
        sasl.ScramSHA256("user@x.test", "hunter2"),
    ],
)
def test_no_secret_in_the_transcript(mechanism: sasl.Mechanism) -> None:
    client = ready_client(tls_active=True)
    client.send(Auth(mechanism=mechanism))
    wire = client.data_to_send()
    feed(client, b"535 5.7.8 no\r\n")
    transcript = "\n".join(client.pop_transcript())
    assert f"AUTH {mechanism.name} <redacted>" in transcript
    for secret in (b"hunter2", b"user@x.test", wire.split(b" ")[2].strip()):
        assert secret.decode() not in transcript
    assert not client.authenticated and client.state is ClientState.READY


def test_scram_exchange_through_the_client() -> None:
    client = ready_client(tls_active=True)
    mechanism = sasl.ScramSHA256("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    client.send(Auth(mechanism=mechanism))
    assert (
        client.data_to_send()
        == b"AUTH SCRAM-SHA-256 " + b64(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO") + b"\r\n"
    )
    first = (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    feed(client, b"334 " + b64(first) + b"\r\n")
    assert base64.b64decode(client.data_to_send()).endswith(
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    feed(client, b"334 " + b64(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=") + b"\r\n")
    assert client.data_to_send() == b"\r\n"  # the empty response
    feed(client, b"235 ok\r\n")
    assert client.authenticated


@pytest.mark.parametrize(
    "server_final",
    [
        b"334 " + b64(b"v=" + b64(b"\0" * 32)) + b"\r\n",  # a false server signature
        b"235 ok\r\n",  # success claimed without proving the password
    ],
)
def test_scram_server_must_prove_itself(server_final: bytes) -> None:
    client = ready_client(tls_active=True)
    client.send(Auth(mechanism=sasl.ScramSHA256("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")))
    first = (
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    feed(client, b"334 " + b64(first) + b"\r\n")
    with pytest.raises(RemoteProtocolError):
        feed(client, server_final)
    assert not client.authenticated and client.state is ClientState.ERROR


def test_auth_oddities() -> None:
    # A mechanism with nothing more to say is cancelled with "*" (RFC 4954 §4).
    client = ready_client(tls_active=True)
    client.send(Auth(mechanism=sasl.Plain("u", "p")))
    client.data_to_send()
    feed(client, b"334 \r\n")
    assert client.data_to_send() == b"*\r\n"
    assert client.pop_transcript()[-1] == "*"
    feed(client, b"501 5.7.0 cancelled\r\n")
    assert client.state is ClientState.READY and not client.authenticated
    # A LOGIN server that says 235 before asking for the password is wrong.
    client = ready_client(tls_active=True)
    client.send(Auth(mechanism=sasl.Login("u", "p")))
    feed(client, b"334 VXNlcm5hbWU6\r\n")
    with pytest.raises(RemoteProtocolError, match="before the exchange ended"):
        feed(client, b"235 ok\r\n")
    # XOAUTH2's error challenge gets the empty answer; then the server's 5xx.
    client = ready_client(tls_active=True)
    client.send(Auth(mechanism=sasl.XOAuth2("u", "t")))
    client.data_to_send()
    feed(client, b"334 eyJzdGF0dXMiOiI0MDAifQ==\r\n")
    assert client.data_to_send() == b"\r\n"
    feed(client, b"535 5.7.8 no\r\n")
    assert not client.authenticated
    # Success while the mechanism still expects to answer is the server out of step.
    client = ready_client(tls_active=True)
    client.send(Auth(mechanism=TwoResponses()))
    with pytest.raises(RemoteProtocolError, match="declared success"):
        feed(client, b"235 ok\r\n")
    for bad in (b"334 !!notbase64\r\n", b"334-a\r\n334 b\r\n", "334 é\r\n".encode()):
        client = ready_client(tls_active=True)
        client.send(Auth(mechanism=sasl.Login("u", "p")))
        with pytest.raises(RemoteProtocolError, match="334"):
            feed(client, bad)


def test_long_initial_response_waits_for_an_empty_challenge() -> None:
    client = ready_client(tls_active=True)
    token = "t" * 600
    client.send(Auth(mechanism=sasl.XOAuth2("u", token)))
    assert client.data_to_send() == b"AUTH XOAUTH2\r\n"
    assert client.pop_transcript()[-1] == "AUTH XOAUTH2"
    feed(client, b"334 \r\n")
    assert (
        base64.b64decode(client.data_to_send()) == f"user=u\x01auth=Bearer {token}\x01\x01".encode()
    )
    assert client.pop_transcript() == ["<redacted>"]
    feed(client, b"235 ok\r\n")
    assert client.authenticated


def test_external_sends_an_empty_initial_response() -> None:
    client = ready_client(b"250-mx\r\n250 AUTH EXTERNAL\r\n")
    client.send(Auth(mechanism=sasl.External()))
    assert client.data_to_send() == b"AUTH EXTERNAL =\r\n"


def test_connection_close_and_limits() -> None:
    client = ready_client()
    assert feed(client, b"") == [ConnectionClosed()]
    assert client.state is ClientState.CLOSED
    assert client.next_event() == ConnectionClosed()
    with pytest.raises(LocalProtocolError, match="after the connection was closed"):
        client.receive_data(b"x")
    client = ready_client()
    client.receive_data(b"250-partial\r\n")
    with pytest.raises(RemoteProtocolError, match="middle of a reply"):
        feed(client, b"")
    with pytest.raises(LocalProtocolError, match="ERROR"):
        client.next_event()
    client = ready_client()
    client.send(Noop())
    with pytest.raises(RemoteProtocolError, match="too long"):
        feed(client, b"250 " + b"x" * 10_000)


def test_commands_only() -> None:
    client = ready_client()
    with pytest.raises(LocalProtocolError, match="not an SMTP command"):
        client.send(Reply(code=250))  # type: ignore[arg-type]


class TwoResponses(sasl.Mechanism):
    """A mechanism that still has a response to give after its first one."""

    name = "PLAIN"
    sends_secret_in_clear = False

    def flow(self) -> sasl.Flow:
        yield b"first"
        yield b"second"


@pytest.mark.parametrize(
    ("mail", "content", "error"),
    [
        (MailFrom(address="a@x.test"), "café".encode(), "8BITMIME"),
        (MailFrom(address="a@x.test", body="7BIT"), b"\xff", "8BITMIME"),
        (MailFrom(address="a@x.test", body="8BITMIME"), b"a\0b", "NUL"),
        (MailFrom(address="a@x.test", body="8BITMIME"), "café".encode(), None),
        (MailFrom(address="a@x.test", smtputf8=True), "café".encode(), None),
    ],
)
def test_eight_bit_content_only_where_declared(
    mail: MailFrom, content: bytes, error: str | None
) -> None:
    client = ready_client()
    for command in (mail, RcptTo(address="b@x.test"), Data()):
        client.send(command)
    feed(client, b"250 ok\r\n250 ok\r\n354 go\r\n")
    client.data_to_send()
    if error is None:
        client.send(DataChunk(data=content))
        assert client.data_to_send() == content
        return
    with pytest.raises(LocalProtocolError, match=error):
        client.send(DataChunk(data=content))
    assert client.data_to_send() == b"" and client.state is ClientState.ERROR


@pytest.mark.parametrize(
    "command",
    [
        MailFrom(address="a@x.test", body="BINARYMIME"),  # type: ignore[arg-type]
        MailFrom(address="a@x.test", ret="ALL"),  # type: ignore[arg-type]
        RcptTo(address="b@x.test", notify=("ALWAYS",)),  # type: ignore[arg-type]
    ],
)
def test_parameter_values_are_checked_at_run_time(command: MailFrom | RcptTo) -> None:
    client = ready_client()
    if isinstance(command, RcptTo):
        client.send(MailFrom(address="a@x.test"))
    with pytest.raises(LocalProtocolError, match="is not one of"):
        client.send(command)
