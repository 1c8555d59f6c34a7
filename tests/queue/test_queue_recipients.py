"""Per-recipient outcomes (security.md G4, G7) against aiosmtpd, an independent server."""

from __future__ import annotations

import mailbox
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from mailhop.queue import RecipientStatus, Spool
from tests.queue.queue_support import closed_port, make_message, queue_run, sendmail, write_config

GOOD, BAD, LATER = "good@example.test", "bad@example.test", "later@example.test"


class Handler:
    """250 to GOOD, 550 to BAD, 451 to LATER; records each transaction."""

    def __init__(self) -> None:
        self.transactions: list[tuple[str, tuple[str, ...], bytes]] = []
        self.lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address == BAD:
            return "550 5.1.1 <bad@example.test>: user unknown"
        if address == LATER:
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.transactions.append(
                (envelope.mail_from, tuple(envelope.rcpt_tos), bytes(envelope.content))
            )
        return "250 2.0.0 accepted"


@pytest.fixture
def server() -> Iterator[tuple[Handler, int]]:
    handler = Handler()
    port = closed_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def test_250_550_451_each_recipient_gets_its_own_fate(
    server: tuple[Handler, int], tmp_path: Path
) -> None:
    handler, port = server
    config = write_config(tmp_path, port, queue="always")
    sent = sendmail(config, GOOD, BAD, LATER, message=make_message("three-fates"))
    assert sent.returncode == 0, sent.stderr
    spool = Spool(str(tmp_path / "queue"))
    (original,) = spool.ids()

    assert queue_run(config).returncode == 0
    assert [t[1] for t in handler.transactions] == [(GOOD,)]
    entry = spool.load(original)
    states = {r.address: r for r in entry.recipients}
    assert states[GOOD].status is RecipientStatus.DELIVERED
    assert states[BAD].status is RecipientStatus.FAILED
    assert states[LATER].status is RecipientStatus.PENDING
    assert states[LATER].last_code == 451
    assert "451" in (entry.last_error or "")
    assert len(spool.ids()) == 2  # the original (LATER pending) and one bounce

    for _ in range(3):  # later runs: only LATER is tried, the bounce goes once
        assert queue_run(config, "--force").returncode == 0
    recipients_sent = [t[1] for t in handler.transactions]
    assert recipients_sent.count((GOOD,)) == 1  # never resent
    bounces = [t for t in handler.transactions if t[0] in ("", "<>")]
    assert len(bounces) == 1
    assert bounces[0][1] == ("sender@example.test",)
    report = bounces[0][2]
    assert b"multipart/report; report-type=delivery-status" in report
    assert b"Final-Recipient: rfc822; bad@example.test" in report
    assert b"Status: 5.1.1" in report
    assert b"Action: failed" in report
    assert b"Subject: three-fates" in report  # the original's headers come back
    assert b"later@example.test" not in report.split(b"text/rfc822-headers")[0]
    assert spool.ids() == [original]
    assert spool.load(original).pending[0].address == LATER


def test_a_bounce_is_never_bounced(server: tuple[Handler, int], tmp_path: Path) -> None:
    handler, port = server
    config = write_config(tmp_path, port, queue="always")
    sent = sendmail(config, "-f", "<>", BAD, message=make_message("null-sender"))
    assert sent.returncode == 0, sent.stderr
    assert queue_run(config).returncode == 0
    assert queue_run(config, "--force").returncode == 0
    assert handler.transactions == []
    assert Spool(str(tmp_path / "queue")).ids() == []


def test_lifetime_end_bounces_the_pending_recipient_once(
    server: tuple[Handler, int], tmp_path: Path
) -> None:
    handler, port = server
    config = write_config(tmp_path, port, "queue_lifetime 1s", queue="always")
    assert sendmail(config, LATER, message=make_message("expires")).returncode == 0
    time.sleep(1.1)
    assert queue_run(config).returncode == 0
    assert queue_run(config, "--force").returncode == 0
    bounces = [t for t in handler.transactions if t[0] in ("", "<>")]
    assert len(bounces) == 1
    assert b"Final-Recipient: rfc822; later@example.test" in bounces[0][2]
    assert b"Status: 4.3.0" in bounces[0][2] or b"Status: 4." in bounces[0][2]


