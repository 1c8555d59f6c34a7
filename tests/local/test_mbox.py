"""mboxrd delivery: round trip, locking against writers and a rewriting reader, crashes, attacks."""

from __future__ import annotations

import contextlib
import mailbox
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mailhop.store.mbox import MailboxError, MailboxOwner, append_to_mbox, mboxrd_chunks
from tests.local.mbox_worker import message_bytes

REPOSITORY = Path(__file__).resolve().parents[2]
# Bounds for the concurrency test: 50 writers must finish well within this.
CONCURRENT_DELIVERIES = 50
CONCURRENCY_DEADLINE_SECONDS = 60.0
WORKER_TIMEOUT_SECONDS = 30.0


def _tokens(path: Path) -> list[str]:
    box = mailbox.mbox(str(path), create=False)
    try:
        return [str(message["X-Token"]) for message in box]
    finally:
        box.close()


def _run_worker(path: Path, token: str, *, fault: str | None = None, lines: int = 200) -> int:
    environment = dict(os.environ)
    environment.pop("MAILHOP_FAULT", None)
    if fault is not None:
        environment["MAILHOP_FAULT"] = fault
    completed = subprocess.run(
        [sys.executable, "-m", "tests.local.mbox_worker", str(path), token, str(lines)],
        cwd=REPOSITORY,
        env=environment,
        timeout=WORKER_TIMEOUT_SECONDS,
        check=False,
    )
    return completed.returncode


def test_from_lines_in_the_body_survive_a_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    bodies = [
        b"From evil@x Mon Jan  1 00:00:00 2024\nFrom me\n>From quoted\n>>From twice\n",
        b"no final newline\nFrom the end",
        b"crlf line\r\nFrom crlf\r\n",
    ]
    for index, body in enumerate(bodies):
        data = f"Subject: m{index}\n\n".encode() + body
        append_to_mbox(str(path), [data], sender="a@example.test")
    box = mailbox.mbox(str(path))
    messages = list(box)
    box.close()
    assert len(messages) == len(bodies)
    for message, body in zip(messages, bodies, strict=True):
        expected = body.replace(b"\r\n", b"\n")
        if not expected.endswith(b"\n"):
            expected += b"\n"
        # Python's mailbox reads mboxo; undo the one extra ">" mboxrd adds.
        payload = str(message.get_payload(decode=False)).encode()
        unquoted = b"\n".join(
            line[1:] if line.lstrip(b">").startswith(b"From ") else line
            for line in payload.split(b"\n")
        )
        assert unquoted == expected
    text = path.read_bytes()
    assert text.count(b"\nFrom ") + 1 == len(bodies)  # only the separators start with From
    assert b">>From quoted" in text and b">>>From twice" in text


def test_quoting_is_the_same_whatever_the_chunking() -> None:
    data = b"Subject: x\n\nFrom a\n>From b\nmid From c\r\nFrom d"
    whole = b"".join(mboxrd_chunks([data]))
    for size in range(1, 8):
        pieces = [data[i : i + size] for i in range(0, len(data), size)]
        assert b"".join(mboxrd_chunks(pieces)) == whole
    assert whole.endswith(b">From d\n\n")
    assert b"\r" not in whole


def test_a_symlinked_mailbox_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    link = tmp_path / "mbox"
    link.symlink_to(victim)
    with pytest.raises(MailboxError, match="symbolic link") as raised:
        append_to_mbox(str(link), [b"Subject: x\n\nhi\n"], sender="a@b")
    assert raised.value.exit_code == 75
    assert victim.read_bytes() == b"precious\n"


def test_a_hard_linked_mailbox_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    os.link(victim, tmp_path / "mbox")
    with pytest.raises(MailboxError, match="hard links"):
        append_to_mbox(str(tmp_path / "mbox"), [b"Subject: x\n\nhi\n"], sender="a@b")
    assert victim.read_bytes() == b"precious\n"


def test_a_mailbox_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    path.write_bytes(b"")
    stranger = MailboxOwner(uid=os.geteuid() + 4242, gid=os.getegid())
    with pytest.raises(MailboxError, match="owned by uid"):
        append_to_mbox(str(path), [b"Subject: x\n\nhi\n"], sender="a@b", owner=stranger)
    assert path.read_bytes() == b""


