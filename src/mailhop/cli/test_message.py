"""``mailhop test [ACCOUNT] [--to ADDR] [-C FILE]``: send a test message, step by step.

Each step prints one line as it completes (account, connection and TLS, login,
message accepted), so the step that fails is the last one shown, followed by the
error and its fix. The message carries a ``test id`` that is also printed: search
the inbox for it. The same function serves ``mailhop configure --send-test``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from mailhop.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from mailhop.config import Account

USAGE = """\
usage: mailhop test [ACCOUNT] [--to ADDRESS] [-C FILE]

Send a short test message through ACCOUNT (default: the default account) to
ADDRESS (default: the account's own from address), reporting each step.
"""

Say = Callable[[str], None]


def main(program: str, arguments: list[str]) -> int:
    account_name, to, config_file = _parse(program, arguments)
    if account_name == "--help":
        sys.stdout.write(USAGE)
        return ExitCode.OK
    from mailhop.config import resolve  # noqa: PLC0415 - this command only

    account = resolve(config_file=config_file, account_name=account_name).account
    send_test_message(account, to=to, say=_say)
    return ExitCode.OK


def _say(line: str) -> None:
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def _parse(program: str, arguments: list[str]) -> tuple[str | None, str | None, str | None]:
    account_name: str | None = None
    to: str | None = None
    config_file: str | None = None
    words = iter(arguments)
    for word in words:
        if word in ("-h", "--help"):
            return "--help", None, None
        if word in ("--to", "-C", "--file"):
            value = next(words, None)
            if value is None:
                raise UsageError(f"{word} needs a value; usage: {program} [ACCOUNT] [--to ADDR]")
            if word == "--to":
                to = value
            else:
                config_file = value
        elif word.startswith("--to="):
            to = word.partition("=")[2]
        elif word.startswith("-"):
            raise UsageError(f"unknown option '{word}'; usage: {program} [ACCOUNT] [--to ADDR]")
        elif account_name is None:
            account_name = word
        else:
            raise UsageError(f"one account only; usage: {program} [ACCOUNT] [--to ADDR]")
    return account_name, to, config_file


def send_test_message(account: Account, *, to: str | None, say: Say) -> str:
    """Log in, then send a test message through ``account``; return its test id.

    Raises:
        MailhopError: the failing step's error (with its exit code).
    """
    import io  # noqa: PLC0415
    import socket  # noqa: PLC0415
    import uuid  # noqa: PLC0415

    from mailhop.deliver.smtp import SmtpSession, reply_lines  # noqa: PLC0415
    from mailhop.deliver.submit import submit  # noqa: PLC0415
    from mailhop.message import (  # noqa: PLC0415
        collect_recipients,
        parse_envelope_sender,
        read_message,
    )

    sender_text = account.from_address or ""
    if not sender_text or "%" in sender_text:
        raise UsageError(f"{account.where} has no usable from address; add a 'from' line")
    sender = parse_envelope_sender(sender_text)
    recipients = collect_recipients([to or sender.addr_spec])
    where = account.socket or f"{account.host}:{account.port}"
    mode, auth = account.tls_mode.value, account.auth.value
    say(f"account: {account.name} ({where}, tls {mode}, auth {auth})")

    with SmtpSession(account) as session:
        capabilities = session.open(authenticate=True)
        certificate = session.transport.info.describe_certificate()
        if certificate is not None:
            say(
                f"connected: {certificate.tls_version or 'TLS'}, certificate for "
                f"{certificate.subject}, valid until {certificate.not_after or 'unknown'}"
            )
        else:
            say("connected: without TLS")
        if session.authenticated_as is not None:
            say(f"logged in as {session.authenticated_as}")
        else:
            say("no login (auth off)")
        if capabilities.size:
            say(f"server accepts messages up to {capabilities.size} octets")

    test_id = f"mailhop-test-{uuid.uuid4().hex}"
    text = (
        f"From: {sender.addr_spec}\n"
        f"To: {recipients.addresses[0].addr_spec}\n"
        f"Subject: mailhop test message ({test_id})\n"
        "\n"
        f"This is a test message sent by 'mailhop test' from {socket.gethostname()}\n"
        f"through account {account.name} ({where}).\n"
        "If you can read it, mail from this machine reaches you.\n"
        "\n"
        f"test id: {test_id}\n"
    )
    with read_message(io.BytesIO(text.encode("utf-8"))) as message:
        receipt = submit(account, message, sender=sender, recipients=recipients)
    final = reply_lines(receipt.acceptance.reply)
    say(f"sent to {recipients.addresses[0].addr_spec}: {final[-1] if final else 'accepted'}")
    say(f"test id: {test_id} (search your inbox for it)")
    return test_id
