"""The mail command line: POSIX parsing, -S, and the -a compatibility switch."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhop.cli.mail import parse_arguments
from mailhop.errors import UsageError
from tests.mail.support import mail_environment, run_mail
from tests.mail.test_mail_injection import recorded, stub_sendmail


def test_options_end_at_the_first_address() -> None:
    options = parse_arguments(["-s", "subj", "-v", "a@x.test", "-a", "/etc/passwd"])
    assert options.subject == "subj"
    assert options.verbose
    assert options.a_values == ()
    assert options.recipients == ("a@x.test", "-a", "/etc/passwd")


def test_set_unset_and_repeatable_options() -> None:
    options = parse_arguments(
        ["-S", "smtp=h:25", "-S", "noexpandaddr", "-S", "verbose", "-a", "f1", "-a", "f2",
         "-c", "c@x", "-b", "b@x", "-r", "me@x", "-A", "work", "-n", "-E", "-t", "--", "-x@y"]
    )  # fmt: skip
    assert options.settings == (("smtp", "h:25"), ("expandaddr", None), ("verbose", ""))
    assert options.a_values == ("f1", "f2")
    assert (options.cc, options.bcc, options.sender) == (("c@x",), ("b@x",), "me@x")
    assert (options.account, options.skip_system, options.skip_empty) == ("work", True, True)
    assert options.read_headers
    assert options.recipients == ("-x@y",)


@pytest.mark.parametrize("arguments", [["-Z"], ["-s"], ["-S", "=v", "a@x"]])
def test_bad_command_lines_are_usage_errors(arguments: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_arguments(arguments)


def test_a_is_header_switch_gives_bsd_mailx_meaning(tmp_path: Path) -> None:
    script, record = stub_sendmail(tmp_path)
    result = run_mail(
        ["-s", "t", "-a", "X-Report: nightly", "-S", "a-is-header", "-S", f"sendmail={script}",
         "bob@example.test"],
        b"body\n",
        environment=mail_environment(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "\nX-Report: nightly\n" in str(recorded(record)["stdin"])


def test_without_the_switch_a_is_an_attachment(tmp_path: Path) -> None:
    script, _ = stub_sendmail(tmp_path)
    result = run_mail(
        ["-s", "t", "-a", "X-Report: nightly", "-S", f"sendmail={script}", "bob@example.test"],
        b"body\n",
        environment=mail_environment(tmp_path),
    )
    assert result.returncode == 66
    assert b"cannot attach X-Report: nightly" in result.stderr


def test_dash_t_reads_recipients_and_subject_from_the_header_block(tmp_path: Path) -> None:
    script, record = stub_sendmail(tmp_path)
    result = run_mail(
        ["-t", "-S", f"sendmail={script}"],
        b"To: bob@example.test\nBcc: hidden@example.test\nSubject: from -t\n\nthe body\n",
        environment=mail_environment(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    data = recorded(record)
    assert data["argv"] == ["-i", "--", "bob@example.test", "hidden@example.test"]
    message = str(data["stdin"])
    assert "Subject: from -t\n" in message
    assert "hidden@" not in message
    assert message.endswith("\n\nthe body\n")
