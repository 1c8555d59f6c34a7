"""EHLO capability parsing (RFC 5321 §4.1.1.1 and each extension's RFC)."""

from __future__ import annotations

import pytest

from mailhop.proto import sasl
from mailhop.proto.errors import LocalProtocolError
from mailhop.proto.smtp import Auth, Capabilities, parse_reply
from mailhop.proto.smtp._grammar import format_command, xtext_decode, xtext_encode


def capabilities(*lines: str) -> Capabilities:
    wire = "".join(f"250-{line}\r\n" for line in lines[:-1]) + f"250 {lines[-1]}\r\n"
    return Capabilities.from_ehlo_reply(parse_reply(wire.encode()))


def test_everything_we_read() -> None:
    caps = capabilities(
        "mx.test Hello", "pipelining", "SIZE 35882577", "8BITMIME", "SMTPUTF8", "DSN",
        "STARTTLS", "AUTH PLAIN login", "ENHANCEDSTATUSCODES", "CHUNKING", "X-UNKNOWN a b",
    )  # fmt: skip
    assert caps == Capabilities(
        domain="mx.test", pipelining=True, size=35882577, eightbitmime=True, smtputf8=True,
        dsn=True, starttls=True, auth=frozenset({"PLAIN", "LOGIN"}),
        enhanced_status_codes=True, chunking=True,
    )  # fmt: skip
    assert caps.keywords["X-UNKNOWN"] == "a b"


@pytest.mark.parametrize(
    ("lines", "auth"),
    [
        (("mx", "AUTH=LOGIN PLAIN"), {"LOGIN", "PLAIN"}),  # the pre-RFC 2554 form
        (("mx", "AUTH LOGIN", "AUTH=LOGIN CRAM-MD5"), {"LOGIN", "CRAM-MD5"}),
        (("mx", "AUTH"), set()),
    ],
)
def test_auth_forms(lines: tuple[str, ...], auth: set[str]) -> None:
    assert capabilities(*lines).auth == auth


@pytest.mark.parametrize(
    ("line", "size"),
    [("SIZE", 0), ("SIZE 0", 0), ("SIZE 1000", 1000), ("SIZE 1" + "0" * 20, None),
     ("SIZE -5", None), ("SIZE ١٢", None)],
)  # fmt: skip
def test_size(line: str, size: int | None) -> None:
    assert capabilities("mx", line).size == size


def test_garbage_lines_are_skipped() -> None:
    caps = capabilities("mx", "-bad", "", "PIPELINING")
    assert caps.pipelining and list(caps.keywords) == ["PIPELINING"]


def test_xtext() -> None:
    assert xtext_encode("a+b=c d\u00e9") == "a+2Bb+3Dc+20d+C3+A9"
    assert xtext_decode("a+2Bb+3Dc+20d+C3+A9") == "a+b=c d\u00e9"
    assert xtext_decode("+FF") is None  # not UTF-8
    assert xtext_decode("a b") is None


class Injected(sasl.Mechanism):
    name = "PLAIN\r\nRSET"
    sends_secret_in_clear = False

    def flow(self) -> sasl.Flow:
        yield None


def test_the_last_line_of_defence() -> None:
    with pytest.raises(LocalProtocolError, match="control character"):
        format_command(Auth(mechanism=Injected()))
