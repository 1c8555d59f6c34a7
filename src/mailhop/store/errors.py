"""Errors of durable storage (queue entries, mailboxes, fetch state).

::

    StoreError (MailhopError)
    ├── exit 75 TEMPFAIL   no space or quota left: the caller keeps the mail and retries
    ├── exit 73 CANTCREAT  a file or directory cannot be created (permissions)
    └── exit 74 IOERR      any other input/output error
"""

from __future__ import annotations

import errno

from mailhop.errors import ExitCode, MailhopError

# errno values that mean "try again when there is room": the data is not lost, it
# stays where it was (the sender's stdin, the server, the queue).
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_CANNOT_CREATE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


class StoreError(MailhopError):
    """A durable write or read failed; ``exit_code`` says whether to retry."""

    exit_code = ExitCode.IOERR

    @classmethod
    def from_os_error(cls, what: str, error: OSError) -> StoreError:
        """Translate ``error`` met while doing ``what`` (e.g. "cannot write /x")."""
        reason = error.strerror or str(error)
        if error.errno in _NO_SPACE:
            return cls(
                f"{what}: {reason}; free some space and try again", exit_code=ExitCode.TEMPFAIL
            )
        if error.errno in _CANNOT_CREATE:
            return cls(f"{what}: {reason}", exit_code=ExitCode.CANTCREAT)
        return cls(f"{what}: {reason}")
