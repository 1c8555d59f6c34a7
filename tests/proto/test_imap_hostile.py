"""The IMAP core against scripted hostile server bytes (security.md A3, A5, A6, E1, B8)."""

from __future__ import annotations

import pytest

from mailhop.proto import imap
from mailhop.proto.errors import LocalProtocolError, RemoteProtocolError


def greeted(**options: bool) -> imap.ImapClient:
    client = imap.ImapClient(**options)
    client.receive_data(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi\r\n")
    assert isinstance(client.next_event(), imap.Greeting)
    return client


def selected() -> imap.ImapClient:
    client = imap.ImapClient(tls_active=True)
    client.receive_data(b"* PREAUTH [CAPABILITY IMAP4rev1 IDLE] welcome\r\n")
    client.next_event()
    client.send(imap.Select(mailbox="INBOX"))
    client.receive_data(
        b"* 3 EXISTS\r\n* OK [UIDVALIDITY 42] x\r\n* OK [UIDNEXT 9] x\r\n"
        b"A0001 OK [READ-WRITE] done\r\n"
    )
    while not isinstance(client.next_event(), imap.Completed):
        pass
    assert client.mailbox == imap.MailboxStatus(name="INBOX", uidvalidity=42, uidnext=9, exists=3)
    assert client.data_to_send() == b"A0001 SELECT INBOX\r\n"
    return client


def test_preauth_on_a_connection_to_be_upgraded_is_an_attack() -> None:
    client = imap.ImapClient(starttls_required=True)
    client.receive_data(b"* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n")
    with pytest.raises(RemoteProtocolError, match="PREAUTH"):
        client.next_event()
    assert client.state is imap.ImapState.ERROR


def test_bytes_injected_after_starttls_ok_are_refused() -> None:
    client = greeted(starttls_required=True)
    client.send(imap.StartTLS())
    client.receive_data(b"A0001 OK begin TLS\r\n* CAPABILITY IMAP4REV1 AUTH=PLAIN\r\nB OK done\r\n")
    with pytest.raises(RemoteProtocolError, match="STARTTLS"):
        client.next_event()


def test_capabilities_before_tls_are_forgotten() -> None:
    client = greeted(starttls_required=True)
    client.send(imap.StartTLS())
    client.receive_data(b"A0001 OK begin TLS\r\n")
    assert isinstance(client.next_event(), imap.TLSUpgradeRequired)
    client.start_tls_done()
    assert client.capabilities == frozenset()


def test_a_4_gb_literal_is_refused_before_reading_it() -> None:
    client = selected()
    client.send(imap.UidFetch(uids="5"))
    client.receive_data(b"* 1 FETCH (UID 5 BODY[] {4294967295}\r\n0123456789")
    with pytest.raises(RemoteProtocolError, match="4294967295"):
        client.next_event()


def test_a_big_literal_outside_a_body_is_refused() -> None:
    client = selected()
    client.send(imap.Noop())
    client.receive_data(b"* 1 FETCH (ENVELOPE {99999999}\r\n")
    with pytest.raises(RemoteProtocolError, match="outside a message body"):
        client.next_event()


def test_body_is_streamed_and_attributes_after_it_are_read() -> None:
    client = selected()
    client.send(imap.UidFetch(uids="5"))
    body = b"Subject: a\r\n\r\n)\r\nA0002 OK fake\r\n"
    client.receive_data(b"* 1 FETCH (RFC822.SIZE %d BODY[] {%d}\r\n" % (len(body), len(body)))
    start = client.next_event()
    assert start == imap.BodyStart(sequence=1, size=len(body))
    got = bytearray()
    for byte in range(len(body)):
        client.receive_data(body[byte : byte + 1])
        event = client.next_event()
        if isinstance(event, imap.BodyChunk):
            got += event.data
    client.receive_data(b" UID 5 FLAGS (\\Seen))\r\nA0002 OK done\r\n")
    fetch = client.next_event()
    assert fetch == imap.FetchResponse(
        sequence=1, uid=5, size=len(body), flags=("\\Seen",), has_body=True
    )
    assert bytes(got) == body
    assert isinstance(client.next_event(), imap.Completed)


def test_endless_line_is_refused() -> None:
    client = imap.ImapClient(tls_active=True)
    client.receive_data(b"* OK " + b"a" * imap.MAX_RESPONSE_LINE_LENGTH)
    with pytest.raises(RemoteProtocolError, match="too long"):
        client.next_event()


@pytest.mark.parametrize("folder", ["INBOX\r\nA1 DELETE INBOX", "a\nb", "x\0"])
def test_cr_lf_nul_never_inside_an_argument(folder: str) -> None:
    client = selected()
    with pytest.raises(LocalProtocolError):
        client.send(imap.Select(mailbox=folder))
    assert client.data_to_send() == b""


def test_login_refused_without_tls_and_when_disabled() -> None:
    client = greeted()
    with pytest.raises(LocalProtocolError, match="clear"):
        client.send(imap.Login(user="u", password="p"))
    client = greeted(allow_plaintext_auth=True)
    with pytest.raises(LocalProtocolError, match="disabled LOGIN"):
        client.send(imap.Login(user="u", password="p"))


def test_mailbox_names_are_modified_utf7() -> None:
    assert imap.encode_mailbox_name("Entwürfe & Co") == b'"Entw&APw-rfe &- Co"'
    assert imap.encode_mailbox_name('a"b\\c') == b'"a\\"b\\\\c"'


def test_unknown_tag_is_refused() -> None:
    client = selected()
    client.send(imap.Noop())
    client.receive_data(b"A9999 OK forged\r\n")
    with pytest.raises(RemoteProtocolError, match="unknown tag"):
        client.next_event()
