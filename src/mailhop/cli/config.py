"""``mailhop config check [-C FILE]``: validate the configuration files, list accounts.

Loading applies every rule a send would (grammar, values, ``eval``, the secrets
check); each account is then listed with where it comes from. Problems that
``check_account`` would report when an account is used are shown per account;
they make the exit status 78 only for the ``default`` account, because accounts
that only serve as parents (``account base`` without a host) are normal.
"""

from __future__ import annotations

import sys

from mailhop.errors import ExitCode, UsageError

USAGE = """\
usage: mailhop config check [-C FILE]

Read the system and user configuration files (or FILE instead of the user file),
report the first error with its file and line, and list the accounts.
"""


def main(program: str, arguments: list[str]) -> int:
    from mailhop.config import Auth, complete, load  # noqa: PLC0415 - this command only
    from mailhop.config.accounts import account_problem  # noqa: PLC0415

    if arguments and arguments[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return ExitCode.OK
    if not arguments or arguments[0] != "check":
        raise UsageError(f"usage: {program} check [-C FILE]")
    config_file = _parse_check_options(arguments[1:])

    configuration = load(config_file)
    output = [f"{message}\n" for message in configuration.messages]
    status = ExitCode.OK
    if not configuration.accounts:
        output.append("no accounts defined\n")
    for account in configuration.accounts:
        used = complete(account, sendmail_mode=False)
        problem = account_problem(used, sendmail_mode=True)
        auth = {Auth.NONE: "none", Auth.CHOOSE: "choose"}.get(used.auth, used.auth.mechanism)
        target = used.socket or f"{used.host or '(no host)'}:{used.port or '(no port)'}"
        output.append(
            f"{used.name}: {target} tls={used.tls_mode.value} auth={auth} "
            f"from={used.from_address or '(not set)'} ({used.file}:{used.line})\n"
        )
        if problem is not None:
            output.append(f"  problem: {problem}\n")
            if used.name == "default":
                status = ExitCode.CONFIG
    sys.stdout.write("".join(output))
    return status


def _parse_check_options(options: list[str]) -> str | None:
    config_file = None
    index = 0
    while index < len(options):
        option = options[index]
        if option in ("-C", "--file") and index + 1 < len(options):
            config_file = options[index + 1]
            index += 2
        elif option.startswith("--file="):
            config_file = option.partition("=")[2]
            index += 1
        elif option.startswith("-C") and len(option) > 2:
            config_file = option[2:]
            index += 1
        else:
            raise UsageError(f"unknown argument '{option}'; usage: mailhop config check [-C FILE]")
    return config_file
