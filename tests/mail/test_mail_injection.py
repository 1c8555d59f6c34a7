"""Header, option, pipe and file injection through the mail command line (security.md B2, B5, B6).

The mail process is real; where a message would go out it is handed to a stub sendmail
program that records its argv and stdin, the peer security.md B5 asks for.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mailhop.errors import ExitCode
from tests.mail.support import mail_environment, run_mail

STUB = """\
import json, sys
with open({record!r}, "w") as record:
    json.dump({{"argv": sys.argv[1:], "stdin": sys.stdin.buffer.read().decode("utf-8")}}, record)
sys.exit({status})
"""


def stub_sendmail(tmp_path: Path, *, status: int = 0) -> tuple[Path, Path]:
    record = tmp_path / "record.json"
    script = tmp_path / "stub-sendmail"
    script.write_text(
        f"#!{sys.executable}\n" + STUB.format(record=str(record), status=status),
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script, record


def recorded(record: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(record.read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize(
    "subject",
    ["hi\r\nBcc: x@example.test", "hi\nX-A: y", "hi\rBcc: x@example.test"],
)
def test_newline_in_subject_is_refused_with_65(tmp_path: Path, subject: str) -> None:
    script, record = stub_sendmail(tmp_path)
    result = run_mail(
        ["-s", subject, "-S", f"sendmail={script}", "bob@example.test"],
        b"body\n",
        environment=mail_environment(tmp_path),
    )
    assert result.returncode == ExitCode.DATAERR, result.stderr
    assert b"the subject (-s) contains the control character" in result.stderr
    assert not record.exists()


def test_newline_in_sender_is_refused_with_65(tmp_path: Path) -> None:
    script, record = stub_sendmail(tmp_path)
    result = run_mail(
        ["-r", "me@example.test\nBcc: e@example.test", "-S", f"sendmail={script}", "b@x.test"],
        b"body\n",
        environment=mail_environment(tmp_path),
    )
    assert result.returncode == ExitCode.DATAERR
    assert not record.exists()


@pytest.mark.parametrize(
    "arguments",
    [
        ["bob@example.test", "-X/tmp/x"],
        ["--", "-oQ/tmp"],
        ["--", "-X/tmp/x"],
        ["bob@example.test", "-oQ/tmp -X/tmp/pwn.log"],
    ],
)
def test_option_injection_through_an_address_is_refused(
    tmp_path: Path, arguments: list[str]
) -> None:
    script, record = stub_sendmail(tmp_path)
    result = run_mail(
        ["-s", "t", "-S", f"sendmail={script}", *arguments],
        b"body\n",
        environment=mail_environment(tmp_path),
    )
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert b"could be taken for an option" in result.stderr
    assert not record.exists()


def test_an_unknown_option_before_the_addresses_is_a_usage_error(tmp_path: Path) -> None:
    result = run_mail(
        ["-s", "t", "-X/tmp/x", "bob@example.test"], b"", environment=mail_environment(tmp_path)
    )
    assert result.returncode == ExitCode.USAGE


def test_mta_arguments_after_recipients_are_refused(tmp_path: Path) -> None:
    script, record = stub_sendmail(tmp_path)
    result = run_mail(
        ["-s", "t", "-S", f"sendmail={script}", "bob@example.test", "--", "-X/tmp/x"],
        b"body\n",
        environment=mail_environment(tmp_path),
    )
    assert result.returncode == ExitCode.USAGE
    assert not record.exists()


@pytest.mark.parametrize("setting", [[], ["-S", "expandaddr"]])
def test_pipe_and_file_recipients_are_refused(tmp_path: Path, setting: list[str]) -> None:
    script, _record = stub_sendmail(tmp_path)
    victims = [tmp_path / "p1", tmp_path / "p2", tmp_path / "p3", tmp_path / "p4"]
    for recipient in (
        f"|touch {victims[1]}",
        str(victims[2]),
    ):
        result = run_mail(
            ["-s", "t", "-S", f"sendmail={script}", *setting, recipient],
            b"body\n",
            environment=mail_environment(tmp_path),
        )
        assert result.returncode == ExitCode.USAGE, result.stderr
        assert b"refusing the" in result.stderr
    # Shell syntax in an address is an address (or refused), never run.
    for recipient in (f"$(touch {victims[0]})@x.test", f"`touch {victims[3]}`@x.test"):
        run_mail(
            ["-s", "t", "-S", f"sendmail={script}", recipient],
            b"body\n",
            environment=mail_environment(tmp_path),
        )
    assert not any(victim.exists() for victim in victims)


def test_external_sendmail_gets_dash_dash_before_the_recipients(tmp_path: Path) -> None:
    script, record = stub_sendmail(tmp_path)
    result = run_mail(
        [
            "-s", "subject", "-r", "me@example.test", "-b", "hidden@example.test",
            "-S", f"sendmail={script}", "bob@example.test, carol@example.test",
            "dave@example.test",
        ],
        b"body\n",
        environment=mail_environment(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = recorded(record)
    assert data["argv"] == [
        "-i", "-f", "me@example.test", "--",
        "bob@example.test", "carol@example.test", "dave@example.test", "hidden@example.test",
    ]  # fmt: skip
    message = str(data["stdin"])
    headers = message.split("\n\n", 1)[0]
    assert "Bcc" not in headers and "hidden@" not in headers
    assert "Subject: subject\n" in headers


def test_external_sendmail_failure_is_the_exit_status(tmp_path: Path) -> None:
    script, _ = stub_sendmail(tmp_path, status=ExitCode.TEMPFAIL)
    result = run_mail(
        ["-s", "t", "-S", f"sendmail={script}", "bob@example.test"],
        b"body\n",
        environment=mail_environment(tmp_path),
    )
    assert result.returncode == ExitCode.TEMPFAIL
    assert b"failed with exit status 75" in result.stderr


def test_a_mailrc_with_a_password_readable_by_others_is_refused(tmp_path: Path) -> None:
    environment = mail_environment(tmp_path)
    rc = Path(environment["HOME"]) / ".mailrc"
    rc.write_text("set smtp=127.0.0.1:9 smtp-auth-password=zebra-Pa55\n", encoding="utf-8")
    rc.chmod(0o644)
    result = run_mail(["-s", "t", "bob@example.test"], b"x\n", environment=environment)
    assert result.returncode == ExitCode.CONFIG
    assert b"chmod 600" in result.stderr
    assert b"zebra-Pa55" not in result.stderr


def test_unparsable_recipient_is_reported_not_dropped(tmp_path: Path) -> None:
    script, record = stub_sendmail(tmp_path)
    result = run_mail(
        ["-s", "t", "-S", f"sendmail={script}", "bob@example.test", "carol@@example.test"],
        b"x\n",
        environment=mail_environment(tmp_path),
    )
    assert result.returncode == ExitCode.USAGE
    assert b"carol@@example.test" in result.stderr
    assert not record.exists()


def test_empty_body_with_dash_e_sends_nothing(tmp_path: Path) -> None:
    script, record = stub_sendmail(tmp_path)
    result = run_mail(
        ["-E", "-s", "t", "-S", f"sendmail={script}", "bob@example.test"],
        b"",
        environment=mail_environment(tmp_path),
    )
    assert result.returncode == 0
    assert not record.exists()
