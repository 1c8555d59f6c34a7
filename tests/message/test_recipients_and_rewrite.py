"""-t recipient extraction (Resent blocks, Bcc) and msmtp-style header rewriting."""

from __future__ import annotations

import io
import re

import pytest

from mailhop.errors import ExitCode
from mailhop.message.addresses import Address, parse_envelope_sender
from mailhop.message.errors import AddressError, MalformedMessageError, UnsafeValueError
from mailhop.message.headers import HeaderBlock, HeaderField, check_safe_value, fold
from mailhop.message.reader import read_message
from mailhop.message.recipients import (
    Recipients,
    collect_recipients,
    first_resent_block,
    header_sender,
)
from mailhop.message.rewrite import (
    FromHeader,
    HeaderSettings,
    OptionalHeader,
    ToHeader,
    encode_display_name,
    format_date,
    rewrite_headers,
)


def headers_of(text: str) -> HeaderBlock:
    with read_message(io.BytesIO(text.encode() + b"\nbody\n")) as message:
        return message.headers


def specs(recipients: Recipients) -> list[str]:
    return [address.addr_spec for address in recipients.addresses]


@pytest.mark.parametrize(
    ("header_text", "arguments", "expected", "hidden"),
    [
        ("To: a@x\nCc: b@x\nBcc: c@x\n", [], ["a@x", "b@x", "c@x"], {"c@x"}),
        (
            "to: a@x\nCC: b@x\nbCC: c@x,\n d@x\n",
            ["z@y"],
            ["z@y", "a@x", "b@x", "c@x", "d@x"],
            {"c@x", "d@x"},
        ),
        ("To: undisclosed-recipients:;\n", ["a@x"], ["a@x"], set()),
        ('To: "Doe, J" <j@x>, k@x (K)\n', [], ["j@x", "k@x"], set()),
        ("To: a@x\nTo: a@x\n", ["a@x"], ["a@x"], set()),  # exact duplicates once
        # Resent: only the first block's Resent-To/Cc/Bcc, not To/Cc
        (
            "Resent-From: r@x\nResent-To: new@x\nResent-Bcc: secret@x\nTo: old@x\n",
            [],
            ["new@x", "secret@x"],
            {"secret@x"},
        ),
        # two stacked blocks: the second starts when Resent-From repeats
        (
            "Resent-From: r@x\nResent-Cc: first@x\nResent-From: q@x\nResent-To: second@x\n"
            "To: old@x\n",
            [],
            ["first@x"],
            set(),
        ),
        # a block ends at a non-Resent field
        (
            "Received: by x\nResent-Date: now\nResent-To: first@x\nReceived: by y\n"
            "Resent-To: older@x\nTo: old@x\n",
            [],
            ["first@x"],
            set(),
        ),
        # a Resent block without recipients gives none from headers
        ("Resent-From: r@x\nTo: old@x\n", ["arg@x"], ["arg@x"], set()),
    ],
)
def test_recipients_with_dash_t(
    header_text: str, arguments: list[str], expected: list[str], hidden: set[str]
) -> None:
    recipients = collect_recipients(arguments, headers_of(header_text), read_headers=True)
    assert specs(recipients) == expected
    assert recipients.hidden == hidden


def test_without_dash_t_headers_only_mark_bcc_hidden() -> None:
    headers = headers_of("To: a@x\nBcc: B@X\n")
    recipients = collect_recipients(["a@x", "b@x"], headers)
    assert specs(recipients) == ["a@x", "b@x"]
    assert [a.addr_spec for a in recipients.visible] == ["a@x"]
    assert recipients
    assert not collect_recipients([])


def test_unreadable_bcc_still_hides_without_dash_t() -> None:
    headers = headers_of("Bcc: <b@x>, (broken\n")
    recipients = collect_recipients(["b@x"], headers)
    assert recipients.visible == ()
    with pytest.raises(AddressError) as caught:
        collect_recipients([], headers, read_headers=True)
    assert caught.value.exit_code == ExitCode.DATAERR


def test_header_address_with_leading_dash_is_data_error() -> None:
    with pytest.raises(AddressError) as caught:
        collect_recipients([], headers_of("To: -oQ/tmp@x\n"), read_headers=True)
    assert caught.value.exit_code == ExitCode.DATAERR
    assert "To header" in str(caught.value)


def test_recipients_need_smtputf8_only_for_non_ascii() -> None:
    assert not collect_recipients(["a@x"]).needs_smtputf8
    assert collect_recipients(["jörg@x"]).needs_smtputf8


def test_first_resent_block() -> None:
    assert first_resent_block(headers_of("To: a@x\n")) == []


@pytest.mark.parametrize(
    ("header_text", "expected"),
    [
        ("Subject: s\n", None),
        ("From: A <a@x>\nResent-From: r@x\n", "a@x"),
        ("Resent-From: r@x\nFrom: a@x\n", "r@x"),
        ("From: undisclosed:;\n", None),
    ],
)
def test_header_sender(header_text: str, expected: str | None) -> None:
    sender = header_sender(headers_of(header_text))
    assert (sender.addr_spec if sender else None) == expected


