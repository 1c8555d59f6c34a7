"""Deliver a message into a Maildir: ``tmp/`` -> fsync -> link into ``new/`` -> fsync.

The steps of maildir(5) (retrieval_delivery.md §2.4) with the directory fsync the
1990s spec and getmail6 omit: the file is written and fsync'ed under a unique name
in ``tmp/`` (through ``mailhop.store.durable``), then hard-linked into ``new/`` (link,
unlike rename, never replaces an existing name), and ``new/`` is fsync'ed. At that
instant the message is delivered; a crash before it leaves at most a file in
``tmp/`` that readers ignore and clean up after 36 hours.

Messages are stored as they are, with LF line endings, no From_ line, no quoting.
Unique names follow the modern recipe: ``<seconds>.M<usec>P<pid>Q<count>R<random>.<host>``
with ``/`` and ``:`` in the host escaped as ``\\057`` and ``\\072``.
"""

from __future__ import annotations

# The host name from the socket module's C core: the socket wrapper (its IntEnums,
# selectors) would be 3-4 ms of every cron mail delivered to a Maildir.
import _socket
import contextlib
import itertools
import os
import stat
import time
from collections.abc import Iterable, Iterator

from mailhop._records import NamedTuple
from mailhop.faults import crash_point
from mailhop.store.durable import fsync_directory, random_hex, write_new_file
from mailhop.store.errors import StoreError
from mailhop.store.mbox import MailboxError, MailboxOwner

__all__ = ["MAILDIR_SUBDIRECTORIES", "deliver_to_maildir", "ensure_maildir", "unique_name"]

MAILDIR_SUBDIRECTORIES = ("tmp", "new", "cur")
# maildir(5): a Maildir is private to its user.
MAILDIR_MODE = 0o700

_delivery_counter = itertools.count(1)


class MaildirDelivery(NamedTuple):
    """Where a delivered message now lives."""

    path: str
    size: int


def unique_name(now: float | None = None) -> str:
    """A name no other delivery on this host uses (maildir(5), the djb recipe)."""
    moment = time.time() if now is None else now
    seconds = int(moment)
    microseconds = int((moment - seconds) * 1_000_000)
    host = _socket.gethostname().replace("/", "\\057").replace(":", "\\072")
    counter = next(_delivery_counter)
    random_part = random_hex(4)
    return f"{seconds}.M{microseconds}P{os.getpid()}Q{counter}R{random_part}.{host}"


def ensure_maildir(maildir: str, owner: MailboxOwner | None = None) -> None:
    """Create ``maildir`` with tmp/new/cur if missing; refuse a symlinked or foreign one.

    Raises:
        MailboxError: it is a symlink, not a directory, or belongs to someone else.
        StoreError: it cannot be created.
    """
    for path in (maildir, *(os.path.join(maildir, part) for part in MAILDIR_SUBDIRECTORIES)):
        try:
            status = os.lstat(path)
        except FileNotFoundError:
            _make_directory(path, owner)
            continue
        except OSError as error:
            raise StoreError.from_os_error(f"cannot look at {path}", error) from error
        if not stat.S_ISDIR(status.st_mode):
            raise MailboxError(f"{path} is not a directory (a symlink?); refusing to deliver")
        if owner is not None and status.st_uid != owner.uid:
            raise MailboxError(
                f"{path} is owned by uid {status.st_uid}, not by its user (uid {owner.uid}); "
                "refusing to deliver to it"
            )


def _make_directory(path: str, owner: MailboxOwner | None) -> None:
    try:
        os.mkdir(path, MAILDIR_MODE)
        os.chmod(path, MAILDIR_MODE)
        if owner is not None and os.geteuid() == 0 and owner.uid != 0:
            os.lchown(path, owner.uid, owner.gid)
        fsync_directory(os.path.dirname(os.path.abspath(path)))
    except FileExistsError:
        return
    except OSError as error:
        raise StoreError.from_os_error(f"cannot create directory {path}", error) from error


def lf_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks`` with CRLF turned into LF (a CR split across chunks is handled)."""
    carry = b""
    for chunk in chunks:
        data = carry + chunk
        carry = b"\r" if data.endswith(b"\r") else b""
        if carry:
            data = data[:-1]
        yield data.replace(b"\r\n", b"\n")
    if carry:
        yield carry


def deliver_to_maildir(
    maildir: str,
    chunks: Iterable[bytes],
    *,
    owner: MailboxOwner | None = None,
    now: float | None = None,
) -> MaildirDelivery:
    """Deliver ``chunks`` (the whole message) into ``maildir``; durable on return.

    Raises:
        MailboxError: the Maildir is unsafe (see ``ensure_maildir``).
        StoreError: a write failed (no space: exit 75); nothing appears in ``new/``.
    """
    ensure_maildir(maildir, owner)
    name = unique_name(now)
    temporary = os.path.join(maildir, "tmp", name)
    final = os.path.join(maildir, "new", name)
    size = write_new_file(temporary, lf_chunks(chunks))
    try:
        if owner is not None and os.geteuid() == 0 and owner.uid != 0:
            _give_to(temporary, owner)
        crash_point("maildir.before-link")
        os.link(temporary, final)
        crash_point("maildir.after-link")
        fsync_directory(os.path.dirname(final))
    except OSError as error:
        raise StoreError.from_os_error(f"cannot deliver into {maildir}", error) from error
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return MaildirDelivery(path=final, size=size)


def _give_to(path: str, owner: MailboxOwner) -> None:
    # The owner change must be as durable as the content: fsync after fchown.
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchown(descriptor, owner.uid, owner.gid)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
