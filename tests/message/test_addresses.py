"""Addresses read like To: header values; envelope safety checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhop.errors import ExitCode
from mailhop.message.addresses import (
    Address,
    parse_address_list,
    parse_envelope_sender,
    quote_phrase,
)
from mailhop.message.errors import AddressError
from mailhop.proto.smtp import MailFrom, RcptTo
from mailhop.proto.smtp._grammar import format_command


def specs(text: str) -> list[str]:
    return [address.addr_spec for address in parse_address_list(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a@x.org", ["a@x.org"]),
        ('"A B" <a@x>, c@y', ["a@x", "c@y"]),
        ('"Bud, Person" <b@x.test>', ["b@x.test"]),
        ("A B <a@x>", ["a@x"]),
        ("a@x (Comment, with comma), b@y", ["a@x", "b@y"]),
        ("a@x (nested (comment) here)", ["a@x"]),
        ("undisclosed-recipients:;", []),
        ("friends: a@x, B <b@y>;, c@z", ["a@x", "b@y", "c@z"]),
        ("group: a@x", ["a@x"]),  # a group not closed at the end: tolerated
        ("root", ["root"]),
        ("root, a@x", ["root", "a@x"]),
        ("a@x,,b@y,", ["a@x", "b@y"]),
        ("<@route.one,@route.two:a@x>", ["a@x"]),
        ("john . doe @ example . org", ["john.doe@example.org"]),
        ('"john doe"@x', ['"john doe"@x']),
        ('"john"@x', ["john@x"]),
        ('"a\\"b"@x', ['"a\\"b"@x']),
        ("a@[192.0.2.1]", ["a@[192.0.2.1]"]),
        ("jörg@例え.jp", ["jörg@例え.jp"]),
        ("Name <a@x> (trailing comment)", ["a@x"]),
        ("\tspaced@x \t", ["spaced@x"]),
        ("<root>", ["root"]),
    ],
)
def test_address_lists(text: str, expected: list[str]) -> None:
    assert specs(text) == expected


def test_display_names() -> None:
    first, second = parse_address_list('"Bud, Person" <b@x>, Jane Q. Doe <j@x>')
    assert first.display_name == "Bud, Person"
    assert second.display_name == "Jane Q Doe"  # obs-phrase dots are dropped
    assert first.formatted() == '"Bud, Person" <b@x>'
    assert Address(addr_spec="a@x").formatted() == "a@x"
    assert Address(addr_spec="a@x", display_name="Ann").formatted() == "Ann <a@x>"


@pytest.mark.parametrize(
    "text",
    [
        # CVE-2023-27043 / CVE-2019-16056 shapes: never a silent RCPT to bob@
        "alice@example.org)<bob@example.com>",
        "alice@example.org<<bob@example.com>",
        "alice@example.org><bob@example.com>",
        "alice@example.org@<bob@example.com>",
        "alice@example.org;<bob@example.com>",
        "<a@x",
        "a@x>",
        '"unterminated@x',
        "(unterminated comment a@x",
        "a@[1.2.3.4",
        "a@[1.2[3]",
        "a@",
        "@x",
        "a@x..y",
        "a@exa$mple.org",
        "a@example.test-",
        "root@-bad-.test",
        "a@mail.-x.test",
        "john doe",
        "a.@x",
        ".a@x",
        "a..b@x",
        "<>",
        "a@x\\b",
        "Name <a@x> b@y",
        "outer: inner: a@x;;",
        ": a@x;",
        "<@route a@x>",
        "x" * 300 + "@example.org",
        "a\\",
    ],
)
def test_unparsable_addresses_are_errors_naming_them(text: str) -> None:
    with pytest.raises(AddressError) as caught:
        parse_address_list(text)
    assert caught.value.address == text
    assert caught.value.exit_code == ExitCode.USAGE
    assert repr(text)[:20] in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "v@x.test\r\nRCPT TO:<evil@x.test>",
        "a@x\n",
        "a\0@x",
        "a@x\x1b",
        "Name\x7f <a@x>",
        "(comment \r) a@x",
        "-oQ/tmp -X/tmp/pwn.log",
        "-X/tmp/pwn@x",
        "Name <-x@y>",
        "bad\udcff@x",
    ],
)
def test_injection_attempts_are_refused(text: str) -> None:
    with pytest.raises(AddressError) as caught:
        parse_address_list(text)
    assert caught.value.exit_code == ExitCode.USAGE
    with pytest.raises(AddressError) as from_header:
        parse_address_list(text, source="To header", from_command_line=False)
    assert from_header.value.exit_code == ExitCode.DATAERR
    assert "To header" in str(from_header.value)


@pytest.mark.parametrize("text", ["", "<>", " <> ", "MAILER-DAEMON", "mailer-daemon"])
def test_null_sender(text: str) -> None:
    sender = parse_envelope_sender(text)
    assert sender.is_null
    assert sender.domain == ""


def test_envelope_sender() -> None:
    sender = parse_envelope_sender("Joe <joe@example.org>")
    assert (sender.addr_spec, sender.local_part, sender.domain) == (
        "joe@example.org",
        "joe",
        "example.org",
    )
    assert not sender.needs_smtputf8
    assert parse_envelope_sender("jörg@example.org").needs_smtputf8
    local = parse_envelope_sender("root")
    assert (local.local_part, local.domain) == ("root", "")


@pytest.mark.parametrize(
    "text",
    ["a@x, b@y", "-X/tmp/x", "a@x>\r\nRSET", "<>\n", "undisclosed:;", "a@x\r\n"],
)
def test_bad_envelope_senders(text: str) -> None:
    with pytest.raises(AddressError) as caught:
        parse_envelope_sender(text)
    assert caught.value.exit_code == ExitCode.USAGE


def test_quote_phrase() -> None:
    assert quote_phrase("Plain Name") == "Plain Name"
    assert quote_phrase("Doe, John") == '"Doe, John"'
    assert quote_phrase('say "hi" \\') == '"say \\"hi\\" \\\\"'
    assert quote_phrase("a  b") == '"a  b"'


# Characters that make and break addresses; no quotes or backslashes, whose quoted
# local parts are local names (routing's business, not the SMTP grammar's).
_ADDRESS_MAKING = "ab1-_.@[]() ,<>:;\u00e9"


@settings(max_examples=2000, deadline=None)
@given(text=st.text(alphabet=_ADDRESS_MAKING, max_size=16))
def test_every_address_sendmail_takes_is_one_smtp_can_send(text: str) -> None:
    # An address the enqueue accepts but the SMTP client refuses would wait in the
    # queue until its lifetime ends: the two must agree (found: 'a@example.test-').
    try:
        addresses = parse_address_list(text)
    except AddressError:
        return
    for address in addresses:
        if address.domain:
            sender = MailFrom(address=address.addr_spec, smtputf8=True)
            for command in (RcptTo(address=address.addr_spec), sender):
                format_command(command, smtputf8=True)
