"""A mail folder opened for reading: an mbox file or a Maildir, with POSIX message states.

mbox (RFC 4155): a message starts at a line ``From `` at the start of the file or after
an empty line; body lines that looked like ``From `` were quoted by the writer with one
more ``>`` (mboxrd), which is removed here and added back on write. Maildir (maildir(5)):
``new/`` holds unseen mail, ``cur/`` the rest, with flags after ``:2,`` (``S`` seen).

States follow POSIX mailx (mailx.md §2.5): a message is *new* (never seen: no ``Status``
header, or in ``new/``), *unread* (seen in the summary of an earlier session: ``Status:
O``) or *read* (``Status: RO``, flag ``S``); during the session it can also be read now,
deleted, saved, preserved or marked for ``mbox`` (the ``Mark`` flags).

``write_back`` applies ``quit``: deleted messages go away, messages read now move to the
secondary mailbox (``~/mbox``) unless ``hold``, saved ones go away unless ``keepsave``
(only in the system mailbox); everything else stays. The mbox is rewritten under its lock
after re-reading what was appended since it was opened, so mail delivered while the
reader was open is kept; the new content goes through ``mailhop.store.durable`` (temp
file, fsync, rename, fsync directory). The secondary mailbox is written before the
inbox loses the messages: a crash in between leaves a duplicate, never a loss.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import os
import re
import stat
import time
from collections.abc import Iterable, Iterator, Sequence

from mailhop.errors import ExitCode
from mailhop.reader.errors import ReaderError
from mailhop.store.durable import (
    PRIVATE_FILE_MODE,
    fsync_directory,
    write_atomically,
    write_new_file,
)
from mailhop.store.errors import StoreError

# The whole mailbox is read into memory (a reader needs random access to every message,
# and the rewrite needs the exact bytes it read). Above this the user should split the
# mailbox rather than have the reader take gigabytes of memory.
MAX_MAILBOX_BYTES = 1 << 30
# How long to wait for another program (a delivery agent, another reader) to release the
# mailbox lock before giving up with exit 75. Delivery agents hold it for one append.
DEFAULT_LOCK_TIMEOUT_SECONDS = 10.0
# At most this many Maildir entries are listed: a directory larger than this is not a
# mailbox a person reads with mail(1), and the bound keeps the listing loop finite.
MAX_MAILDIR_ENTRIES = 1_000_000

_QUOTED_FROM = re.compile(rb"^>+From ")
_STATUS_HEADER = re.compile(rb"^status:", re.IGNORECASE)
# maildir(5): "unique:2,FLAGS"; the flags are ASCII letters in order.
_MAILDIR_INFO = ":2,"


class FolderFormat(enum.Enum):
    MBOX = "mbox"
    MAILDIR = "maildir"


class Status(enum.Enum):
    """A message's state as found on disk (POSIX mailx: new, unread, read)."""

    NEW = "new"
    UNREAD = "unread"
    READ = "read"


