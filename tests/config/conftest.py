"""Fixtures for the config tests: an Environment inside tmp_path, never the real /etc or ~."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mailhop.config import Environment

SEED = """\
defaults
auth on
tls on
logfile ~/.msmtp.log
account account1
tls_starttls off
host smtp.example.com
port 465
from username@example.com
user username
password plain-text-password
account account2
tls_starttls off
host smtp.example.com
port 465
from username@example.com
user username
password plain-text-password
account default : account1
"""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def sysconfdir(tmp_path: Path) -> Path:
    path = tmp_path / "etc"
    path.mkdir()
    return path


@pytest.fixture
def environment(home: Path, sysconfdir: Path, monkeypatch: pytest.MonkeyPatch) -> Environment:
    # Child processes (eval, passwordeval) see the same HOME as the parser.
    monkeypatch.setenv("HOME", str(home))
    return Environment(
        home=str(home),
        variables={"HOME": str(home), "PATH": os.environ.get("PATH", os.defpath)},
        euid=os.geteuid(),
        sysconfdir=str(sysconfdir),
        login_name="tester",
        hostname="box.example.org",
        tty=str(home / "no-tty"),
    )


WriteFile = Callable[..., Path]


@pytest.fixture
def write(tmp_path: Path) -> WriteFile:
    """Write ``text`` to ``path`` (relative to tmp_path) with ``mode`` (default 600)."""

    def write_file(relative: str, text: str, mode: int = 0o600) -> Path:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod(mode)
        return path

    return write_file
