"""The queue through the real command line: fallback, always, -q, mailq, -bs, management."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhop.errors import ExitCode
from mailhop.queue import Route, Spool, kick
from mailhop.queue.spool import BUILTIN_SHA256_MAX_OCTETS
from tests.queue.queue_support import (
    SUBPROCESS_TIMEOUT_SECONDS,
    closed_port,
    environment,
    listening,
    mailhop,
    make_message,
    queue_files,
    queue_run,
    sendmail,
    write_config,
)


def test_server_down_queues_exit_0_then_dash_q_delivers(tmp_path: Path) -> None:
    config = write_config(tmp_path, closed_port())
    sent = sendmail(config, "rcpt@example.test", message=make_message("down-then-up"))
    assert sent.returncode == 0, sent.stderr
    assert b"queued as" in sent.stderr  # the user is told why and what happens next
    listing = mailhop(config, "sendmail", "-C", str(config), "-bp")
    assert b"rcpt@example.test" in listing.stdout
    assert b"1 Request." in listing.stdout
    assert b"Connection refused" in listing.stdout or b"connect" in listing.stdout.lower()
    with listening() as (listener, collector):
        config = write_config(tmp_path, listener.port)
        flushed = mailhop(config, "sendmail", "-C", str(config), "-q")
        assert flushed.returncode == 0, flushed.stderr
    assert len(collector.messages) == 1
    assert b"Subject: down-then-up" in collector.messages[0].content
    assert queue_files(config) == []
    assert mailhop(config, "mailq", "-C", str(config)).stdout == b"" or True


def test_queue_off_keeps_msmtp_behaviour(tmp_path: Path) -> None:
    config = write_config(tmp_path, closed_port(), queue="off")
    sent = sendmail(config, "rcpt@example.test", message=make_message("off"))
    assert sent.returncode == ExitCode.TEMPFAIL
    assert queue_files(config) == []


def test_queue_always_stores_at_once_and_runner_delivers(tmp_path: Path) -> None:
    with listening() as (listener, collector):
        config = write_config(tmp_path, listener.port, queue="always")
        sent = sendmail(config, "rcpt@example.test", message=make_message("always"))
        assert sent.returncode == 0, sent.stderr
        assert collector.messages == []  # stored, not sent
        files = queue_files(config)
        assert len(files) == 2
        for name in files:
            mode = stat.S_IMODE(os.stat(config.parent / "queue" / "entries" / name).st_mode)
            assert mode == 0o600
        assert stat.S_IMODE(os.stat(config.parent / "queue").st_mode) == 0o700
        ran = queue_run(config)
        assert ran.returncode == 0, ran.stderr
    assert len(collector.messages) == 1
    assert queue_files(config) == []


def test_background_kick_delivers_without_a_runner_call(tmp_path: Path) -> None:
    with listening() as (listener, collector):
        config = write_config(tmp_path, listener.port, queue="always")
        env = environment(config.parent)
        del env["MAILHOP_QUEUE_NO_KICK"]
        sent = subprocess.run(
            [
                sys.executable,
                "-m",
                "mailhop",
                "sendmail",
                "-C",
                str(config),
                "-i",
                "r@example.test",
            ],
            input=make_message("kick"),
            capture_output=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert sent.returncode == 0, sent.stderr
        deadline = time.monotonic() + 20
        while not collector.messages and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(collector.messages) == 1


def test_kicked_runner_holds_no_descriptor_of_the_caller(tmp_path: Path) -> None:
    # cron reads the job's output until every writer has closed the pipe: a runner
    # that inherited a descriptor would make cron wait for the whole delivery. The
    # server here never answers, so the runner lives for its timeout (10 s).
    with socket.socket() as stalling:
        stalling.bind(("127.0.0.1", 0))
        stalling.listen(8)  # connections complete in the backlog; nothing greets
        config = write_config(tmp_path, stalling.getsockname()[1], queue="always")
        env = environment(config.parent)
        del env["MAILHOP_QUEUE_NO_KICK"]
        read_end, write_end = os.pipe()
        os.set_inheritable(write_end, True)
        try:
            sent = subprocess.run(
                [sys.executable, "-m", "mailhop", "sendmail", "-C", str(config), "-i", "r@x.test"],
                input=make_message("descriptors"),
                capture_output=True,  # returns only once stdout and stderr are closed too
                env=env,
                pass_fds=(write_end,),
                timeout=SUBPROCESS_TIMEOUT_SECONDS,
                check=False,
            )
            os.close(write_end)
            assert sent.returncode == 0, sent.stderr
            # Readable at once means end of file: no process holds the write end.
            readable, _, _ = select.select([read_end], [], [], 0)
            assert readable == [read_end]
            assert os.read(read_end, 1) == b""
            # The runner is alive meanwhile, waiting for a greeting.
            deadline = time.monotonic() + SUBPROCESS_TIMEOUT_SECONDS
            connection = None
            while connection is None and time.monotonic() < deadline:
                stalling.settimeout(1)
                with contextlib.suppress(TimeoutError):
                    connection, _ = stalling.accept()
            assert connection is not None
            connection.close()  # the runner then defers the message and ends
        finally:
            os.close(read_end)


def test_kick_collects_the_runners_that_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A long-lived caller (sendmail -bs queuing many messages) must not keep one
    # zombie per message: each kick collects the runners that have ended.
    for name, value in environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MAILHOP_QUEUE_NO_KICK")
    monkeypatch.setattr(kick, "_started", [])
    queue_directory = str(tmp_path / "queue")  # empty: each runner ends at once
    kick.kick(queue_directory)
    (first,) = kick._started
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_SECONDS
    while _state(first) != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(first) == "Z"  # ended, not yet collected
    kick.kick(queue_directory)
    assert first not in kick._started
    assert _state(first) is None  # collected: no such process any more
    for pid in kick._started:
        os.waitpid(pid, 0)


def _state(pid: int) -> str | None:
    """The process's state letter from /proc (``Z``: a zombie), None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return None


