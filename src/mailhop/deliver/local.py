"""Local delivery: the destinations aliases left on this machine, each to its mailbox.

* A user gets ``~/Maildir`` when it exists (or ``local_mailbox maildir`` says so),
  else ``/var/mail/USER`` as mboxrd (``mailhop.store``: locks, no symlinks or hard
  links, fsync, truncate back). Each copy gains ``Return-Path:``, ``Delivered-To:``
  and a ``Received:`` line, as Postfix's local(8) adds them.
* Loop guard: a message that already carries ``Delivered-To: user@host`` for this
  recipient is refused (65), as local(8) does; mutual aliases across hosts end there.
* ``/file`` targets (root's trusted aliases file only; ``aliases.py`` checks that) are
  appended as mbox, or into a Maildir when the name ends in ``/``; ``/dev/null`` is a
  black hole.
* ``|command`` targets run without a shell (``shlex`` words), with standard input the
  message, a timeout, a clean environment (``SENDER``, ``RECIPIENT``, ``USER``...), and
  as ``nobody`` when we are root (Postfix's ``default_privs``). Exit 75 means retry;
  other sysexits codes pass through; any other non-zero status is a permanent failure.

Errors keep the mail with the caller: a mailbox that is busy, unsafe or not ours to
write gives exit 75 (see ``mailhop.store.mbox``); an unknown user gives 67.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Iterable, Sequence

from mailhop._records import NamedTuple
from mailhop.deliver.aliases import Destination, DestinationKind
from mailhop.deliver.errors import DeliveryError
from mailhop.errors import ExitCode
from mailhop.message import HeaderField, Message

__all__ = [
    "DEFAULT_COMMAND_TIMEOUT_SECONDS",
    "LocalDeliveryError",
    "LocalSettings",
    "MailboxKind",
    "deliver_locally",
]

# Postfix's command_time_limit default: a pipe command that runs longer is killed.
DEFAULT_COMMAND_TIMEOUT_SECONDS = 1000.0
# What we keep of a failing command's error output for the message (Postfix mails
# back "a limited amount"): enough for a line or two, never a flood.
MAX_COMMAND_ERROR_BYTES = 1024
# The user commands and files from root's aliases run as (Postfix default_privs).
UNPRIVILEGED_USER = "nobody"
# The group that may write /var/mail (Debian Policy §11.6).
MAIL_GROUP = "mail"
DEV_NULL = "/dev/null"


class LocalDeliveryError(DeliveryError):
    """A local destination could not be delivered; ``exit_code`` 75 means retry."""


class MailboxKind(enum.Enum):
    """``local_mailbox``: where a user's mail goes."""

    AUTO = "auto"  # ~/Maildir if it exists, else /var/mail/USER
    MBOX = "mbox"
    MAILDIR = "maildir"


class LocalSettings(NamedTuple):
    spool_directory: str = "/var/mail"
    mailbox: MailboxKind = MailboxKind.AUTO
    host: str = "localhost"  # the name in Delivered-To and Received
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT_SECONDS


class LocalDelivery(NamedTuple):
    destination: Destination
    where: str


def _header_lines(user: str, sender: str, settings: LocalSettings) -> bytes:
    recipient = f"{user}@{settings.host}"
    stamp = time.strftime("%a, %d %b %Y %H:%M:%S %z")
    fields = (
        HeaderField.build("Return-Path", f"<{sender}>"),
        HeaderField.build("Delivered-To", recipient),
        HeaderField.build(
            "Received",
            f"by {settings.host} (mailhop, local delivery) for <{recipient}>; {stamp}",
        ),
    )
    return b"".join(field.raw for field in fields)


def _check_loop(message: Message, recipient: str) -> None:
    for value in message.headers.get_all("Delivered-To"):
        if value.strip().lower() == recipient.lower():
            raise LocalDeliveryError(
                f"mail forwarding loop for {recipient}: the message was delivered here "
                "already (Delivered-To); check the aliases",
                exit_code=ExitCode.DATAERR,
            )


def _message_chunks(prefix: bytes, message: Message) -> Iterable[bytes]:
    yield prefix
    yield from message.chunks()


def deliver_locally(
    message: Message,
    destinations: Sequence[Destination],
    *,
    sender: str,
    settings: LocalSettings,
) -> list[LocalDelivery]:
    """Deliver ``message`` to each local destination, in order.

    Raises:
        LocalDeliveryError: a user is unknown (67), a loop (65), a command failed.
        StoreError: a mailbox could not be written (75: the caller keeps the mail).
    """
    done: list[LocalDelivery] = []
    for destination in destinations:
        envelope_sender = destination.sender or sender
        if destination.kind is DestinationKind.LOCAL_USER:
            where = _deliver_to_user(message, destination, envelope_sender, settings)
        elif destination.kind is DestinationKind.FILE:
            where = _deliver_to_file(message, destination, envelope_sender, settings)
        elif destination.kind is DestinationKind.COMMAND:
            where = _deliver_to_command(message, destination, envelope_sender, settings)
        else:
            raise ValueError(f"not a local destination: {destination}")
        done.append(LocalDelivery(destination=destination, where=where))
    return done


