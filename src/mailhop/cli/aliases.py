"""``mailhop aliases check|resolve ADDR`` and ``newaliases`` (``sendmail -bi``).

mailhop reads ``/etc/aliases`` directly on each delivery (it is small), so there is
no database to rebuild: ``newaliases`` checks the file and reports every problem
with its line, as Debian Policy asks every MTA to provide (exit 0 when clean, 78
when a line is wrong). ``resolve`` shows where mail for an address would go.
"""

from __future__ import annotations

import sys

from mailhop.errors import ExitCode, UsageError

USAGE = """\
usage: mailhop aliases check [-C FILE] [FILE]
       mailhop aliases resolve [-C FILE] ADDRESS...
       newaliases

check    read the aliases file (default: the account's system_aliases, /etc/aliases)
         and the account's msmtp aliases file; print every problem with its line
resolve  print where mail for each ADDRESS goes: local user, file, command, or remote
"""


def _account(config_file: str | None):  # type: ignore[no-untyped-def]  # noqa: ANN202
    from mailhop.config import Account, resolve  # noqa: PLC0415
    from mailhop.config.errors import AccountError  # noqa: PLC0415

    try:
        return resolve(config_file=config_file, sendmail_mode=False).account
    except AccountError:
        return Account(name="local delivery")


def _check(config_file: str | None, paths: list[str]) -> int:
    from mailhop.deliver.aliases import AliasFormat, load_aliases  # noqa: PLC0415

    account = _account(config_file)
    tables = [(path, AliasFormat.SYSTEM) for path in paths]
    if not paths:
        if account.system_aliases:
            tables.append((account.system_aliases, AliasFormat.SYSTEM))
        if account.aliases:
            tables.append((account.aliases, AliasFormat.MSMTP))
    problems = 0
    for path, aliases_format in tables:
        table = load_aliases(path, aliases_format)
        for problem in table.problems:
            sys.stderr.write(f"{problem}\n")
        problems += len(table.problems)
        trust = (
            "" if table.trusted else " (not root-owned or writable by others: no files or commands)"
        )
        sys.stdout.write(
            f"{path}: {len(table.entries)} aliases, {len(table.problems)} problems{trust}\n"
        )
    return ExitCode.CONFIG if problems else ExitCode.OK


def _resolve(config_file: str | None, addresses: list[str]) -> int:
    import os  # noqa: PLC0415

    from mailhop.deliver.aliases import AliasFormat, expand, load_aliases  # noqa: PLC0415
    from mailhop.deliver.routing import LocalDomains  # noqa: PLC0415
    from mailhop.message import collect_recipients  # noqa: PLC0415

    if not addresses:
        raise UsageError("resolve needs an address: mailhop aliases resolve root")
    account = _account(config_file)
    recipients = collect_recipients(addresses)
    system = None
    if account.system_aliases and os.path.exists(account.system_aliases):
        system = load_aliases(account.system_aliases)
    msmtp = load_aliases(account.aliases, AliasFormat.MSMTP) if account.aliases else None
    domains = LocalDomains(account.local_domains)
    expansion = expand(
        [address.addr_spec for address in recipients.addresses],
        system=system,
        msmtp=msmtp,
        is_local_domain=domains.__contains__,
    )
    for destination in expansion.destinations:
        chain = " -> ".join((destination.original, *destination.via[1:]))
        target = destination.value
        if destination.kind.name == "ADDRESS":
            where = f"remote {target} (through the relay account)"
        elif destination.kind.name == "LOCAL_USER":
            where = f"local user {target}"
        else:
            where = f"{destination.kind.value} {target}"
        sender = f" (envelope sender {destination.sender})" if destination.sender else ""
        sys.stdout.write(f"{chain}: {where}{sender}\n")
    return ExitCode.OK


def main(program: str, arguments: list[str]) -> int:
    """``mailhop aliases SUBCOMMAND ...``."""
    del program
    config_file = None
    rest = list(arguments)
    if rest[:1] in (["-h"], ["--help"]) or not rest:
        sys.stdout.write(USAGE)
        return ExitCode.OK if rest else ExitCode.USAGE
    command, rest = rest[0], rest[1:]
    if rest[:1] == ["-C"]:
        if len(rest) < 2:
            raise UsageError("-C needs a configuration file")
        config_file, rest = rest[1], rest[2:]
    if command == "check":
        return _check(config_file, rest)
    if command == "resolve":
        return _resolve(config_file, rest)
    raise UsageError(f"unknown aliases command {command!r}; use check or resolve")


def newaliases(program: str, arguments: list[str]) -> int:
    """``newaliases`` / ``sendmail -bi``: check the aliases file (no database to build)."""
    del program
    if arguments and arguments[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return ExitCode.OK
    return _check(None, [])