def test_a_delay_warning_goes_once_when_the_entry_is_old_enough(
    server: tuple[Handler, int], tmp_path: Path
) -> None:
    handler, port = server
    config = write_config(tmp_path, port, "queue_delay_warning 1s", queue="always")
    assert sendmail(config, GOOD, LATER, message=make_message("slow-one")).returncode == 0
    assert queue_run(config).returncode == 0  # young: GOOD delivered, no warning yet
    assert [t for t in handler.transactions if t[0] in ("", "<>")] == []
    time.sleep(1.1)
    for _ in range(3):  # old enough: one warning, then never again
        assert queue_run(config, "--force").returncode == 0
    warnings = [t for t in handler.transactions if t[0] in ("", "<>")]
    assert len(warnings) == 1
    assert warnings[0][1] == ("sender@example.test",)
    report = warnings[0][2]
    assert b"Subject: Delayed Mail (still being retried)" in report
    assert b"Action: delayed" in report
    assert b"Final-Recipient: rfc822; later@example.test" in report
    assert b"Final-Recipient: rfc822; good@example.test" not in report
    assert b"Will-Retry-Until: " in report
    spool = Spool(str(tmp_path / "queue"))
    (original,) = spool.ids()
    entry = spool.load(original)
    assert entry.delay_warned
    assert [r.address for r in entry.pending] == [LATER]


def test_no_delay_warning_unless_configured(server: tuple[Handler, int], tmp_path: Path) -> None:
    handler, port = server
    config = write_config(tmp_path, port, queue="always")
    assert sendmail(config, LATER, message=make_message("slow-two")).returncode == 0
    spool = Spool(str(tmp_path / "queue"))
    (original,) = spool.ids()
    for _ in range(2):
        assert queue_run(config, "--force").returncode == 0
    assert handler.transactions == []
    assert not spool.load(original).delay_warned


def test_a_local_sender_gets_the_bounce_in_the_local_mailbox(
    server: tuple[Handler, int], tmp_path: Path
) -> None:
    handler, port = server
    mail_spool = tmp_path / "spool"
    mail_spool.mkdir()
    aliases = tmp_path / "aliases"
    aliases.write_text("")
    config = write_config(
        tmp_path,
        port,
        f"mail_spool {mail_spool}",
        "local_mailbox mbox",
        f"system_aliases {aliases}",
        queue="always",
    )
    sent = sendmail(config, "-f", "root", BAD, message=make_message("from-cron"))
    assert sent.returncode == 0, sent.stderr
    for _ in range(2):  # the first run queues the bounce, the second delivers it
        assert queue_run(config, "--force").returncode == 0
    assert handler.transactions == []  # nothing relayed: BAD refused, bounce kept local
    box = mailbox.mbox(str(mail_spool / "root"), create=False)
    try:
        (notice,) = list(box)
    finally:
        box.close()
    assert notice["Subject"] == "Undelivered Mail Returned to Sender"
    assert b"Final-Recipient: rfc822; bad@example.test" in notice.as_bytes()
    assert b"Action: failed" in notice.as_bytes()
    assert Spool(str(tmp_path / "queue")).ids() == []


def test_a_bare_envelope_sender_is_qualified_for_the_relay(
    server: tuple[Handler, int], tmp_path: Path
) -> None:
    # `sendmail -f root` relays as root@<this host's mail domain>, like Postfix's
    # append_at_myorigin; sent bare, the server would refuse it (RFC 5321 §4.1.2).
    handler, port = server
    config = write_config(tmp_path, port, queue="off")
    sent = sendmail(config, "-f", "root", GOOD, message=make_message("bare-sender"))
    assert sent.returncode == 0, sent.stderr
    ((mail_from, recipients, _),) = handler.transactions
    assert recipients == (GOOD,)
    local, _, domain = mail_from.partition("@")
    names = {socket.gethostname(), socket.getfqdn()}
    if os.path.exists("/etc/mailname"):
        names.add(Path("/etc/mailname").read_text().strip())
    assert (local, domain in names) == ("root", True)
