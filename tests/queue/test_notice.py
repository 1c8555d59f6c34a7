"""Delivery status notifications (RFC 3464) and where they go, read back with the
stdlib email parser as a mail client would."""

from __future__ import annotations

import email
import email.policy
import email.utils
from email.message import EmailMessage

import pytest

from mailhop.queue.bounce import Action, FailedRecipient, bounce_route, build_dsn
from mailhop.queue.spool import Entry, RecipientState, RecipientStatus, Route

QUEUED_AT = 1_700_000_000.0
HEADERS = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: quarterly report"


def entry(*states: RecipientState, sender: str = "alice@example.test") -> Entry:
    return Entry(
        id="0000018bcfe56800.0a1b2c3d",
        sender=sender,
        recipients=states,
        account="default",
        config_file=None,
        settings=(),
        queued_at=QUEUED_AT,
        next_attempt=QUEUED_AT,
        message_sha256="0" * 64,
        message_size=0,
    )


def parsed(notice: bytes) -> EmailMessage:
    message = email.message_from_bytes(notice, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def status_blocks(message: EmailMessage) -> list[str]:
    """The per-recipient blocks of the message/delivery-status part, as text."""
    (part,) = [p for p in message.walk() if p.get_content_type() == "message/delivery-status"]
    raw = part.as_bytes().decode("ascii").split("\n\n", 1)[1].replace("\r\n", "\n")
    return raw.strip().split("\n\n")[1:]


def test_a_delay_warning_reports_recipients_still_retried() -> None:
    waiting = RecipientState(
        address="bob@example.test",
        attempts=3,
        last_code=451,
        last_reply=("451 4.3.0 mailbox busy, try later",),
    )
    notice = build_dsn(
        entry(waiting),
        [FailedRecipient(state=waiting, reason="still being retried")],
        HEADERS,
        action=Action.DELAYED,
        retry_until=QUEUED_AT + 5 * 86400,
        reporting_host="host.example.test",
        now=QUEUED_AT + 4 * 3600,
    )
    message = parsed(notice)
    assert message["Subject"] == "Delayed Mail (still being retried)"
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    text = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    assert "after 4 hour(s)" in text.get_content()
    assert "you do not need to send it again" in text.get_content()
    (block,) = status_blocks(message)
    fields = dict(line.split(": ", 1) for line in block.splitlines())
    assert fields["Action"] == "delayed"
    assert fields["Status"] == "4.3.0"
    until = email.utils.parsedate_to_datetime(fields["Will-Retry-Until"]).timestamp()
    assert until == QUEUED_AT + 5 * 86400
    returned = next(p for p in message.walk() if p.get_content_type() == "text/rfc822-headers")
    assert b"Subject: quarterly report" in returned.as_bytes()


def test_a_delayed_recipient_without_a_transient_code_gets_the_generic_one() -> None:
    # A connection that never answered leaves no reply code; a 5.x.x in a 4xx reply
    # (seen in the wild) must not make a warning look permanent.
    refused = RecipientState(address="bob@example.test", last_reply=("connection refused",))
    odd = RecipientState(address="carol@example.test", last_code=450, last_reply=("450 5.7.1 x",))
    notice = build_dsn(
        entry(refused, odd),
        [FailedRecipient(state=s, reason="still being retried") for s in (refused, odd)],
        HEADERS,
        action=Action.DELAYED,
        reporting_host="host.example.test",
    )
    blocks = status_blocks(parsed(notice))
    assert [b for b in blocks if "Status: 4.0.0" in b] == blocks
    assert all("Will-Retry-Until" not in b for b in blocks)  # no retry_until given


def test_a_bounce_keeps_the_servers_permanent_code_and_says_failed() -> None:
    bad = RecipientState(
        address="bad@example.test",
        status=RecipientStatus.FAILED,
        last_code=550,
        last_reply=("550 5.1.1 <bad@example.test>: user unknown",),
    )
    message = parsed(
        build_dsn(
            entry(bad),
            [FailedRecipient(state=bad, reason="refused by the server")],
            HEADERS,
            reporting_host="host.example.test",
        )
    )
    assert message["Subject"] == "Undelivered Mail Returned to Sender"
    (block,) = status_blocks(message)
    assert "Action: failed" in block
    assert "Status: 5.1.1" in block
    assert "Will-Retry-Until" not in block


@pytest.mark.parametrize(
    ("sender", "extra_domains", "route"),
    [
        ("root", (), Route.LOCAL),  # cron's sender: no domain
        ("alice@localhost", (), Route.LOCAL),
        ("alice@LOCALHOST.", (), Route.LOCAL),  # case and a trailing dot do not matter
        ("alice@example.test", (), Route.RELAY),
        ("alice@example.test", ("example.test",), Route.LOCAL),  # local_domains
    ],
)
def test_a_notice_goes_to_a_local_sender_locally(
    sender: str, extra_domains: tuple[str, ...], route: Route
) -> None:
    assert bounce_route(sender, extra_domains) is route
