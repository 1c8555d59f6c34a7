"""Running the ``mail`` personality as a separate process, with a private HOME and /etc."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# A mail command against the loopback lab finishes in about a second; a minute means stuck.
MAIL_TIMEOUT_SECONDS = 60


def mail_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment whose HOME and system rc directory are empty dirs under ``tmp_path``."""
    home = tmp_path / "home"
    etc = tmp_path / "etc"
    home.mkdir(exist_ok=True)
    etc.mkdir(exist_ok=True)
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("MAILRC", "MAILX_NO_SYSTEM_RC", "XDG_CONFIG_HOME")
    }
    environment.update(HOME=str(home), MAILHOP_SYSCONFDIR=str(etc), USER="alice", **extra)
    return environment


def run_mail(
    arguments: list[str],
    body: bytes,
    *,
    environment: dict[str, str],
    program: str = "mail",
) -> subprocess.CompletedProcess[bytes]:
    """``python -m mailhop mail ARGUMENTS`` with ``body`` on stdin; no shell involved."""
    return subprocess.run(
        [sys.executable, "-m", "mailhop", program, *arguments],
        input=body,
        capture_output=True,
        timeout=MAIL_TIMEOUT_SECONDS,
        check=False,
        env=environment,
    )
