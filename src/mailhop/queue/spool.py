"""The spool: queue entries on disk, complete or absent, one lock each.

Layout under the queue directory (0700 whatever the umask)::

    entries/ID.msg      the message, byte-exact as it will be sent (headers rewritten
                        once, at enqueue, so a retry carries the same Message-ID)
    entries/ID.json     the record: envelope, per-recipient state, schedule, checksum
    entries/ID.done     a dequeued entry's record, renamed: its files await removal
    quarantine/ID.*     entries that failed their integrity check, with ID.reason

Enqueue writes the message first and the record last, each through
``mailhop.store.durable.write_atomically`` (tmp -> fsync -> rename -> fsync dir): the
record's rename is the commit point. A message without a record is an interrupted
enqueue (its caller never saw exit 0) and is removed after ``ORPHAN_GRACE_SECONDS``.
The record carries the SHA-256 and size of the message, so a truncated or swapped
message is caught before anything is sent (Postfix's END record plays this role).

Dequeue renames ``ID.json`` to ``ID.done`` under the entry's lock: that rename is
the commit point (``ids()`` lists records only, so nobody sends the entry again).
Freeing the two files (``reap``) comes after, off the delivery's critical path (the
runner's parent process does it, with a few threads, while its workers deliver;
``mailhop.queue.reaper``): freeing an inode costs
ext4 a wait of 100-200 microseconds (journal, ``discard``), while the rename frees
nothing. A crash leaves ``ID.done`` (and perhaps ``ID.msg``); the next run's
``remove_orphans`` removes both at once.

A record may say ``sent_as_stored`` (decided once, at enqueue, by
``mailhop.message.stored``): the runner then sends the stored bytes as they are,
without reading and fitting the message first.

Locks: ``fcntl.flock`` on ``ID.msg``, which is never replaced (a rename of the record
would drop a lock held on it, as Exim's spec warns). The kernel releases the lock
when the process dies, so no stale lock ever outlives a crash.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import importlib
import io
import os
import sys
import time
from _json import encode_basestring
from collections.abc import Callable, Iterable, Iterator

from mailhop._records import NamedTuple
from mailhop.errors import UsageError
from mailhop.faults import crash_point
from mailhop.queue.errors import CorruptEntryError, EntryBusyError, EntryNotFoundError
from mailhop.store.durable import (
    fsync_directory,
    make_private_directory,
    write_atomically,
)
from mailhop.store.errors import StoreError

TYPE_CHECKING = False  # not typing's: the enqueue path never imports typing (CONVENTIONS)
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Protocol

# The record layout this code reads and writes; any other version is quarantined,
# never guessed at.
RECORD_VERSION = 1
# Where root's queue lives (FHS 5.14: /var/spool holds data awaiting processing).
# An interrupted enqueue leaves a message without a record (or a temporary file);
# its writer died before exit 0, so nobody waits for it. One hour is far longer
# than any enqueue takes, so a live writer is never disturbed.
ORPHAN_GRACE_SECONDS = 3600
# A record is a few hundred bytes per recipient; the cap keeps a hostile or broken
# file from being read whole into memory (sendmail accepts at most a few thousand
# recipients; 1 MiB holds well over that).
MAX_RECORD_BYTES = 1024 * 1024
# A record's first read asks for this much: one page holds a record of several
# recipients, and a read that comes back shorter than asked has met the end of
# the file (a read of a regular file stops short only there), so nearly every
# record is read without an fstat to size it. A larger one is then sized by fstat.
RECORD_FIRST_READ_OCTETS = 4096
# How much of the message one read takes while checking its checksum.
READ_CHUNK_SIZE = 256 * 1024
# hashlib gives SHA-256 by loading OpenSSL's libcrypto: 4-7 ms of every enqueue on
# this machine, for a message of a few KiB. Up to this size, in a process that has
# not loaded OpenSSL, the interpreter's own SHA-256 (what hashlib falls back to
# without OpenSSL) hashes the message instead. It is about 6x slower per octet (5.6
# ms per MiB here, against 0.9), so past a few hundred KiB the load pays for itself.
BUILTIN_SHA256_MAX_OCTETS = 512 * 1024
# Where CPython keeps that SHA-256: _sha2 since 3.12, _sha256 before. A build
# without it (some distributions keep only OpenSSL's) uses hashlib for every size.
_BUILTIN_SHA256_MODULES = ("_sha2", "_sha256")
# A runner holds a message up to this size in memory while it delivers it (two per
# worker: the one in flight and the next): read, hashed and sent from one buffer.
# A larger one is streamed from its file, as a message of any size may be.
MAX_HELD_MESSAGE_OCTETS = 1024 * 1024
# The buffer of the files a runner reads (records and messages), given explicitly:
# with the default, open() first asks the kernel whether the file is a terminal (an
# ioctl that fails, three per delivered message). The size is Python's default.
FILE_BUFFER_OCTETS = io.DEFAULT_BUFFER_SIZE
# Records and messages are read with O_NOATIME (Linux): under relatime the first
# read of a fresh file updates its access time, dirtying the inode for a journal
# write (2-4 us of CPU here), twice per delivered message, for a time nothing
# reads. The kernel allows the flag to the file's owner (and to CAP_FOWNER): queue
# files are the runner's own; anyone else's open is retried without it.
_NO_ATIME = getattr(os, "O_NOATIME", 0)
# How long a management command (hold, remove ...) waits for a runner's lock.
DEFAULT_LOCK_WAIT_SECONDS = 10.0
LOCK_POLL_SECONDS = 0.05

MESSAGE_SUFFIX = ".msg"
RECORD_SUFFIX = ".json"
DONE_SUFFIX = ".done"
REASON_SUFFIX = ".reason"
# Entry ids are made here (``new_id``: 16 hex digits of time, a dot, 8 random ones);
# anything else given on a command line is refused before it can name a path outside
# the spool. Checked without re: the enqueue path does not import it (nor json).
_ID_TIME_DIGITS = 16
_ID_RANDOM_DIGITS = 8
_ID_DIGITS = frozenset("0123456789abcdef")
# RFC 5321 §4.1.2 and the record's own safety: no control characters in envelope
# values (security.md G9: a newline must never add a recipient).
_FORBIDDEN = ("\x00", "\r", "\n")


class Route(enum.Enum):
    """Where a recipient goes: through the account's server, or a local mailbox."""

    RELAY = "relay"
    LOCAL = "local"  # delivered by local delivery (issue #5) when it is available


