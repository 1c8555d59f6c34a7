"""The entry ``mailhop queue install-timer`` writes is run by the real Debian cron.

A message waits in a queue (``queue always``, no background kick, so only a queue
run can send it); ``install-timer --interval 1`` writes /etc/cron.d/mailhop as root on
this machine without systemd; a real ``cron -f`` with a daemon's environment then
runs the entry at the next minute, and the message is read back from bob's inbox
over IMAP; the queue is empty and the run's output went to the log, not to mail.
``--remove`` deletes the file. Serialised with tests/integration/test_cron.py, which
also runs a cron daemon over /etc/cron.d.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhop.cli.queue_timer import CRON_FILE, SYSTEMD_RUNNING_MARKER
from tests.integration.cron_support import CRON_WAIT_SECONDS, cron_daemon, machine_lock, need
from tests.lab.support import Lab, unique_token, wait_for_message
from tests.queue.queue_support import mailhop, queue_files, sendmail
from tests.queue.test_queue_lab import write_lab_account

pytestmark = pytest.mark.lab

# Delivery after cron started the run: a TLS connection and Postfix's virtual(8).
DELIVERY_MARGIN_SECONDS = 30.0


@pytest.fixture
def cron_file_kept() -> Iterator[Path]:
    """Root, no systemd, the machine lock held; a /etc/cron.d/mailhop already there is kept."""
    if os.geteuid() != 0:
        pytest.skip("writing /etc/cron.d needs root")
    if os.path.isdir(SYSTEMD_RUNNING_MARKER):
        pytest.skip("systemd runs this machine: install-timer writes a systemd timer here")
    path = Path(CRON_FILE)
    with machine_lock():
        backup = path.read_bytes() if path.exists() else None
        try:
            yield path
        finally:
            if backup is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(backup)


def test_real_cron_runs_the_installed_entry(lab: Lab, tmp_path: Path, cron_file_kept: Path) -> None:
    need("cron")  # skip before anything is queued or installed
    config = write_lab_account(tmp_path, lab)
    config.write_text(config.read_text().replace("queue fallback", "queue always"))
    bob = lab.user("bob")
    token = unique_token("queue-timer")
    message = f"From: {lab.user('alice').address}\nSubject: {token}\n\nvia cron {token}\n"
    queued = sendmail(config, bob.address, message=message.encode())
    assert queued.returncode == 0, queued.stderr
    assert queue_files(config), "queue always must leave the message in the queue"
    log = tmp_path / "logs" / "queue.log"
    installed = mailhop(
        config,
        "queue",
        "-C",
        str(config),
        "install-timer",
        "--interval",
        "1",
        "--log",
        str(log),
    )
    assert installed.returncode == 0, installed.stderr
    assert f"wrote {CRON_FILE}".encode() in installed.stdout
    entry = cron_file_kept.read_text()
    assert f"--queue-dir {tmp_path}/queue -C {config} run >>{log} 2>&1" in entry, entry
    with cron_daemon():
        delivered = wait_for_message(
            lab, bob, token, timeout=CRON_WAIT_SECONDS + DELIVERY_MARGIN_SECONDS
        )
    assert f"via cron {token}".encode() in delivered
    assert queue_files(config) == []
    assert log.exists(), "cron's run must write its output to the log"
    removed = mailhop(config, "queue", "install-timer", "--remove")
    assert removed.returncode == 0, removed.stderr
    assert not cron_file_kept.exists()
