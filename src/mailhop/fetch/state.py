"""Which messages an account already fetched, kept durably per account and folder.

IMAP: UIDs grow within a UIDVALIDITY (RFC 3501 §2.3.1.1) and messages are fetched
in UID order, stopping at the first failure, so ``(uidvalidity, last_uid)`` says
exactly what was delivered. A changed UIDVALIDITY means the old UIDs mean nothing:
the folder starts over (getmail6 does the same; duplicates are better than loss).

POP3: the UIDL unique-ids of delivered messages (RFC 1939 §7); ids the server no
longer lists are dropped.

The state is rewritten through ``mailhop.store.durable.write_atomically`` after
every delivered message, so a crash costs at most the one message delivered but
not yet recorded: one duplicate, never a loss.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re

from mailhop.fetch.errors import FetchError
from mailhop.store.durable import make_private_directory, write_atomically

__all__ = ["FolderState", "StateFile", "state_path"]

# A state file lists at most one UIDL per message on the server; 64 MiB holds
# about a million of them, so anything bigger is not ours.
MAX_STATE_FILE_BYTES = 64 * 1024 * 1024
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FolderState:
    uidvalidity: int | None = None
    last_uid: int = 0
    uidls: frozenset[str] = frozenset()


def state_path(directory: str, key: str, label: str) -> str:
    """A file name that is safe whatever the server or config called things (E3/E4)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    readable = _SAFE_NAME.sub("_", label)[:60]
    return os.path.join(directory, f"{readable}-{digest}.json")


class StateFile:
    """The state of one account and folder, in ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def load(self) -> FolderState:
        try:
            with open(self.path, "rb") as handle:
                data = handle.read(MAX_STATE_FILE_BYTES + 1)
        except FileNotFoundError:
            return FolderState()
        except OSError as error:
            raise FetchError(f"cannot read fetch state {self.path}: {error.strerror}") from error
        try:
            if len(data) > MAX_STATE_FILE_BYTES:
                raise ValueError("too large")
            raw = json.loads(data)
            return FolderState(
                uidvalidity=raw.get("uidvalidity"),
                last_uid=int(raw.get("last_uid", 0)),
                uidls=frozenset(str(uid) for uid in raw.get("uidls", [])),
            )
        except (ValueError, TypeError, AttributeError) as error:
            raise FetchError(
                f"fetch state {self.path} is damaged ({error}); move it away to fetch the"
                " folder again (messages already fetched will then be fetched again)"
            ) from error

    def save(self, state: FolderState) -> None:
        make_private_directory(os.path.dirname(self.path))
        document = {
            "uidvalidity": state.uidvalidity,
            "last_uid": state.last_uid,
            "uidls": sorted(state.uidls),
        }
        write_atomically(self.path, [json.dumps(document).encode("utf-8")])