class RecipientStatus(enum.Enum):
    PENDING = "pending"  # not delivered yet; retried when due
    DELIVERED = "delivered"  # the next hop said 250: never sent again
    FAILED = "failed"  # refused permanently or expired: bounced (or not, for <>)


# A record's values to their members by dictionary: the runner parses a record per
# message, and calling an Enum by value goes through its metaclass each time. An
# unknown value raises KeyError, which ``Entry.from_json`` reports as corruption.
_ROUTE_BY_VALUE = {route.value: route for route in Route}
_STATUS_BY_VALUE = {status.value: status for status in RecipientStatus}
# The member tested per recipient, as a module name: reading one off its class goes
# through the Enum metaclass's attribute hook (about 0.2 us each on Python 3.11).
_PENDING = RecipientStatus.PENDING


class RecipientState(NamedTuple):
    """One recipient of an entry and what happened to it so far."""

    address: str
    route: Route = Route.RELAY
    status: RecipientStatus = RecipientStatus.PENDING
    attempts: int = 0
    last_code: int = 0  # the server's reply code of the last attempt (0: none)
    last_reply: tuple[str, ...] = ()  # its lines, as the server wrote them


class Entry(NamedTuple):
    """One queued message: envelope, per-recipient state and schedule."""

    id: str
    sender: str  # "" is the null reverse-path (a bounce)
    recipients: tuple[RecipientState, ...]
    account: str | None  # None: an account given on the command line (--host)
    config_file: str | None
    settings: tuple[tuple[str, str], ...]
    queued_at: float
    next_attempt: float
    message_sha256: str
    message_size: int
    # Fields with a default come last (a NamedTuple's rule); build entries with keywords.
    attempts: int = 0
    last_error: str | None = None
    held: bool = False
    delay_warned: bool = False
    message_id: str | None = None
    # Decided once, at enqueue (mailhop.message.stored): the stored bytes are what
    # reading and fitting the message would send to any server, so the runner sends
    # them as they are. Records written before this field read as False.
    sent_as_stored: bool = False

    @property
    def pending(self) -> tuple[RecipientState, ...]:
        return tuple([r for r in self.recipients if r.status is _PENDING])

    @property
    def is_bounce(self) -> bool:
        """A message from the null sender: it never gets a bounce of its own."""
        return self.sender == ""

    def to_json(self) -> bytes:
        data: dict[str, Any] = self._asdict()
        data["version"] = RECORD_VERSION
        # Written only when true: a record that does not need the field stays one a
        # mailhop older than the field reads (it quarantines unknown fields).
        if not self.sent_as_stored:
            del data["sent_as_stored"]
        # _asdict is not recursive: each recipient becomes its own object here.
        data["recipients"] = [
            {**r._asdict(), "route": r.route.value, "status": r.status.value}
            for r in self.recipients
        ]
        # A server's reply that is not UTF-8 reaches a record as lone surrogates (the
        # reply parser decodes with surrogateescape), which UTF-8 cannot encode. Only
        # a JSON string can hold one (JSON's own syntax is ASCII), and there the
        # \uDCxx that backslashreplace writes is JSON's own escape (RFC 8259 §7):
        # from_json reads back the same string (surrogateescape makes U+DC80-U+DCFF
        # only, so never a high and low pair, which JSON would read as one character).
        # Envelope values never get here with one (the enqueue refuses them).
        return _json_text(data).encode("utf-8", "backslashreplace")

    @classmethod
    def from_json(cls, raw: bytes) -> Entry:
        """Parse a record; anything unexpected raises CorruptEntryError."""
        import json  # noqa: PLC0415 - the enqueue path only writes records (_json_text)

        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict):
                raise CorruptEntryError("the record is not an object")
            version = data.pop("version", None)
            if version != RECORD_VERSION:
                raise CorruptEntryError(f"unknown record version {version!r}")
            # Lists made whole, then tuples, and map(): no generator to resume per
            # item (a runner parses a record per message).
            recipients = tuple(
                [
                    RecipientState(
                        address=_checked(str(item["address"]), "recipient"),
                        route=_ROUTE_BY_VALUE[item["route"]],
                        status=_STATUS_BY_VALUE[item["status"]],
                        attempts=int(item["attempts"]),
                        last_code=int(item["last_code"]),
                        last_reply=tuple(map(str, item["last_reply"])),
                    )
                    for item in data.pop("recipients")
                ]
            )
            if not recipients:
                raise CorruptEntryError("the record has no recipients")
            settings = tuple([(str(k), str(v)) for k, v in data.pop("settings")])
            entry = cls(recipients=recipients, settings=settings, **data)
            _checked(entry.sender, "sender")
            if not _is_entry_id(entry.id):
                raise CorruptEntryError("the record names an invalid id")
            return entry
        except CorruptEntryError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise CorruptEntryError(f"unreadable record: {error}") from error


