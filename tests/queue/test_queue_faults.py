"""Fault injection: concurrent runners, kill -9 at every named point, a full disk."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhop.errors import ExitCode
from mailhop.queue import Spool
from tests.queue.queue_support import (
    closed_port,
    environment,
    fill_spool,
    listening,
    make_message,
    queue_files,
    queue_run,
    sendmail,
    write_config,
)

RUNNERS = 8
MESSAGES = 500
# The whole concurrency test must finish well inside this (bounded load loop).
CONCURRENCY_DEADLINE_SECONDS = 120


def test_eight_runners_over_500_entries_send_each_message_exactly_once(tmp_path: Path) -> None:
    with listening() as (listener, collector):
        config = write_config(tmp_path, listener.port, queue="always")
        spool = Spool(str(tmp_path / "queue"))
        fill_spool(spool, MESSAGES, prefix="m", config=config)
        env = environment(tmp_path)
        runners = [
            subprocess.Popen(
                [sys.executable, "-m", "mailhop", "queue", "-C", str(config), "run"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for _ in range(RUNNERS)
        ]
        for runner in runners:
            _, errors = runner.communicate(timeout=CONCURRENCY_DEADLINE_SECONDS)
            assert runner.returncode == 0, errors
    counts = collections.Counter(collector.message_ids())
    assert len(counts) == MESSAGES
    assert set(counts.values()) == {1}, [k for k, v in counts.items() if v > 1][:5]
    assert spool.ids() == []


def test_one_run_shares_its_connections_among_worker_processes(tmp_path: Path) -> None:
    count = 60
    with listening() as (listener, collector):
        config = write_config(tmp_path, listener.port, queue="always")
        spool = Spool(str(tmp_path / "queue"))
        fill_spool(spool, count, prefix="p", config=config)
        ran = queue_run(config, "-v")
        assert ran.returncode == 0, ran.stderr
    # The parent's report adds up what its worker processes did.
    assert f"{count} delivered, 0 deferred".encode() in ran.stderr
    counts = collections.Counter(collector.message_ids())
    assert len(counts) == count and set(counts.values()) == {1}
    assert queue_files(config) == []


@pytest.mark.parametrize(
    ("code", "how"),
    [
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "signal 9"),
        ("raise SystemExit(70)", "exit status 70"),
    ],
    ids=["killed", "failed"],
)
def test_a_worker_process_that_dies_is_reported_not_hidden(code: str, how: str) -> None:
    from mailhop.queue.runner import _collect, _Tally

    read_end, write_end = os.pipe()
    dying = os.posix_spawn(sys.executable, [sys.executable, "-c", code], os.environ)
    os.close(write_end)  # the child writes no report
    tally = _Tally()
    _collect(dying, read_end, tally)  # waits for it, as run() does for its children
    assert tally.delivered == 0
    assert tally.failures == [
        f"a delivery process ended abnormally ({how}); its remaining messages stay queued"
    ]


ENQUEUE_POINTS = [
    "queue.enqueue.start",
    "durable.before-fsync",
    "durable.before-rename",
    "durable.after-rename",
    "queue.enqueue.after-message",
    "queue.enqueue.committed",
]
# Points in delivery; "after-250" ones are inside the documented duplicate window.
DELIVERY_POINTS = {
    "queue.deliver.before-send": False,
    "queue.deliver.after-250": True,
    "queue.remove.after-record": False,  # renamed to ID.done: the entry is done
    "queue.deliver.after-remove": False,  # committed, files not yet freed (reaper)
    "queue.reap.after-message": False,  # the message freed, ID.done left
}


@pytest.mark.parametrize("point", ENQUEUE_POINTS)
def test_kill_during_enqueue_never_loses_an_acknowledged_message(
    point: str, tmp_path: Path
) -> None:
    with listening() as (listener, collector):
        config = write_config(tmp_path, listener.port, queue="always")
        killed = sendmail(config, "r@example.test", message=make_message("k"), MAILHOP_FAULT=point)
        assert killed.returncode == -signal.SIGKILL  # never exit 0 when killed
        spool = Spool(str(tmp_path / "queue"))
        # Complete or absent: a committed entry passes its checksum, nothing else counts.
        for entry_id in spool.ids():
            spool.open_message(spool.load(entry_id)).close()
        assert queue_run(config, "--force").returncode == 0
        assert spool.ids() == []
        for message in collector.messages:  # never a partial message
            assert message.content.endswith(b"line 2 of k\r\n")
        committed = point == "queue.enqueue.committed"
        assert len(collector.messages) == (1 if committed else 0)


@pytest.mark.parametrize(("point", "may_duplicate"), DELIVERY_POINTS.items())
def test_kill_during_delivery_resends_only_inside_the_window(
    point: str, may_duplicate: bool, tmp_path: Path
) -> None:
    with listening() as (listener, collector):
        config = write_config(tmp_path, listener.port, queue="always")
        assert sendmail(config, "r@example.test", message=make_message("d")).returncode == 0
        killed = queue_run(config, MAILHOP_FAULT=point)
        assert killed.returncode == -signal.SIGKILL
        assert queue_run(config, "--force").returncode == 0
        assert Spool(str(tmp_path / "queue")).ids() == []
        # Leftovers of a committed dequeue go at once, not after the orphan grace.
        assert queue_files(config) == []
    assert len(collector.messages) == (2 if may_duplicate else 1)
    for message in collector.messages:
        assert message.content.endswith(b"line 2 of d\r\n")


# The randomized soak: this many kills at random moments, inside this much time.
SOAK_KILLS = 30
SOAK_DEADLINE_SECONDS = 60


def test_randomized_kill_soak(tmp_path: Path) -> None:
    rng = random.Random(4)  # reproducible
    started = time.monotonic()
    acknowledged: list[str] = []
    with listening() as (listener, collector):
        config = write_config(tmp_path, listener.port, queue="always")
        env = environment(tmp_path)
        for index in range(SOAK_KILLS):
            assert time.monotonic() - started < SOAK_DEADLINE_SECONDS
            token = f"soak{index}"
            argv = [sys.executable, "-m", "mailhop"]
            if index % 2:
                command = [*argv, "sendmail", "-C", str(config), "-i", "r@example.test"]
            else:
                command = [*argv, "queue", "-C", str(config), "run", "--force"]
            process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if process.stdin is not None:
                try:
                    process.stdin.write(make_message(token))
                    process.stdin.close()
                except BrokenPipeError:
                    pass
            time.sleep(rng.uniform(0.0, 0.25))
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            if index % 2 and process.returncode == 0:
                acknowledged.append(token)
        assert queue_run(config, "--force").returncode == 0
        # At most leftovers of killed enqueues (never acknowledged), removed after
        # the grace period; never a committed record.
        assert not [name for name in queue_files(config) if name.endswith(".json")]
    subjects = [
        line.split(b":", 1)[1].strip().decode()
        for message in collector.messages
        for line in message.content.split(b"\r\n")
        if line.startswith(b"Subject:")
    ]
    for token in acknowledged:
        assert token in subjects, f"{token} was acknowledged (exit 0) but never delivered"
    for message in collector.messages:
        assert message.content.endswith(b"\r\n") and b"line 2 of" in message.content


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs (root only), so "disk full" is the kernel's ENOSPC."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mountpoint)],
        check=True,
        timeout=30,
    )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True, timeout=30)


def test_full_disk_during_enqueue_is_exit_75_and_leaves_nothing(
    tiny_filesystem: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path, 25, f"queue_dir {tiny_filesystem}", queue="always")
    big = make_message("big") + b"x" * 200_000 + b"\n"
    full = sendmail(config, "r@example.test", message=big)
    assert full.returncode == ExitCode.TEMPFAIL
    assert b"No space left on device; free some space and try again" in full.stderr
    assert sorted(p.name for p in (tiny_filesystem / "entries").iterdir()) == []
    small = sendmail(config, "r@example.test", message=make_message("small"))
    assert small.returncode == 0, small.stderr
    assert len(Spool(str(tiny_filesystem)).ids()) == 1


def test_kill_after_a_delay_warning_repeats_it_and_never_loses_it(tmp_path: Path) -> None:
    # The server is down (a closed port): each run defers the entry. The warning is
    # queued before the record says it was sent, so a kill between the two can only
    # queue a second warning.
    config = write_config(tmp_path, closed_port(), "queue_delay_warning 1s", queue="always")
    assert sendmail(config, "r@example.test", message=make_message("w")).returncode == 0
    time.sleep(1.1)
    spool = Spool(str(tmp_path / "queue"))

    def warnings() -> int:
        return sum(1 for entry_id in spool.ids() if spool.load(entry_id).is_bounce)

    killed = queue_run(config, "--force", MAILHOP_FAULT="queue.deliver.after-delay-warning")
    assert killed.returncode == -signal.SIGKILL
    assert warnings() == 1
    for _ in range(2):
        assert queue_run(config, "--force").returncode == 0
    assert warnings() == 2  # repeated once after the kill, then never again
    (original,) = [i for i in spool.ids() if not spool.load(i).is_bounce]
    assert spool.load(original).delay_warned


@pytest.mark.parametrize("count", [1, 24, 25, 26, 1000, 100_003])
def test_work_chunks_hand_out_every_entry_once(count: int) -> None:
    from mailhop.queue.runner import _MAX_WORK_CHUNKS, WORK_CHUNK_ENTRIES, _WorkChunks

    ids = [f"{index:016x}.00000000" for index in range(count)]
    chunks = _WorkChunks(ids)
    try:
        taken = []
        while (chunk := chunks.take()) is not None:
            assert 0 < len(chunk) <= max(WORK_CHUNK_ENTRIES, chunks.size)
            taken.append(chunk)
    finally:
        chunks.close()
    assert [entry for chunk in taken for entry in chunk] == ids  # in order, each once
    assert len(taken) <= _MAX_WORK_CHUNKS
