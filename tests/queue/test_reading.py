"""Reading queued messages: held in memory or streamed, sent as stored or fitted first.

Against our own listener (the server core), in process: what arrives must be the
stored message byte for byte (line ends and dot-stuffing undone by the server)
whichever way the runner read it, including records older than the
``sent_as_stored`` field and messages too large to hold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mailhop.queue import Route, Spool
from mailhop.queue import spool as spool_module
from mailhop.queue.runner import run
from tests.queue.queue_support import listening, write_config

MESSAGE = (
    b"From: sender@example.test\r\nTo: r@example.test\r\nSubject: stored\r\n"
    b"X-Folded: first\r\n  second\r\n\r\n"
    b".a line that starts with a dot\r\n..two dots\r\n.\r\nthe end\r\n"
)


def enqueue(tmp_path: Path, port: int, message: bytes) -> Spool:
    config = write_config(tmp_path, port, queue="always")
    spool = Spool(str(tmp_path / "queue"))
    spool.enqueue(
        [message],
        sender="sender@example.test",
        recipients=[("r@example.test", Route.RELAY)],
        account="default",
        config_file=str(config),
    )
    return spool


def test_an_ordinary_message_is_sent_as_stored_byte_for_byte(tmp_path: Path) -> None:
    with listening() as (listener, collector):
        spool = enqueue(tmp_path, listener.port, MESSAGE)
        (entry_id,) = spool.ids()
        assert spool.load(entry_id).sent_as_stored
        assert run(spool, connections=1).delivered == 1
    (received,) = collector.messages
    assert received.content == MESSAGE


def test_a_record_older_than_the_field_is_still_delivered(tmp_path: Path) -> None:
    with listening() as (listener, collector):
        spool = enqueue(tmp_path, listener.port, MESSAGE)
        (entry_id,) = spool.ids()
        record = Path(spool.path(entry_id, spool_module.RECORD_SUFFIX))
        data = json.loads(record.read_bytes())
        del data["sent_as_stored"]  # as written before the field existed
        record.write_text(json.dumps(data))
        assert not spool.load(entry_id).sent_as_stored
        assert run(spool, connections=1).delivered == 1
    (received,) = collector.messages
    assert received.content == MESSAGE  # read and fitted: the same bytes


def test_a_message_with_bare_line_feeds_is_fitted_not_sent_as_stored(tmp_path: Path) -> None:
    with listening() as (listener, collector):
        spool = enqueue(tmp_path, listener.port, MESSAGE.replace(b"\r\n", b"\n"))
        (entry_id,) = spool.ids()
        assert not spool.load(entry_id).sent_as_stored
        # Left out when false: an older mailhop can still read this record.
        record = Path(spool.path(entry_id, ".json")).read_bytes()
        assert b"sent_as_stored" not in record
        assert run(spool, connections=1).delivered == 1
    (received,) = collector.messages
    assert received.content == MESSAGE  # every line end became CRLF on the wire


def test_a_message_too_large_to_hold_is_streamed_from_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "MAX_HELD_MESSAGE_OCTETS", 64)
    body = b"".join(b"line %d of a long message\r\n" % index for index in range(5000))
    message = MESSAGE + body
    with listening() as (listener, collector):
        spool = enqueue(tmp_path, listener.port, message)
        (entry_id,) = spool.ids()
        scanned = spool.scan(entry_id)
        with spool.claim(scanned) as claimed:
            assert claimed.content is None and claimed.message.read() == message
        assert run(spool, connections=1).delivered == 1
    (received,) = collector.messages
    assert received.content == message


@pytest.mark.parametrize("held", [True, False], ids=["held", "streamed"])
def test_an_altered_message_is_caught_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: bool
) -> None:
    if not held:
        monkeypatch.setattr(spool_module, "MAX_HELD_MESSAGE_OCTETS", 16)
    with listening() as (listener, collector):
        spool = enqueue(tmp_path, listener.port, MESSAGE)
        (entry_id,) = spool.ids()
        path = Path(spool.path(entry_id, spool_module.MESSAGE_SUFFIX))
        path.write_bytes(MESSAGE.replace(b"the end", b"THE END"))  # same size
        report = run(spool, connections=1)
    assert report.quarantined == (entry_id,)
    assert collector.messages == []


def test_reads_leave_access_times_alone_and_work_on_files_of_others() -> None:
    # O_NOATIME (Linux) is the file owner's: a runner reading someone else's
    # file (root's, from another user) must still read it, without the flag.
    if not hasattr(os, "O_NOATIME") or os.geteuid() != 0:
        pytest.skip("needs Linux's O_NOATIME and root, to read as another user")
    # Outside tmp_path: the other user must be able to reach it (pytest's base
    # directory is private).
    with tempfile.TemporaryDirectory(dir="/tmp") as reachable:
        os.chmod(reachable, 0o755)  # noqa: S103 - another user must reach it
        theirs = Path(reachable) / "theirs"
        theirs.write_bytes(b"readable by all")
        theirs.chmod(0o644)
        _check_reads(theirs)


def _check_reads(theirs: Path) -> None:
    reader = (
        "import os, sys\n"
        "from mailhop.queue.spool import _open_for_reading\n"
        "os.setgid(65534); os.setuid(65534)\n"
        f"descriptor = _open_for_reading({str(theirs)!r}, os.O_RDONLY)\n"
        "sys.stdout.write(os.read(descriptor, 100).decode())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", reader], capture_output=True, text=True, check=True
    )
    assert result.stdout == "readable by all"
    # As the owner, the flag is taken: the first read of a fresh file leaves atime.
    os.utime(theirs, ns=(0, os.stat(theirs).st_mtime_ns))
    descriptor = spool_module._open_for_reading(str(theirs), os.O_RDONLY)
    try:
        os.read(descriptor, 100)
    finally:
        os.close(descriptor)
    assert os.stat(theirs).st_atime_ns == 0