def _json_text(value: object) -> str:
    """``json.dumps(value, ensure_ascii=False, sort_keys=True)``, for a record's values.

    The json package and the re it imports were a tenth of the enqueue path's import
    work, and a record holds only str, int, float, bool, None, lists, tuples and
    dicts with str keys. Strings are escaped by json's own C escaper, so the text is
    json.dumps's to the byte (tests/queue/test_queue_record.py compares them).
    """
    if isinstance(value, str):
        return encode_basestring(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        text = float.__repr__(value)
        return _NON_FINITE_JSON.get(text, text)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(_json_text, value)) + "]"
    if isinstance(value, dict):
        members = sorted(value.items())
        return "{" + ", ".join(f"{encode_basestring(k)}: {_json_text(v)}" for k, v in members) + "}"
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# How json.dumps writes what JSON itself has no literal for (its allow_nan default).
_NON_FINITE_JSON = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _has_forbidden(value: str) -> bool:
    return any(character in value for character in _FORBIDDEN)


def _is_entry_id(text: str) -> bool:
    """Whether ``text`` has the form ``new_id`` gives an entry id."""
    return (
        len(text) == _ID_TIME_DIGITS + 1 + _ID_RANDOM_DIGITS
        and text[_ID_TIME_DIGITS] == "."
        and _ID_DIGITS.issuperset(text[:_ID_TIME_DIGITS])
        and _ID_DIGITS.issuperset(text[_ID_TIME_DIGITS + 1 :])
    )


def _checked(value: str, what: str) -> str:
    if _has_forbidden(value):
        raise CorruptEntryError(f"the {what} contains CR, LF or NUL")
    return value


