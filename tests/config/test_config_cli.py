"""``mailhop config check`` through the real dispatcher, with the environment in tmp_path."""

from __future__ import annotations

import pytest

from mailhop.cli.main import main
from mailhop.config import Environment
from tests.config.conftest import SEED, WriteFile


@pytest.fixture(autouse=True)
def isolated(environment: Environment, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Environment, "from_process", classmethod(lambda cls: environment))


def test_check_lists_accounts(write: WriteFile, capsys: pytest.CaptureFixture[str]) -> None:
    rc = write("home/.msmtprc", SEED, 0o600)
    assert main(["mailhop", "config", "check"]) == 0
    out = capsys.readouterr().out
    assert f"loaded user configuration file {rc}" in out
    assert (
        f"account1: smtp.example.com:465 tls=implicit auth=choose "
        f"from=username@example.com ({rc}:5)"
    ) in out
    assert "default: smtp.example.com:465 tls=implicit auth=choose" in out


def test_check_refuses_insecure_file(write: WriteFile, capsys: pytest.CaptureFixture[str]) -> None:
    rc = write("home/.msmtprc", SEED, 0o644)
    assert main(["mailhop", "config", "check"]) == 78
    assert f"chmod 600 {rc}" in capsys.readouterr().err


def test_check_with_minus_c_and_a_syntax_error(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = write("other/rc", "account a\nport none\n")
    assert main(["mailhop", "config", "check", "-C", str(rc)]) == 78
    assert f"{rc}: line 2: invalid argument none for command port" in capsys.readouterr().err


def test_check_reports_a_broken_default_account(
    write: WriteFile, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = write("other/rc", "account base\ntls on\naccount default : base\nfrom a@b.c\n")
    assert main(["mailhop", "config", "check", f"--file={rc}"]) == 78
    assert "problem: host not set" in capsys.readouterr().out


def test_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mailhop", "config"]) == 64
    assert main(["mailhop", "config", "check", "--bogus"]) == 64
    assert main(["mailhop", "config", "--help"]) == 0
