"""Personality dispatch by program name, through real processes where it matters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailhop.cli.main import COMMANDS, PERSONALITIES, main
from mailhop.errors import ExitCode


def run_as(tmp_path: Path, name: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run mailhop through a symlink called ``name``, as /usr/sbin/sendmail would."""
    launcher = tmp_path / "mailhop-launcher"
    launcher.write_text(
        f"#!{sys.executable}\nfrom mailhop.cli.main import run\nrun()\n", encoding="utf-8"
    )
    launcher.chmod(0o755)
    link = tmp_path / name
    link.symlink_to(launcher)
    return subprocess.run(
        [str(link), *arguments],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("name", sorted(PERSONALITIES))
def test_every_personality_name_reaches_a_built_command(name: str) -> None:
    # A link named sendmail, mailq, newaliases, mail ... must never land on "not built".
    assert PERSONALITIES[name] in COMMANDS


@pytest.mark.parametrize("name", ["mail", "mailx"])
def test_mail_without_recipients_reads_mail(tmp_path: Path, name: str) -> None:
    empty = tmp_path / "empty-mbox"
    empty.write_bytes(b"")
    result = run_as(tmp_path, name, "-f", str(empty))
    assert result.returncode == 1
    assert result.stderr == f"No mail in {empty}\n"


def test_python_dash_m_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailhop", "version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ},
    )
    assert result.returncode == 0
    assert result.stdout.startswith("mailhop ")


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mailhop", "frobnicate"]) == ExitCode.USAGE
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_no_command_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mailhop"]) == ExitCode.USAGE
    assert "usage: mailhop COMMAND" in capsys.readouterr().out
    assert main(["mailhop", "--help"]) == ExitCode.OK


def test_planned_subcommand_is_not_built(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mailhop", "serve"]) == ExitCode.UNAVAILABLE
    assert "the local SMTP listener" in capsys.readouterr().err