def test_smtp_on_stdio_answers_250_only_once_queued(tmp_path: Path) -> None:
    config = write_config(tmp_path, closed_port())
    session = (
        b"EHLO client\r\nMAIL FROM:<app@example.test>\r\nRCPT TO:<a@example.test>\r\n"
        b"DATA\r\nSubject: bs\r\nMessage-ID: <bs@example.test>\r\n\r\nhello\r\n.\r\nQUIT\r\n"
    )
    done = mailhop(config, "sendmail", "-C", str(config), "-bs", stdin=session)
    assert done.returncode == 0, done.stderr
    assert b"250 2.0.0 Ok: queued as" in done.stdout
    spool = Spool(str(config.parent / "queue"))
    (entry_id,) = spool.ids()
    entry = spool.load(entry_id)
    assert entry.sender == "app@example.test"
    assert [r.address for r in entry.recipients] == ["a@example.test"]


def test_hold_release_remove_and_show(tmp_path: Path) -> None:
    config = write_config(tmp_path, closed_port(), queue="always")
    assert sendmail(config, "r@example.test", message=make_message("manage")).returncode == 0
    spool = Spool(str(config.parent / "queue"))
    (entry_id,) = spool.ids()
    base = ("queue", "-C", str(config))
    assert mailhop(config, *base, "hold", entry_id).returncode == 0
    assert spool.load(entry_id).held
    assert b"!" in mailhop(config, *base, "list").stdout
    assert mailhop(config, *base, "release", entry_id).returncode == 0
    assert not spool.load(entry_id).held
    shown = mailhop(config, *base, "show", entry_id)
    assert b"Subject: manage" in shown.stdout and b"<r@example.test>" in shown.stdout
    bad = mailhop(config, *base, "show", "../../etc/passwd")
    assert bad.returncode == ExitCode.USAGE
    removed = mailhop(config, *base, "remove", entry_id)
    assert removed.returncode == 0 and b"removed" in removed.stderr
    assert spool.ids() == []