def test_a_directory_in_place_of_the_mailbox_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mbox").mkdir()
    with pytest.raises(MailboxError):
        append_to_mbox(str(tmp_path / "mbox"), [b"Subject: x\n\nhi\n"], sender="a@b")


def test_a_new_mailbox_is_private(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    old = os.umask(0)
    try:
        append_to_mbox(str(path), [b"Subject: x\n\nhi\n"], sender="")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_bytes().startswith(b"From MAILER-DAEMON ")
    assert not (tmp_path / "mbox.lock").exists()


def test_a_held_lock_times_out_with_exit_75(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    path.write_bytes(b"")
    (tmp_path / "mbox.lock").write_text(f"{os.getpid()}\n")  # a live holder: us
    with pytest.raises(MailboxError, match="busy") as raised:
        append_to_mbox(str(path), [b"Subject: x\n\nhi\n"], sender="a@b", lock_timeout=0.2)
    assert raised.value.exit_code == 75
    assert path.read_bytes() == b""


def test_fifty_concurrent_deliveries_while_a_reader_rewrites(tmp_path: Path) -> None:
    path = tmp_path / "mbox"
    append_to_mbox(str(path), [message_bytes("seed", 3)], sender="a@b")
    stop = threading.Event()
    rewrites = [0]
    problems: list[str] = []

    def reader() -> None:
        deadline = time.monotonic() + CONCURRENCY_DEADLINE_SECONDS
        while not stop.is_set() and time.monotonic() < deadline:
            box = mailbox.mbox(str(path))
            try:
                box.lock()
            except mailbox.ExternalClashError:
                box.close()
                time.sleep(0.005)
                continue
            try:
                # Mark every message read, as a mail reader does: the whole file is
                # rewritten into a new file and renamed over the old one.
                for key, message in list(box.iteritems()):
                    if "R" not in message.get_flags():
                        message.add_flag("R")
                        box[key] = message
                box.flush()
                rewrites[0] += 1
            except Exception as error:  # noqa: BLE001 - reported below
                problems.append(repr(error))
            finally:
                box.unlock()
                box.close()
            time.sleep(0.005)

    thread = threading.Thread(target=reader)
    thread.start()
    environment = {k: v for k, v in os.environ.items() if k != "MAILHOP_FAULT"}
    tokens = [f"token{index:02d}" for index in range(CONCURRENT_DELIVERIES)]
    try:
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.local.mbox_worker", str(path), token, "60"],
                cwd=REPOSITORY,
                env=environment,
            )
            for token in tokens
        ]
        codes = [worker.wait(timeout=CONCURRENCY_DEADLINE_SECONDS) for worker in workers]
    finally:
        stop.set()
        thread.join(timeout=CONCURRENCY_DEADLINE_SECONDS)
    assert codes == [0] * CONCURRENT_DELIVERIES
    assert problems == []
    assert rewrites[0] > 0
    found = _tokens(path)
    assert sorted(found) == sorted(["seed", *tokens])
    box = mailbox.mbox(str(path))
    for message in box:
        token = str(message["X-Token"])
        payload = str(message.get_payload())
        if token == "seed":
            continue
        # Not interleaved: every body line belongs to this message, in order.
        expected = "".join(f">From line {i} of {token}\n" for i in range(60))
        assert payload.rstrip("\n") == (expected + f"end of {token}").rstrip("\n")
    box.close()


# "mbox.after-fsync" is before the dotlock is told the message is whole: the caller
# has not heard of success and still holds the message, so cutting it loses nothing.
CRASH_POINTS = (
    "mbox.locked",
    "mbox.mid-write",
    "mbox.before-fsync",
    "mbox.after-fsync",
    "mbox.delivered",
)


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_9_at_each_step_leaves_only_complete_messages(tmp_path: Path, point: str) -> None:
    path = tmp_path / "mbox"
    assert _run_worker(path, "before") == 0
    assert _run_worker(path, "crashed", fault=point) == -signal.SIGKILL
    # The dead delivery's dotlock is still there; the next delivery breaks it (its
    # holder is gone) and cuts whatever half message it guarded.
    assert _run_worker(path, "after") == 0
    found = _tokens(path)
    if point == "mbox.delivered":
        assert found == ["before", "crashed", "after"]
    else:
        assert found == ["before", "after"]
    assert not Path(f"{path}.lock").exists()
    with contextlib.suppress(FileNotFoundError):
        assert list(tmp_path.glob(".mbox.lock.*")) == []
