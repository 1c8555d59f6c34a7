"""The sendmail argv grammar, checked against the invocations real callers use."""

from __future__ import annotations

import pytest

from mailhop.cli.sendmail_options import Mode, SendmailOptions, parse
from mailhop.errors import ExitCode, UsageError


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # cron (Debian cron 3.0pl1)
        (
            ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "-oi", "-t"],
            SendmailOptions(full_name="CronDaemon", ignore_dots=True, read_recipients=True),
        ),
        # s-nail / bsd-mailx
        (
            ["-i", "-t", "-f", "me@example.test"],
            SendmailOptions(
                ignore_dots=True, read_recipients=True, envelope_from="me@example.test"
            ),
        ),
        # mutt
        (
            ["-oem", "-oi", "--", "a@example.test", "b@example.test"],
            SendmailOptions(ignore_dots=True, recipients=("a@example.test", "b@example.test")),
        ),
        # git send-email
        (
            ["-i", "a@example.test"],
            SendmailOptions(ignore_dots=True, recipients=("a@example.test",)),
        ),
        # heirloom mailx passes -r for the sender
        (
            ["-r", "x@example.test", "y@example.test"],
            SendmailOptions(envelope_from="x@example.test", recipients=("y@example.test",)),
        ),
        # bundled flags and options after recipients (GNU getopt permutes)
        (
            ["root", "-ti"],
            SendmailOptions(recipients=("root",), read_recipients=True, ignore_dots=True),
        ),
        # a null sender
        (["-f<>", "root"], SendmailOptions(envelope_from="<>", recipients=("root",))),
        # msmtp's own options
        (
            [
                "-C",
                "/tmp/rc",
                "-a",
                "work",
                "-X",
                "/tmp/log",
                "-N",
                "failure,delay",
                "-R",
                "hdrs",
                "x@y",
            ],
            SendmailOptions(
                config_file="/tmp/rc",
                account="work",
                settings=(
                    ("logfile", "/tmp/log"),
                    ("dsn_notify", "failure,delay"),
                    ("dsn_return", "hdrs"),
                ),
                recipients=("x@y",),
            ),
        ),
        (
            [
                "--host=127.0.0.1",
                "--port",
                "--tls",
                "--from=a@b",
                "--account",
                "acc",
                "--read-envelope-from",
            ],
            SendmailOptions(
                settings=(("host", "127.0.0.1"), ("port", ""), ("tls", "")),
                envelope_from="a@b",
                account="acc",
                read_envelope_from=True,
            ),
        ),
        # legacy flags accepted and ignored
        (
            [
                "-odi",
                "-odb",
                "-G",
                "-h",
                "17",
                "-L",
                "tag",
                "-m",
                "-n",
                "-O",
                "x=y",
                "-U",
                "-Am",
                "r",
            ],
            SendmailOptions(recipients=("r",)),
        ),
        (["-v", "-d", "--debug"], SendmailOptions(verbose=True)),
        (["-bm", "r"], SendmailOptions(recipients=("r",))),
    ],
)
def test_real_invocations(argv: list[str], expected: SendmailOptions) -> None:
    assert parse(argv) == expected


@pytest.mark.parametrize(
    ("argv", "program", "mode"),
    [
        (["-bs"], "sendmail", Mode.SMTP_ON_STDIO),
        (["-bp"], "sendmail", Mode.LIST_QUEUE),
        ([], "mailq", Mode.LIST_QUEUE),
        (["-q"], "sendmail", Mode.RUN_QUEUE),
        (["-q15m", "-v"], "sendmail", Mode.RUN_QUEUE),
        (["-bi"], "sendmail", Mode.REBUILD_ALIASES),
        (["-I"], "sendmail", Mode.REBUILD_ALIASES),
        ([], "newaliases", Mode.REBUILD_ALIASES),
        (["-P"], "sendmail", Mode.PRETEND),
        (["--pretend"], "sendmail", Mode.PRETEND),
        (["-S"], "sendmail", Mode.SERVERINFO),
        (["--serverinfo"], "sendmail", Mode.SERVERINFO),
        (["--version"], "sendmail", Mode.VERSION),
        (["-d0.1"], "sendmail", Mode.VERSION),
        (["--help"], "sendmail", Mode.HELP),
    ],
)
def test_modes(argv: list[str], program: str, mode: Mode) -> None:
    assert parse(argv, program=program).mode is mode


def test_bare_q_does_not_swallow_the_next_word() -> None:
    options = parse(["-q", "-v"])
    assert options.mode is Mode.RUN_QUEUE
    assert options.verbose


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-f"], "option -f requires an argument"),
        (["--from"], "option --from requires an argument"),
        (["-Z"], "unknown option -Z"),
        (["--frobnicate"], "unknown option --frobnicate"),
        (["-bd"], "unsupported operation mode -bd"),
    ],
)
def test_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        parse(argv)
    assert caught.value.exit_code == ExitCode.USAGE


def test_everything_after_double_dash_is_a_recipient() -> None:
    # The address check (no leading "-") is the message layer's job; the parser
    # must not interpret these as options.
    assert parse(["--", "-oQ/tmp", "-t"]).recipients == ("-oQ/tmp", "-t")
    assert not parse(["--", "-t"]).read_recipients
