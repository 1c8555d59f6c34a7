"""The runner's less travelled paths, in process, against aiosmtpd (an independent
server): a whole transaction refused, a server gone mid-run, sessions recycled after
their message cap, an unreachable server deferring the rest of a batch."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from mailhop.queue import RecipientStatus, Route, Spool
from mailhop.queue import runner as runner_module
from mailhop.queue.runner import run
from tests.queue.queue_support import CountingHandler, closed_port, make_message, write_config

SENDER = "sender@example.test"


@pytest.fixture
def serve() -> Iterator[Any]:
    controllers: list[Controller] = []

    def start(handler: CountingHandler) -> int:
        port = closed_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        return port

    yield start
    for controller in controllers:
        controller.stop()


def queue_messages(tmp_path: Path, port: int, count: int, *lines: str) -> Spool:
    config = write_config(tmp_path, port, *lines, queue="always")
    spool = Spool(str(tmp_path / "queue"))
    for index in range(count):
        spool.enqueue(
            [make_message(f"paths-{index}").replace(b"\n", b"\r\n")],
            sender=SENDER,
            recipients=[(f"r{index}@example.test", Route.RELAY)],
            account="default",
            config_file=str(config),
        )
    return spool


def test_a_permanent_refusal_of_the_whole_message_bounces_every_recipient(
    serve: Any, tmp_path: Path
) -> None:
    handler = CountingHandler(["554 5.6.0 message content rejected"])
    spool = queue_messages(tmp_path, serve(handler), 1)
    (original,) = spool.ids()
    report = run(spool, connections=1)
    assert (report.delivered, report.bounced) == (1, 1)
    (notice,) = spool.ids()  # the original is done; its bounce waits to be sent
    entry = spool.load(notice)
    assert entry.is_bounce and notice != original
    assert [r.address for r in entry.recipients] == [SENDER]


def test_a_temporary_refusal_of_the_whole_message_keeps_it_with_the_reply(
    serve: Any, tmp_path: Path
) -> None:
    handler = CountingHandler(["451 4.3.0 queue full, try later"])
    spool = queue_messages(tmp_path, serve(handler), 2)
    report = run(spool, connections=1)
    assert (report.delivered, report.deferred, report.bounced) == (0, 2, 0)
    for entry_id in spool.ids():
        entry = spool.load(entry_id)
        assert entry.attempts == 1
        assert "451" in (entry.last_error or "")
        assert all(r.status is RecipientStatus.PENDING for r in entry.recipients)


def test_sessions_are_recycled_after_their_message_cap(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "MAX_MESSAGES_PER_CONNECTION", 3)
    handler = CountingHandler()
    spool = queue_messages(tmp_path, serve(handler), 7)
    report = run(spool, connections=1)
    assert report.delivered == 7
    assert len(handler.accepted) == 7
    assert handler.sessions == 3  # 3 + 3 + 1 messages
    assert spool.ids() == []


def test_an_unreachable_server_defers_the_whole_batch_after_one_try(tmp_path: Path) -> None:
    spool = queue_messages(tmp_path, closed_port(), 3)
    report = run(spool, connections=1)
    assert (report.delivered, report.deferred, report.bounced) == (0, 3, 0)
    errors = {spool.load(entry_id).last_error for entry_id in spool.ids()}
    (error,) = errors  # the first connection's failure, recorded for every entry
    assert error is not None and "connect" in error.lower()


def test_a_broken_configuration_keeps_the_mail_and_says_so(tmp_path: Path) -> None:
    spool = queue_messages(tmp_path, closed_port(), 2)
    (tmp_path / "msmtprc").write_text("account default\nport not-a-port\n")
    report = run(spool, connections=1)
    assert report.deferred == 2
    (problem,) = report.problems
    assert problem.startswith("cannot deliver 2 queued message(s):")
    for entry_id in spool.ids():
        assert "(mail kept; fix the configuration)" in (spool.load(entry_id).last_error or "")


def test_a_held_entry_is_left_alone_even_when_forced(serve: Any, tmp_path: Path) -> None:
    handler = CountingHandler()
    spool = queue_messages(tmp_path, serve(handler), 2)
    held, _ = spool.ids()
    with spool.lock(held, wait=1):
        spool.update(spool.load(held)._replace(held=True))
    report = run(spool, force=True, connections=1)
    assert report.delivered == 1
    assert spool.ids() == [held]
    assert len(handler.accepted) == 1


class Dropper(CountingHandler):
    """Hangs up instead of answering the first message's end of data."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self.dropped:
            self.dropped = True
            server.transport.close()
            return "421 4.4.2 closing"  # never reaches the client: the line is gone
        return await super().handle_DATA(server, session, envelope)


def test_a_connection_lost_mid_message_keeps_it_and_the_next_gets_a_new_session(
    serve: Any, tmp_path: Path
) -> None:
    handler = Dropper()
    spool = queue_messages(tmp_path, serve(handler), 2)
    first, _ = spool.ids()
    report = run(spool, connections=1)
    assert (report.delivered, report.deferred, report.bounced) == (1, 1, 0)
    assert spool.ids() == [first]  # no 250 seen: kept, never counted as sent
    entry = spool.load(first)
    assert entry.pending and entry.recipients[0].last_code == 0
    assert handler.sessions == 2  # the lost session was not reused
    assert len(handler.accepted) == 1


def test_an_entry_locked_by_another_process_is_skipped_as_busy(serve: Any, tmp_path: Path) -> None:
    handler = CountingHandler()
    spool = queue_messages(tmp_path, serve(handler), 2)
    locked, _ = spool.ids()
    with spool.lock(locked, wait=1):  # another descriptor: flock sees another owner
        report = run(spool, connections=1)
    assert (report.delivered, report.busy) == (1, 1)
    assert spool.ids() == [locked]
    assert handler.accepted == [("r1@example.test",)]


def test_a_worker_takes_chunk_after_chunk_over_one_connection_then_reports(
    serve: Any, tmp_path: Path
) -> None:
    # What each forked worker of ``mailhop queue run`` does, here in process.
    handler = CountingHandler()
    count = runner_module.WORK_CHUNK_ENTRIES * 2 + 3  # three chunks
    spool = queue_messages(tmp_path, serve(handler), count)
    ids = spool.ids()
    tally = runner_module._Tally()
    worker = runner_module._Worker(
        spool,
        tally,
        force=False,
        now=time.time(),
        resolve_account=runner_module.resolve_entry_account,
        local_delivery=None,
        log=None,
    )
    chunks = runner_module._WorkChunks(ids)
    reap_read, reap_write = os.pipe()
    report_read, report_write = os.pipe()
    try:
        runner_module._work(worker, chunks, reap_write, report_write)
    finally:
        chunks.close()
    with open(report_read, "rb") as report_file, open(reap_read, "rb") as reap_file:
        report, reaped = json.loads(report_file.read()), reap_file.read().split()
    assert report["delivered"] == count and report["quarantined"] == []
    # Every dequeued entry is handed to the parent for freeing, once, and its
    # files wait for it (the commit point, ID.done, is there).
    assert sorted(reaped) == [entry_id.encode() for entry_id in ids]
    assert all(os.path.exists(spool.path(entry_id, ".done")) for entry_id in ids)
    assert handler.sessions == 1 and len(handler.accepted) == count
    assert len(worker.accounts) == 1  # the configuration was read once
