"""The queue record on disk: mail queued by an earlier mailhop must still go out.

Queue entries were dataclasses until they became NamedTuples (to spare every sendmail
process the dataclass machinery). A NamedTuple serialises as a JSON list and its
``_asdict`` is not recursive, so a careless ``to_json`` would write a record no runner
can read, or read a record it wrote itself but not one an earlier version left behind.
The record below is byte for byte what the dataclass version wrote; a spool upgraded
in place holds such records, and invariant 2 (DESIGN.md §4) says they are not lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from mailhop.errors import UsageError
from mailhop.queue import RecipientStatus, Route, Spool
from mailhop.queue.runner import run
from mailhop.queue.spool import RECORD_VERSION, Entry, RecipientState, check_id, new_id
from tests.deliver.scripted_server import GREETING, Expect, ScriptedServer, Send, ehlo, reply
from tests.queue.queue_support import listening, queue_run, write_config

# An id of the form new_id() makes: hex nanoseconds, a dot, 32 random bits.
LEGACY_ID = "18ec14f4c972548c.9fcc5adf"
LEGACY_MESSAGE = (
    b"From: sender@example.test\r\nTo: rcpt@example.test, done@example.test\r\n"
    b"Subject: queued before the upgrade\r\nMessage-ID: <legacy@example.test>\r\n"
    b"\r\nstill here\r\n"
)


def legacy_record(*, config_file: str, queued_at: float) -> bytes:
    """A record as the dataclass version wrote it: one attempt, one recipient done."""
    # The layout is spelled out, not produced by json.dumps of today's Entry: it is
    # what older mailhop versions left on disk, and it must not follow the code.
    return (
        '{"account": "default", "attempts": 1, '
        f'"config_file": {json.dumps(config_file)}, '
        '"delay_warned": false, "held": false, '
        f'"id": "{LEGACY_ID}", "last_error": "451 4.3.0 try later", '
        '"message_id": "<legacy@example.test>", '
        f'"message_sha256": "{hashlib.sha256(LEGACY_MESSAGE).hexdigest()}", '
        f'"message_size": {len(LEGACY_MESSAGE)}, '
        f'"next_attempt": {queued_at + 60.0!r}, "queued_at": {queued_at!r}, '
        '"recipients": ['
        '{"address": "rcpt@example.test", "attempts": 1, "last_code": 451, '
        '"last_reply": ["4.3.0 try later"], "route": "relay", "status": "pending"}, '
        '{"address": "done@example.test", "attempts": 1, "last_code": 250, '
        '"last_reply": ["2.0.0 ok"], "route": "relay", "status": "delivered"}], '
        '"sender": "sender@example.test", "settings": [["timeout", "10"]], "version": 1}'
    ).encode()


def place_legacy_entry(queue_dir: Path, record: bytes) -> Spool:
    """Put the message and its record where the earlier version committed them."""
    spool = Spool(str(queue_dir)).ensure()
    for suffix, data in ((".msg", LEGACY_MESSAGE), (".json", record)):
        descriptor = os.open(spool.path(LEGACY_ID, suffix), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.write(descriptor, data)
        finally:
            os.close(descriptor)
    return spool


def test_a_record_of_the_dataclass_version_loads_and_is_written_back_unchanged(
    tmp_path: Path,
) -> None:
    record = legacy_record(config_file="/home/u/.msmtprc", queued_at=time.time() - 120.0)
    spool = place_legacy_entry(tmp_path / "queue", record)
    entry = spool.load(LEGACY_ID)
    assert entry.id == LEGACY_ID
    assert entry.config_file == "/home/u/.msmtprc"
    assert entry.settings == (("timeout", "10"),)
    assert [(r.address, r.route, r.status, r.last_code) for r in entry.recipients] == [
        ("rcpt@example.test", Route.RELAY, RecipientStatus.PENDING, 451),
        ("done@example.test", Route.RELAY, RecipientStatus.DELIVERED, 250),
    ]
    assert entry.recipients[0].last_reply == ("4.3.0 try later",)
    assert (entry.attempts, entry.held, entry.message_size) == (1, False, len(LEGACY_MESSAGE))
    # Written back (every update does), the record keeps its format: an object of
    # named fields, each recipient an object too, nothing added, nothing reordered.
    assert entry.to_json() == record
    with spool.open_message(entry) as file:  # its checksum still matches
        assert file.read() == LEGACY_MESSAGE


def test_a_record_of_the_dataclass_version_is_delivered_by_the_runner(tmp_path: Path) -> None:
    with listening() as (listener, collector):
        config = write_config(tmp_path, listener.port, queue="always")
        record = legacy_record(config_file=str(config), queued_at=time.time() - 120.0)
        spool = place_legacy_entry(tmp_path / "queue", record)
        ran = queue_run(config)
        assert ran.returncode == 0, ran.stderr
    # Only the recipient still pending gets it: the other was delivered before.
    assert [sorted(m.recipients) for m in collector.messages] == [["rcpt@example.test"]]
    assert collector.messages[0].content.endswith(b"\r\n\r\nstill here\r\n")
    assert spool.ids() == []
    assert spool.quarantined() == []


def test_a_record_is_written_as_json_dumps_would_write_it() -> None:
    # to_json writes records without the json module (the enqueue path does not
    # import it): every kind of value a record holds must come out as json.dumps's.
    entry = Entry(
        id=LEGACY_ID,
        sender='envelope "sender"\\@example.test',
        recipients=(
            RecipientState(address="rcpt@example.test"),
            RecipientState(
                address="josé@例え.テスト",
                status=RecipientStatus.FAILED,
                attempts=3,
                last_code=550,
                last_reply=("5.1.1 no such user \t\x01\x7f\u2028", "second line"),
            ),
        ),
        account=None,
        config_file="/etc/mailhop\\msmtprc",
        settings=(("timeout", "10"), ("tls", "off")),
        queued_at=1795840373.0506184,
        next_attempt=float("inf"),
        message_sha256="00" * 32,
        message_size=2**40,
        attempts=-1,
        last_error="refused:\r\n\x00",
        held=True,
        sent_as_stored=True,
    )
    data = entry._asdict()
    data["version"] = RECORD_VERSION
    data["recipients"] = [
        {**r._asdict(), "route": r.route.value, "status": r.status.value} for r in entry.recipients
    ]
    expected = json.dumps(data, ensure_ascii=False, sort_keys=True)
    assert entry.to_json() == expected.encode("utf-8")


@pytest.mark.parametrize(
    "text",
    [
        LEGACY_ID.upper(),
        LEGACY_ID + "\n",
        LEGACY_ID[:-1],
        LEGACY_ID.replace(".", "-"),
        "../" + LEGACY_ID[3:],
        LEGACY_ID[:16] + "." + "g" * 8,
        "٠" * 16 + "." + "0" * 8,  # Arabic-Indic digits are digits, not hex digits
    ],
)
def test_only_the_form_new_id_makes_is_an_entry_id(text: str) -> None:
    assert check_id(new_id()) and check_id(LEGACY_ID) == LEGACY_ID
    with pytest.raises(UsageError):
        check_id(text)


# A reply from a server that writes Latin-1, not UTF-8: "café" as one octet 0xE9.
# The reply parser keeps such octets as lone surrogates (surrogateescape), which
# UTF-8 cannot encode: the record must still be written, and read back the same.
LATIN1_REPLY = b"451 4.3.0 caf\xe9 occup\xe9\r\n"
LATIN1_REPLY_TEXT = "451 4.3.0 caf\udce9 occup\udce9"


def test_a_reply_that_is_not_utf8_is_written_and_read_back_as_it_came() -> None:
    entry = Entry(
        id=LEGACY_ID,
        sender="sender@example.test",
        recipients=(
            RecipientState(
                address="rcpt@example.test", last_code=451, last_reply=(LATIN1_REPLY_TEXT,)
            ),
        ),
        account=None,
        config_file=None,
        settings=(),
        queued_at=1795840373.0,
        next_attempt=1795840433.0,
        message_sha256="00" * 32,
        message_size=1,
        last_error=LATIN1_REPLY_TEXT + " \\udce9",  # and a backslash of its own
    )
    raw = entry.to_json()
    raw.decode("utf-8")  # the record is UTF-8 JSON
    assert Entry.from_json(raw) == entry


def test_a_run_records_a_reply_that_is_not_utf8(tmp_path: Path) -> None:
    server = ScriptedServer([
        *GREETING, *ehlo("8BITMIME"),
        Expect(b"MAIL"), Send(reply(250, "2.1.0 Ok")),
        Expect(b"RCPT"), Send(LATIN1_REPLY),
        Expect(b"RSET"), Send(reply(250, "2.0.0 Ok")),
        Expect(b"QUIT"), Send(reply(221, "2.0.0 Bye")),
    ])  # fmt: skip
    try:
        config = write_config(tmp_path, server.port, queue="always")
        spool = Spool(str(tmp_path / "queue"))
        entry_id = spool.enqueue(
            [LEGACY_MESSAGE],
            sender="sender@example.test",
            recipients=[("rcpt@example.test", Route.RELAY)],
            account="default",
            config_file=str(config),
        ).id
        report = run(spool, connections=1)
        assert server.wait(0).script_finished
    finally:
        server.stop()
    assert (report.delivered, report.deferred) == (0, 1)
    (state,) = spool.load(entry_id).recipients
    assert state.status is RecipientStatus.PENDING and state.attempts == 1
    assert state.last_reply == (LATIN1_REPLY_TEXT,)
