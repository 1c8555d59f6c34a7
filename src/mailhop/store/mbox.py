"""Append a message to an mbox mailbox (``/var/mail/USER``) as mboxrd, safely.

Format (retrieval_delivery.md §2.2, RFC 4155, mbox(5)): each message starts with a
``From <sender> <asctime UTC>`` line and ends with an empty line; every line matching
``^>*From `` gets one more ``>`` (mboxrd, reversible: a reader strips one), so a body
line that starts with ``From `` can never start a new message. Line endings are LF.

Locking (Debian Policy §11.6, as Postfix and Dovecot do it): ``fcntl`` first, then the
``USER.lock`` dotlock, both non-blocking with retries, so no two lockers can deadlock.
The dotlock is made NFS-safely (a unique file, then ``link(2)``) and holds the holder's
pid (liblockfile's format) plus the offset this delivery started at; a dotlock whose
holder died, or that is older than ``STALE_DOTLOCK_SECONDS``, is broken, and when it
was ours the half-written tail it guarded is cut off before anything is appended.

Attacks refused (security.md F4): the mailbox is opened with ``O_NOFOLLOW`` (a planted
symlink fails), must be a regular file with one link (a hard link to another user's
file is refused) owned by the mailbox's user. After locking, the open file must still
be the one at the path: a reader may have rewritten the mailbox and renamed a new
file into place, and appending to the old inode would lose the message.

Durability: the append is fsync'ed before success is reported; on any error the file
is truncated back to its old size (Postfix local(8) does the same).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import time
from collections.abc import Iterable, Iterator

from mailhop._records import NamedTuple
from mailhop.errors import ExitCode
from mailhop.faults import crash_point
from mailhop.store.durable import random_hex
from mailhop.store.errors import StoreError

__all__ = [
    "DEFAULT_LOCK_TIMEOUT_SECONDS",
    "MAIL_SPOOL_DIRECTORY",
    "MailboxError",
    "MailboxOwner",
    "append_to_mbox",
    "from_line",
    "mboxrd_chunks",
]

# Debian Policy §11.6: the system mail spool.
MAIL_SPOOL_DIRECTORY = "/var/mail"
# How long a delivery waits for a busy mailbox before giving up with exit 75 (the
# mail stays with the caller). Postfix waits deliver_lock_attempts (20) x
# deliver_lock_delay (1 s); a reader that rewrites a large mailbox needs that long.
DEFAULT_LOCK_TIMEOUT_SECONDS = 20.0
# Pause between two lock attempts: short, because deliveries hold the lock briefly.
LOCK_RETRY_SECONDS = 0.01
# liblockfile (maillock(3)) considers a dotlock older than 5 minutes stale; holders
# refresh it about every minute. A delivery finishes well within that.
STALE_DOTLOCK_SECONDS = 300.0
# What we read of someone else's dotlock: a pid and our offset line, never more.
MAX_DOTLOCK_BYTES = 256
# Debian Policy §11.6: mailboxes are 0600 user (or 0660 user:mail).
MAILBOX_MODE = 0o600
# RFC 4155: an empty envelope sender is written as MAILER-DAEMON.
NULL_SENDER = "MAILER-DAEMON"

_QUOTE_PATTERN = re.compile(rb"^(>*From )", re.MULTILINE)
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
_OFFSET_TAG = "mailhop-append"


class MailboxError(StoreError):
    """A mailbox cannot be written safely; ``exit_code`` 75 means the mail is kept."""

    exit_code = ExitCode.TEMPFAIL


class MailboxOwner(NamedTuple):
    """Who a mailbox belongs to: a new one is created ``uid:gid`` (if we may chown)."""

    uid: int
    gid: int


def from_line(sender: str, now: float | None = None) -> bytes:
    """The ``From `` separator line: one-word sender and a UTC asctime (RFC 4155)."""
    word = "".join("-" if character.isspace() else character for character in sender)
    stamp = time.asctime(time.gmtime(time.time() if now is None else now))
    return f"From {word or NULL_SENDER} {stamp}\n".encode("utf-8", "surrogateescape")


def mboxrd_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks`` of a message as mboxrd body: LF endings, ``>*From `` quoted, blank end."""
    pending = b""
    for chunk in chunks:
        data = pending + chunk
        cut = data.rfind(b"\n") + 1
        pending = data[cut:]
        if cut:
            complete = data[:cut].replace(b"\r\n", b"\n")
            yield _QUOTE_PATTERN.sub(rb">\1", complete)
    if pending:
        yield _QUOTE_PATTERN.sub(rb">\1", pending.removesuffix(b"\r")) + b"\n"
    # mbox(5): a message ends with an empty line, so the next From_ starts a line.
    yield b"\n"


