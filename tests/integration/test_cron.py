"""Issue #5 acceptance: the real Debian cron daemon mails through mailhop.

mailhop is installed as the system sendmail (``mailhop install-mta --force``, which
keeps Postfix's /usr/sbin/sendmail aside and puts it back afterwards), the system
configuration /etc/mailhop/config gets a relay account on the lab's Postfix (465, as
alice) and an aliases file, and a real ``cron -f`` runs three jobs on the next minute:

* ``MAILTO=bob@example.test``: the output reaches bob's IMAP inbox, with the From that
  cron writes (``root (Cron Daemon)``) rewritten to the relay account's address;
* no MAILTO: root's mail follows the aliases file (``root: bob@example.test``);
* ``MAILTO=localonly``: a local-only alias (``localonly: nobody``) lands in the mbox of
  ``nobody`` in the configured spool, which the real ``s-nail -f`` reads.

Cron runs jobs on minute boundaries, so the test waits up to ~75 s: it is one test with
three jobs, not three tests. Everything it changes on the machine is restored in
``finally`` blocks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cron_support import CRON_WAIT_SECONDS, cron_daemon, need
from tests.integration.cron_support import machine_lock as cron_machine_lock
from tests.lab.support import Lab, unique_token, wait_for_message, without_lab_trace

pytestmark = pytest.mark.lab

SYSTEM_CONFIG = Path("/etc/mailhop/config")
CRON_FILE = Path("/etc/cron.d/mailhop-acceptance")


@pytest.fixture
def machine_lock() -> Iterator[None]:
    """Serialise with any other run of this test: it changes machine-wide files."""
    with cron_machine_lock():
        yield


@pytest.fixture
def mailhop_as_system_sendmail(machine_lock: None) -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("installing the system sendmail needs root")
    mailhop = Path(sys.executable).parent / "mailhop"
    if not mailhop.exists():
        pytest.skip(f"no mailhop console script next to {sys.executable}")
    subprocess.run([str(mailhop), "install-mta", "--force"], check=True, timeout=60)
    try:
        yield
    finally:
        subprocess.run([str(mailhop), "install-mta", "--remove"], check=True, timeout=60)


@pytest.fixture
def system_config(tmp_path: Path, lab: Lab, machine_lock: None) -> Iterator[Path]:
    """/etc/mailhop/config with a relay account and aliases; the old file restored."""
    alice = lab.user("alice")
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o1777)
    spool.chmod(0o1777)
    aliases = tmp_path / "aliases"
    aliases.write_text(
        f"# test aliases\nroot: {lab.user('bob').address}\nlocalonly: nobody\n", encoding="utf-8"
    )
    backup = SYSTEM_CONFIG.read_bytes() if SYSTEM_CONFIG.exists() else None
    SYSTEM_CONFIG.parent.mkdir(parents=True, exist_ok=True)
    SYSTEM_CONFIG.write_text(
        "account lab\n"
        "host 127.0.0.1\n"
        f"port {lab.ports.submissions}\n"
        "tls on\n"
        "tls_starttls off\n"
        f"tls_trust_file {lab.ca_file}\n"
        "auth on\n"
        f"user {alice.login}\n"
        f"password {alice.password}\n"
        f"from {alice.address}\n"
        f"system_aliases {aliases}\n"
        f"mail_spool {spool}\n"
        f"logfile {tmp_path / 'mailhop.log'}\n"
        "account default : lab\n",
        encoding="utf-8",
    )
    SYSTEM_CONFIG.chmod(0o600)
    try:
        yield spool
    finally:
        if backup is None:
            SYSTEM_CONFIG.unlink()
        else:
            SYSTEM_CONFIG.write_bytes(backup)


def test_cron_output_reaches_real_inboxes(
    lab: Lab, tmp_path: Path, mailhop_as_system_sendmail: None, system_config: Path
) -> None:
    need("cron")  # skip before anything on the machine changes
    s_nail = shutil.which("s-nail")
    to_bob, via_alias, local = (
        unique_token("cron-mailto"),
        unique_token("cron-root"),
        unique_token("cron-local"),
    )
    CRON_FILE.write_text(
        f"SHELL=/bin/sh\nMAILTO={lab.user('bob').address}\n* * * * * root echo {to_bob}\n",
        encoding="utf-8",
    )
    # One file per job: cron applies a file's environment to all its jobs, and "no
    # MAILTO" must really be absent (an empty MAILTO means "send no mail").
    unset = CRON_FILE.with_name("mailhop-acceptance-root")
    unset.write_text(f"SHELL=/bin/sh\n* * * * * root echo {via_alias}\n", encoding="utf-8")
    local_file = CRON_FILE.with_name("mailhop-acceptance-local")
    local_file.write_text(
        f"SHELL=/bin/sh\nMAILTO=localonly\n* * * * * root echo {local}\n", encoding="utf-8"
    )
    for path in (CRON_FILE, unset, local_file):
        path.chmod(0o644)
    try:
        with cron_daemon():
            bob = lab.user("bob")
            direct = without_lab_trace(
                wait_for_message(lab, bob, to_bob, timeout=CRON_WAIT_SECONDS)
            )
            aliased = without_lab_trace(
                wait_for_message(lab, bob, via_alias, timeout=CRON_WAIT_SECONDS)
            )
            mbox = system_config / "nobody"
            deadline = time.monotonic() + 30
            while local.encode() not in (mbox.read_bytes() if mbox.exists() else b""):
                assert time.monotonic() < deadline, f"no local delivery in {mbox}"
                time.sleep(0.5)
    finally:
        for path in (CRON_FILE, unset, local_file):
            path.unlink(missing_ok=True)
    for message, token in ((direct, to_bob), (aliased, via_alias)):
        headers = message.split(b"\r\n\r\n", 1)[0]
        # The relay accepted it, so the From is the account's, with cron's name kept.
        assert b"From: Cron Daemon <alice@example.test>" in headers, headers
        assert token.encode() in message
    if s_nail is not None:
        listing = subprocess.run(
            [s_nail, "-n", "-R", "-H", "-f", str(system_config / "nobody")],
            capture_output=True,
            timeout=30,
            check=False,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
        )
        assert listing.returncode == 0, listing.stderr
        assert b"Cron" in listing.stdout