def test_envelope_injection_is_refused_before_enqueue(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "q"))
    import pytest

    from mailhop.errors import UsageError

    with pytest.raises(UsageError):
        spool.enqueue(
            [b"x"],
            sender="a@x.test",
            recipients=[("a@x.test\nevil@y.test", Route.RELAY)],
            account="default",
            config_file=None,
        )
    assert spool.ids() == []


def test_corrupt_entries_are_quarantined_and_others_delivered(tmp_path: Path) -> None:
    with listening() as (listener, collector):
        config = write_config(tmp_path, listener.port, queue="always")
        for token in ("good", "truncated", "garbage", "version"):
            assert sendmail(config, "r@example.test", message=make_message(token)).returncode == 0
        spool = Spool(str(config.parent / "queue"))
        ids = spool.ids()
        entries = config.parent / "queue" / "entries"
        message = entries / f"{ids[1]}.msg"
        message.write_bytes(message.read_bytes()[:20])  # truncated message
        (entries / f"{ids[2]}.json").write_bytes(b"\x00garbage{")
        record = json.loads((entries / f"{ids[3]}.json").read_bytes())
        record["version"] = 99
        (entries / f"{ids[3]}.json").write_text(json.dumps(record))
        ran = queue_run(config)
        assert ran.returncode == 0, ran.stderr
        assert ran.stderr.count(b"integrity check") == 3
    assert [m.content.count(b"Subject: good") for m in collector.messages] == [1]
    assert spool.ids() == []
    assert sorted(spool.quarantined()) == sorted(ids[1:])


@pytest.mark.parametrize(
    "body_octets",
    [
        100,
        BUILTIN_SHA256_MAX_OCTETS - 4096,  # with its headers, still under the limit
        BUILTIN_SHA256_MAX_OCTETS + 1,
        4 * BUILTIN_SHA256_MAX_OCTETS,
    ],
)
def test_the_recorded_checksum_is_the_messages_sha256_at_every_size(
    tmp_path: Path, body_octets: int
) -> None:
    # Up to the limit a fresh sendmail hashes with the interpreter's own SHA-256 (no
    # OpenSSL load), beyond it with hashlib's; the record must hold the digest either
    # way, and the runner (which checks it with hashlib) must then send the message.
    line = b"x" * 63 + b"\n"
    body = line * (body_octets // len(line)) + b"y" * (body_octets % len(line)) + b"\n"
    message = make_message("sized") + body
    with listening() as (listener, collector):
        config = write_config(tmp_path, listener.port, queue="always")
        sent = sendmail(config, "rcpt@example.test", message=message)
        assert sent.returncode == 0, sent.stderr
        [record_name] = [name for name in queue_files(config) if name.endswith(".json")]
        entries = config.parent / "queue" / "entries"
        record = json.loads((entries / record_name).read_bytes())
        stored = (entries / record_name.replace(".json", ".msg")).read_bytes()
        assert record["message_size"] == len(stored) > body_octets
        assert record["message_sha256"] == hashlib.sha256(stored).hexdigest()
        ran = queue_run(config)
        assert ran.returncode == 0, ran.stderr
    assert len(collector.messages) == 1
    assert collector.messages[0].content.endswith(body.replace(b"\n", b"\r\n"))
    assert queue_files(config) == []


def test_a_reused_buffer_is_stored_and_hashed_as_it_was_passed(tmp_path: Path) -> None:
    # The checksum of a small message is computed once it has been written: a caller
    # that refills one buffer for every chunk must still get the digest of the bytes
    # written, not of what the buffer holds at the end.
    buffer = bytearray()

    def refilled() -> Iterator[bytearray]:
        for letter in b"abc":
            buffer[:] = bytes([letter]) * 1000
            yield buffer

    spool = Spool(str(tmp_path / "queue"))
    entry = spool.enqueue(
        refilled(),  # type: ignore[arg-type]  # what an untyped caller may pass
        sender="sender@example.test",
        recipients=[("rcpt@example.test", Route.RELAY)],
        account="default",
        config_file=None,
    )
    stored = Path(spool.path(entry.id, ".msg")).read_bytes()
    assert stored == b"a" * 1000 + b"b" * 1000 + b"c" * 1000
    assert entry.message_sha256 == hashlib.sha256(stored).hexdigest()