def append_to_mbox(
    path: str,
    chunks: Iterable[bytes],
    *,
    sender: str,
    owner: MailboxOwner | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
    now: float | None = None,
) -> int:
    """Append one message (``chunks``: headers and body as read) to the mbox ``path``.

    ``sender`` goes on the From_ line; ``owner`` is who the mailbox must belong to
    (None: whoever runs us). Returns the number of bytes appended.

    Raises:
        MailboxError: unsafe mailbox (symlink, hard link, foreign owner, not a file),
            lock not obtained in time, or no permission (exit 75: the caller keeps
            the mail); other write errors as StoreError (ENOSPC: 75).
    """
    expected = owner or MailboxOwner(uid=os.geteuid(), gid=os.getegid())
    deadline = time.monotonic() + lock_timeout
    while True:
        descriptor = _open_mailbox(path, expected, deadline)
        try:
            with _locked(path, descriptor, deadline) as stale_offset:
                if not _still_at_path(path, descriptor):
                    continue  # replaced while we waited: append to the new file
                if stale_offset is not None:
                    _cut_partial_tail(descriptor, stale_offset)
                size = _append(path, descriptor, chunks, sender=sender, now=now)
                # The message is whole and on disk: the dotlock must stop saying that
                # a tail past its start offset is partial.
                _forget_offset(f"{path}.lock")
                crash_point("mbox.delivered")
                return size
        finally:
            os.close(descriptor)


def _open_mailbox(path: str, owner: MailboxOwner, deadline: float) -> int:
    while True:
        try:
            descriptor = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            descriptor = _create_mailbox(path, owner)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise MailboxError(
                    f"{path} is a symbolic link; refusing to deliver through it "
                    "(remove the link; mailboxes must be plain files)"
                ) from error
            if error.errno == errno.EISDIR:
                raise MailboxError(f"{path} is a directory; refusing to deliver to it") from error
            raise _os_error(f"cannot open {path}", error) from error
        try:
            status = os.fstat(descriptor)
            if status.st_nlink == 0:
                # Renamed over between our open and fstat, as a mail reader's rewrite
                # does (write a new file, rename it into place): open the new one.
                if time.monotonic() >= deadline:
                    raise MailboxError(f"{path} keeps being replaced; try again later")
                os.close(descriptor)
                continue
            _check_mailbox(path, status, owner)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(descriptor)
            raise
        return descriptor


def _create_mailbox(path: str, owner: MailboxOwner) -> int:
    try:
        descriptor = os.open(path, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, MAILBOX_MODE)
    except FileExistsError:
        return _open_mailbox_again(path)
    except OSError as error:
        raise _os_error(f"cannot create {path}", error) from error
    try:
        os.fchmod(descriptor, MAILBOX_MODE)
        if os.geteuid() == 0 and owner.uid != 0:
            os.fchown(descriptor, owner.uid, owner.gid)
    except OSError as error:
        os.close(descriptor)
        raise _os_error(f"cannot give {path} to its user", error) from error
    return descriptor


def _open_mailbox_again(path: str) -> int:
    # Another delivery created it between our two opens: open what it made.
    try:
        return os.open(path, _OPEN_FLAGS)
    except OSError as error:
        raise _os_error(f"cannot open {path}", error) from error


def _check_mailbox(path: str, status: os.stat_result, owner: MailboxOwner) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise MailboxError(f"{path} is not a regular file; refusing to deliver to it")
    if status.st_nlink != 1:
        raise MailboxError(
            f"{path} has {status.st_nlink} hard links; refusing to deliver to it "
            "(a hard-linked mailbox may be another user's file)"
        )
    if status.st_uid != owner.uid:
        raise MailboxError(
            f"{path} is owned by uid {status.st_uid}, not by its user (uid {owner.uid}); "
            "refusing to deliver to it"
        )


def _still_at_path(path: str, descriptor: int) -> bool:
    opened = os.fstat(descriptor)
    try:
        current = os.lstat(path)
    except FileNotFoundError:
        return False
    return (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino)


@contextlib.contextmanager
def _locked(path: str, descriptor: int, deadline: float) -> Iterator[int | None]:
    """Hold fcntl then dotlock; yield the offset a dead delivery left, if any."""
    _lock_fcntl(path, descriptor, deadline)
    try:
        lock_path = f"{path}.lock"
        offset = os.fstat(descriptor).st_size
        stale_offset = _create_dotlock(lock_path, descriptor, offset, deadline)
        try:
            yield stale_offset
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock_path)
    finally:
        fcntl.lockf(descriptor, fcntl.LOCK_UN)


