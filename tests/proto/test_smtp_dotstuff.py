"""The DATA codec: wire safety (security.md C1-C3) as vectors and properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailhop.proto.smtp import DataDecoder, DataEncoder


def encode(chunks: list[bytes]) -> bytes:
    encoder = DataEncoder()
    return b"".join(encoder.encode(chunk) for chunk in chunks) + encoder.end()


def normalise(data: bytes) -> bytes:
    """What the encoder promises to deliver: every line end as CRLF, last line ended."""
    data = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    return data if data == b"" or data.endswith(b"\r\n") else data + b"\r\n"


VECTORS = [
    (b"", b".\r\n"),
    (b"a", b"a\r\n.\r\n"),
    (b"a\n", b"a\r\n.\r\n"),
    (b".", b"..\r\n.\r\n"),
    (b".\n", b"..\r\n.\r\n"),
    (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
    (b"..x\r\n", b"...x\r\n.\r\n"),
    # smtpsmug and security.md C1 bodies: none of them may end the data early.
    (b"a\n.\nMAIL FROM:<x@y.test>\n", b"a\r\n..\r\nMAIL FROM:<x@y.test>\r\n.\r\n"),
    (b"a\n.\r\nX", b"a\r\n..\r\nX\r\n.\r\n"),
    (b"a\r\n.\rb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
    (b"a\r\r\n.\r\r\n", b"a\r\n\r\n..\r\n\r\n.\r\n"),
    (b"a\r.\r", b"a\r\n..\r\n.\r\n"),
]


@pytest.mark.parametrize(("message", "wire"), VECTORS)
def test_vectors(message: bytes, wire: bytes) -> None:
    assert encode([message]) == wire
    # The same bytes split at every position give the same wire bytes.
    for cut in range(len(message) + 1):
        assert encode([message[:cut], b"", message[cut:]]) == wire


def test_counts_like_msmtp_mailsize() -> None:
    encoder = DataEncoder()
    wire = encoder.encode(b"a\r\n.b\nc\r") + encoder.end()
    assert encoder.message_size == len(b"a\n.b\nc\n")  # line ends as 1, no stuffing
    assert encoder.wire_size == len(wire)


# Pieces rather than st.binary(): under python -bb, hypothesis's shrinker compares
# mixed bytes/int choice keys and raises BytesWarning.
_PIECES = [b"a", b"bc", b".", b"..", b"\r", b"\n", b"\r\n", b"\r\n.", b"\x00", b"\xff"]
_chunks = st.lists(st.lists(st.sampled_from(_PIECES), max_size=8).map(b"".join), max_size=8)


@given(_chunks)
def test_no_bare_cr_or_lf_and_no_early_end(chunks: list[bytes]) -> None:
    wire = encode(chunks)
    assert wire.endswith(b".\r\n")
    body = wire[:-3]
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", body) is None
    assert b"\r\n.\r\n" not in b"\r\n" + body
    for line in body.split(b"\r\n")[:-1]:
        assert not (line.startswith(b".") and not line.startswith(b".."))


@given(_chunks, st.integers(1, 7))
def test_decoder_gets_back_the_normalised_message(chunks: list[bytes], step: int) -> None:
    wire = encode(chunks) + b"QUIT\r\n"
    decoder, content = DataDecoder(), bytearray()
    end = None
    for start in range(0, len(wire), step):
        piece = wire[start : start + step]
        data, end = decoder.feed(piece)
        content += data
        if end is not None:
            assert piece[end:] + wire[start + step :] == b"QUIT\r\n"
            break
    assert end is not None
    assert bytes(content) == normalise(b"".join(chunks))
    assert not decoder.bare_line_endings


@pytest.mark.parametrize(
    ("wire", "content", "rest"),
    [
        (b".\r\n", b"", b""),
        (b"a\r\n.\r\nRSET\r\n", b"a\r\n", b"RSET\r\n"),
        (b"..a\r\n.x\r\n.\r\n", b".a\r\nx\r\n", b""),
    ],
)
def test_decoder_vectors(wire: bytes, content: bytes, rest: bytes) -> None:
    data, end = DataDecoder().feed(wire)
    assert (data, wire[end:] if end is not None else None) == (content, rest)


@pytest.mark.parametrize(
    "wire",
    # Only CRLF.CRLF ends DATA: each of these is content with a bare line ending
    # (security.md C2, smtpsmug), and what follows stays in the message.
    [b"a\n.\nMAIL", b"a\n.\r\nMAIL", b"a\r.\rMAIL", b"a\r\n.\nMAIL", b"a\r\n.\rMAIL",
     b"a\r\r\n.\r\r\nMAIL", b".\rX", b"a\rb"],
)  # fmt: skip
def test_decoder_never_ends_on_bare_line_endings(wire: bytes) -> None:
    for cut in range(len(wire) + 1):  # split anywhere, the same verdict
        decoder = DataDecoder()
        first, first_end = decoder.feed(wire[:cut])
        second, second_end = decoder.feed(wire[cut:])
        assert first_end is None and second_end is None
        assert (first + second).endswith((b"MAIL", b"X", b"b"))
        assert decoder.bare_line_endings


def test_encoder_streams_in_bounded_memory() -> None:
    encoder, decoder = DataEncoder(), DataDecoder()
    chunk = b"line of text\n.dot line\r\n" * 4096  # ~100 KiB
    total = 0
    for _ in range(64):
        content, end = decoder.feed(encoder.encode(chunk))
        assert end is None
        total += len(content)
    content, end = decoder.feed(encoder.end())
    assert end is not None
    assert total == 64 * len(normalise(chunk))
    assert len(vars(encoder)) <= 4 and len(vars(decoder)) <= 2  # O(1) state
