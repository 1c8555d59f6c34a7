"""``mail`` with no recipients: read a mailbox (POSIX mailx read mode, mailx.md §2).

::

    mail [-N] [-n] [-S VAR[=VALUE]]... [-u USER]      the system mailbox
    mail [-N] [-n] [-S VAR[=VALUE]]... -f [FILE]      FILE (default $MBOX or ~/mbox)
    mail -H ...                                       print the header summary, exit
    mail -e ...                                       exit 0 if there is mail, 1 if not

The system mailbox is ``$MAIL``, else ``/var/mail/$USER``; ``-u USER`` reads
``/var/mail/USER``. ``-H`` and ``-e`` never change the mailbox (GNU mail rewrites it on
open; we do not, mailx.md §2.2). Variables come from the mail.rc files of the send mode
(``/etc/mail.rc``, ``~/.mailrc``; ``-n`` skips the system ones) and ``-S``; ``hold`` and
``keepsave`` are off by default, as in POSIX and Debian's ``mail`` (bsd-mailx). Replies
go through the sendmail path in-process (``mailhop.cli.sendmail.send``).
"""

from __future__ import annotations

import dataclasses
import getopt
import io
import os
import pwd
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from mailhop.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from mailhop.reader.session import Outgoing

# Where system mailboxes live (FHS; Debian policy §11.6).
SPOOL_DIRECTORY = "/var/mail"
# getopt letters: the read-mode options plus those the send mode shares and that mean
# nothing here but must not fail a script (-i ignore interrupts, -v verbose, -# batch).
SHORT_OPTIONS = "NHenfu:S:A:iv#"
# Terminal width when stdout is not a terminal and $COLUMNS is unset.
DEFAULT_COLUMNS = 80


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReadOptions:
    no_summary: bool = False  # -N
    summary_only: bool = False  # -H
    test_only: bool = False  # -e
    skip_system: bool = False  # -n
    use_file: bool = False  # -f
    file: str | None = None  # the operand after -f
    user: str | None = None  # -u
    settings: tuple[tuple[str, str | None], ...] = ()  # -S
    account: str | None = None  # -A


def parse_read_arguments(arguments: Sequence[str]) -> ReadOptions:
    """Parse the read-mode command line.

    Raises:
        UsageError: an unknown option, -f with -u, or an operand without -f.
    """
    try:
        pairs, operands = getopt.getopt(list(arguments), SHORT_OPTIONS)
    except getopt.GetoptError as error:
        raise UsageError(f"{error}; run 'mail --help' for the options") from None
    fields: dict[str, object] = {}
    settings: list[tuple[str, str | None]] = []
    flags = {"-N": "no_summary", "-H": "summary_only", "-e": "test_only", "-n": "skip_system"}
    for option, value in pairs:
        if option in flags:
            fields[flags[option]] = True
        elif option == "-f":
            fields["use_file"] = True
        elif option == "-u":
            fields["user"] = _checked_user(value)
        elif option == "-A":
            fields["account"] = value
        elif option == "-S":
            name, equals, text = value.partition("=")
            if not name:
                raise UsageError(f"-S {value!r}: give VAR or VAR=VALUE")
            if not equals and name.startswith("no") and len(name) > 2:
                settings.append((name[2:], None))
            else:
                settings.append((name, text))
    if operands and not fields.get("use_file"):
        raise UsageError(
            f"{operands[0]!r}: to read a file give -f FILE; to send, give a subject too: "
            "mail -s SUBJECT ADDRESS < body"
        )
    if len(operands) > 1:
        raise UsageError("-f takes one mailbox file")
    if fields.get("use_file") and fields.get("user"):
        raise UsageError("use either -f FILE or -u USER, not both")
    if operands:
        fields["file"] = operands[0]
    return ReadOptions(**fields, settings=tuple(settings))  # type: ignore[arg-type]


def _login_name() -> str:
    for name in ("USER", "LOGNAME"):
        value = os.environ.get(name)
        if value:
            return value
    return pwd.getpwuid(os.getuid()).pw_name


def _home() -> str:
    return os.environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir


def _checked_user(user: str) -> str:
    if not user or "/" in user or user.startswith(".") or not user.isprintable():
        raise UsageError(f"-u {user!r}: not a user name")
    return user


