"""Wire preparation: transfer form per server capabilities, re-encoding, SIZE."""

from __future__ import annotations

import email
import email.policy
import io

import pytest

from mailhop.errors import ExitCode
from mailhop.message.errors import MalformedMessageError, ServerCapabilityError
from mailhop.message.reader import Message, read_message
from mailhop.message.transfer import (
    ServerCapabilities,
    Transfer,
    TransferForm,
    prepare_transfer,
    reencode,
)

PLAIN = ServerCapabilities()
EIGHT = ServerCapabilities(eight_bit_mime=True)
UTF8 = ServerCapabilities(eight_bit_mime=True, smtputf8=True)


def message_of(data: bytes) -> Message:
    return read_message(io.BytesIO(data), ignore_dots=True)


def wire(transfer: Transfer) -> bytes:
    return b"".join(transfer.chunks())


def assert_safe(data: bytes, *, seven_bit: bool = True) -> None:
    assert b"\0" not in data
    assert all(len(line.rstrip(b"\r")) <= 998 for line in data.split(b"\n"))
    if seven_bit:
        assert data.isascii()


def test_seven_bit_is_sent_as_read() -> None:
    data = b"Subject: s\r\n\r\nhello\r\n"
    with message_of(data) as message, prepare_transfer(message, PLAIN) as transfer:
        assert transfer.form is TransferForm.AS_READ
        assert wire(transfer) == data
        assert transfer.size == len(data)
        assert not transfer.body_8bitmime and not transfer.smtputf8
        assert "as-read" in repr(transfer)


def test_size_counts_crlf_normalisation() -> None:
    data = b"Subject: s\n\nhello\nno newline"
    with message_of(data) as message, prepare_transfer(message, PLAIN) as transfer:
        assert transfer.size == len(data) + 3 + 2  # three LFs become CRLF, final CRLF


def test_eight_bit_body_with_8bitmime_is_sent_as_read() -> None:
    data = b"Subject: s\n\ncaf\xc3\xa9\n"
    with message_of(data) as message, prepare_transfer(message, EIGHT) as transfer:
        assert transfer.form is TransferForm.AS_READ
        assert transfer.body_8bitmime
        assert wire(transfer) == data


@pytest.mark.parametrize(
    ("data", "server", "reason"),
    [
        (b"Subject: s\n\ncaf\xc3\xa9\n", PLAIN, "8-bit without 8BITMIME"),
        (b"Subject: s\n\n" + b"x" * 1200 + b"\n", UTF8, "long line"),
        (b"Subject: s\n\na\0b\n", UTF8, "NUL"),
        (b"Subject: caf\xc3\xa9\n\nbody\n", EIGHT, "UTF-8 header without SMTPUTF8"),
        (b"Subject: " + b"word " * 300 + b"\n\nbody\n", UTF8, "long header line"),
    ],
)
def test_reencoded_when_the_server_cannot_take_it(
    data: bytes, server: ServerCapabilities, reason: str
) -> None:
    with message_of(data) as message, prepare_transfer(message, server) as transfer:
        assert transfer.form is TransferForm.REENCODED, reason
        out = wire(transfer)
        assert_safe(out)
        assert transfer.size >= len(out)
        assert not transfer.smtputf8


def test_utf8_headers_with_smtputf8_are_kept() -> None:
    data = b"Subject: caf\xc3\xa9\n\ncaf\xc3\xa9\n"
    with message_of(data) as message, prepare_transfer(message, UTF8) as transfer:
        assert transfer.form is TransferForm.AS_READ
        assert transfer.smtputf8 and transfer.body_8bitmime
        assert wire(transfer) == data


def test_utf8_headers_kept_while_a_long_body_line_is_reencoded() -> None:
    data = b"Subject: caf\xc3\xa9\n\n" + b"y" * 2000 + b"\n"
    with message_of(data) as message, prepare_transfer(message, UTF8) as transfer:
        assert transfer.form is TransferForm.REENCODED
        out = wire(transfer)
        assert "Subject: café".encode() in out
        assert_safe(out, seven_bit=False)
        assert transfer.smtputf8


def test_latin1_header_is_not_passed_off_as_utf8() -> None:
    data = b"Subject: caf\xe9\n\nbody\n"
    with message_of(data) as message, prepare_transfer(message, UTF8) as transfer:
        assert transfer.form is TransferForm.REENCODED
        assert not transfer.smtputf8
        assert_safe(wire(transfer))


def test_require_7bit_reencodes_even_with_8bitmime() -> None:
    data = b"Subject: s\n\ncaf\xc3\xa9\n"
    with message_of(data) as message, prepare_transfer(message, UTF8, require_7bit=True) as out:
        assert out.form is TransferForm.REENCODED
        assert_safe(wire(out))
        assert not out.body_8bitmime


