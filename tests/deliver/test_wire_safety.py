"""Invariant 5 through ``submit``: whatever stdin holds, the DATA section is SMTP-safe.

Hypothesis feeds message bodies built from the pieces smuggling and framing bugs
are made of (bare CR, bare LF, ``.``/``..`` lines, ``\\r.\\r``, NUL, 8-bit, lines
over 998 octets) to two servers: aiosmtpd behind a recording proxy (8BITMIME
offered) and the scripted server offering nothing (7-bit only). On the wire,
between ``DATA`` and the final dot: CR and LF only as CRLF, no early lone ``.``
line, no line over 1000 octets with its CRLF, 8-bit only with ``BODY=8BITMIME``.
What the server reconstructs equals the input with line ends normalised, or,
when mailhop had to re-encode, decodes back to it.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailhop.errors import ExitCode
from tests.deliver.deliver_support import exit_code, make_account, run_submit
from tests.deliver.scripted_server import (
    GREETING,
    ReferenceServer,
    ScriptedServer,
    accept_message,
    ehlo,
)

HEADERS = (
    b"From: a@example.test\r\n"
    b"To: b@example.test\r\n"
    b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    b"Message-ID: <fixed@example.test>\r\n"
    b"Subject: wire\r\n"
    b"\r\n"
)

PIECES = [b"\r", b"\n", b"\r\n", b".", b"..", b"\r.\r", b"\n.\n", b"\r\n.\r\n", b"\x00",
          b"a", b"text ", b"\xc3\xa9", b"\xff", b"x" * 1200, b"From ", b"\t"]  # fmt: skip

bodies = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=12)), max_size=24).map(
    b"".join
)

HYPOTHESIS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

LONE_CR_OR_LF = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def normalise(data: bytes) -> bytes:
    """Line ends as the SMTP encoder writes them: CRLF, lone CR, lone LF -> CRLF."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def data_section(wire: bytes) -> tuple[bytes, bytes]:
    """(the MAIL command, the bytes between DATA's line and the final dot)."""
    mail_start = wire.index(b"MAIL FROM:")
    mail = wire[mail_start : wire.index(b"\r\n", mail_start)]
    start = wire.index(b"\r\nDATA\r\n") + len(b"\r\nDATA\r\n")
    rest = wire[start:]
    end = rest.find(b"\r\n.\r\n") + 2 if not rest.startswith(b".\r\n") else 0
    # Only QUIT may follow the first CRLF.CRLF: otherwise a lone "." came early.
    assert rest[end:] == b".\r\nQUIT\r\n", rest[end : end + 200]
    return mail, rest[:end]


def check_wire(mail: bytes, content: bytes) -> None:
    assert not LONE_CR_OR_LF.search(content)
    lines = content.split(b"\r\n")
    assert lines[-1] == b""
    assert all(len(line) + 2 <= 1000 for line in lines)
    assert b"." not in lines[:-1]  # a lone dot would end DATA early
    if b"BODY=8BITMIME" not in mail:
        assert all(byte < 0x80 for byte in content)


def decoded_body(content: bytes) -> bytes:
    parsed = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    payload = parsed.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def expected_text(body: bytes) -> bytes:
    """The body as text lines: line ends normalised, a final line end added."""
    text = normalise(body)
    return text if text.endswith(b"\r\n") or not text else text + b"\r\n"


def same_lines(one: bytes, other: bytes) -> bool:
    """Equal up to the form of line ends and a final line end (re-encoding's freedom)."""

    def lines(data: bytes) -> list[bytes]:
        return normalise(data).rstrip(b"\r\n").split(b"\r\n")

    return lines(one) == lines(other)


@pytest.fixture(scope="module")
def reference() -> Iterator[ReferenceServer]:
    with ReferenceServer() as server:
        yield server


@pytest.fixture(scope="module")
def seven_bit_server() -> Iterator[ScriptedServer]:
    # No 8BITMIME, no SMTPUTF8: every 8-bit octet must be re-encoded.
    with ScriptedServer([*GREETING, *ehlo(), *accept_message()]) as server:
        yield server


@HYPOTHESIS
@given(body=bodies)
def test_any_body_reaches_aiosmtpd_safely(reference: ReferenceServer, body: bytes) -> None:
    index = len(reference.envelopes)
    outcome = run_submit(make_account(reference.port, tls=False), message=HEADERS + body)
    assert exit_code(outcome) == ExitCode.OK, outcome
    mail, content = data_section(reference.wire(index))
    check_wire(mail, content)
    received = reference.envelopes[index].content
    as_sent = b"\x00" not in body and b"x" * 1200 not in body
    if as_sent:
        # Sent as read: the server holds exactly the input, line ends normalised.
        assert received == normalise(HEADERS) + expected_text(body)
    else:
        assert same_lines(decoded_body(received), body)


@HYPOTHESIS
@given(body=bodies)
def test_any_body_reaches_a_7bit_server_safely(
    seven_bit_server: ScriptedServer, body: bytes
) -> None:
    index = seven_bit_server.connections
    outcome = run_submit(make_account(seven_bit_server.port, tls=False), message=HEADERS + body)
    assert exit_code(outcome) == ExitCode.OK, outcome
    capture = seven_bit_server.wait(index)
    wire = bytes(capture.received)
    mail, content = data_section(wire)
    check_wire(mail, content)
    assert b"BODY=8BITMIME" not in mail
    unstuffed = content.replace(b"\r\n..", b"\r\n.")
    if all(byte < 0x80 for byte in body) and b"\x00" not in body and b"x" * 1200 not in body:
        assert unstuffed == normalise(HEADERS) + expected_text(body)
    else:
        assert same_lines(decoded_body(unstuffed), body)


def test_cr_before_crlf_counts_the_same_when_re_encoded(
    seven_bit_server: ScriptedServer,
) -> None:
    # Found by hypothesis: b"\xc3\xa9\r\r\n.\r\n" to a 7-bit server decodes to
    # b"\xc3\xa9\r\n.\r\n"; the same body as 7-bit text keeps its empty line.
    index = seven_bit_server.connections
    body = b"\xc3\xa9\r\r\nnext\r\n"
    outcome = run_submit(make_account(seven_bit_server.port, tls=False), message=HEADERS + body)
    assert exit_code(outcome) == ExitCode.OK, outcome
    _, content = data_section(bytes(seven_bit_server.wait(index).received))
    decoded = decoded_body(content.replace(b"\r\n..", b"\r\n."))
    assert decoded.replace(b"\r\n", b"\n") == "é\n\nnext\n".encode()


@pytest.mark.parametrize(
    "body",
    [
        b"a\n.\nMAIL FROM:<x@y.test>\nRCPT TO:<v@z.test>\nDATA\nspoof\n.\n",
        b"a\n.\r\nX",
        b"a\r\n.\rb\r\n",
        b"a\r\r\n.\r\r\n",
        b".\r\n",
        b"..\r\n.",
    ],
)
def test_smuggling_bodies_arrive_as_one_message(reference: ReferenceServer, body: bytes) -> None:
    # security.md C1: each of these ends DATA early at a lenient receiver.
    index = len(reference.envelopes)
    outcome = run_submit(make_account(reference.port, tls=False), message=HEADERS + body)
    assert exit_code(outcome) == ExitCode.OK, outcome
    mail, content = data_section(reference.wire(index))
    check_wire(mail, content)
    assert len(reference.envelopes) == index + 1
    assert reference.envelopes[index].content == normalise(HEADERS) + expected_text(body)
