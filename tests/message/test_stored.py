"""``SentAsStored``: its verdict must never differ from what reading and fitting send.

The property: whenever it says a stored message goes on the wire as stored, the full
path (``read_message`` then ``prepare_transfer``, for every kind of server) hands back
exactly those bytes, with that SIZE and no 8BITMIME or SMTPUTF8. The examples check
that ordinary queued messages do get the short path (else the property is vacuous)
and that each reason to refuse it is seen.
"""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhop.message.reader import MAX_HEADER_BLOCK_BYTES, read_message
from mailhop.message.stored import SentAsStored
from mailhop.message.transfer import ServerCapabilities, prepare_transfer

SERVERS = [
    ServerCapabilities(),
    ServerCapabilities(eight_bit_mime=True),
    ServerCapabilities(eight_bit_mime=True, smtputf8=True),
]
# Pieces rather than st.binary(): under python -bb, hypothesis's shrinker compares
# mixed bytes/int choice keys and raises BytesWarning. A message is well-formed
# header lines, the empty line, well-formed body lines, and (in most examples) one
# flaw somewhere among them: one of each kind the verdict must notice.
GOOD_HEADER_LINES = [
    b"From: a@x.test\r\n",
    b"Subject: hi\r\n",
    b"X-Y:\r\n",
    b" folded\r\n",
    b"\tfolded\r\n",
    b"X: " + b"x" * 995 + b"\r\n",
]
GOOD_BODY_LINES = [b"body line\r\n", b".dot\r\n", b"\r\n", b"x" * 998 + b"\r\n", b"From x\r\n"]
FLAWS = [
    b"From : z\r\n", b">From y\r\n", b"no colon here\r\n", b"Bad\n", b"X: a\rb\r\n",
    b"X: \xc3\xa9\r\n", b"X: " + b"x" * 996 + b"\r\n", b"x" * 999 + b"\r\n", b"a", b"\n", b"\r",
    b"a\rb\r\n", b"\0\r\n", b"\r\n.\r\n",
]  # fmt: skip


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    lines = [
        *draw(st.lists(st.sampled_from(GOOD_HEADER_LINES), max_size=5)),
        draw(st.sampled_from([b"\r\n", b""])),
        *draw(st.lists(st.sampled_from(GOOD_BODY_LINES), max_size=5)),
    ]
    if draw(st.integers(0, 3)):  # most examples carry a flaw
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(FLAWS)))
    return b"".join(lines)


def verdict(chunks: list[bytes]) -> bool:
    check = SentAsStored(chunks)
    assert b"".join(check) == b"".join(chunks)  # passed through untouched
    return check.holds


def full_path(data: bytes, server: ServerCapabilities) -> tuple[bytes, int, bool, bool] | None:
    """What the full path sends: wire bytes, SIZE, BODY=8BITMIME, SMTPUTF8 (or None)."""
    try:
        with (
            read_message(io.BytesIO(data), ignore_dots=True) as message,
            prepare_transfer(message, server) as transfer,
        ):
            wire = b"".join(transfer.chunks())
            return wire, transfer.size, transfer.body_8bitmime, transfer.smtputf8
    except Exception:  # noqa: BLE001 - refused by the full path: never "as stored"
        return None


@settings(max_examples=500, deadline=None)
@given(data=messages(), cuts=st.lists(st.integers(0, 3000), max_size=4))
def test_as_stored_means_what_the_full_path_sends(data: bytes, cuts: list[int]) -> None:
    points = sorted({min(cut, len(data)) for cut in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    if not verdict(chunks):
        return
    for server in SERVERS:
        assert full_path(data, server) == (data, len(data), False, False)


def test_an_ordinary_queued_message_is_sent_as_stored() -> None:
    head = b"From: a@x.test\r\nTo: b@y.test\r\nSubject: s\r\n  folded\r\nMessage-ID: <1@x>\r\n"
    body = b"".join(b"line %d\r\n" % index for index in range(500)) + b".starts with a dot\r\n"
    data = head + b"\r\n" + body
    assert verdict([data])
    assert verdict([data[:7], data[7:8], data[8:100], data[100:]])  # cut anywhere
    assert verdict([head])  # headers only: the full path sends them as they are
    assert verdict([head, b"\r\n"])


@pytest.mark.parametrize(
    "data",
    [
        b"Subject: s\r\n\r\ncaf\xc3\xa9\r\n",  # 8-bit
        b"Subject: s\r\n\r\nnul \0\r\n",
        b"Subject: s\n\nbare LF\n",
        b"Subject: s\r\n\r\nbare CR\r here\r\n",
        b"Subject: s\r\n\r\nno final line end",
        b"Subject: s\r\n\r\n" + b"x" * 999 + b"\r\n",  # over RFC 5322's 998
        b"Subject: " + b"x" * 990 + b"\r\n\r\nbody\r\n",
        b"From someone Mon Jan  1 00:00:00 2024\r\nSubject: s\r\n\r\nbody\r\n",  # mbox
        b" folded first\r\nSubject: s\r\n\r\nbody\r\n",
        b"Subject: s\r\nnot a header\r\n\r\nbody\r\n",  # read_message adds an empty line
        b"X: " + b"y" * 900 + b"\r\n" + b" " + b"z" * 900 + b"\r\n",
    ],
    ids=[
        "8bit", "nul", "lf", "cr", "unterminated", "long-body-line", "long-header-line",
        "mbox-from", "leading-continuation", "non-header-line", "fits",
    ],
)  # fmt: skip
def test_each_reason_for_the_full_path_is_seen(data: bytes) -> None:
    expected = data.startswith(b"X: ")  # the last one is fine: two short lines
    assert verdict([data]) is expected
    assert verdict([data[:3], data[3:]]) is expected


def test_a_header_block_over_the_reader_limit_takes_the_full_path() -> None:
    field = b"X: " + b"y" * 500 + b"\r\n"
    head = field * (MAX_HEADER_BLOCK_BYTES // len(field) + 1)
    assert not verdict([head, b"\r\nbody\r\n"])
    assert verdict([field * 4, b"\r\nbody\r\n"])


def test_the_verdict_waits_for_the_last_chunk() -> None:
    check = SentAsStored([b"Subject: s\r\n\r\n", b"body\r\n"])
    iterator = iter(check)
    next(iterator)
    assert not check.holds
    list(iterator)
    assert check.holds