def _lock_fcntl(path: str, descriptor: int, deadline: float) -> None:
    while True:
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise _os_error(f"cannot lock {path}", error) from error
        if time.monotonic() >= deadline:
            raise MailboxError(f"{path} is locked by another program; try again later")
        time.sleep(LOCK_RETRY_SECONDS)


def _create_dotlock(lock_path: str, descriptor: int, offset: int, deadline: float) -> int | None:
    directory = os.path.dirname(lock_path) or "."
    inode = os.fstat(descriptor).st_ino
    unique = os.path.join(directory, f".{os.path.basename(lock_path)}.{random_hex(6)}")
    content = f"{os.getpid()}\n{_OFFSET_TAG} {inode} {offset}\n".encode("ascii")
    try:
        made = os.open(unique, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        raise _os_error(f"cannot create the lock file {lock_path}", error) from error
    stale_offset: int | None = None
    try:
        os.write(made, content)
        os.close(made)
        while True:
            try:
                os.link(unique, lock_path)
                return stale_offset
            except FileExistsError:
                pass
            except OSError as error:
                raise _os_error(f"cannot create the lock file {lock_path}", error) from error
            broken = _break_if_stale(lock_path, inode)
            if broken is not None:
                stale_offset = broken if broken >= 0 else stale_offset
                continue
            if time.monotonic() >= deadline:
                raise MailboxError(f"{lock_path} exists (mailbox busy); try again later")
            time.sleep(LOCK_RETRY_SECONDS)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(unique)


def _break_if_stale(lock_path: str, inode: int) -> int | None:
    """Remove a stale dotlock: None if it is live; else our offset in it, or -1."""
    try:
        with open(lock_path, "rb") as file:
            status = os.fstat(file.fileno())
            text = file.read(MAX_DOTLOCK_BYTES).decode("ascii", "replace")
    except FileNotFoundError:
        return -1
    lines = text.split("\n")
    holder = int(lines[0]) if lines[0].strip().isdigit() else None
    old = time.time() - status.st_mtime > STALE_DOTLOCK_SECONDS
    if not old and (holder is None or _process_exists(holder)):
        return None
    with contextlib.suppress(FileNotFoundError):
        os.unlink(lock_path)
    for line in lines[1:]:
        words = line.split()
        if len(words) == 3 and words[0] == _OFFSET_TAG and words[1] == str(inode):
            return int(words[2]) if words[2].isdigit() else -1
    return -1


def _forget_offset(lock_path: str) -> None:
    """Replace our dotlock by one without the offset, atomically (rename over it)."""
    unique = os.path.join(
        os.path.dirname(lock_path) or ".", f".{os.path.basename(lock_path)}.{random_hex(6)}"
    )
    try:
        made = os.open(unique, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            os.write(made, f"{os.getpid()}\n".encode("ascii"))
        finally:
            os.close(made)
        os.replace(unique, lock_path)
    except OSError as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(unique)
        raise _os_error(f"cannot update the lock file {lock_path}", error) from error


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cut_partial_tail(descriptor: int, offset: int) -> None:
    # A delivery died (kill -9) between its start at ``offset`` and its fsync; its
    # dotlock kept everyone out since, so what lies past ``offset`` is its partial tail.
    if os.fstat(descriptor).st_size > offset:
        os.ftruncate(descriptor, offset)
        os.fsync(descriptor)


def _append(
    path: str, descriptor: int, chunks: Iterable[bytes], *, sender: str, now: float | None
) -> int:
    start = os.fstat(descriptor).st_size
    written = 0
    try:
        crash_point("mbox.locked")
        written += _write_all(descriptor, from_line(sender, now))
        for piece in mboxrd_chunks(chunks):
            written += _write_all(descriptor, piece)
            crash_point("mbox.mid-write")
        crash_point("mbox.before-fsync")
        os.fsync(descriptor)
        crash_point("mbox.after-fsync")
    except OSError as error:
        _truncate_back(descriptor, start)
        raise _os_error(f"cannot write {path}", error) from error
    except BaseException:
        _truncate_back(descriptor, start)
        raise
    return written


def _write_all(descriptor: int, data: bytes) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]
    return len(data)


def _truncate_back(descriptor: int, size: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(descriptor, size)
        os.fsync(descriptor)


def _os_error(what: str, error: OSError) -> StoreError:
    if error.errno in (errno.EACCES, errno.EPERM):
        # Another user's mailbox without the rights (group mail): keep the mail.
        return MailboxError(f"{what}: {error.strerror}; the mail is kept for a later retry")
    return StoreError.from_os_error(what, error)