def mailbox_path(options: ReadOptions) -> tuple[str, bool, str]:
    """(path, is the system mailbox, the user it belongs to) for ``options``."""
    if options.use_file:
        if options.file:
            name = options.file
            if name == "~" or name.startswith("~/"):
                name = os.path.join(_home(), name[2:])
            return name, False, _login_name()
        return os.environ.get("MBOX") or os.path.join(_home(), "mbox"), False, _login_name()
    if options.user is not None:
        user = options.user
        return os.path.join(SPOOL_DIRECTORY, user), True, user
    user = _login_name()
    return os.environ.get("MAIL") or os.path.join(SPOOL_DIRECTORY, user), True, user


def _variables(options: ReadOptions) -> dict[str, str]:
    from mailhop.cli.mail import SYSCONFDIR_VARIABLE  # noqa: PLC0415
    from mailhop.config import Environment  # noqa: PLC0415
    from mailhop.config.mailrc import load_settings  # noqa: PLC0415

    environment = Environment.from_process()
    sysconfdir = environment.variables.get(SYSCONFDIR_VARIABLE)
    if sysconfdir:
        environment = environment._replace(sysconfdir=sysconfdir)
    settings = load_settings(
        environment,
        skip_system=options.skip_system,
        account=options.account,
        command_line=options.settings,
    )
    return dict(settings.variables)


def main(program: str, arguments: list[str]) -> int:
    """Run read mode; the ``mail`` personality calls this when it has no recipients."""
    from mailhop.reader.folder import Folder  # noqa: PLC0415
    from mailhop.reader.session import Session, SessionSettings  # noqa: PLC0415
    from mailhop.reader.summary import summary_line  # noqa: PLC0415

    options = parse_read_arguments(arguments)
    path, system_mailbox, user = mailbox_path(options)
    folder = Folder.open(path)
    if options.test_only:
        return ExitCode.OK if len(folder) else 1
    if not len(folder):
        where = f"for {user}" if system_mailbox else f"in {path}"
        sys.stderr.write(f"No mail {where}\n")
        return 1
    _reconfigure_output()
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    columns = _columns(interactive)
    if options.summary_only:
        for index, message in enumerate(folder.messages):
            sys.stdout.write(
                summary_line(
                    index + 1, message, folder.marks[index], current=False, columns=columns
                )
                + "\n"
            )
        return ExitCode.OK
    variables = _variables(options)
    session = Session(
        folder,
        settings=SessionSettings(
            system_mailbox=system_mailbox,
            mbox_path=os.environ.get("MBOX") or os.path.join(_home(), "mbox"),
            home=_home(),
            columns=columns,
            interactive=interactive,
            show_headers=not options.no_summary,
        ),
        variables=variables,
        read_line=_terminal_reader() if interactive else _stdin_reader(),
        output=sys.stdout,
        send=_send,
    )
    return session.run()


def _reconfigure_output() -> None:
    # Text from messages is already escaped; what the terminal's charset cannot show
    # becomes "?" instead of a traceback.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")


def _columns(interactive: bool) -> int:
    if interactive:
        return shutil.get_terminal_size((DEFAULT_COLUMNS, 24)).columns
    try:
        return int(os.environ.get("COLUMNS", DEFAULT_COLUMNS))
    except ValueError:
        return DEFAULT_COLUMNS


def _terminal_reader() -> Callable[[str], str | None]:
    def read_line(prompt: str) -> str | None:
        try:
            return input(prompt)
        except EOFError:
            sys.stdout.write("\n")
            return None

    return read_line


def _stdin_reader() -> Callable[[str], str | None]:
    def read_line(prompt: str) -> str | None:
        if prompt:
            sys.stdout.write(prompt)
            sys.stdout.flush()
        line = sys.stdin.readline()
        return line.rstrip("\n") if line else None

    return read_line


def _send(outgoing: Outgoing) -> int:
    """Hand a reply to the sendmail path in-process (aliases, accounts, queue apply)."""
    from mailhop.cli.sendmail import send  # noqa: PLC0415
    from mailhop.cli.sendmail_options import SendmailOptions  # noqa: PLC0415

    options = SendmailOptions(recipients=outgoing.recipients, ignore_dots=True)
    return send(options, "mail", io.BytesIO(outgoing.data))
