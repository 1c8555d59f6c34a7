"""Reply parsing (RFC 5321 §4.2, RFC 3463): table-driven cases and a round trip."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhop.proto.errors import RemoteProtocolError
from mailhop.proto.smtp import (
    MAX_REPLY_LINE_LENGTH,
    MAX_REPLY_LINES,
    MAX_REPLY_SIZE,
    Reply,
    ReplyParser,
    parse_reply,
)

GOOD = [
    (b"250 OK\r\n", Reply(code=250, lines=("OK",))),
    (b"250\r\n", Reply(code=250, lines=("",))),
    (b"250-a\r\n250-b\r\n250 c\r\n", Reply(code=250, lines=("a", "b", "c"))),
    (
        b"550-5.1.1 No such\r\n550 5.1.1 user here\r\n",
        Reply(code=550, enhanced_status="5.1.1", lines=("No such", "user here")),
    ),
    # The status repeated only on the first line; other lines kept as they are.
    (
        b"451-4.3.0 Try\r\n451 later\r\n",
        Reply(code=451, enhanced_status="4.3.0", lines=("Try", "later")),
    ),
    (b"250 2.0.0\r\n", Reply(code=250, enhanced_status="2.0.0", lines=("",))),
    # A class that disagrees with the code is not an enhanced status.
    (b"250 5.1.1 odd\r\n", Reply(code=250, lines=("5.1.1 odd",))),
    (b"220 2.0.0x\r\n", Reply(code=220, lines=("2.0.0x",))),
    (b"250 tab\there\r\n", Reply(code=250, lines=("tab\there",))),
    (b"250 caf\xc3\xa9\r\n", Reply(code=250, lines=("café",))),
]


@pytest.mark.parametrize(("wire", "expected"), GOOD)
def test_good_replies(wire: bytes, expected: Reply) -> None:
    assert parse_reply(wire) == expected


BAD = [
    b"250 OK\n",  # no CR
    b"25 OK\r\n",
    b"2500 OK\r\n",
    b"199 OK\r\n",  # RFC 5321 codes are 2xx-5xx
    b"650 OK\r\n",
    b"260 OK\r\n",  # second digit 0-5
    b"250_OK\r\n",
    b"250-a\r\n550 b\r\n",  # mixed codes (security.md C8)
    b"250 a\x00b\r\n",
    b"250 a\rb\r\n",
    b"250 a\x1bb\r\n",
    b"250-a\r\n",  # incomplete
    b"250 a\r\n250 b\r\n",  # two replies
    b"250 " + b"x" * MAX_REPLY_LINE_LENGTH + b"\r\n",
    b"250 OK",
]


@pytest.mark.parametrize("wire", BAD)
def test_bad_replies(wire: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_reply(wire)


def test_reply_line_count_is_capped() -> None:
    parser = ReplyParser()
    for _ in range(MAX_REPLY_LINES):
        assert parser.feed_line(b"250-x\r\n") is None
    with pytest.raises(RemoteProtocolError, match="too long"):
        parser.feed_line(b"250-x\r\n")


def test_reply_size_is_capped() -> None:
    parser = ReplyParser()
    line = b"250-" + b"x" * 4000 + b"\r\n"
    with pytest.raises(RemoteProtocolError, match="too long"):
        for _ in range(MAX_REPLY_SIZE // len(line) + 1):
            parser.feed_line(line)


def test_reply_helpers() -> None:
    assert Reply(code=250).is_positive and Reply(code=354).is_positive
    assert Reply(code=421).is_transient and not Reply(code=421).is_permanent
    assert Reply(code=550).is_permanent and not Reply(code=550).is_positive
    assert Reply(code=250, lines=("a", "b")).text == "a\nb"


_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x7f").filter(
        lambda c: c == "\t" or ord(c) >= 0x20
    ),
    max_size=40,
).filter(lambda t: not t[:1].isdigit())


@given(
    code=st.integers(200, 559).filter(lambda c: c // 10 % 10 <= 5),
    lines=st.lists(_text, min_size=1, max_size=5).map(tuple),
    detail=st.none() | st.tuples(st.integers(0, 999), st.integers(0, 999)),
)
def test_round_trip(code: int, lines: tuple[str, ...], detail: tuple[int, int] | None) -> None:
    # RFC 3463 §3.1: enhanced status classes are 2, 4 and 5 only.
    status = (
        None if detail is None or code // 100 == 3 else f"{code // 100}.{detail[0]}.{detail[1]}"
    )
    reply = Reply(code=code, lines=lines, enhanced_status=status)
    assert parse_reply(reply.to_bytes()) == reply


@given(st.binary(max_size=300))
def test_parser_only_raises_remote_protocol_error(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        parse_reply(data)


# Lines of every kind: one-line, first of several, malformed, with each forbidden
# octet class, with and without an enhanced status, 8-bit text.
REPLY_CODES = [b"250", b"354", b"421", b"550", b"199", b"600", b"25", b""]
REPLY_SEPARATORS = [b" ", b"-", b""]
REPLY_TEXT = [
    b"Ok", b"queued as 1234", b" ", b"2.1.0 ", b"5.7.1 ", b"\t", b"\xc3\xa9", b"\xff", b"\x00",
    b"\x08", b"\x1f", b"\x7f", b"\r", b"\n",
    # Enhanced statuses at the edges: alone, of class 3 (none is), too many digits.
    b"2.0.0", b"4.4.1", b"3.0.0 ", b"2.0.1000 ", b"5.100.1",
]  # fmt: skip


@settings(max_examples=300)
@given(
    code=st.sampled_from(REPLY_CODES),
    separator=st.sampled_from(REPLY_SEPARATORS),
    text=st.lists(st.sampled_from(REPLY_TEXT), max_size=4),
)
def test_the_one_line_shortcut_agrees_with_the_rules(
    code: bytes, separator: bytes, text: list[bytes]
) -> None:
    line = code + separator + b"".join(text) + b"\r\n"
    outcomes = []
    for feed in (ReplyParser().feed_line, ReplyParser().feed_line_checked):
        try:
            outcomes.append(feed(line))
        except RemoteProtocolError:
            outcomes.append(None)
    assert outcomes[0] == outcomes[1]
