"""Freeing the files of dequeued entries, off the critical path of a run.

A dequeue is committed by renaming ``ID.json`` to ``ID.done`` under the entry's
lock (``Spool.commit_removal``); what is left is freeing ``ID.msg`` and ``ID.done``
(``Spool.reap``). On ext4 (measured with ``discard``) an unlink of an fsynced file
takes 130 us of wall time for about 45 us of CPU: the rest is the kernel waiting
while it frees the blocks, with the GIL released. A few threads overlap those
waits, so the runner's parent keeps up with its worker processes.
"""

from __future__ import annotations

import queue
import threading

from mailhop.queue.spool import Spool

# Threads freeing files in the runner's parent. Measured on a 2-core VM (ext4,
# discard), unlinking 2000 fsynced 1.3 KB files: 1 thread ~130 us wall per unlink,
# 2 ~90, 4 ~60, 8 ~44, for the same ~40-45 us of CPU each. Four take most of the
# gain; more would only compete harder with the worker processes for the cores.
REAPER_THREADS = 4


class Reaper:
    """A small pool of threads that frees dequeued entries' files as it is told.

    Start it only once the process has forked whatever it forks: threads running
    across a ``fork`` leave the child with locks nobody will release.
    """

    def __init__(self, spool: Spool, *, threads: int = REAPER_THREADS) -> None:
        self._spool = spool
        # An id to free, or None: the thread that takes it stops.
        self._ids: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        # "ID: reason" for each entry whose files could not be freed; list.append
        # is atomic, so the threads share it without a lock.
        self._failures: list[str] = []
        self._threads = [
            threading.Thread(target=self._free_until_told_to_stop, name=f"reaper-{number}")
            for number in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def free(self, entry_id: str) -> None:
        """Have the files of ``entry_id`` (committed as dequeued) freed soon."""
        self._ids.put(entry_id)

    def finish(self) -> tuple[str, ...]:
        """Wait until everything given is freed; return what could not be.

        A failure is not fatal: the entry is dequeued (its ``ID.done`` says so), and
        the next run's ``Spool.remove_orphans`` tries again.
        """
        for _ in self._threads:
            self._ids.put(None)
        for thread in self._threads:
            thread.join()
        return tuple(self._failures)

    def _free_until_told_to_stop(self) -> None:
        while (entry_id := self._ids.get()) is not None:
            try:
                self._spool.reap(entry_id)
            except OSError as error:
                self._failures.append(f"{entry_id}: {error.strerror or error}")
