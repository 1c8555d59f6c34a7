"""The POP3 core against scripted hostile and tricky server bytes (security.md C7, A3, E1, B8)."""

from __future__ import annotations

import pytest

from mailhop.proto import pop3
from mailhop.proto.errors import LocalProtocolError, RemoteProtocolError


def logged_in() -> pop3.Pop3Client:
    client = pop3.Pop3Client(tls_active=True)
    client.receive_data(b"+OK ready <1.2@x>\r\n")
    assert isinstance(client.next_event(), pop3.Greeting)
    client.send(pop3.User(name="u"))
    client.receive_data(b"+OK\r\n")
    client.next_event()
    client.send(pop3.Pass(password="p"))
    client.receive_data(b"+OK\r\n")
    client.next_event()
    assert client.state is pop3.Pop3State.TRANSACTION
    return client


def retrieve(client: pop3.Pop3Client, reply: bytes, pieces: int = 1) -> bytes:
    client.send(pop3.Retr(number=1))
    step = max(1, len(reply) // pieces)
    out = bytearray()
    for start in range(0, len(reply), step):
        client.receive_data(reply[start : start + step])
        while True:
            event = client.next_event()
            if event is pop3.NEED_DATA:
                break
            if isinstance(event, pop3.MessageChunk):
                out += event.data
            elif isinstance(event, pop3.EndOfMessage):
                return bytes(out)
    raise AssertionError("no end of message")


@pytest.mark.parametrize("pieces", [1, 3, 17, 1000])
def test_only_crlf_dot_crlf_ends_retr_and_dots_are_unstuffed(pieces: int) -> None:
    reply = b"+OK\r\nSubject: x\r\n\r\nx\n.\n+OK injected\r\n..\r\n.a\r\n..b\r\n.\r\n"
    body = retrieve(logged_in(), reply, pieces)
    assert body == b"Subject: x\n\nx\n.\n+OK injected\n.\na\n.b\n"


def test_stray_data_after_the_terminator_is_refused() -> None:
    client = logged_in()
    retrieve(client, b"+OK\r\na\r\n.\r\n+OK surprise\r\n")
    with pytest.raises(RemoteProtocolError):
        client.next_event()


def test_endless_line_in_a_message_is_streamed_in_bounded_pieces() -> None:
    client = logged_in()
    client.send(pop3.Retr(number=1))
    client.receive_data(b"+OK\r\n")
    for _ in range(50):
        client.receive_data(b"y" * 100_000)
        event = client.next_event()
        assert isinstance(event, pop3.MessageChunk)
    assert len(client._partial_line) <= pop3.MAX_MESSAGE_LINE_LENGTH


def test_endless_response_line_is_refused() -> None:
    client = pop3.Pop3Client()
    client.receive_data(b"+OK " + b"a" * (pop3.MAX_RESPONSE_LINE_LENGTH + 10))
    with pytest.raises(RemoteProtocolError, match="too long"):
        client.next_event()


def test_bytes_after_stls_ok_are_refused() -> None:
    client = pop3.Pop3Client()
    client.receive_data(b"+OK hi\r\n")
    client.next_event()
    client.send(pop3.Stls())
    client.receive_data(b"+OK begin TLS\r\n+OK injected\r\n")
    with pytest.raises(RemoteProtocolError, match="STLS"):
        client.next_event()


@pytest.mark.parametrize("name", ["u\r\nDELE 1", "u\nx", "u\0"])
def test_cr_lf_nul_never_inside_an_argument(name: str) -> None:
    client = pop3.Pop3Client(tls_active=True)
    client.receive_data(b"+OK hi\r\n")
    client.next_event()
    with pytest.raises(LocalProtocolError):
        client.send(pop3.User(name=name))
    assert client.data_to_send() == b""


def test_no_password_without_tls() -> None:
    client = pop3.Pop3Client()
    client.receive_data(b"+OK hi\r\n")
    client.next_event()
    with pytest.raises(LocalProtocolError, match="clear"):
        client.send(pop3.User(name="u"))


def test_apop_digest_is_rfc_1939_example() -> None:
    client = pop3.Pop3Client(tls_active=True)
    client.receive_data(b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n")
    client.next_event()
    client.send(pop3.Apop(name="mrose", password="tanstaaf"))
    assert client.data_to_send() == b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"
