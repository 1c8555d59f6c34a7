"""Durable file primitives: the one way mailhop makes a file survive a crash.

A file is written to a temporary name in its final directory, flushed and fsync'ed,
renamed into place, and then the directory is fsync'ed so the rename itself is on
disk (rename is atomic but only durable after the directory's fsync; POSIX
fsync(2), and the ext4 "data loss after rename" discussions). Until the rename the
file does not exist under its name; after the directory fsync it survives a power
loss. A failure at any step removes the temporary file and raises ``StoreError``.

Queue entries, Maildir deliveries and fetch state all go through here
(getmail6's ``updatefile`` plus the directory fsync it omits).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable

from mailhop.faults import crash_point
from mailhop.store.errors import StoreError

# Files that may hold mail or secrets are private whatever the umask says.
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIRECTORY_MODE = 0o700
# O_NOFOLLOW: never write through a symlink someone planted at our temporary name.
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def random_hex(octets: int) -> str:
    """``octets`` unpredictable bytes as hex, for names no other writer can guess.

    ``secrets.token_hex`` is exactly ``os.urandom(octets).hex()``, but importing
    ``secrets`` loads random, hmac and hashlib (OpenSSL): several milliseconds that
    every cron mail to root, which writes a mailbox, would pay for a file name.
    """
    return os.urandom(octets).hex()


def fsync_directory(directory: str) -> None:
    """Make the entries of ``directory`` (creations, renames, unlinks) durable."""
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def make_private_directory(path: str, mode: int = PRIVATE_DIRECTORY_MODE) -> None:
    """Create ``path`` (and parents) if missing, with exactly ``mode``, durably.

    Raises:
        StoreError: it cannot be created.
    """
    try:
        os.makedirs(path, mode=mode, exist_ok=True)
        os.chmod(path, mode)  # makedirs applies the umask; the mode must not depend on it
        fsync_directory(os.path.dirname(os.path.abspath(path)))
    except OSError as error:
        raise StoreError.from_os_error(f"cannot create directory {path}", error) from error


def write_new_file(path: str, chunks: Iterable[bytes], *, mode: int = PRIVATE_FILE_MODE) -> int:
    """Write ``chunks`` to a file that must not exist yet, fsync it; return its size.

    The caller renames or links it into place (see ``write_atomically``); on failure
    the partial file is removed.

    Raises:
        StoreError: the file exists, or cannot be written (no space: exit 75).
    """
    try:
        descriptor = os.open(path, _CREATE_FLAGS, mode)
    except OSError as error:
        raise StoreError.from_os_error(f"cannot create {path}", error) from error
    size = 0
    try:
        try:
            os.fchmod(descriptor, mode)  # os.open applied the umask
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    written = os.write(descriptor, view)
                    view = view[written:]
                    size += written
            crash_point("durable.before-fsync")
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as error:
        _remove_quietly(path)
        raise StoreError.from_os_error(f"cannot write {path}", error) from error
    except BaseException:
        _remove_quietly(path)
        raise
    return size


def write_atomically(path: str, chunks: Iterable[bytes], *, mode: int = PRIVATE_FILE_MODE) -> int:
    """Replace (or create) ``path`` with ``chunks``, durably and all at once.

    Readers see the old content or the new one, never a mix; after a crash at any
    point the file is whole (old or new). Returns the size written.

    Raises:
        StoreError: with exit 75 when the disk is full (nothing changed then).
    """
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(
        directory, f".{os.path.basename(path)}.{os.getpid()}.{random_hex(4)}.tmp"
    )
    size = write_new_file(temporary, chunks, mode=mode)
    try:
        crash_point("durable.before-rename")
        os.replace(temporary, path)
        crash_point("durable.after-rename")
        fsync_directory(directory)
    except OSError as error:
        _remove_quietly(temporary)
        raise StoreError.from_os_error(f"cannot replace {path}", error) from error
    return size


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