def _deliver_to_user(
    message: Message, destination: Destination, sender: str, settings: LocalSettings
) -> str:
    import pwd  # noqa: PLC0415 - only local delivery needs the user database

    from mailhop.store.maildir import deliver_to_maildir  # noqa: PLC0415
    from mailhop.store.mbox import MailboxOwner, append_to_mbox  # noqa: PLC0415

    user = destination.value
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise LocalDeliveryError(
            f"{destination.original}: no such local user {user!r}; add an alias for it "
            "in /etc/aliases",
            exit_code=ExitCode.NOUSER,
        ) from None
    _check_loop(message, f"{user}@{settings.host}")
    prefix = _header_lines(user, sender, settings)
    maildir = os.path.join(entry.pw_dir, "Maildir")
    use_maildir = settings.mailbox is MailboxKind.MAILDIR or (
        settings.mailbox is MailboxKind.AUTO and os.path.isdir(maildir)
    )
    if use_maildir:
        owner = MailboxOwner(uid=entry.pw_uid, gid=entry.pw_gid)
        delivery = deliver_to_maildir(maildir, _message_chunks(prefix, message), owner=owner)
        return delivery.path
    path = os.path.join(settings.spool_directory, user)
    owner = MailboxOwner(uid=entry.pw_uid, gid=_mail_group(entry.pw_gid))
    append_to_mbox(path, _message_chunks(prefix, message), sender=sender, owner=owner)
    return path


def _mail_group(fallback: int) -> int:
    import grp  # noqa: PLC0415

    try:
        return grp.getgrnam(MAIL_GROUP).gr_gid
    except KeyError:
        return fallback


def _deliver_to_file(
    message: Message, destination: Destination, sender: str, settings: LocalSettings
) -> str:
    from mailhop.store.maildir import deliver_to_maildir  # noqa: PLC0415
    from mailhop.store.mbox import MailboxOwner, append_to_mbox  # noqa: PLC0415

    path = destination.value
    if path == DEV_NULL:
        return path
    prefix = _header_lines(destination.original, sender, settings)
    # The aliases file is root's (only a trusted file may name files): root owns these.
    owner = MailboxOwner(uid=os.geteuid(), gid=os.getegid())
    if path.endswith("/"):
        return deliver_to_maildir(
            path.rstrip("/"), _message_chunks(prefix, message), owner=owner
        ).path
    append_to_mbox(path, _message_chunks(prefix, message), sender=sender, owner=owner)
    return path


def _deliver_to_command(
    message: Message, destination: Destination, sender: str, settings: LocalSettings
) -> str:
    import shlex  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    try:
        argv = shlex.split(destination.value)
    except ValueError as error:
        raise LocalDeliveryError(
            f"{destination.original}: cannot read the command {destination.value!r}: {error}",
            exit_code=ExitCode.CONFIG,
        ) from None
    if not argv:
        raise LocalDeliveryError(
            f"{destination.original}: empty command", exit_code=ExitCode.CONFIG
        )
    environment = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "SENDER": sender,
        "RECIPIENT": destination.original,
        "ORIGINAL_RECIPIENT": destination.original,
        "LOCAL": destination.original.partition("@")[0],
        "DOMAIN": settings.host,
        "SHELL": "/bin/sh",
    }
    user: int | None = None
    group: int | None = None
    extra_groups: list[int] | None = None
    if os.geteuid() == 0:
        import pwd  # noqa: PLC0415

        nobody = pwd.getpwnam(UNPRIVILEGED_USER)
        user, group, extra_groups = nobody.pw_uid, nobody.pw_gid, []
        environment["USER"] = environment["LOGNAME"] = UNPRIVILEGED_USER
        environment["HOME"] = "/"
    prefix = _header_lines(destination.original, sender, settings)
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as errors:
        for chunk in _message_chunks(prefix, message):
            stdin.write(chunk)
        stdin.seek(0)
        try:
            completed = subprocess.run(  # argv from root's trusted aliases file
                argv,
                stdin=stdin,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                env=environment,
                cwd="/",
                timeout=settings.command_timeout,
                check=False,
                user=user,
                group=group,
                extra_groups=extra_groups,
            )
        except subprocess.TimeoutExpired:
            raise LocalDeliveryError(
                f"{destination.original}: command {argv[0]} killed after "
                f"{settings.command_timeout:g} seconds; the mail is kept"
            ) from None
        except OSError as error:
            raise LocalDeliveryError(
                f"{destination.original}: cannot run {argv[0]}: {error.strerror}",
                exit_code=ExitCode.TEMPFAIL,
            ) from None
        errors.seek(0)
        said = errors.read(MAX_COMMAND_ERROR_BYTES).decode("utf-8", "replace").strip()
    if completed.returncode == 0:
        return f"|{argv[0]}"
    code = completed.returncode
    exit_code = ExitCode(code) if code in ExitCode._value2member_map_ else ExitCode.DATAERR
    detail = f": {said.splitlines()[0]}" if said else ""
    raise LocalDeliveryError(
        f"{destination.original}: command {argv[0]} exited with status {code}{detail}",
        exit_code=exit_code,
    )
