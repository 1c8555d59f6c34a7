"""The parent's pool of freeing threads, and what is left when freeing fails."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from mailhop.queue import Route, Spool
from mailhop.queue.reaper import REAPER_THREADS, Reaper
from mailhop.queue.runner import run
from mailhop.queue.spool import Entry, RecipientState
from tests.queue.queue_support import closed_port, fill_spool, write_config

# More entries than threads, so every thread frees several.
ENTRIES = REAPER_THREADS * 10


def dequeued_entries(tmp_path: Path, count: int) -> tuple[Spool, list[str]]:
    """A spool of ``count`` entries, each committed as dequeued (``ID.done``) and
    its lock released, as a worker process leaves them for the parent."""
    spool = Spool(str(tmp_path / "queue"))
    fill_spool(spool, count, prefix="reap-", config=None)
    ids = spool.ids()
    for entry_id in ids:
        with spool.lock(entry_id):
            spool.commit_removal(entry_id)
    assert spool.ids() == []  # dequeued: nothing is listed any more
    return spool, ids


def test_the_reaper_frees_every_entry_it_is_given(tmp_path: Path) -> None:
    spool, ids = dequeued_entries(tmp_path, ENTRIES)
    reaper = Reaper(spool)
    for entry_id in ids:
        reaper.free(entry_id)
    assert reaper.finish() == ()
    assert os.listdir(spool.entries) == []


def test_an_entry_that_cannot_be_freed_is_reported_and_the_rest_are_freed(
    tmp_path: Path,
) -> None:
    spool, ids = dequeued_entries(tmp_path, ENTRIES)
    stuck = ids[len(ids) // 2]
    # unlink() refuses a directory, even to root: the message cannot be freed.
    message = spool.path(stuck, ".msg")
    os.unlink(message)
    os.mkdir(message)
    reaper = Reaper(spool)
    for entry_id in ids:
        reaper.free(entry_id)
    (failure,) = reaper.finish()
    assert failure.startswith(f"{stuck}: ")
    # The marker stays, so the next run knows the entry is done and tries again.
    assert sorted(os.listdir(spool.entries)) == [stuck + ".done", stuck + ".msg"]
    assert spool.remove_orphans() == []  # not fatal there either
    os.rmdir(message)
    assert spool.remove_orphans() == [stuck + ".done"]
    assert os.listdir(spool.entries) == []


def test_finish_stops_the_threads(tmp_path: Path) -> None:
    reaper = Reaper(Spool(str(tmp_path / "queue")))
    assert sum(t.name.startswith("reaper-") for t in threading.enumerate()) == REAPER_THREADS
    assert reaper.finish() == ()
    assert not any(t.name.startswith("reaper-") for t in threading.enumerate())


def test_a_run_without_workers_reports_an_entry_it_cannot_free_and_goes_on(
    tmp_path: Path,
) -> None:
    # A queue of 50 or fewer is delivered by the runner itself, which frees each
    # dequeued entry inline: a failure there must be reported as the workers' are
    # (RunReport.unfreed), not end the run before the next entry is delivered.
    config = write_config(tmp_path, closed_port(), queue="always")
    spool = Spool(str(tmp_path / "queue"))
    stuck, other = (
        spool.enqueue(
            [b"Subject: local\r\n\r\nbody\r\n"],
            sender="sender@example.test",
            recipients=[(name, Route.LOCAL)],
            account="default",
            config_file=str(config),
        ).id
        for name in ("first", "second")
    )
    delivered: list[str] = []

    def local_delivery(entry: Entry, local: Sequence[RecipientState], content: bytes) -> list[str]:
        if entry.id == stuck:
            # unlink() refuses a directory, even to root: this message cannot be freed.
            message = spool.path(stuck, ".msg")
            os.unlink(message)
            os.mkdir(message)
        delivered.append(entry.id)
        return [state.address for state in local]

    report = run(spool, local_delivery=local_delivery)
    assert sorted(delivered) == sorted([stuck, other])
    assert report.delivered == 2
    (failure,) = report.unfreed
    assert failure.startswith(f"{stuck}: ")
    assert spool.ids() == []  # both dequeued all the same
    assert sorted(os.listdir(spool.entries)) == [stuck + ".done", stuck + ".msg"]