def check_envelope_value(value: str, what: str) -> str:
    """Refuse CR, LF or NUL in a value that will enter a record (exit 64)."""
    if _has_forbidden(value):
        raise UsageError(f"the {what} {value!r} contains CR, LF or NUL; refusing to queue it")
    return value


def new_id() -> str:
    """A fresh entry id: time-ordered (nanoseconds, hex) plus 32 random bits."""
    # os.urandom rather than secrets: the same kernel randomness without importing
    # secrets (and its hmac/base64) on every enqueue's start path.
    return f"{time.time_ns():016x}.{os.urandom(4).hex()}"


def check_id(text: str) -> str:
    """Refuse anything that is not an entry id (exit 64)."""
    if not _is_entry_id(text):
        raise UsageError(f"'{text}' is not a queue id (run 'mailhop queue list' to see them)")
    return text


# For mypy only: a Protocol class needs typing at run time (see TYPE_CHECKING above).
if TYPE_CHECKING:

    class _Sha256(Protocol):
        """A SHA-256 in progress, from hashlib or from the interpreter's own module."""

        def update(self, data: bytes, /) -> None: ...

        def hexdigest(self) -> str: ...


def _openssl_sha256() -> _Sha256:
    import hashlib  # noqa: PLC0415 - loads libcrypto; see BUILTIN_SHA256_MAX_OCTETS

    return hashlib.sha256()


def _small_message_sha256() -> _Sha256:
    """The cheapest SHA-256 to start for a message of at most BUILTIN_SHA256_MAX_OCTETS."""
    if "_hashlib" not in sys.modules:  # OpenSSL not loaded yet: spare the load
        for name in _BUILTIN_SHA256_MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            constructor: Callable[[], _Sha256] = module.sha256
            return constructor()
    return _openssl_sha256()