# -- rewriting ------------------------------------------------------------------

SENDER = parse_envelope_sender("joe@example.org")
NOW = 1_700_000_000.0


def rewrite(header_text: str, recipients: Recipients | None = None, **settings: object) -> str:
    headers = headers_of(header_text)
    result = rewrite_headers(
        headers,
        HeaderSettings(**settings),  # type: ignore[arg-type]
        envelope_from=SENDER,
        recipients=recipients or Recipients(addresses=()),
        now=NOW,
    )
    return result.to_bytes().decode()


def test_missing_headers_are_added_first_in_msmtp_order() -> None:
    text = rewrite("Subject: s\n")
    names = [line.split(":")[0] for line in text.splitlines()]
    assert names == ["From", "Date", "Message-ID", "Subject"]
    assert "From: joe@example.org\n" in text
    assert re.search(r"Message-ID: <[0-9a-f]+\.[0-9a-f]+@example\.org>", text)
    assert f"Date: {format_date(NOW)}\n" in text


def test_nothing_added_when_present_or_off() -> None:
    present = "From: a@x\nDate: d\nMessage-ID: <m@x>\nSubject: s\n"
    assert rewrite(present) == present
    assert (
        rewrite(
            "Subject: s\n",
            set_from_header=FromHeader.OFF,
            set_date_header=OptionalHeader.OFF,
            set_msgid_header=OptionalHeader.OFF,
        )
        == "Subject: s\n"
    )


def test_date_is_rfc5322_in_c_locale() -> None:
    assert re.fullmatch(
        r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
        r" \d{4} \d\d:\d\d:\d\d [+-]\d{4}",
        format_date(NOW),
    )
    assert format_date() != ""


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, "From: joe@example.org"),
        ({"from_full_name": "Joe Bloggs"}, "From: Joe Bloggs <joe@example.org>"),
        ({"from_full_name": "Bloggs, Joe"}, 'From: "Bloggs, Joe" <joe@example.org>'),
        (
            {"from_full_name": "X", "full_name": "Cron Daemon"},
            "From: Cron Daemon <joe@example.org>",
        ),
        ({"full_name": "Jörg"}, "From: =?UTF-8?B?SsO2cmc=?= <joe@example.org>"),
    ],
)
def test_from_header_auto(settings: dict[str, object], expected: str) -> None:
    assert rewrite("Subject: s\n", None, **settings).splitlines()[0] == expected


def test_from_header_on_replaces_but_keeps_the_display_name() -> None:
    text = rewrite('From: "Sender Name" <other@x>\nSubject: s\n', set_from_header=FromHeader.ON)
    assert text.splitlines()[0] == "From: Sender Name <joe@example.org>"
    assert "other@x" not in text
    named = rewrite("From: A <o@x>\n", set_from_header=FromHeader.ON, full_name="B")
    assert named.splitlines()[0] == "From: B <joe@example.org>"
    broken = rewrite("From: (broken\n", set_from_header=FromHeader.ON)
    assert broken.splitlines()[0] == "From: joe@example.org"
    assert rewrite("Subject: s\n", set_from_header=FromHeader.ON).startswith(
        "From: joe@example.org\n"
    )


def test_null_sender_invents_no_from() -> None:
    headers = headers_of("Subject: s\n")
    for mode in (FromHeader.AUTO, FromHeader.ON):
        result = rewrite_headers(
            headers,
            HeaderSettings(set_from_header=mode, domain="mail.example"),
            envelope_from=Address(addr_spec=""),
            recipients=Recipients(addresses=()),
        )
        assert "From" not in result
        assert "@mail.example>" in (result.get("Message-ID") or "")


@pytest.mark.parametrize(
    ("domain", "sender", "host", "expected"),
    [
        ("mail.example", "joe@example.org", None, "mail.example"),
        ("localhost", "joe@example.org", None, "example.org"),
        ("localhost", "root", "smtp.example", "smtp.example"),
        ("localhost", "root@[192.0.2.1]", None, "localhost"),
        ("", "", None, "localhost"),
    ],
)
def test_message_id_domain(domain: str, sender: str, host: str | None, expected: str) -> None:
    result = rewrite_headers(
        headers_of("Subject: s\n"),
        HeaderSettings(domain=domain),
        envelope_from=parse_envelope_sender(sender),
        recipients=Recipients(addresses=()),
        host=host,
    )
    assert (result.get("Message-ID") or "").endswith(f"@{expected}>")


BCC_CASES = [
    "Bcc: hidden@x\n",
    "bcc: hidden@x\n",
    "BCC:hidden@x\n",
    "Bcc:\n hidden@x,\n\tother@x\n",
    "Resent-Bcc: hidden@x\n",
    "resent-bcc: a@x,\r\n hidden@x\r\n",
]


