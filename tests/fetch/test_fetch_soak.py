"""kill -9 at random moments of ``mailhop fetch`` with ``keep off``, over POP3 and IMAP.

Each round appends a fresh batch to the server (so there is always something in
flight to interrupt), starts a fetch and SIGKILLs it after a random delay; a final
clean run follows. Whatever the kills hit (delivery, the state write, DELE before
QUIT, STORE before EXPUNGE), every message appended must be in the Maildir, with
at most one duplicate per kill, and the server must end empty.

The mailbox is the lab user ``fetchsoak``, which only these tests use: a shared
mailbox let other tests' messages appear in the final run (the reason the first
version of this test was skipped).
"""

from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fetch.test_fetch_lab import (
    append,
    empty_inbox,
    inbox_count,
    maildir_messages,
    make_message,
    received_message_keys,
    run_fetch,
    write_config,
)
from tests.lab.support import Lab, LabUser, unique_token

pytestmark = pytest.mark.lab

SOAK_USER = "fetchsoak"
# Kills per protocol: enough to land in every phase of a run several times.
KILL_ROUNDS = 15
# Messages appended before each round: a run over them lasts a few hundred
# milliseconds, which is where the random delays below land.
BATCH_MESSAGES = 6
# Random delay before SIGKILL: from during interpreter start to after a short run.
KILL_DELAY_SECONDS = (0.05, 0.9)
# The whole soak of one protocol stops starting rounds after this (bounded in time).
SOAK_DEADLINE_SECONDS = 30.0
# sysexits EX_TEMPFAIL: the fetch stopped cleanly, mail stays on the server.
TEMPFAIL = 75
# One killed or finished fetch must be reaped within this.
PROCESS_WAIT_SECONDS = 30.0


# Suites of several checkouts share the lab: the soak and the IDLE tests empty and
# fill this one mailbox, so they take it in turns across the machine.
SOAK_USER_LOCK = "/run/lock/mailhop-lab-fetchsoak.lock"


@contextmanager
def soak_mailbox_taken() -> Iterator[None]:
    """Hold the machine-wide lock on the ``fetchsoak`` mailbox."""
    with open(SOAK_USER_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture
def soak_user(lab: Lab) -> Iterator[LabUser]:
    try:
        user = lab.user(SOAK_USER)
    except KeyError:
        pytest.skip(f"lab user {SOAK_USER} missing: rerun `sudo scripts/lab.sh up`")
    with soak_mailbox_taken():
        yield user


@pytest.mark.parametrize("port_name", ["pop3s", "imaps"])
def test_random_kill_9_during_delete(
    tmp_path: Path, lab: Lab, soak_user: LabUser, port_name: str
) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    token = unique_token("soak")
    empty_inbox(lab, soak_user)
    md = tmp_path / "md"
    state = tmp_path / "state"
    config = write_config(tmp_path, lab, soak_user, port_name, f"maildir:{md}", keep=False)
    appended: list[bytes] = []
    kills = 0
    deadline = time.monotonic() + SOAK_DEADLINE_SECONDS
    for round_number in range(KILL_ROUNDS):
        if time.monotonic() > deadline:
            break
        batch = [
            make_message(round_number * BATCH_MESSAGES + index, token)
            for index in range(BATCH_MESSAGES)
        ]
        append(lab, soak_user, batch)
        appended += batch
        errors_path = tmp_path / f"stderr-{round_number}"
        with errors_path.open("wb") as errors:
            process = subprocess.Popen(
                [sys.executable, "-m", "mailhop", "fetch", "-C", str(config),
                 "--state-dir", str(state)],
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )  # fmt: skip
            time.sleep(rng.uniform(*KILL_DELAY_SECONDS))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.wait(timeout=PROCESS_WAIT_SECONDS)
        # A fetch that finished before its kill succeeded, or said "try again later"
        # (75): Dovecot may still be finishing the killed session's commands (seen
        # once in a dozen soaks, not reproduced); any other status is a bug.
        assert process.returncode in (0, -signal.SIGKILL, TEMPFAIL), (
            f"seed {seed}, round {round_number}: exit {process.returncode}:"
            f" {errors_path.read_text(errors='replace')}"
        )

    final = run_fetch(config, state)
    assert final.returncode == 0, final.stderr
    keys = received_message_keys(maildir_messages(md))
    expected = set(received_message_keys(appended))
    context = f"seed {seed}, {kills} kills, {len(appended)} appended, {len(keys)} delivered"
    assert set(keys) == expected, f"lost or foreign messages: {context}"
    assert len(keys) - len(set(keys)) <= kills, f"too many duplicates: {context}"
    assert kills > 0, f"no kill landed during a run: {context}"
    assert inbox_count(lab, soak_user) == 0, f"the server was not emptied: {context}"
