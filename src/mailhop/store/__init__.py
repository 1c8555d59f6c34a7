"""store layer of mailhop (see DESIGN.md §2): durable files, mailboxes.

``durable`` is the single place that writes a file so that it survives a crash
(tmp -> write -> fsync -> rename -> fsync directory); the queue, Maildir delivery
and fetch state use it.
"""

from __future__ import annotations

from mailhop.store.durable import (
    PRIVATE_DIRECTORY_MODE,
    PRIVATE_FILE_MODE,
    fsync_directory,
    make_private_directory,
    write_atomically,
    write_new_file,
)
from mailhop.store.errors import StoreError

__all__ = [
    "PRIVATE_DIRECTORY_MODE",
    "PRIVATE_FILE_MODE",
    "StoreError",
    "fsync_directory",
    "make_private_directory",
    "write_atomically",
    "write_new_file",
]
