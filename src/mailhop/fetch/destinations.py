"""Where fetched messages go: Maildir, mbox, an MDA command, or a local user.

``open_destination("maildir:~/Maildir")`` returns an object whose ``deliver(chunks)``
returns only when the message is durable (fsync'ed), or raises. The Maildir and
mboxrd writers are the local-delivery ones (``mailhop.store``), with their locking.

An MDA runs without a shell (``shlex.split`` of the configured command; no data from
the message ever reaches its argv), reads the message on stdin, and has a timeout;
exit 0 = delivered, 75 (EX_TEMPFAIL) = try again later, anything else = failure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import Protocol

from mailhop.errors import ExitCode
from mailhop.fetch.errors import DeliveryFailedError, FetchConfigError

__all__ = ["DEFAULT_MDA_TIMEOUT", "Destination", "open_destination"]

# procmail or maildrop with filters finishes in well under a minute; a stuck MDA must
# not block the fetch of every later message forever.
DEFAULT_MDA_TIMEOUT = 300.0
# How much of a message's start is searched for Return-Path (the mbox From_ sender).
MAX_ENVELOPE_PEEK = 64 * 1024
_RETURN_PATH = re.compile(rb"(?im)^Return-Path:[ \t]*<([^<>\s]*)>")


class Destination(Protocol):
    def deliver(self, chunks: Iterable[bytes]) -> None:
        """Store one whole message durably; raise on failure (nothing half-stored)."""

    def describe(self) -> str: ...


class MaildirDestination:
    def __init__(self, path: str) -> None:
        self.path = path

    def describe(self) -> str:
        return f"maildir:{self.path}"

    def deliver(self, chunks: Iterable[bytes]) -> None:
        from mailhop.store.maildir import deliver_to_maildir  # noqa: PLC0415

        deliver_to_maildir(self.path, chunks)


class MboxDestination:
    def __init__(self, path: str) -> None:
        self.path = path

    def describe(self) -> str:
        return f"mbox:{self.path}"

    def deliver(self, chunks: Iterable[bytes]) -> None:
        from mailhop.store.mbox import append_to_mbox  # noqa: PLC0415

        iterator = iter(chunks)
        head = bytearray()
        for chunk in iterator:
            head += chunk
            if len(head) >= MAX_ENVELOPE_PEEK or b"\n\n" in head or b"\r\n\r\n" in head:
                break
        match = _RETURN_PATH.search(head)
        sender = match.group(1).decode("utf-8", "replace") if match else ""

        def everything() -> Iterator[bytes]:
            yield bytes(head)
            yield from iterator

        append_to_mbox(self.path, everything(), sender=sender or "MAILER-DAEMON")


class MdaDestination:
    def __init__(self, command: str, *, timeout: float = DEFAULT_MDA_TIMEOUT) -> None:
        import shlex  # noqa: PLC0415

        try:
            self.argv = shlex.split(command)
        except ValueError as error:
            raise FetchConfigError(f"delivery mda:{command}: {error}") from error
        if not self.argv:
            raise FetchConfigError("delivery mda: needs a command")
        self.timeout = timeout

    def describe(self) -> str:
        return f"mda:{self.argv[0]}"

    def deliver(self, chunks: Iterable[bytes]) -> None:
        import subprocess  # noqa: PLC0415

        try:
            process = subprocess.Popen(  # argv from the user's own config, no shell
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
            )
        except OSError as error:
            raise DeliveryFailedError(
                f"cannot run MDA {self.argv[0]}: {error.strerror}; check the delivery setting",
                exit_code=ExitCode.CONFIG,
            ) from error
        assert process.stdin is not None  # noqa: S101 - stdin=PIPE
        try:
            try:
                for chunk in chunks:
                    process.stdin.write(chunk.replace(b"\r\n", b"\n"))
                process.stdin.close()
            except BrokenPipeError:
                pass  # the exit status says what happened
            status = process.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise DeliveryFailedError(
                f"MDA {self.argv[0]} did not finish within {self.timeout:g} seconds;"
                " the message stays on the server",
                exit_code=ExitCode.TEMPFAIL,
            ) from None
        except BaseException:
            process.kill()
            process.wait()
            raise
        if status == ExitCode.TEMPFAIL:
            raise DeliveryFailedError(
                f"MDA {self.argv[0]} asked to try again later (exit 75);"
                " the message stays on the server",
                exit_code=ExitCode.TEMPFAIL,
            )
        if status != 0:
            raise DeliveryFailedError(
                f"MDA {self.argv[0]} failed (exit status {status}); the message stays on the server"
            )


def open_destination(spec: str) -> Destination:
    """The destination of ``delivery KIND:TARGET``."""
    kind, _, target = spec.partition(":")
    if kind == "maildir":
        return MaildirDestination(os.path.expanduser(target))
    if kind == "mbox":
        return MboxDestination(os.path.expanduser(target))
    if kind == "mda":
        return MdaDestination(target)
    if kind == "local":
        import pwd  # noqa: PLC0415

        try:
            entry = pwd.getpwnam(target)
        except KeyError:
            raise FetchConfigError(f"delivery local:{target}: no such local user") from None
        # Local delivery of mailhop writes /var/mail/USER as mboxrd (Debian policy).
        from mailhop.store.mbox import MAIL_SPOOL_DIRECTORY  # noqa: PLC0415

        return MboxDestination(os.path.join(MAIL_SPOOL_DIRECTORY, entry.pw_name))
    raise FetchConfigError(
        f"delivery {spec}: expected maildir:PATH, mbox:PATH, mda:COMMAND or local:USER"
    )