class _Digest:
    """Pass chunks through while hashing and counting them.

    Which SHA-256 to use depends on the size, known only at the end: the chunks are
    held (references, at most BUILTIN_SHA256_MAX_OCTETS and one chunk) until the
    message proves larger, then hashlib's takes them and the rest; a message that
    ends first is hashed by ``hexdigest``. Both give the same digest.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self._held: list[bytes] = []
        self._hash: _Sha256 | None = None
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.size += len(chunk)
            if self._hash is not None:
                self._hash.update(chunk)
            else:
                # A caller's reused buffer (bytearray, memoryview) is copied: it is
                # hashed after the writer has passed it on.
                self._held.append(chunk if type(chunk) is bytes else bytes(chunk))
                if self.size > BUILTIN_SHA256_MAX_OCTETS:
                    self._hash_held(_openssl_sha256())
            yield chunk

    def _hash_held(self, digest: _Sha256) -> _Sha256:
        for chunk in self._held:
            digest.update(chunk)
        self._held = []
        self._hash = digest
        return digest

    def hexdigest(self) -> str:
        """The SHA-256 of every chunk passed so far, in hex."""
        digest = self._hash or self._hash_held(_small_message_sha256())
        return digest.hexdigest()


class Spool:
    """The queue directory: enqueue, read, lock, update, remove, quarantine."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.entries = os.path.join(self.root, "entries")
        self._entry_prefix = self.entries + os.sep  # see path()
        self.quarantine_directory = os.path.join(self.root, "quarantine")

    def ensure(self) -> Spool:
        """Create the directories (0700) if missing.

        Raises:
            StoreError: they cannot be created (no space: exit 75).
        """
        if not os.path.isdir(self.entries) or not os.path.isdir(self.quarantine_directory):
            make_private_directory(self.root)
            make_private_directory(self.entries)
            make_private_directory(self.quarantine_directory)
        return self

    def path(self, entry_id: str, suffix: str) -> str:
        # A concatenation, not os.path.join (a runner makes five paths per message,
        # the parent two more): the same path for every id, as ids have no "/".
        return self._entry_prefix + entry_id + suffix

    # --- enqueue ---------------------------------------------------------------------

    def enqueue(
        self,
        chunks: Iterable[bytes],
        *,
        sender: str,
        recipients: Iterable[tuple[str, Route]],
        account: str | None,
        config_file: str | None,
        settings: tuple[tuple[str, str], ...] = (),
        message_id: str | None = None,
        now: float | None = None,
        first_failure: str | None = None,
        retry_after: float = 0.0,
    ) -> Entry:
        """Store a message durably; when this returns, the entry survives a crash.

        ``first_failure``: why the direct attempt failed (the fallback mode); the
        entry then counts one attempt and is next due ``retry_after`` seconds later.

        Raises:
            UsageError: an envelope value holds CR, LF or NUL (nothing written).
            StoreError: the disk refused (no space: exit 75); nothing is left behind.
        """
        check_envelope_value(sender, "sender")
        states = tuple(
            RecipientState(address=check_envelope_value(address, "recipient"), route=route)
            for address, route in recipients
        )
        if not states:
            raise UsageError("no recipients to queue")
        for name, value in settings:
            check_envelope_value(name + value, "setting")
        for optional in (account, config_file, message_id):
            if optional is not None:
                check_envelope_value(optional, "value")
        from mailhop.message.stored import SentAsStored  # noqa: PLC0415 - enqueue only

        self.ensure()
        entry_id = new_id()
        queued_at = time.time() if now is None else now
        digest = _Digest(chunks)
        wire_check = SentAsStored(digest)
        message_path = self.path(entry_id, MESSAGE_SUFFIX)
        crash_point("queue.enqueue.start")
        write_atomically(message_path, wire_check)
        crash_point("queue.enqueue.after-message")
        entry = Entry(
            id=entry_id,
            sender=sender,
            recipients=states,
            account=account,
            config_file=config_file,
            settings=settings,
            queued_at=queued_at,
            next_attempt=queued_at + retry_after,
            attempts=1 if first_failure else 0,
            last_error=first_failure,
            message_sha256=digest.hexdigest(),
            message_size=digest.size,
            message_id=message_id,
            sent_as_stored=wire_check.holds,
        )
        try:
            write_atomically(self.path(entry_id, RECORD_SUFFIX), [entry.to_json()])
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(message_path)
            raise
        crash_point("queue.enqueue.committed")
        return entry

    # --- reading ---------------------------------------------------------------------

    def ids(self) -> list[str]:
        """Ids of committed entries, oldest first."""
        try:
            names = os.listdir(self.entries)
        except FileNotFoundError:
            return []
        except OSError as error:
            raise StoreError.from_os_error(f"cannot read {self.entries}", error) from error
        return sorted(
            name[: -len(RECORD_SUFFIX)]
            for name in names
            if name.endswith(RECORD_SUFFIX) and _is_entry_id(name[: -len(RECORD_SUFFIX)])
        )

    def load(self, entry_id: str) -> Entry:
        """Read and parse one record.

        Raises:
            EntryNotFoundError: no such entry (delivered or removed meanwhile).
            CorruptEntryError: the record cannot be trusted.
        """
        return self.scan(entry_id).entry

    def scan(self, entry_id: str) -> Scanned:
        """Read and parse one record, keeping its bytes (see ``claim``).

        Raises:
            EntryNotFoundError: no such entry (delivered or removed meanwhile).
            CorruptEntryError: the record cannot be trusted.
        """
        record = self._read_record(entry_id)
        return Scanned(entry=_parse_record(entry_id, record), record=record)

    def _read_record(self, entry_id: str, expected: int = RECORD_FIRST_READ_OCTETS) -> bytes:
        """The record's bytes, read with one read when it has at most ``expected``.

        ``claim`` expects the size of the record it scanned: unchanged, it comes
        back in one read that ends short of the octet asked for beyond it.
        """
        # Plain descriptor calls (open, read, close): a runner reads two records
        # per delivery, and a file object adds an fstat, an lseek and a buffer.
        try:
            descriptor = _open_for_reading(
                self.path(entry_id, RECORD_SUFFIX), os.O_RDONLY | os.O_CLOEXEC
            )
        except FileNotFoundError:
            raise EntryNotFoundError(f"no queue entry {entry_id}") from None
        except OSError as error:
            raise StoreError.from_os_error(f"cannot read entry {entry_id}", error) from error
        try:
            raw = os.read(descriptor, expected + 1)
            if len(raw) > expected:
                # Larger than expected: the rest sized from fstat (records are never
                # written in place); a read of MAX_RECORD_BYTES would allocate, and
                # map, a megabyte every time.
                size = min(os.fstat(descriptor).st_size, MAX_RECORD_BYTES)
                rest = size + 1 - len(raw)
                raw += _read_at_most(descriptor, max(rest, 1), enough=rest - 1)
        except OSError as error:
            raise StoreError.from_os_error(f"cannot read entry {entry_id}", error) from error
        finally:
            os.close(descriptor)
        if len(raw) > MAX_RECORD_BYTES:
            raise CorruptEntryError(f"the record is larger than {MAX_RECORD_BYTES} bytes")
        return raw

    def open_message(self, entry: Entry) -> BinaryIO:
        """Open the entry's message after checking its size and SHA-256.

        Raises:
            CorruptEntryError: the message is missing, truncated or altered.
        """
        path = self.path(entry.id, MESSAGE_SUFFIX)
        try:
            file = open(path, "rb")  # noqa: SIM115 - returned to the caller
        except FileNotFoundError:
            raise CorruptEntryError("the message file is missing") from None
        try:
            _verify_message(entry, file)
        except BaseException:
            file.close()
            raise
        return file

    # --- changing --------------------------------------------------------------------

    def update(self, entry: Entry) -> None:
        """Replace the entry's record durably (the caller holds its lock)."""
        write_atomically(self.path(entry.id, RECORD_SUFFIX), [entry.to_json()])

    def remove(self, entry_id: str) -> None:
        """Dequeue durably now (the caller holds the lock): commit, free, fsync."""
        self.commit_removal(entry_id)
        self.reap(entry_id)
        self.sync_entries()

    def commit_removal(self, entry_id: str) -> None:
        """Dequeue's commit point: ``ID.json`` becomes ``ID.done`` (lock held).

        From here the entry is never listed or sent again. Its files are freed
        later by ``reap`` (by the runner, or the next ``remove_orphans``).
        The rename is durable once the directory is fsync'ed (``sync_entries``): a
        runner does that once per run, so a power loss inside the run may undo it
        and resend a delivered message, inside the documented duplicate window.
        """
        with contextlib.suppress(FileNotFoundError):
            os.rename(self.path(entry_id, RECORD_SUFFIX), self.path(entry_id, DONE_SUFFIX))
        crash_point("queue.remove.after-record")

    def reap(self, entry_id: str) -> None:
        """Free a dequeued entry's files; its lock must no longer be held here.

        The message goes first and the ``.done`` marker last, so a crash in between
        leaves the marker that tells ``remove_orphans`` to finish the job at once.
        A lock descriptor still open on the message would move the cost of freeing
        it to that descriptor's ``close`` (on the critical path again).
        """
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(entry_id, MESSAGE_SUFFIX))
        crash_point("queue.reap.after-message")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(entry_id, DONE_SUFFIX))

    def sync_entries(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            fsync_directory(self.entries)

    def quarantine(self, entry_id: str, reason: str) -> None:
        """Move an untrustworthy entry aside with the reason; it is never sent."""
        make_private_directory(self.quarantine_directory)
        for suffix in (MESSAGE_SUFFIX, RECORD_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.replace(
                    self.path(entry_id, suffix),
                    os.path.join(self.quarantine_directory, entry_id + suffix),
                )
        write_atomically(
            os.path.join(self.quarantine_directory, entry_id + REASON_SUFFIX),
            [reason.encode("utf-8", "replace") + b"\n"],
        )
        self.sync_entries()

    def quarantined(self) -> list[str]:
        try:
            names = os.listdir(self.quarantine_directory)
        except FileNotFoundError:
            return []
        return sorted(n[: -len(REASON_SUFFIX)] for n in names if n.endswith(REASON_SUFFIX))

    def remove_orphans(self, *, now: float | None = None) -> list[str]:
        """Remove leftovers: of dequeues at once, of enqueues after the grace period."""
        now = time.time() if now is None else now
        removed: list[str] = []
        try:
            names = os.listdir(self.entries)
        except FileNotFoundError:
            return removed
        done = [
            n[: -len(DONE_SUFFIX)]
            for n in names
            if n.endswith(DONE_SUFFIX) and _is_entry_id(n[: -len(DONE_SUFFIX)])
        ]
        for entry_id in done:
            # Committed as removed (the record was renamed under the lock): nobody
            # sends it again, so its files go now, whoever holds its lock. One that
            # cannot be freed is left for the next run rather than stop this one.
            try:
                self.reap(entry_id)
            except OSError:
                continue
            removed.append(entry_id + DONE_SUFFIX)
        records = {n[: -len(RECORD_SUFFIX)] for n in names if n.endswith(RECORD_SUFFIX)}
        records.update(done)  # their messages are gone already
        for name in names:
            orphan = name.endswith(".tmp") or (
                name.endswith(MESSAGE_SUFFIX) and name[: -len(MESSAGE_SUFFIX)] not in records
            )
            if not orphan:
                continue
            path = os.path.join(self.entries, name)
            try:
                if now - os.stat(path).st_mtime < ORPHAN_GRACE_SECONDS:
                    continue
                if name.endswith(MESSAGE_SUFFIX):
                    with self.lock(name[: -len(MESSAGE_SUFFIX)], wait=0):
                        if os.path.exists(self.path(name[: -len(MESSAGE_SUFFIX)], RECORD_SUFFIX)):
                            continue
                        os.unlink(path)
                else:
                    os.unlink(path)
            except (OSError, EntryBusyError, EntryNotFoundError):
                continue
            removed.append(name)
        return removed

    # --- locking ---------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, entry_id: str, *, wait: float = 0.0) -> Iterator[None]:
        """Hold the entry's exclusive lock (``flock`` on its message file).

        ``wait`` 0: fail at once if another process holds it (a runner skips the
        entry); otherwise poll until the deadline.

        Raises:
            EntryBusyError: still held by another process.
            EntryNotFoundError: the entry is gone.
        """
        descriptor = self._open_locked(entry_id, wait)
        try:
            # Locked: the entry may have been delivered and removed while we waited.
            if not os.path.exists(self.path(entry_id, RECORD_SUFFIX)):
                raise EntryNotFoundError(f"no queue entry {entry_id}")
            yield
        finally:
            os.close(descriptor)  # closing releases the flock

    def claim(self, scanned: Scanned) -> Claimed:
        """Lock a scanned entry for delivery, or fail at once (a runner skips it).

        Returns the entry as it stands under the lock and its message, checked
        against the record's size and SHA-256 and read through the descriptor
        that holds the lock (one open per delivery), until ``Claimed.release``
        (or the end of a ``with`` block). The record is read again under the
        lock, as another runner may have changed it since the scan; when its
        bytes are those of the scan, the scan's parse is reused (records are
        never edited in place, so equal bytes are the same state). A message of
        at most ``MAX_HELD_MESSAGE_OCTETS`` is read whole: its bytes come as
        ``content`` too, and ``message`` reads them from memory.

        Raises:
            EntryBusyError: another process holds the lock.
            EntryNotFoundError: the entry is gone (delivered by another runner).
            CorruptEntryError: the record or the message cannot be trusted.
        """
        entry_id = scanned.entry.id
        descriptor = self._open_locked(entry_id, 0.0)
        try:  # closing the descriptor drops the lock
            record = self._read_record(entry_id, len(scanned.record))
            unchanged = record == scanned.record
            entry = scanned.entry if unchanged else _parse_record(entry_id, record)
            content = _read_verified(entry, descriptor)
        except BaseException:
            os.close(descriptor)
            raise
        return Claimed(entry, descriptor, content)

    def _open_locked(self, entry_id: str, wait: float) -> int:
        """Open the entry's message and take its ``flock``; return the descriptor."""
        import fcntl  # noqa: PLC0415 - not needed by most enqueues

        try:
            descriptor = _open_for_reading(
                self.path(entry_id, MESSAGE_SUFFIX), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
            )
        except FileNotFoundError:
            raise EntryNotFoundError(f"no queue entry {entry_id}") from None
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return descriptor
                except OSError as error:
                    if error.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise EntryBusyError(
                            f"queue entry {entry_id} is being delivered by another process; "
                            "try again in a moment"
                        ) from None
                    time.sleep(LOCK_POLL_SECONDS)
        except BaseException:
            os.close(descriptor)
            raise


# Plain values, not events: NamedTuples, as a frozen dataclass costs this machine
# about 2 ms at import, and this module is on the sendmail path.
class Scanned(NamedTuple):
    """An entry as a runner's scan read it, with its record's bytes."""

    entry: Entry
    record: bytes


class Claimed:
    """A locked entry (``Spool.claim``) and its checked message, open at the start.

    The lock is the ``flock`` on the descriptor the message was read through, held
    until ``release``. A plain class rather than a generator's context manager:
    a runner claims every message it sends, and the one in flight keeps its claim
    after the call that made it returns.
    """

    __slots__ = ("_descriptor", "_message", "content", "entry")

    def __init__(self, entry: Entry, descriptor: int, content: bytes | None) -> None:
        self.entry = entry
        self.content = content
        """The whole message, when it was held in memory (else None)."""
        self._descriptor: int | None = descriptor
        self._message: BinaryIO | None = None

    @property
    def message(self) -> BinaryIO:
        """The message, open at the start (made on first use: most sends need only
        ``content``)."""
        if self._message is None:
            if self._descriptor is None:
                raise ValueError("the claim is released")
            if self.content is not None:
                self._message = io.BytesIO(self.content)
            else:
                self._message = open(  # noqa: SIM115 - closed by release()
                    self._descriptor, "rb", buffering=FILE_BUFFER_OCTETS, closefd=False
                )
        return self._message

    def release(self) -> None:
        """Close the message and drop the lock; nothing happens a second time."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is None:
            return
        message, self._message = self._message, None
        try:
            if message is not None:
                message.close()
        finally:
            os.close(descriptor)  # closing it releases the flock

    def __enter__(self) -> Claimed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _parse_record(entry_id: str, record: bytes) -> Entry:
    entry = Entry.from_json(record)
    if entry.id != entry_id:
        raise CorruptEntryError(f"the record of {entry_id} names entry {entry.id}")
    return entry


def _open_for_reading(path: str, flags: int) -> int:
    """``os.open`` with O_NOATIME where the kernel allows it (see ``_NO_ATIME``)."""
    try:
        return os.open(path, flags | _NO_ATIME)
    except PermissionError as error:
        # EPERM: not the file's owner (EACCES, a plain refusal, is raised as is).
        if not _NO_ATIME or error.errno != errno.EPERM:
            raise
    return os.open(path, flags)


def _read_at_most(descriptor: int, limit: int, *, enough: int | None = None) -> bytes:
    """Read until ``limit`` octets or the end of the file (a read may come short).

    ``enough``: the size fstat gave a file that is never written in place; a first
    read that brings that much needs no second one to see the end.
    """
    data = os.read(descriptor, limit)
    if not data or len(data) == limit or len(data) == enough:
        return data
    parts, size = [data], len(data)
    while size < limit and (more := os.read(descriptor, limit - size)):
        parts.append(more)
        size += len(more)
    return b"".join(parts)


def _read_verified(entry: Entry, descriptor: int) -> bytes | None:
    """Check the message at ``descriptor`` against the record's size and SHA-256.

    Returns its bytes when it is at most ``MAX_HELD_MESSAGE_OCTETS``; else None,
    with the descriptor back at the start.

    Raises:
        CorruptEntryError: the message is truncated or altered.
    """
    if entry.message_size <= MAX_HELD_MESSAGE_OCTETS:
        # One octet more than recorded, to see a longer file; a read that brings
        # the recorded size came back short of that octet: the end of the file.
        content = _read_at_most(descriptor, entry.message_size + 1, enough=entry.message_size)
        # OpenSSL's even for a small message: a run verifies many, at a sixth of the
        # cost per octet. (A tls-off run loads it only for this: 3-4 ms once.)
        size, digest = len(content), _openssl_sha256()
        digest.update(content)
    else:
        content, size, digest = None, 0, _openssl_sha256()
        while chunk := os.read(
            descriptor, min(READ_CHUNK_SIZE, max(entry.message_size - size, 0) + 1)
        ):
            digest.update(chunk)
            size += len(chunk)
        os.lseek(descriptor, 0, os.SEEK_SET)
    if size != entry.message_size or digest.hexdigest() != entry.message_sha256:
        raise CorruptEntryError(
            f"the message is {size} bytes and does not match its checksum "
            f"({entry.message_size} bytes recorded)"
        )
    return content


def _verify_message(entry: Entry, file: BinaryIO) -> None:
    """Check the message against the record's size and SHA-256; rewind it.

    Raises:
        CorruptEntryError: the message is truncated or altered.
    """
    digest = _openssl_sha256()  # as in _read_verified
    size = 0
    # Reads sized to what is expected (plus one octet, to see a longer file): a
    # fixed READ_CHUNK_SIZE read would allocate that much for a 1 KiB message.
    while chunk := file.read(min(READ_CHUNK_SIZE, max(entry.message_size - size, 0) + 1)):
        digest.update(chunk)
        size += len(chunk)
    if size != entry.message_size or digest.hexdigest() != entry.message_sha256:
        raise CorruptEntryError(
            f"the message is {size} bytes and does not match its checksum "
            f"({entry.message_size} bytes recorded)"
        )
    file.seek(0)
