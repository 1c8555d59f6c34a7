"""The parent's pool of freeing threads, and what is left when freeing fails."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from mailhop.queue import Spool
from mailhop.queue.reaper import REAPER_THREADS, Reaper
from tests.queue.queue_support import fill_spool

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
