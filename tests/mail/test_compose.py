"""Composition: encodings, headers, attachments, and the refusal of injected lines."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhop.errors import ExitCode
from mailhop.message import Address
from mailhop.message.compose import (
    Attachment,
    Composition,
    compose,
    guess_type,
)
from mailhop.message.errors import MessageError


def parsed(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def test_ascii_body_is_7bit_with_every_generated_header() -> None:
    message = parsed(compose(Composition(body=b"hello\n", subject="hi", user_agent="ua 1")))
    assert message["Content-Transfer-Encoding"] == "7bit"
    assert message.get_content_charset() == "us-ascii"
    for name in ("Date", "Message-ID", "MIME-Version", "User-Agent"):
        assert message[name]


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        ("中文正文，很多汉字。\n" * 5, "base64"),
        ("Grüße aus Köln; the rest of this line is plain English text.\n", "quoted-printable"),
        ("x" * 2000 + "\n", "quoted-printable"),
    ],
)
def test_encoding_chosen_by_content(body: str, encoding: str) -> None:
    data = compose(Composition(body=body.encode()))
    message = parsed(data)
    assert message["Content-Transfer-Encoding"] == encoding
    assert message.get_content() == body
    assert all(len(line) <= 998 for line in data.split(b"\n"))
    assert data.isascii()


def test_binary_body_travels_unchanged_as_octet_stream() -> None:
    body = b"\x00\x01 not text \xff\r lone CR\n"
    message = parsed(compose(Composition(body=body)))
    assert message.get_content_type() == "application/octet-stream"
    assert message.get_payload(decode=True) == body


def test_subject_and_names_are_rfc2047_encoded() -> None:
    data = compose(
        Composition(
            body=b"x\n",
            subject="邮件主题",
            author=Address(addr_spec="a@x.test", display_name="Zoë Ünal"),
            to=(Address(addr_spec="b@x.test", display_name="李雷"),),
        )
    )
    assert data.isascii()
    message = parsed(data)
    assert message["Subject"] == "邮件主题"
    assert message["From"].addresses[0].display_name == "Zoë Ünal"
    assert message["To"].addresses[0].display_name == "李雷"


@pytest.mark.parametrize("body", [b"form\x0cfeed\x0b\x1c\n", "a\u2028b\n".encode(), b"no newline"])
def test_odd_line_breaks_survive(body: bytes) -> None:
    message = parsed(compose(Composition(body=body)))
    text = cast(str, message.get_content()).encode()
    assert text in (body, body + b"\n")


@pytest.mark.parametrize(
    "subject", ["hi\r\nBcc: x@example.test", "hi\nX-A: y", "a\rb", "nul\x00", "esc\x1b"]
)
def test_control_characters_in_a_header_value_exit_65(subject: str) -> None:
    with pytest.raises(MessageError) as caught:
        compose(Composition(body=b"x\n", subject=subject))
    assert caught.value.exit_code == ExitCode.DATAERR
    with pytest.raises(MessageError) as caught:
        compose(Composition(body=b"x\n", extra_headers=(("X-Note", subject),)))
    assert caught.value.exit_code == ExitCode.DATAERR


def test_extra_headers_cannot_replace_the_mime_structure() -> None:
    with pytest.raises(MessageError, match="written by mail itself"):
        compose(Composition(body=b"x\n", extra_headers=(("Content-Type", "text/html"),)))
    with pytest.raises(MessageError, match="not a header name"):
        compose(Composition(body=b"x\n", extra_headers=(("Bad Name", "v"),)))


def test_attachment_names_use_rfc2231_and_bytes_survive() -> None:
    content = bytes(range(256))
    data = compose(
        Composition(
            body=b"see\n",
            attachments=(
                Attachment(filename="a b ä.bin", content=content, content_type="application/x"),
            ),
        )
    )
    assert b"filename*=utf-8''a%20b%20%C3%A4.bin" in data
    message = parsed(data)
    (part,) = list(message.iter_attachments())
    assert part.get_filename() == "a b ä.bin"
    assert part.get_payload(decode=True) == content
    assert data.count(b"MIME-Version") == 1


def test_guess_type_uses_extension_then_content() -> None:
    assert guess_type("x.pdf", b"") == "application/pdf"
    assert guess_type("noext", b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert guess_type("noext", "текст".encode()) == "text/plain"
    assert guess_type("noext", b"\x00\xff") == "application/octet-stream"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=300))
def test_any_text_body_round_trips_and_the_wire_is_7bit(text: str) -> None:
    body = text.replace("\r", "").encode()
    data = compose(Composition(body=body, subject="s"))
    assert data.isascii()
    assert all(len(line) <= 998 for line in data.split(b"\n"))
    message = parsed(data)
    if message.get_content_maintype() == "text":
        # A text body always ends with a line end, as every mailer writes it.
        expected = (
            body
            if body.endswith(b"\n") or message["Content-Transfer-Encoding"] != "7bit"
            else body + b"\n"
        )
        assert cast(str, message.get_content()).encode() == expected
    else:
        assert message.get_payload(decode=True) == body
