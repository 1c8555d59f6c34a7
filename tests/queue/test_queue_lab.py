"""The acceptance scenario against the real lab: Postfix stopped, then started again."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.lab.support import Lab, unique_token, wait_for_message
from tests.queue.queue_support import mailhop, queue_files, sendmail

pytestmark = pytest.mark.lab

# postfix stop/start on the lab: others use it concurrently, keep the window short.
POSTFIX_COMMAND_TIMEOUT_SECONDS = 60


def write_lab_account(directory: Path, lab: Lab) -> Path:
    alice = lab.user("alice")
    path = directory / "msmtprc"
    lines = [
        "host 127.0.0.1",
        f"port {lab.ports.submissions}",
        "tls on",
        "tls_starttls off",
        f"tls_trust_file {lab.ca_file}",
        "auth on",
        f"user {alice.login}",
        f"password {alice.password}",
        f"from {alice.address}",
        "timeout 20",
        "queue fallback",
        f"queue_dir {directory / 'queue'}",
    ]
    path.write_text("account default\n" + "".join(f"{line}\n" for line in lines))
    path.chmod(0o600)
    return path


def test_postfix_stopped_sendmail_exits_0_then_dash_q_delivers(lab: Lab, tmp_path: Path) -> None:
    postfix = shutil.which("postfix") or "/usr/sbin/postfix"
    config = write_lab_account(tmp_path, lab)
    bob = lab.user("bob")
    token = unique_token("queue")
    message = f"From: {lab.user('alice').address}\nSubject: {token}\n\nqueued {token}\n".encode()
    subprocess.run([postfix, "stop"], check=True, timeout=POSTFIX_COMMAND_TIMEOUT_SECONDS)
    try:
        sent = sendmail(config, bob.address, message=message)
        listing = mailhop(config, "mailq", "-C", str(config))
    finally:
        subprocess.run([postfix, "start"], check=True, timeout=POSTFIX_COMMAND_TIMEOUT_SECONDS)
    assert sent.returncode == 0, sent.stderr
    assert bob.address.encode() in listing.stdout
    flushed = mailhop(config, "sendmail", "-C", str(config), "-q")
    if queue_files(config):  # Postfix may need a moment after start to listen
        import time

        time.sleep(2)
        flushed = mailhop(config, "sendmail", "-C", str(config), "-q")
    assert flushed.returncode == 0, flushed.stderr
    assert queue_files(config) == []
    delivered = wait_for_message(lab, bob, token)
    assert f"queued {token}".encode() in delivered
