"""``mailhop fetch --idle`` against the lab's Dovecot: new mail arrives within seconds.

The watcher runs in the background with a one-hour ``--poll``, so a message that
arrives within seconds came through IMAP IDLE (RFC 2177), not through polling.
It uses the lab user ``fetchsoak`` (only the fetch tests touch it; the soak
empties it first, so the two never need each other's messages).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fetch.test_fetch_lab import (
    append,
    empty_inbox,
    maildir_messages,
    make_message,
    received_message_keys,
    write_config,
)
from tests.fetch.test_fetch_soak import SOAK_USER
from tests.lab.support import Lab, LabUser, unique_token

pytestmark = pytest.mark.lab

# Far longer than the test: only IDLE can bring the message in time.
POLL_SECONDS = 3600
# Dovecot announces an APPEND to an IDLE client at once; 10 s absorbs a loaded CI box.
ARRIVAL_SECONDS = 10.0
ARRIVAL_POLL_INTERVAL = 0.05
# After SIGINT the watcher closes its connections and exits.
STOP_SECONDS = 10.0


@pytest.fixture
def idle_user(lab: Lab) -> Iterator[LabUser]:
    try:
        user = lab.user(SOAK_USER)
    except KeyError:
        pytest.skip(f"lab user {SOAK_USER} missing: rerun `sudo scripts/lab.sh up`")
    empty_inbox(lab, user)
    yield user
    empty_inbox(lab, user)


def wait_for_keys(maildir: Path, keys: set[bytes], timeout: float) -> float:
    """Seconds until every key is in ``maildir``; fails after ``timeout``."""
    started = time.monotonic()
    while True:
        # The watcher creates md/ before md/new: only new/ holds delivered mail.
        ready = (maildir / "new").is_dir()
        present = set(received_message_keys(maildir_messages(maildir))) if ready else set()
        if keys <= present:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{sorted(keys - present)} not in {maildir} after {timeout} s")
        time.sleep(ARRIVAL_POLL_INTERVAL)


@pytest.mark.parametrize("port_name", ["imaps", "imap"])
def test_idle_fetches_new_mail_within_seconds(
    tmp_path: Path, lab: Lab, idle_user: LabUser, port_name: str
) -> None:
    token = unique_token("idle")
    md = tmp_path / "md"
    config = write_config(tmp_path, lab, idle_user, port_name, f"maildir:{md}")
    before, after = make_message(1, token), make_message(2, token)
    append(lab, idle_user, [before])
    watcher = subprocess.Popen(
        [sys.executable, "-m", "mailhop", "fetch", "--idle", "--poll", str(POLL_SECONDS),
         "-C", str(config), "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        # The first pass fetches what is there; then the watcher is in IDLE.
        wait_for_keys(md, set(received_message_keys([before])), ARRIVAL_SECONDS)
        assert watcher.poll() is None, "the watcher exited after its first pass"
        append(lab, idle_user, [after])
        seconds = wait_for_keys(md, set(received_message_keys([after])), ARRIVAL_SECONDS)
        assert seconds < ARRIVAL_SECONDS
        assert watcher.poll() is None, "the watcher exited after new mail"
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            _stdout, stderr = watcher.communicate(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            watcher.kill()
            watcher.communicate()
            raise AssertionError(f"--idle did not stop within {STOP_SECONDS} s of SIGINT") from None
    assert "Traceback" not in stderr, stderr
    assert "1 message(s) fetched" in stderr  # the watcher's report of the IDLE fetch
    assert idle_user.password not in stderr
    # keep on: each message exactly once, nothing deleted on the server.
    assert sorted(received_message_keys(maildir_messages(md))) == sorted(
        received_message_keys([before, after])
    )