@pytest.mark.parametrize("bcc", BCC_CASES)
def test_bcc_and_resent_bcc_are_removed_in_any_case_and_folding(bcc: str) -> None:
    text = rewrite(f"To: a@x\n{bcc}Subject: s\n")
    assert "hidden" not in text
    assert "To: a@x\n" in text and "Subject: s\n" in text
    kept = rewrite(f"To: a@x\n{bcc}", remove_bcc_headers=False)
    assert "hidden" in kept


def test_set_to_header_never_reveals_bcc() -> None:
    headers_text = "To: a@x\nCc: b@x\nBcc: secret@x\n"
    recipients = collect_recipients(["arg@x"], headers_of(headers_text), read_headers=True)
    text = rewrite(headers_text, recipients, set_to_header=ToHeader.ON)
    assert "secret" not in text
    assert text.startswith("From: joe@example.org\nTo: arg@x, a@x, b@x\n")
    assert "Cc:" not in text
    only_bcc = collect_recipients([], headers_of("Bcc: s@x\n"), read_headers=True)
    assert "To: undisclosed-recipients:;\n" in rewrite(
        "Bcc: s@x\n", only_bcc, set_to_header=ToHeader.ON
    )
    undisclosed = rewrite(headers_text, recipients, set_to_header=ToHeader.UNDISCLOSED_RECIPIENTS)
    assert "To: undisclosed-recipients:;\n" in undisclosed
    assert "a@x" not in undisclosed


def test_set_to_header_keeps_names_and_folds_long_lists() -> None:
    arguments = ['"Doe, J" <j@x>', "Jörg <jo@x>"] + [f"user{i}@example.org" for i in range(30)]
    text = rewrite("Subject: s\n", collect_recipients(arguments), set_to_header=ToHeader.ON)
    to_field = text.split("To: ", 1)[1].split("\nDate:")[0]
    assert to_field.startswith('"Doe, J" <j@x>, =?UTF-8?B?SsO2cmc=?= <jo@x>, user0@')
    assert all(len(line) <= 78 for line in to_field.split("\n"))
    assert "user29@example.org" in to_field


@pytest.mark.parametrize(
    "field",
    ["full_name", "from_full_name", "domain"],
)
@pytest.mark.parametrize("value", ["Evil\r\nBcc: x@y", "Evil\nX: y", "a\0b", "a\x1bb"])
def test_caller_values_with_line_breaks_are_refused(field: str, value: str) -> None:
    # Refused even where the value would not be written (a From header is present).
    with pytest.raises(UnsafeValueError) as caught:
        rewrite("From: a@x\nSubject: s\n", None, **{field: value})
    assert caught.value.exit_code == ExitCode.USAGE
    with pytest.raises(UnsafeValueError):
        HeaderSettings(**{field: value}).check()  # type: ignore[arg-type]
    # A copy is checked as well: _replace runs no constructor hook.
    with pytest.raises(UnsafeValueError):
        rewrite_headers(
            headers_of("Subject: s\n"),
            HeaderSettings()._replace(**{field: value}),  # type: ignore[arg-type]
            envelope_from=SENDER,
            recipients=Recipients(addresses=()),
            now=NOW,
        )


def test_domain_must_be_a_host_name() -> None:
    with pytest.raises(UnsafeValueError):
        rewrite("Subject: s\n", domain="a b")
    with pytest.raises(UnsafeValueError):
        rewrite("Subject: s\n", domain="x>")
    rewrite("Subject: s\n", domain="mail.example.org")


def test_header_field_build_refuses_injection_and_folds() -> None:
    with pytest.raises(UnsafeValueError):
        HeaderField.build("Subject", "a\r\nBcc: x")
    with pytest.raises(MalformedMessageError):
        fold(b"X: " + b"a" * 1000, b"\n")
    assert fold(b"short", b"\n") == b"short"
    with pytest.raises(ValueError, match="not a header"):
        HeaderField(b"no colon here")
    assert check_safe_value("tab\tis fine", what="x") == "tab\tis fine"
    field = HeaderField.build("X-Long", " ".join(["word"] * 40), line_ending=b"\r\n")
    assert field.raw.endswith(b"\r\n") and b"\r\n " in field.raw
    assert field.value == " ".join(["word"] * 40)
    assert repr(field).startswith("HeaderField(")
    assert field == HeaderField(field.raw) and field != "x" and hash(field) == hash(field.raw)
    block = HeaderBlock([field])
    assert block == HeaderBlock([field]) and block != [field] and hash(block) == hash((field,))
    assert "HeaderBlock" in repr(block)


def test_encode_display_name_splits_long_words() -> None:
    encoded = encode_display_name("é" * 40)
    words = encoded.split(" ")
    assert len(words) == 2
    assert all(len(word) <= 75 for word in words)
