"""``mailhop fetch [-C FILE] [--dry-run] [--idle] [-q] [ACCOUNT...]``: POP3/IMAP retrieval.

Without ACCOUNT names every account with ``protocol pop3`` or ``protocol imap`` is
fetched. On a terminal a progress line is shown on stderr; otherwise (cron) only the
one-line summary of each account that fetched something, and errors, are printed.
Exit status: 0 when every account succeeded, else the code of the first failure.
"""

from __future__ import annotations

import argparse
import sys
import threading

from mailhop.errors import ExitCode, MailhopError, UsageError

USAGE = "mailhop fetch [-C FILE] [--dry-run] [--idle] [--poll SECONDS] [-q] [ACCOUNT...]"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}; usage: {USAGE}")


def _parse(arguments: list[str]) -> argparse.Namespace:
    parser = _Parser(prog="mailhop fetch", usage=USAGE, add_help=True)
    parser.add_argument("-C", "--file", dest="config_file")
    parser.add_argument("--dry-run", action="store_true", help="list what would be fetched")
    parser.add_argument("--idle", action="store_true", help="keep watching (IMAP IDLE)")
    parser.add_argument("--poll", type=float, default=None, help="poll interval without IDLE")
    parser.add_argument("--state-dir", default=None, help="where the fetch state is kept")
    parser.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    parser.add_argument("accounts", nargs="*", metavar="ACCOUNT")
    return parser.parse_args(arguments)


def main(program: str, arguments: list[str]) -> int:
    from mailhop.config import get_password, load  # noqa: PLC0415
    from mailhop.fetch.accounts import (  # noqa: PLC0415
        RETRIEVAL_PROTOCOLS,
        default_state_directory,
        retrieval_account,
    )
    from mailhop.fetch.run import DEFAULT_POLL_SECONDS, fetch_account, watch  # noqa: PLC0415

    options = _parse(arguments)
    configuration = load(options.config_file)
    if options.accounts:
        chosen = []
        for name in options.accounts:
            found = configuration.find(name)
            if found is None:
                raise UsageError(
                    f"no account {name!r} in the configuration; see mailhop config check"
                )
            chosen.append(found)
    else:
        chosen = [a for a in configuration.accounts if a.protocol in RETRIEVAL_PROTOCOLS]
        if not chosen:
            raise MailhopError(
                "no retrieval account: add one with 'protocol imap' or 'protocol pop3'",
                exit_code=ExitCode.CONFIG,
            )
    accounts = [retrieval_account(account) for account in chosen]
    state_directory = options.state_dir or default_state_directory()
    interactive = sys.stdin.isatty()
    on_terminal = sys.stderr.isatty() and not options.quiet
    credentials = [
        (account, get_password(account.account, interactive=interactive)) for account in accounts
    ]

    if options.idle:
        # A watcher has no end of its own: Ctrl-C (SIGINT) or a service manager's stop
        # (SIGTERM) is how it is meant to end, not a failure. So both ask the folder
        # threads to stop after the message in hand is durable and recorded, and the
        # exit is a quiet 0. Neither 75 ("temporary failure, try again": untrue) nor
        # 130 (the shell's "killed by SIGINT", which reads as an abort) would be true.
        import signal  # noqa: PLC0415

        stop = threading.Event()
        previous = {
            number: signal.signal(number, lambda _number, _frame: stop.set())
            for number in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            watch(
                credentials,
                state_directory,
                report=lambda line: print(f"{program}: {line}", file=sys.stderr, flush=True),
                stop=stop,
                poll_seconds=options.poll or DEFAULT_POLL_SECONDS,
            )
        finally:
            stop.set()
            for number, handler in previous.items():
                signal.signal(number, handler)
        return ExitCode.OK

    def progress(folder: str, done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r{folder} [{bar}] {done}/{total}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    status = ExitCode.OK
    for account, password in credentials:
        try:
            summary = fetch_account(
                account,
                password,
                state_directory,
                dry_run=options.dry_run,
                progress=progress if on_terminal else None,
            )
        except MailhopError as error:
            sys.stderr.write(f"{program}: {account.name}: {error}\n")
            if status == ExitCode.OK:
                status = error.exit_code
            continue
        if options.dry_run:
            print(summary.line(dry_run=True))
            for folder in summary.folders:
                for uid in folder.would_fetch:
                    print(f"  {folder.folder} {uid}")
        elif not options.quiet and (summary.fetched or on_terminal):
            print(summary.line())
    return status
