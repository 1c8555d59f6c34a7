"""The msmtp-compatible log line."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from mailhop.deliver.log import DeliveryRecord, append_to_file, format_line
from mailhop.errors import ExitCode

SUCCESS = DeliveryRecord(
    host="127.0.0.1",
    tls=False,
    auth=True,
    user="joe",
    envelope_from="joe@example.org",
    recipients=("extra@example.com", "alice@example.com"),
    mailsize=251,
    smtp_status=250,
    smtp_message=("250 queued",),
    exit_code=ExitCode.OK,
)


def test_success_line_matches_msmtp() -> None:
    # The line msmtp 1.8.23 wrote for the same delivery (reference msmtp.md §3.6).
    assert format_line(SUCCESS, time_format=None) == (
        "host=127.0.0.1 tls=off auth=on user=joe from=joe@example.org "
        "recipients=extra@example.com,alice@example.com mailsize=251 "
        "smtpstatus=250 smtpmsg='250 queued' exitcode=EX_OK"
    )


def test_failure_line_quotes_and_joins_reply_lines() -> None:
    record = DeliveryRecord(
        host="mx",
        tls=True,
        auth=False,
        envelope_from="a@b",
        recipients=("good@example.com", "bad@example.com"),
        smtp_status=550,
        smtp_message=("550-no such user", "550 it's gone"),
        error_message="recipient address bad@example.com not accepted by the server",
        message_id="<1@b>",
        exit_code=ExitCode.DATAERR,
    )
    assert format_line(record, time_format="none") == (
        "host=mx tls=on auth=off from=a@b recipients=good@example.com,bad@example.com "
        "smtpstatus=550 smtpmsg='550-no such user\\n550 it?s gone' "
        "errormsg='recipient address bad@example.com not accepted by the server' "
        "msgid=<1@b> exitcode=EX_DATAERR"
    )


def test_control_characters_cannot_forge_lines() -> None:
    record = DeliveryRecord(
        host="h",
        tls=True,
        auth=True,
        envelope_from="a@b",
        recipients=("c@d",),
        smtp_status=554,
        smtp_message=("554 bad\r\nexitcode=EX_OK",),
        exit_code=ExitCode.DATAERR,
    )
    line = format_line(record, time_format=None)
    assert "\n" not in line
    assert "\r" not in line
    assert line.endswith("exitcode=EX_DATAERR")


def test_every_field_is_sanitized_not_only_the_reply() -> None:
    # Envelope values are checked for CR/LF/NUL before delivery, but other control
    # characters (an escape sequence, a tab, a vertical tab) could still reach a log.
    record = DeliveryRecord(
        host="h\x1b[2J",
        tls=False,
        auth=True,
        user="u\tx",
        envelope_from="a\x0b@b",
        recipients=("c\x1b]0;t\x07@d", "e@f"),
        exit_code=ExitCode.OK,
    )
    line = format_line(record, time_format=None)
    assert line.isprintable()
    assert line == (
        "host=h?[2J tls=off auth=on user=u?x from=a?@b recipients=c?]0;t?@d,e@f exitcode=EX_OK"
    )


def test_time_prefix_follows_format() -> None:
    assert format_line(SUCCESS, time_format="[%Y]").startswith("[")


def _writer(path: str, number: int) -> None:
    for index in range(50):
        append_to_file(path, f"writer={number} line={index} " + "x" * 500)


def test_concurrent_writers_never_interleave(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(path, n)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    lines = Path(path).read_text().splitlines()
    assert len(lines) == 200
    assert all(line.endswith("x" * 500) and line.startswith("writer=") for line in lines)
    assert (Path(path).stat().st_mode & 0o777) == 0o600


def test_unwritable_log_is_reported_not_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    append_to_file(str(tmp_path / "missing-dir" / "log"), "host=h exitcode=EX_OK")
    error = capsys.readouterr().err
    assert error.startswith(f"cannot log to {tmp_path}/missing-dir/log: ")
    assert "log info was: host=h exitcode=EX_OK" in error


def test_dash_means_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    append_to_file("-", "host=h")
    assert capsys.readouterr().out == "host=h\n"
