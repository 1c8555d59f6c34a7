"""``mailhop oauth login ACCOUNT [-C FILE]``: get and store an OAuth2 token for ACCOUNT.

Runs the device authorization grant (RFC 8628) against the account's
``oauth_device_endpoint`` and ``oauth_token_endpoint``; see ``mailhop.config.oauth``.
"""

from __future__ import annotations

import sys

from mailhop.errors import ExitCode, UsageError

USAGE = "usage: mailhop oauth login ACCOUNT [-C FILE]\n"


def main(program: str, arguments: list[str]) -> int:
    if arguments[:1] in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return ExitCode.OK
    if len(arguments) not in (2, 4) or arguments[0] != "login":
        raise UsageError(f"usage: {program} login ACCOUNT [-C FILE]")
    config_file = None
    if len(arguments) == 4:
        if arguments[2] not in ("-C", "--file"):
            raise UsageError(f"unknown option '{arguments[2]}'")
        config_file = arguments[3]
    from mailhop.config import resolve  # noqa: PLC0415
    from mailhop.config.oauth import device_login  # noqa: PLC0415

    account = resolve(config_file=config_file, account_name=arguments[1]).account

    def show(line: str) -> None:
        sys.stdout.write(f"{line}\n")
        sys.stdout.flush()

    device_login(account, show=show)
    show(f"logged in: the token for {account.name} is stored; sendmail refreshes it")
    return ExitCode.OK
