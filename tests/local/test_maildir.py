"""Maildir delivery: tmp -> new with fsync, unique names, crashes, unsafe Maildirs refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mailhop.store.maildir import deliver_to_maildir, unique_name
from mailhop.store.mbox import MailboxError, MailboxOwner

REPOSITORY = Path(__file__).resolve().parents[2]
WORKER_TIMEOUT_SECONDS = 30.0

_WORKER = """
import sys
from mailhop.store.maildir import deliver_to_maildir
deliver_to_maildir(sys.argv[1], [b"Subject: crash\\r\\n\\r\\n", b"body\\r\\n"])
"""


def test_delivery_creates_the_maildir_and_stores_lf_lines(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    delivery = deliver_to_maildir(str(maildir), [b"Subject: x\r\n\r\nFrom here\r", b"\nend\r\n"])
    assert sorted(os.listdir(maildir)) == ["cur", "new", "tmp"]
    assert os.listdir(maildir / "tmp") == []
    assert Path(delivery.path).read_bytes() == b"Subject: x\n\nFrom here\nend\n"
    assert Path(delivery.path).parent == maildir / "new"
    assert (maildir / "new").stat().st_mode & 0o777 == 0o700
    assert Path(delivery.path).stat().st_mode & 0o777 == 0o600


def test_names_are_unique_and_safe() -> None:
    names = {unique_name(1700000000.5) for _ in range(1000)}
    assert len(names) == 1000
    assert all(":" not in name and "/" not in name and not name.startswith(".") for name in names)


def test_a_symlinked_maildir_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    for part in ("tmp", "new", "cur"):
        (elsewhere / part).mkdir(parents=True)
    (tmp_path / "Maildir").symlink_to(elsewhere)
    with pytest.raises(MailboxError, match="not a directory"):
        deliver_to_maildir(str(tmp_path / "Maildir"), [b"Subject: x\n\nhi\n"])
    assert os.listdir(elsewhere / "new") == []


def test_a_foreign_maildir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "Maildir").mkdir()
    stranger = MailboxOwner(uid=os.geteuid() + 4242, gid=os.getegid())
    with pytest.raises(MailboxError, match="owned by uid"):
        deliver_to_maildir(str(tmp_path / "Maildir"), [b"x\n"], owner=stranger)


@pytest.mark.parametrize(
    ("point", "delivered"),
    [
        ("durable.before-fsync", False),
        ("maildir.before-link", False),
        ("maildir.after-link", True),
    ],
)
def test_kill_9_leaves_new_with_complete_files_only(
    tmp_path: Path, point: str, delivered: bool
) -> None:
    maildir = tmp_path / "Maildir"
    environment = {**os.environ, "MAILHOP_FAULT": point}
    completed = subprocess.run(
        [sys.executable, "-c", _WORKER, str(maildir)],
        cwd=REPOSITORY,
        env=environment,
        timeout=WORKER_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == -signal.SIGKILL
    files = [maildir / "new" / name for name in os.listdir(maildir / "new")]
    assert len(files) == (1 if delivered else 0)
    for file in files:
        assert file.read_bytes() == b"Subject: crash\n\nbody\n"