class Mark(enum.Flag):
    """What the session did to a message; decides its fate at ``quit``."""

    NONE = 0
    READ_NOW = enum.auto()  # displayed (type, print, top, reply ...)
    DELETED = enum.auto()
    SAVED = enum.auto()  # save or write to a file
    PRESERVED = enum.auto()  # preserve/hold: stays in the mailbox whatever else
    TO_MBOX = enum.auto()  # the mbox command: move to the secondary mailbox at quit


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoredMessage:
    """One message as read from the folder.

    ``data`` is the message itself (mboxrd quoting removed), ``envelope_line`` the mbox
    ``From `` line without its newline (``b""`` for Maildir), ``raw`` the exact bytes the
    message took in the mbox (written back unchanged when its state does not change).
    """

    key: str  # Maildir: the file name under new/ or cur/; mbox: its position
    envelope_line: bytes
    data: bytes
    status: Status
    raw: bytes = b""
    maildir_subdirectory: str = ""  # "new" or "cur"
    received: float | None = None  # Maildir: file time, for the summary's date

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def line_count(self) -> int:
        return self.data.count(b"\n") + (0 if self.data.endswith(b"\n") or not self.data else 1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuitReport:
    """What ``write_back`` did, for the ``Saved N messages in ...`` lines."""

    moved_to_mbox: int
    held: int
    removed: int
    mbox_path: str
    folder_path: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuitRules:
    """The variables that shape ``quit`` (mailx.md §2.5)."""

    system_mailbox: bool  # only the system mailbox moves read mail to ~/mbox
    hold: bool = False
    keepsave: bool = False
    mbox_path: str = ""


def is_maildir(path: str) -> bool:
    return all(os.path.isdir(os.path.join(path, part)) for part in ("cur", "new", "tmp"))


# -- mbox reading ----------------------------------------------------------------------


def unquote_mboxrd(body: bytes) -> bytes:
    """Remove one ``>`` from every ``>From `` line (mboxrd)."""
    if b">From " not in body:
        return body
    lines = body.split(b"\n")
    return b"\n".join(line[1:] if _QUOTED_FROM.match(line) else line for line in lines)


def split_mbox(content: bytes, *, first_key: int = 0) -> list[StoredMessage]:
    """The messages of mbox ``content``; text before the first ``From `` line is ignored."""
    starts: list[int] = []
    position = 0
    previous_blank = True
    for line in content.splitlines(keepends=True):
        if previous_blank and line.startswith(b"From "):
            starts.append(position)
        previous_blank = line in (b"\n", b"\r\n")
        position += len(line)
    messages = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(content)
        raw = content[start:end]
        envelope_line, _, rest = raw.partition(b"\n")
        # The empty line before the next "From " belongs to the mbox format, not the message.
        body = rest[:-1] if rest.endswith(b"\n\n") else rest
        data = unquote_mboxrd(body)
        messages.append(
            StoredMessage(
                key=str(first_key + index),
                envelope_line=envelope_line.rstrip(b"\r"),
                data=data,
                status=_status_from_header(data),
                raw=raw,
            )
        )
    return messages


def header_block(data: bytes) -> bytes:
    """The header lines of ``data`` with their line endings, without the empty line."""
    if data.startswith((b"\n", b"\r\n")):
        return b""
    ends = [found + 1 for found in (data.find(b"\n\n"), data.find(b"\n\r\n")) if found >= 0]
    return data[: min(ends)] if ends else data


def _status_from_header(data: bytes) -> Status:
    for line in header_block(data).split(b"\n"):
        if _STATUS_HEADER.match(line):
            value = line.split(b":", 1)[1].strip().upper()
            if b"R" in value:
                return Status.READ
            if b"O" in value:
                return Status.UNREAD
    return Status.NEW


def with_status(data: bytes, status: Status) -> bytes:
    """``data`` with one ``Status:`` header saying ``status`` (none for NEW)."""
    value = {Status.NEW: b"", Status.UNREAD: b"O", Status.READ: b"RO"}[status]
    return with_status_value(data, value)


def with_status_value(data: bytes, value: bytes) -> bytes:
    """``data`` with one ``Status: value`` header (none if ``value`` is empty).

    ``R`` read, ``O`` old (seen in an earlier session): the letters bsd-mailx, s-nail
    and mutt write.
    """
    block = header_block(data)
    kept: list[bytes] = []
    replacing = False
    for line in block.splitlines(keepends=True):
        if replacing and line[:1] in (b" ", b"\t"):
            continue  # a continuation line of the Status header being replaced
        replacing = bool(_STATUS_HEADER.match(line))
        if not replacing:
            kept.append(line)
    if value:
        line_ending = b"\r\n" if block.endswith(b"\r\n") else b"\n"
        kept.append(b"Status: " + value + line_ending)
    return b"".join(kept) + data[len(block) :]


def mbox_entry(envelope_line: bytes, data: bytes) -> bytes:
    """One message as it is written into an mbox: From line, mboxrd-quoted data, empty line.

    The quoting is local delivery's (``store.mbox.mboxrd_chunks``), so a message the
    reader writes back reads the same as one delivered.
    """
    from mailhop.store.mbox import mboxrd_chunks  # noqa: PLC0415 - read mode only

    return envelope_line + b"\n" + b"".join(mboxrd_chunks([data]))


def envelope_line_for(data: bytes, when: float | None = None) -> bytes:
    """A ``From sender date`` line for a message that has none (from a Maildir)."""
    from mailhop.store.mbox import from_line  # noqa: PLC0415 - read mode only

    sender = ""
    for line in header_block(data).split(b"\n"):
        if line.lower().startswith(b"return-path:"):
            sender = line.split(b":", 1)[1].strip().strip(b"<>").decode("utf-8", "replace")
            break
    return from_line(sender, when).rstrip(b"\n")


# -- locking --------------------------------------------------------------------------


@contextlib.contextmanager
def mailbox_lock(
    path: str, *, timeout: float = DEFAULT_LOCK_TIMEOUT_SECONDS
) -> Iterator[int | None]:
    """Hold the mbox lock Debian policy asks for (fcntl, then the ``PATH.lock`` dotlock).

    The locking itself is ``mailhop.store.mbox``'s, the one local delivery uses, so a
    reader and a delivery agent take the same locks in the same order. Yields a
    read-write descriptor of the mailbox (``None`` if it does not exist). If the file
    was replaced while we waited, the new one is locked instead; if a delivery died
    while appending, its partial tail is cut first, as the delivery agent would.

    Raises:
        ReaderError: the lock is not free within ``timeout`` (exit 75), or the mailbox
            or its directory may not be written (exit 73; the mailbox is unchanged).
    """
    from mailhop.store import mbox as mbox_store  # noqa: PLC0415 - read mode only

    deadline = time.monotonic() + timeout
    while True:
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            yield None
            return
        except OSError as error:
            raise ReaderError(
                f"cannot open {path} for writing: {error.strerror}",
                exit_code=ExitCode.CANTCREAT if error.errno == errno.EACCES else ExitCode.NOINPUT,
            ) from error
        try:
            try:
                # The store's lock primitives are private to it; sharing them is the point.
                with mbox_store._locked(path, descriptor, deadline) as stale_offset:
                    if not mbox_store._still_at_path(path, descriptor):
                        continue
                    if stale_offset is not None and stale_offset >= 0:
                        mbox_store._cut_partial_tail(descriptor, stale_offset)
                    yield descriptor
                    return
            except StoreError as error:
                if isinstance(error, ReaderError):
                    raise
                exit_code = error.exit_code
                if isinstance(error.__cause__, PermissionError):
                    # No right to make PATH.lock (a spool directory of group mail).
                    raise ReaderError(
                        f"cannot lock {path}: no permission to create {path}.lock; "
                        "the mailbox is unchanged",
                        exit_code=ExitCode.CANTCREAT,
                    ) from error
                if exit_code is ExitCode.CANTCREAT or exit_code is ExitCode.TEMPFAIL:
                    raise ReaderError(
                        f"{error}; the mailbox is unchanged", exit_code=exit_code
                    ) from error
                raise ReaderError(str(error), exit_code=exit_code) from error
        finally:
            os.close(descriptor)


def _read_descriptor(descriptor: int, path: str) -> bytes:
    size = os.fstat(descriptor).st_size
    if size > MAX_MAILBOX_BYTES:
        raise ReaderError(
            f"{path} is {size} bytes, more than the {MAX_MAILBOX_BYTES} the reader loads; "
            "split it (e.g. move old mail to another folder)",
            exit_code=ExitCode.DATAERR,
        )
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(descriptor, min(size - offset, 1 << 20), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _read_file(path: str) -> bytes:
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise ReaderError(
            f"cannot read {path}: {error.strerror}", exit_code=ExitCode.NOINPUT
        ) from error
    try:
        return _read_descriptor(descriptor, path)
    finally:
        os.close(descriptor)


def append_messages(path: str, entries: Sequence[tuple[bytes, bytes]]) -> None:
    """Append messages (``(envelope_line, data)``) to the mbox or Maildir at ``path``.

    Not ``store.mbox.append_to_mbox``: that one writes a new From line stamped now, while
    ``save`` and the move to ``~/mbox`` keep each message's own From line, as bsd-mailx
    does. The file is rewritten whole through ``write_atomically`` under the same lock.
    """
    if not entries:
        return
    if os.path.isdir(path):
        if not is_maildir(path):
            raise ReaderError(
                f"{path} is a directory but not a Maildir (no cur/, new/, tmp/); "
                "name a file or a Maildir",
                exit_code=ExitCode.CANTCREAT,
            )
        _add_to_maildir(path, [data for _, data in entries])
        return
    with mailbox_lock(path) as descriptor:
        existing = b"" if descriptor is None else _read_descriptor(descriptor, path)
        if existing and not existing.endswith(b"\n\n"):
            existing += b"\n" if existing.endswith(b"\n") else b"\n\n"
        new = b"".join(mbox_entry(envelope, data) for envelope, data in entries)
        _replace_locked(path, descriptor, [existing, new])


def _replace_locked(path: str, descriptor: int | None, chunks: Sequence[bytes]) -> None:
    """Replace the locked mailbox ``path`` with ``chunks``, keeping its mode and owner.

    The owner matters when root reads another user's mailbox (``-u USER``): a mailbox
    owned by root would be refused by local delivery (store.mbox checks the owner). The
    chown happens while we still hold the lock, so no delivery sees the moment between.
    """
    status = None if descriptor is None else os.fstat(descriptor)
    mode = PRIVATE_FILE_MODE if status is None else stat.S_IMODE(status.st_mode)
    try:
        write_atomically(path, chunks, mode=mode)
        if status is not None and os.geteuid() == 0:
            os.chown(path, status.st_uid, status.st_gid, follow_symlinks=False)
            os.chmod(path, mode)  # chown may clear set-id bits
    except StoreError as error:
        raise ReaderError(str(error), exit_code=error.exit_code) from error
    except OSError as error:
        raise ReaderError(
            f"cannot give {path} back to its owner: {error.strerror}", exit_code=ExitCode.IOERR
        ) from error


def _add_to_maildir(path: str, messages: Iterable[bytes]) -> None:
    """Deliver ``messages`` into Maildir ``path`` (tmp/ then rename to cur/, seen)."""
    for data in messages:
        unique = f"{time.time_ns()}.P{os.getpid()}R{os.urandom(4).hex()}.mailhop"
        temporary = os.path.join(path, "tmp", unique)
        try:
            write_new_file(temporary, [data])
            os.rename(temporary, os.path.join(path, "cur", unique + _MAILDIR_INFO + "S"))
        except (StoreError, OSError) as error:
            raise ReaderError(
                f"cannot save into {path}: {error}", exit_code=ExitCode.IOERR
            ) from error
    try:
        fsync_directory(os.path.join(path, "cur"))
    except OSError as error:
        raise ReaderError(f"cannot save into {path}: {error}", exit_code=ExitCode.IOERR) from error


# -- the folder -----------------------------------------------------------------------


class Folder:
    """An open mbox or Maildir: its messages, their marks, and the ``quit`` write-back."""

    def __init__(self, path: str, format: FolderFormat, messages: list[StoredMessage],
                 snapshot: bytes = b"") -> None:  # fmt: skip
        self.path = path
        self.format = format
        self.messages = messages
        self.marks = [Mark.NONE for _ in messages]
        self._snapshot = snapshot  # mbox: the exact bytes read so far

    @classmethod
    def open(cls, path: str) -> Folder:
        """Open ``path``; a missing file is an empty mbox.

        Raises:
            ReaderError: it cannot be read (exit 66), or is too large.
        """
        if os.path.isdir(path):
            if not is_maildir(path):
                raise ReaderError(
                    f"{path} is a directory but not a Maildir (no cur/, new/, tmp/)",
                    exit_code=ExitCode.NOINPUT,
                )
            return cls(path, FolderFormat.MAILDIR, _list_maildir(path))
        if not os.path.lexists(path):
            return cls(path, FolderFormat.MBOX, [])
        try:
            # Under the lock, so a delivery in progress is never read half-written.
            with mailbox_lock(path) as descriptor:
                content = b"" if descriptor is None else _read_descriptor(descriptor, path)
        except ReaderError as error:
            if error.exit_code not in (ExitCode.CANTCREAT, ExitCode.NOINPUT):
                raise
            # No right to lock (a spool directory we cannot write, a file we may only
            # read): read it as it is; write_back will then fail to lock and say so.
            content = _read_file(path)
        return cls(path, FolderFormat.MBOX, split_mbox(content), snapshot=content)

    def __len__(self) -> int:
        return len(self.messages)

    def check_new_mail(self) -> int:
        """Load mail that arrived since the folder was opened; return how many."""
        if self.format is FolderFormat.MAILDIR:
            known = {_unique_part(message.key) for message in self.messages}
            added = _list_maildir(self.path, known=known)
        else:
            try:
                size = os.stat(self.path).st_size
            except FileNotFoundError:
                return 0
            if size <= len(self._snapshot):
                return 0
            with mailbox_lock(self.path) as descriptor:
                if descriptor is None:
                    return 0
                content = _read_descriptor(descriptor, self.path)
            appended = self._appended_part(content)
            if appended is None:
                return 0  # rewritten by someone else; write_back will refuse and say so
            added = split_mbox(appended, first_key=len(self.messages))
            self._snapshot = content
        self.messages.extend(added)
        self.marks.extend(Mark.NONE for _ in added)
        return len(added)

    def _appended_part(self, content: bytes) -> bytes | None:
        """What was appended to the snapshot, or None if the file was changed otherwise."""
        if not content.startswith(self._snapshot):
            return None
        return content[len(self._snapshot) :]

    # -- quit ------------------------------------------------------------------------

    def fate(self, index: int, rules: QuitRules) -> str:
        """Where message ``index`` goes at quit: "remove", "mbox" or "keep"."""
        marks = self.marks[index]
        if Mark.DELETED in marks:
            return "remove"
        if Mark.PRESERVED in marks:
            return "keep"
        if Mark.TO_MBOX in marks:
            return "mbox"
        if not rules.system_mailbox:
            return "keep"
        if Mark.SAVED in marks and not rules.keepsave:
            return "remove"
        if marks & (Mark.READ_NOW | Mark.SAVED):
            return "keep" if rules.hold else "mbox"
        return "keep"

    def kept_status(self, index: int) -> Status:
        """The on-disk state of a message that stays: seen mail is no longer new."""
        if self.marks[index] & (Mark.READ_NOW | Mark.SAVED):
            return Status.READ
        if self.messages[index].status is Status.READ:
            return Status.READ
        return Status.UNREAD

    def write_back(self, rules: QuitRules) -> QuitReport:
        """Apply ``quit``: see the module docstring.

        Raises:
            ReaderError: the lock is busy or the folder was rewritten by another program
                (exit 75, nothing changed), or a write failed.
        """
        fates = [self.fate(index, rules) for index in range(len(self.messages))]
        to_mbox = [index for index, fate in enumerate(fates) if fate == "mbox"]
        if to_mbox:
            append_messages(
                rules.mbox_path,
                [
                    (
                        self.messages[index].envelope_line
                        or envelope_line_for(
                            self.messages[index].data, self.messages[index].received
                        ),
                        with_status(self.messages[index].data, self.kept_status(index)),
                    )
                    for index in to_mbox
                ],
            )
        if self.format is FolderFormat.MAILDIR:
            self._write_back_maildir(fates)
        else:
            self._write_back_mbox(fates)
        return QuitReport(
            moved_to_mbox=len(to_mbox),
            held=sum(1 for fate in fates if fate == "keep"),
            removed=sum(1 for fate in fates if fate == "remove"),
            mbox_path=rules.mbox_path,
            folder_path=self.path,
        )

    def _write_back_mbox(self, fates: list[str]) -> None:
        changed = any(
            fate != "keep" or self.kept_status(index) is not self.messages[index].status
            for index, fate in enumerate(fates)
        )
        if not changed:
            return
        with mailbox_lock(self.path) as descriptor:
            content = b"" if descriptor is None else _read_descriptor(descriptor, self.path)
            appended = self._appended_part(content)
            if appended is None:
                raise ReaderError(
                    f"{self.path} was changed by another program while it was open; it is "
                    "left as it is (your deletions and saves in it are not applied)",
                    exit_code=ExitCode.TEMPFAIL,
                )
            chunks: list[bytes] = []
            for index, fate in enumerate(fates):
                if fate != "keep":
                    continue
                message = self.messages[index]
                status = self.kept_status(index)
                if status is message.status and message.raw.endswith(b"\n\n"):
                    chunks.append(message.raw)
                else:
                    chunks.append(
                        mbox_entry(message.envelope_line, with_status(message.data, status))
                    )
            # Mail delivered while the reader was open: kept byte for byte, untouched.
            chunks.append(appended)
            _replace_locked(self.path, descriptor, chunks)

    def _write_back_maildir(self, fates: list[str]) -> None:
        touched: set[str] = set()
        for index, fate in enumerate(fates):
            message = self.messages[index]
            current = os.path.join(self.path, message.maildir_subdirectory, message.key)
            try:
                if fate != "keep":
                    os.unlink(current)
                    touched.add(message.maildir_subdirectory)
                    continue
                flags = _maildir_flags(message.key)
                if self.kept_status(index) is Status.READ:
                    flags = "".join(sorted(set(flags) | {"S"}))
                target_name = _unique_part(message.key) + _MAILDIR_INFO + flags
                if message.maildir_subdirectory != "cur" or target_name != message.key:
                    os.rename(current, os.path.join(self.path, "cur", target_name))
                    touched.update({message.maildir_subdirectory, "cur"})
            except FileNotFoundError:
                continue  # another client moved or removed it: nothing left to do
            except OSError as error:
                raise ReaderError(
                    f"cannot update {current}: {error.strerror}", exit_code=ExitCode.IOERR
                ) from error
        for subdirectory in touched:
            fsync_directory(os.path.join(self.path, subdirectory))


def _unique_part(name: str) -> str:
    return name.split(":", 1)[0]


def _maildir_flags(name: str) -> str:
    _, separator, flags = name.partition(_MAILDIR_INFO)
    return flags if separator else ""


def _list_maildir(
    path: str, *, known: frozenset[str] | set[str] = frozenset()
) -> list[StoredMessage]:
    """The messages of Maildir ``path``, oldest first, except those in ``known``."""
    entries: list[tuple[float, str, str]] = []
    for subdirectory in ("new", "cur"):
        directory = os.path.join(path, subdirectory)
        with os.scandir(directory) as scanner:
            for count, entry in enumerate(scanner):
                if count >= MAX_MAILDIR_ENTRIES:
                    break
                if entry.name.startswith(".") or _unique_part(entry.name) in known:
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue
                entries.append(
                    (entry.stat(follow_symlinks=False).st_mtime, subdirectory, entry.name)
                )
    entries.sort()
    messages = []
    for mtime, subdirectory, name in entries:
        try:
            data = _read_file(os.path.join(path, subdirectory, name))
        except ReaderError:
            continue  # removed by another client between listing and reading
        if subdirectory == "new":
            status = Status.NEW
        elif "S" in _maildir_flags(name):
            status = Status.READ
        else:
            status = Status.UNREAD
        messages.append(
            StoredMessage(
                key=name,
                envelope_line=b"",
                data=data,
                status=status,
                maildir_subdirectory=subdirectory,
                received=mtime,
            )
        )
    return messages
