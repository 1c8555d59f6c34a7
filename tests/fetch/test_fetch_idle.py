"""``mailhop fetch --idle`` against the lab's Dovecot: new mail arrives within seconds.

The watcher runs in the background with a one-hour ``--poll``, so a message that
arrives within seconds came through IMAP IDLE (RFC 2177), not through polling.
It uses the lab user ``fetchsoak`` (only the fetch tests touch it; the soak
empties it first, so the two never need each other's messages).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
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
    run_fetch,
    write_config,
)
from tests.fetch.test_fetch_soak import SOAK_USER, soak_mailbox_taken
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
    with soak_mailbox_taken():
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


def stop_watcher(watcher: subprocess.Popen[str], number: signal.Signals, grace: float) -> str:
    """Send ``number``; the watcher must end within ``grace`` seconds, quietly, with 0.

    Ctrl-C (SIGINT) and a service manager's SIGTERM are how a watcher is meant to end
    (see cli/fetch.py). Returns its stderr.
    """
    watcher.send_signal(number)
    try:
        _stdout, stderr = watcher.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        watcher.kill()
        watcher.communicate()
        raise AssertionError(f"--idle did not stop within {grace} s of {number.name}") from None
    assert watcher.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert "interrupted" not in stderr, stderr
    return stderr


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
        stderr = stop_watcher(watcher, signal.SIGINT, STOP_SECONDS)
    assert "1 message(s) fetched" in stderr  # the watcher's report of the IDLE fetch
    assert idle_user.password not in stderr
    # keep on: each message exactly once, nothing deleted on the server.
    assert sorted(received_message_keys(maildir_messages(md))) == sorted(
        received_message_keys([before, after])
    )


# The destination hook of the next test: an MDA that stores the message in DIR/new
# (write in DIR/tmp, fsync, rename) and, the first time only, appends one more message to the
# server over IMAPS before it returns. So that message arrives while the fetch pass
# runs, between two UID FETCHes, and Dovecot announces it with an untagged EXISTS
# in the middle of the pass, not later in IDLE.
APPENDING_MDA = textwrap.dedent(
    """
    import imaplib, os, ssl, sys, uuid

    directory = sys.argv[1]
    data = sys.stdin.buffer.read()
    name = uuid.uuid4().hex
    with open(os.path.join(directory, "tmp", name), "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.rename(os.path.join(directory, "tmp", name), os.path.join(directory, "new", name))
    marker = os.path.join(directory, "appended")
    if not os.path.exists(marker):
        context = ssl.create_default_context(cafile=os.environ["HOOK_CA"])
        client = imaplib.IMAP4_SSL(
            os.environ["HOOK_HOST"], int(os.environ["HOOK_PORT"]), ssl_context=context
        )
        client.login(os.environ["HOOK_USER"], os.environ["HOOK_PASSWORD"])
        with open(os.environ["HOOK_MESSAGE"], "rb") as file:
            status, _ = client.append("INBOX", None, None, file.read())
        client.logout()
        assert status == "OK", status
        open(marker, "w").close()
    """
)


def test_exists_during_the_fetch_pass_is_fetched_before_idling(
    tmp_path: Path, lab: Lab, idle_user: LabUser
) -> None:
    token = unique_token("idle-pass")
    first, second, during = (make_message(index, token) for index in (1, 2, 3))
    append(lab, idle_user, [first, second])
    out = tmp_path / "out"
    for part in ("tmp", "new"):
        (out / part).mkdir(parents=True)
    hook = tmp_path / "appending_mda.py"
    hook.write_text(APPENDING_MDA)
    (tmp_path / "during.eml").write_bytes(during)
    config = write_config(tmp_path, lab, idle_user, "imaps", f"mda:{sys.executable} {hook} {out}")
    environment = {
        **os.environ,
        "HOOK_CA": str(lab.ca_file),
        "HOOK_HOST": lab.host,
        "HOOK_PORT": str(lab.ports.imaps),
        "HOOK_USER": idle_user.login,
        "HOOK_PASSWORD": idle_user.password,
        "HOOK_MESSAGE": str(tmp_path / "during.eml"),
    }
    watcher = subprocess.Popen(
        [sys.executable, "-m", "mailhop", "fetch", "--idle", "--poll", str(POLL_SECONDS),
         "-C", str(config), "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )  # fmt: skip
    try:
        wait_for_keys(out, set(received_message_keys([first, second])), ARRIVAL_SECONDS)
        assert (out / "appended").exists(), "the hook did not append during the pass"
        # IDLE alone does not bring it: Dovecot already announced it during the pass.
        wait_for_keys(out, set(received_message_keys([during])), ARRIVAL_SECONDS)
        assert watcher.poll() is None, "the watcher exited"
    finally:
        stop_watcher(watcher, signal.SIGTERM, STOP_SECONDS)
    assert sorted(received_message_keys(maildir_messages(out))) == sorted(
        received_message_keys([first, second, during])
    )


# An MDA that says it started, then takes its time before it stores the message.
SLOW_MDA = textwrap.dedent(
    """
    import os, sys, time, uuid

    directory = sys.argv[1]
    data = sys.stdin.buffer.read()
    open(os.path.join(directory, "started"), "w").close()
    time.sleep(float(sys.argv[2]))
    name = uuid.uuid4().hex
    with open(os.path.join(directory, "tmp", name), "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.rename(os.path.join(directory, "tmp", name), os.path.join(directory, "new", name))
    """
)
# Long enough that SIGINT surely lands while the MDA holds the first message.
SLOW_MDA_SECONDS = 3.0


def test_sigint_mid_message_finishes_it_records_it_and_exits_0(
    tmp_path: Path, lab: Lab, idle_user: LabUser
) -> None:
    token = unique_token("idle-stop")
    first, second = make_message(1, token), make_message(2, token)
    append(lab, idle_user, [first, second])
    out = tmp_path / "out"
    for part in ("tmp", "new"):
        (out / part).mkdir(parents=True)
    hook = tmp_path / "slow_mda.py"
    hook.write_text(SLOW_MDA)
    config = write_config(
        tmp_path, lab, idle_user, "imaps", f"mda:{sys.executable} {hook} {out} {SLOW_MDA_SECONDS}"
    )
    state = tmp_path / "state"
    watcher = subprocess.Popen(
        [sys.executable, "-m", "mailhop", "fetch", "-C", str(config), "--state-dir", str(state),
         "--idle", "--poll", str(POLL_SECONDS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + ARRIVAL_SECONDS
    while not (out / "started").exists():
        if time.monotonic() > deadline:
            watcher.kill()
            watcher.communicate()
            raise AssertionError("the first message never reached the MDA")
        time.sleep(ARRIVAL_POLL_INTERVAL)
    # Only the watcher gets it (a terminal's Ctrl-C would reach the MDA too).
    stop_watcher(watcher, signal.SIGINT, SLOW_MDA_SECONDS + STOP_SECONDS)
    # The message in hand was finished and recorded; the next one was left for later.
    assert received_message_keys(maildir_messages(out)) == received_message_keys([first])
    (out / "started").unlink()
    again = run_fetch(config, state)
    assert again.returncode == 0, again.stderr
    assert sorted(received_message_keys(maildir_messages(out))) == sorted(
        received_message_keys([first, second])
    )