def test_utf8_envelope_needs_smtputf8() -> None:
    with message_of(b"Subject: s\n\nx\n") as message:
        with pytest.raises(ServerCapabilityError) as caught:
            prepare_transfer(message, EIGHT, envelope_needs_smtputf8=True)
        assert caught.value.exit_code == ExitCode.UNAVAILABLE
        with prepare_transfer(message, UTF8, envelope_needs_smtputf8=True) as transfer:
            assert transfer.smtputf8 and transfer.form is TransferForm.AS_READ


def test_plain_message_gets_mime_headers_and_charset() -> None:
    with message_of(b"Subject: s\n\ncaf\xc3\xa9\n") as message:
        out = wire(prepare_transfer(message, PLAIN))
    parsed = email.message_from_bytes(out, policy=email.policy.default)
    assert parsed["MIME-Version"] == "1.0"
    assert parsed.get_content_charset() == "utf-8"
    assert parsed.get_content() == "café\n"
    with message_of(b"Subject: s\n\ncaf\xe9\n") as message:
        out = wire(prepare_transfer(message, PLAIN))
    assert b"unknown-8bit" in out
    parsed = email.message_from_bytes(out, policy=email.policy.default)
    assert parsed.get_payload(decode=True) == b"caf\xe9\n"


MULTIPART = (
    b"MIME-Version: 1.0\n"
    b'Content-Type: multipart/mixed; boundary="XX"\n'
    b"Content-Transfer-Encoding: 8bit\n"
    b"\n"
    b"preamble\n"
    b"--XX\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: 8bit\n"
    b"\n"
    b"gr\xc3\xbc\xc3\x9fe\n"
    b"--XX\n"
    b"Content-Type: application/octet-stream\n"
    b"\n"
    b"\x00\x01\xff binary\n"
    b"--XX\n"
    b"Content-Type: text/plain\n"
    b"Content-Transfer-Encoding: base64\n"
    b"\n"
    b"aGVsbG8=\n"
    b"--XX\n"
    b"Content-Type: message/rfc822\n"
    b"\n"
    b"Subject: inner\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: 8bit\n"
    b"\n"
    b"inn\xc3\xa9r\n"
    b"--XX\n"
    b"Content-Type: text/plain\n"
    b"Content-Transfer-Encoding: quoted-printable\n"
    b"\n"
    b"caf\xc3\xa9 raw 8bit inside qp\n"
    b"--XX--\n"
)


def test_multipart_is_reencoded_recursively_and_keeps_content() -> None:
    with message_of(MULTIPART) as message, prepare_transfer(message, PLAIN) as transfer:
        out = wire(transfer)
    assert_safe(out)
    before = email.message_from_bytes(MULTIPART, policy=email.policy.default)
    after = email.message_from_bytes(out, policy=email.policy.default)
    assert after["Content-Transfer-Encoding"] == "7bit"
    old_parts = [p for p in before.walk() if not p.is_multipart()]
    new_parts = [p for p in after.walk() if not p.is_multipart()]
    # leaves: utf-8 text, binary, base64 text, the inner message's text, qp text
    assert len(old_parts) == len(new_parts) == 5
    for old, new in zip(old_parts, new_parts, strict=True):
        assert new.get_content_type() == old.get_content_type()
        assert new.get_payload(decode=True) == old.get_payload(decode=True)
    assert new_parts[3]["Subject"] == "inner"
    assert new_parts[3].get_payload(decode=True) == "innér".encode()  # LF is the boundary's
    assert new_parts[1]["Content-Transfer-Encoding"] == "base64"
    assert new_parts[0]["Content-Transfer-Encoding"] == "quoted-printable"
    assert b"aGVsbG8=" in out  # an already clean base64 part is left alone


def test_text_with_nul_becomes_base64() -> None:
    with message_of(b"Content-Type: text/plain\n\na\0b\n") as message:
        out = wire(prepare_transfer(message, UTF8))
    assert b"Content-Transfer-Encoding: base64" in out


def test_unrepairable_result_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import mailhop.message.transfer as transfer_module

    monkeypatch.setattr(transfer_module, "_reencode_entity", lambda entity, is_root=False: None)
    with message_of(b"Subject: s\n\na\0b\n") as message, pytest.raises(MalformedMessageError):
        prepare_transfer(message, PLAIN)


def test_reencode_errors_release_the_spool(monkeypatch: pytest.MonkeyPatch) -> None:
    import mailhop.message.transfer as transfer_module

    class Boom(Exception):
        pass

    def explode(*args: object, **kwargs: object) -> None:
        raise Boom

    monkeypatch.setattr(transfer_module._SpoolWriter, "write", explode)
    with message_of(b"Subject: s\n\ncaf\xc3\xa9\n") as message, pytest.raises(Boom):
        reencode(message)


def test_transfer_without_source_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="needs"):
        Transfer(form=TransferForm.AS_READ, size=0, body_8bitmime=False, smtputf8=False).chunks()
