"""Entry point: pick a personality from the program name or the first argument.

A link named ``sendmail`` (or ``msmtp``, ``mailq``, ``newaliases``, ``mail``,
``mailx``) that points at mailhop behaves as that program; ``mailhop NAME ...``
reaches the same code. Command modules are imported only when chosen, because
cron and daemons start the sendmail personality for every message and must not
pay for the rest of the toolkit.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence

from mailhop.errors import ExitCode, MailhopError, NotBuiltError, UsageError

TYPE_CHECKING = False  # not typing's: the enqueue path never imports typing (CONVENTIONS)
if TYPE_CHECKING:
    from typing import NoReturn

# A command is "module:function"; the function takes (program name, arguments)
# and returns an exit code. Absent from this table: not built yet.
Command = Callable[[str, list[str]], int]

COMMANDS: dict[str, str] = {
    "sendmail": "mailhop.cli.sendmail:main",
    "config": "mailhop.cli.config:main",
    "demo": "mailhop.cli.demo:main",
    "serverinfo": "mailhop.cli.sendmail:serverinfo",
    "queue": "mailhop.cli.queue:main",
    "mailq": "mailhop.cli.sendmail:main",
    "mail": "mailhop.cli.mail:main",
    "mailx": "mailhop.cli.mail:main",
    "configure": "mailhop.cli.configure:main",
    "test": "mailhop.cli.test_message:main",
    "doctor": "mailhop.cli.doctor:main",
    "oauth": "mailhop.cli.oauth:main",
    "fetch": "mailhop.cli.fetch:main",
    "aliases": "mailhop.cli.aliases:main",
    "newaliases": "mailhop.cli.aliases:newaliases",
    "install-mta": "mailhop.cli.install_mta:main",
}

# Program names that select a personality (argv[0] dispatch), with the issue that
# builds each one so the "not built" message can say where it comes from.
PERSONALITIES: dict[str, str] = {
    "sendmail": "sendmail",
    "msmtp": "sendmail",
    "mailq": "mailq",
    "newaliases": "newaliases",
    "mail": "mail",
    "mailx": "mailx",
}

PLANNED: dict[str, str] = {
    "serve": "the local SMTP listener",
}

USAGE = """\
usage: mailhop COMMAND [ARGS...]

commands:
  sendmail   read a message on stdin and send it (also: a link named sendmail or msmtp)
  config     check configuration files and list accounts: mailhop config check
  mail       compose a message (body on stdin) and send it (also: a link named mail or mailx)
  configure  find the settings for an address, store the secret, write the account
  doctor     check the whole setup, one line per check with its fix
  test       send a test message through an account, reporting each step
  serverinfo show what an account's server offers (TLS, certificate, capabilities)
  queue      run, list and manage the durable queue (also: mailq, sendmail -q)
  fetch      fetch mail from POP3/IMAP accounts into Maildir, mbox or an MDA
  aliases    check /etc/aliases, or show where mail for an address goes (also: newaliases)
  install-mta  make mailhop the system's sendmail (--remove restores what it replaced)
  demo       send a message through the sendmail personality to an embedded server
  version    print the version

Run 'mailhop COMMAND --help' for the options of a command.
"""


def resolve(name: str) -> Command:
    """Return the function behind command ``name``.

    Raises:
        NotBuiltError: the command is planned but not part of this version.
        UsageError: no such command.
    """
    target = COMMANDS.get(name)
    if target is None:
        if name in PLANNED:
            raise NotBuiltError(
                f"'{name}' is not built yet in mailhop {_version()}: it comes with "
                f"{PLANNED[name]}; use 'mailhop sendmail' to send mail meanwhile"
            )
        raise UsageError(f"unknown command '{name}'; run 'mailhop --help' for the list")
    module_name, function_name = target.split(":")
    function: Command = getattr(importlib.import_module(module_name), function_name)
    return function


def main(argv: Sequence[str] | None = None) -> int:
    """Run mailhop with ``argv`` (``sys.argv`` by default) and return the exit code."""
    arguments = list(sys.argv if argv is None else argv)
    program = os.path.basename(arguments[0]) if arguments else "mailhop"
    rest = arguments[1:]
    try:
        personality = PERSONALITIES.get(program)
        if personality is not None:
            return resolve(personality)(program, rest)
        # ``python -m mailhop`` and ``mailhop`` alike; errors of a subcommand are
        # reported under its own name ("sendmail: ..."), as callers grep for it.
        program = "mailhop"
        if not rest or rest[0] in ("-h", "--help", "help"):
            sys.stdout.write(USAGE)
            return ExitCode.OK if rest else ExitCode.USAGE
        if rest[0] in ("version", "--version"):
            sys.stdout.write(f"mailhop {_version()}\n")
            return ExitCode.OK
        command = resolve(rest[0])
        program = rest[0]
        return command(f"mailhop {rest[0]}", rest[1:])
    except MailhopError as error:
        report(program, error)
        return error.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"{program}: interrupted\n")
        return ExitCode.TEMPFAIL
    except BrokenPipeError:
        # Output closed early (``mailhop config check | head``): not an error
        # worth a traceback. Point stdout at devnull so the exit flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.IOERR


def report(program: str, error: MailhopError) -> None:
    """Print ``error`` as ``program: message`` plus one line per detail."""
    lines = [str(error), *error.details]
    sys.stderr.write("".join(f"{program}: {line}\n" for line in lines))


def _version() -> str:
    from mailhop import __version__  # noqa: PLC0415 - keep the start path lean

    return __version__


def run() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())
