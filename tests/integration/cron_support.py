"""The real Debian cron daemon for the integration tests, one at a time per machine."""

from __future__ import annotations

import fcntl
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Two suites running at once (two developers, or a developer and CI) would swap
# /usr/sbin/sendmail and /etc/mailhop/config, or run each other's /etc/cron.d files.
MACHINE_LOCK = "/run/lock/mailhop-cron-acceptance.lock"
# Cron starts jobs at the next minute boundary; delivery through Postfix then takes a
# moment. 75 s covers a full minute plus delivery on a loaded machine.
CRON_WAIT_SECONDS = 75.0
# How long a stopped daemon may take to exit.
STOP_TIMEOUT_SECONDS = 30.0


def need(program: str) -> str:
    """The path of ``program`` (PATH or /usr/sbin), or skip: lab.sh installs it."""
    path = shutil.which(program) or (
        f"/usr/sbin/{program}" if Path(f"/usr/sbin/{program}").exists() else None
    )
    if path is None:
        pytest.skip(f"{program} is not installed (scripts/lab.sh installs it)")
    return path


@contextmanager
def machine_lock() -> Iterator[None]:
    """Serialise with every other test that changes machine-wide cron or mail files."""
    with open(MACHINE_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextmanager
def cron_daemon() -> Iterator[None]:
    """``cron -f`` in the foreground with a daemon's environment, stopped afterwards."""
    daemon = subprocess.Popen(
        [need("cron"), "-f", "-L", "15"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        # A daemon's environment, not the test runner's.
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
    )
    try:
        yield
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=STOP_TIMEOUT_SECONDS)
