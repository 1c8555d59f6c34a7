"""The queue runner: deliver what is due, per recipient, over few reused connections.

One run: remove leftovers of interrupted enqueues, read every record (an entry that
fails its integrity check is quarantined and reported, never sent), keep those due,
group them by account and deliver each group over at most ``MAX_CONNECTIONS``
connections, many messages per connection.

With ``processes`` > 1 (``mailhop queue run``: ``MAX_PROCESSES``), the run forks
worker processes, one per connection, without threads (threads would share one
GIL); fewer for a small queue (at most one per ``MIN_ENTRIES_PER_PROCESS`` entries,
so a queue that small forks none). The workers take the due ids ``WORK_CHUNK_ENTRIES`` at a time
from a pipe, so the slower ones take fewer; each keeps its connection from chunk to
chunk. The parent frees the files of the entries they dequeue meanwhile, with a few
threads (``reaper.Reaper``: an unlink costs ext4 100-200 us, mostly waiting), and a
worker that dies is reported (exit 70).
With one process, everything happens in the caller, over one connection at a time.

On a connection, each message's MAIL/RCPT/DATA are written behind the previous
message's end of data, before its reply is read (RFC 2920 §3.1: message content may
open a group), so a message costs one round trip, not two. The message whose end
of data went out stays "in flight", its lock held, until the next one's commands
are sent; then its reply is read and it is settled. Each reply belongs to its own
message: a refused end of data fails only that message; a connection lost or
closed (421) with a message in flight keeps that message (no 250) and sends the
next one, which had only its commands out, over a new connection.

Per entry, under its lock (any number of runners may run at once; a locked entry is
skipped, so each message is sent by one runner at a time):

1. re-read the record (another runner may just have delivered it) and check the
   message against its checksum (``Spool.claim``);
2. send to the pending relay recipients (``SmtpSession.begin``, ``transfer``,
   ``finish``): the stored bytes as they are when the record says
   ``sent_as_stored``, else the message read and fitted to the server;
3. accepted recipients become DELIVERED and are never sent again; a 5xx recipient
   FAILED (bounced once); a 4xx recipient stays PENDING and is retried alone;
4. bounces are queued (durably) before the original's record changes, so a crash
   between the two can only duplicate a bounce, never lose one;
5. an entry with nothing pending is dequeued: its record is renamed to ``ID.done``
   (the commit point) before the lock is released; its files are freed afterwards,
   off the delivery path; one directory fsync at the end of the run makes the
   run's dequeues durable.

Duplicate window (documented in docs/queue.md): a crash after the server's final
250 and before the record is updated or renamed to ``ID.done`` resends that message
to the recipients of that attempt. Nothing is ever removed before the 250.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence

from mailhop._records import NamedTuple
from mailhop.errors import ConfigError, MailhopError
from mailhop.faults import crash_point
from mailhop.queue.errors import CorruptEntryError, EntryBusyError, EntryNotFoundError
from mailhop.queue.policy import FailureKind, classify, retry_delay
from mailhop.queue.spool import (
    Claimed,
    Entry,
    RecipientState,
    RecipientStatus,
    Route,
    Scanned,
    Spool,
)

TYPE_CHECKING = False  # not typing's: an empty queue run never imports typing (CONVENTIONS)
if TYPE_CHECKING:  # without importing the delivery stack at module load
    from typing import IO, TypeGuard

    from mailhop.config import Account
    from mailhop.deliver.errors import ServerReplyError
    from mailhop.deliver.smtp import (
        Envelope,
        Outgoing,
        PerRecipientOutcome,
        SmtpSession,
        Transaction,
    )
    from mailhop.proto.smtp.capabilities import Capabilities
    from mailhop.queue.bounce import FailedRecipient
    from mailhop.queue.reaper import Reaper

# The Enum members tested for every message, as module names: reading one off its
# class goes through the Enum metaclass's attribute hook (about 0.2 us on 3.11).
_RELAY = Route.RELAY
_PENDING = RecipientStatus.PENDING

# Parallel connections per account, in total over all worker processes of a run:
# enough to hide round trips, few enough not to look like abuse to a provider
# (Postfix's default smtp_destination_concurrency_limit is 20 for its own MX traffic;
# submission servers throttle far lower, and count connections, not processes).
MAX_CONNECTIONS = 4
# Worker processes of one run, each with one connection at a time and no threads (a
# delivery is mostly Python work, and the threads of one process share its GIL).
# More than MAX_CONNECTIONS would leave processes without a connection.
MAX_PROCESSES = MAX_CONNECTIONS
# Fewer entries than this per worker process: starting one (a fork, a few ms, and
# its own connection) would cost more than it saves.
MIN_ENTRIES_PER_PROCESS = 50
# Messages sent over one connection before it is closed and reopened; providers cap
# transactions per session (Gmail: about 100), and a reopen bounds any session state.
MAX_MESSAGES_PER_CONNECTION = 100
# ``--watch``: pause between two runs, and the bound on how long it goes on.
DEFAULT_WATCH_INTERVAL_SECONDS = 60.0

Log = Callable[[str], None]
AccountResolver = Callable[[Entry], "Account"]
# What entries are grouped by: one account, one connection (account name, config
# file, command-line settings).
AccountKey = tuple[str | None, str | None, tuple[tuple[str, str], ...]]
# Local delivery (issue #5) plugs in here: given an entry and its LOCAL recipients,
# deliver them and return the ones delivered. None: local recipients stay pending.
LocalDelivery = Callable[[Entry, Sequence[RecipientState], bytes], Sequence[str]]


class RunReport(NamedTuple):
    """What one run did (``mailhop queue run`` prints it with ``-v``)."""

    delivered: int  # entries fully done and removed
    deferred: int  # entries kept for a retry
    bounced: int  # recipients failed permanently in this run
    busy: int  # entries skipped because another runner held them
    quarantined: tuple[str, ...]
    problems: tuple[str, ...]  # configuration and credential problems, loudly
    failures: tuple[str, ...] = ()  # worker processes that died (their mail stays queued)
    # Dequeued entries whose files could not be freed ("ID: reason"): delivered and
    # never sent again; the next run tries again to free them.
    unfreed: tuple[str, ...] = ()


class _Tally:
    # A plain class, not a dataclass: the dataclasses module (with inspect and ast)
    # was 10 ms of every queue run's start, for this one mutable counter.
    def __init__(self) -> None:
        self.delivered = 0
        self.deferred = 0
        self.bounced = 0
        self.busy = 0
        self.quarantined: list[str] = []
        # Configuration problems: the error, and how many messages it holds back.
        self.problems: dict[str, int] = {}
        self.failures: list[str] = []
        self.unfreed: list[str] = []  # by whoever frees: the parent, or a run without workers

    def to_json(self) -> bytes:
        """What a worker process hands back to its parent."""
        fields = ("delivered", "deferred", "bounced", "busy", "quarantined", "problems")
        return json.dumps({name: getattr(self, name) for name in fields}).encode()

    def merge_json(self, raw: bytes) -> None:
        data = json.loads(raw)
        for name in ("delivered", "deferred", "bounced", "busy"):
            setattr(self, name, getattr(self, name) + int(data[name]))
        self.quarantined.extend(str(item) for item in data["quarantined"])
        for problem, count in data["problems"].items():
            self.problems[problem] = self.problems.get(problem, 0) + int(count)


def resolve_entry_account(entry: Entry) -> Account:
    """The account an entry was queued for, as the configuration says now.

    Read at delivery time, so fixing a host, port or password in the file fixes the
    queued mail too.

    Raises:
        ConfigError: the file or the account is gone or broken (the mail is kept).
    """
    from mailhop.config import resolve  # noqa: PLC0415

    return resolve(
        config_file=entry.config_file,
        account_name=entry.account,
        settings=entry.settings,
        sendmail_mode=False,
    ).account


def run(
    spool: Spool,
    *,
    force: bool = False,
    only: Sequence[str] | None = None,
    now: float | None = None,
    resolve_account: AccountResolver = resolve_entry_account,
    local_delivery: LocalDelivery | None = None,
    log: Log | None = None,
    connections: int = MAX_CONNECTIONS,
    processes: int = 1,
) -> RunReport:
    """Deliver every due entry (``force``: every entry not on hold; ``only``: those ids).

    ``processes`` > 1 lets the run fork worker processes, each with one connection
    at a time (at most ``MAX_PROCESSES`` and ``connections`` of them); only a
    single-threaded caller may ask for that, as ``mailhop queue run`` does. With
    one process, the entries go over one connection at a time, in this process.
    """
    now = time.time() if now is None else now
    tally = _Tally()
    spool.remove_orphans(now=now)
    ids = list(only) if only is not None else spool.ids()
    worker = _Worker(
        spool,
        tally,
        force=force,
        now=now,
        resolve_account=resolve_account,
        local_delivery=local_delivery,
        log=log,
    )
    workers = min(processes, MAX_PROCESSES, connections, -(-len(ids) // MIN_ENTRIES_PER_PROCESS))
    if workers <= 1:
        try:
            worker.run_share(ids)
        finally:
            worker.close_connection()
    else:
        from mailhop.deliver import smtp  # noqa: F401, PLC0415 - imported once, before fork
        from mailhop.queue.reaper import Reaper  # noqa: PLC0415 - threading, only here

        # The worker processes take the entries a chunk at a time (``_WorkChunks``)
        # and each delivers over one connection at a time, so the connections stay
        # at most ``workers``. This process frees the files of the entries they
        # dequeue meanwhile (``_reap_reported``): the one thing it does while they work.
        chunks = _WorkChunks(ids)
        reap_read, reap_write = os.pipe()
        children = [_fork(worker, chunks, reap_write) for _ in range(workers)]
        os.close(reap_write)
        chunks.close()
        # Threads only now: none may run across the forks above.
        reaper = Reaper(spool)
        try:
            _reap_reported(reaper, reap_read)
        finally:
            tally.unfreed.extend(reaper.finish())
        for child, pipe in children:
            _collect(child, pipe, tally)
    # One directory fsync makes every dequeue of the run durable (see docs/queue.md).
    spool.sync_entries()
    return RunReport(
        delivered=tally.delivered,
        deferred=tally.deferred,
        bounced=tally.bounced,
        busy=tally.busy,
        quarantined=tuple(tally.quarantined),
        problems=tuple(
            f"cannot deliver {count} queued message(s): {problem}"
            for problem, count in tally.problems.items()
        ),
        failures=tuple(tally.failures),
        unfreed=tuple(tally.unfreed),
    )


# A child that fails in an unexpected way exits with this (sysexits EX_SOFTWARE).
_CHILD_FAILED = 70
# How much of the reaping pipe one read takes: many dequeued ids at a time (each
# line is 27 octets, and a write of one is atomic: far below PIPE_BUF).
_REAP_READ_OCTETS = 64 * 1024
# Worker processes take the entries this many at a time. They share the cores with
# each other, the parent and often the server, so they run at different speeds;
# a fixed share each would leave the slowest finishing alone. Small enough that
# the last chunks end close together, large enough that taking one (a pipe read)
# is nothing beside delivering it.
WORK_CHUNK_ENTRIES = 25
# At most this many chunks (larger ones for a huge queue): their numbers are all
# written to a pipe before any worker starts, and a pipe holds at least one page
# (4 KiB: Linux gives no less even to a user over pipe-user-pages-soft).
_CHUNK_NUMBER_OCTETS = 4
_MAX_WORK_CHUNKS = 4096 // _CHUNK_NUMBER_OCTETS


class _WorkChunks:
    """The due ids cut in chunks, and a pipe holding each chunk's number once.

    A worker takes the next chunk with one read of ``_CHUNK_NUMBER_OCTETS``: the
    numbers were all written before any worker started and every read takes one
    whole number, so no two workers ever get the same chunk (the pipe's reads are
    serialised by the kernel), and an empty pipe without writers reads as the end.
    """

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = ids
        self.size = max(WORK_CHUNK_ENTRIES, -(-len(ids) // _MAX_WORK_CHUNKS))
        count = -(-len(ids) // self.size)
        self.descriptor, write_end = os.pipe()
        try:
            numbers = (number.to_bytes(_CHUNK_NUMBER_OCTETS, "little") for number in range(count))
            os.write(write_end, b"".join(numbers))
        finally:
            os.close(write_end)

    def take(self) -> Sequence[str] | None:
        """The next chunk of ids, or None when every chunk is taken."""
        number = os.read(self.descriptor, _CHUNK_NUMBER_OCTETS)
        if not number:
            return None
        start = int.from_bytes(number, "little") * self.size
        return self.ids[start : start + self.size]

    def close(self) -> None:
        os.close(self.descriptor)


def _fork(worker: _Worker, chunks: _WorkChunks, reap_write: int) -> tuple[int, int]:
    """Start a worker process that delivers chunks of ``chunks``; return its pid and
    report pipe.

    The worker writes the id of each entry it dequeues to ``reap_write`` once the
    entry's lock is released, for the parent to free its files.
    """
    import traceback  # noqa: PLC0415

    parent = os.getpid()  # not getppid() in the child: the parent may be gone by then
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()  # or the child would write the parent's buffered text again
    pid = os.fork()
    if pid:
        os.close(write_end)
        return pid, read_end
    status = _CHILD_FAILED
    try:
        os.close(read_end)
        worker.parent = parent
        _work(worker, chunks, reap_write, write_end)
        status = 0
    except BaseException:  # noqa: BLE001 - shown, then the child exits 70 below
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        # Never return into the parent's code (its caller, atexit, tempfile cleanup).
        os._exit(status)


def _work(worker: _Worker, chunks: _WorkChunks, reap_write: int, report_write: int) -> None:
    """A worker process's life: deliver chunks until none is left, then report.

    Both descriptors are closed when it returns.
    """
    worker.tally = _Tally()
    worker.reap = _ReapNotice(reap_write)
    try:
        while (ids := chunks.take()) is not None and not worker.orphaned:
            worker.run_share(ids)
    finally:
        worker.close_connection()
        # Before the report: the parent reads every notice (until each worker has
        # closed its end) before it reads any report.
        os.close(reap_write)
    with open(report_write, "wb") as report:
        report.write(worker.tally.to_json())


class _ReapNotice:
    """A worker process's side of the reaping pipe: tells the parent what to free."""

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor

    def __call__(self, entry_id: str) -> None:
        # The parent gone: the next run's remove_orphans frees the files.
        with contextlib.suppress(OSError):
            os.write(self.descriptor, f"{entry_id}\n".encode("ascii"))


def _reap_reported(reaper: Reaper, reap_read: int) -> None:
    """Have ``reaper`` free the entries the workers report, until they all close the pipe.

    Freeing an inode makes ext4 wait (journal, discard) while a rename frees
    nothing; here that wait overlaps the workers' deliveries instead of
    lengthening them, and the reaper's threads overlap it with each other.
    """
    with open(reap_read, "rb", buffering=0) as notices:
        pending = b""
        while chunk := notices.read(_REAP_READ_OCTETS):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                reaper.free(line.decode("ascii"))


def _collect(pid: int, pipe: int, tally: _Tally) -> None:
    with open(pipe, "rb") as report:
        raw = report.read()
    _, status = os.waitpid(pid, 0)
    if status == 0 and raw:
        tally.merge_json(raw)
        return
    # Its entries are safe: each was dequeued, updated or left as it was, as after
    # a crash of a whole runner. The next run takes what is left.
    tally.failures.append(
        f"a delivery process ended abnormally ({_describe_status(status)}); "
        "its remaining messages stay queued"
    )


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _quarantine(spool: Spool, entry_id: str, reason: str, tally: _Tally, log: Log | None) -> None:
    try:
        with spool.lock(entry_id, wait=0):
            spool.quarantine(entry_id, reason)
    except EntryBusyError:
        return  # a runner holds it; it will be looked at again
    except EntryNotFoundError:
        spool.quarantine(entry_id, reason)  # a record without its message
    tally.quarantined.append(entry_id)
    if log is not None:
        log(f"queue entry {entry_id} quarantined: {reason}")


class _Worker:
    def __init__(
        self,
        spool: Spool,
        tally: _Tally,
        *,
        force: bool,
        now: float,
        resolve_account: AccountResolver,
        local_delivery: LocalDelivery | None,
        log: Log | None,
    ) -> None:
        self.spool = spool
        self.tally = tally
        self.force = force
        self.now = now
        self.resolve_account = resolve_account
        self.local_delivery = local_delivery
        self.log = log
        # In a worker process: the runner that forked it. When it is gone (killed),
        # the worker stops taking entries rather than run on unseen.
        self.parent: int | None = None
        # Frees a dequeued entry's files once its lock is released: here, or (in a
        # worker process) in the parent, which has nothing else to do meanwhile.
        self.reap: Callable[[str], None] = self.reap_here
        # Accounts as resolved by this worker, by the key entries are grouped by.
        self.accounts: dict[AccountKey, Account | MailhopError] = {}
        # The one connection this worker has open, and the key of its account: kept
        # from one share to the next while the account stays the same.
        self.connection: _Connection | None = None
        self.connection_key: AccountKey | None = None

    @property
    def orphaned(self) -> bool:
        """A worker process whose parent is gone (killed): it takes no more entries."""
        return self.parent is not None and os.getppid() != self.parent

    def run_share(self, ids: Sequence[str]) -> None:
        """Scan ``ids``, keep the due ones, deliver them per account."""
        spool, tally = self.spool, self.tally
        due: list[Scanned] = []
        for entry_id in ids:
            try:
                scanned = spool.scan(entry_id)
            except EntryNotFoundError:
                continue
            except CorruptEntryError as error:
                _quarantine(spool, entry_id, str(error), tally, self.log)
                continue
            entry = scanned.entry
            if entry.held or (not self.force and entry.next_attempt > self.now):
                continue
            due.append(scanned)
        groups: dict[AccountKey, list[Scanned]] = {}
        for scanned in due:
            entry = scanned.entry
            key = (entry.account, entry.config_file, entry.settings)
            groups.setdefault(key, []).append(scanned)
        for key, entries in groups.items():
            if key not in self.accounts:
                try:
                    self.accounts[key] = self.resolve_account(entries[0].entry)
                except MailhopError as error:
                    self.accounts[key] = error
            account = self.accounts[key]
            if isinstance(account, MailhopError):
                # Configuration problems keep the mail and are reported, never bounced.
                problem = str(account)
                tally.problems[problem] = tally.problems.get(problem, 0) + len(entries)
                for scanned in entries:
                    self.defer_all(scanned.entry, account)
                continue
            if self.connection_key != key:
                self.close_connection()
                self.connection, self.connection_key = _Connection(account), key
            assert self.connection is not None  # noqa: S101 - just made, or kept for key
            for scanned in entries:
                if self.orphaned:
                    return
                self.deliver_scanned(scanned, self.connection)

    # --- one connection, many messages ------------------------------------------------

    def close_connection(self) -> None:
        """Settle the message in flight and close this worker's connection, if any."""
        connection, self.connection, self.connection_key = self.connection, None, None
        if connection is None:
            return
        try:
            self.complete(connection)
        finally:
            if connection.in_flight is not None:  # an unexpected error: as after a crash
                connection.in_flight.claimed.release()
                connection.in_flight = None
            self.drop_session(connection)

    def deliver_scanned(self, scanned: Scanned, connection: _Connection) -> None:
        """Claim one entry and attempt it; it may stay in flight, its lock held."""
        try:
            claimed = self.spool.claim(scanned)
        except EntryBusyError:
            self.tally.busy += 1
            return
        except EntryNotFoundError:
            return
        except CorruptEntryError as error:
            _quarantine(self.spool, scanned.entry.id, str(error), self.tally, self.log)
            return
        dequeued = False
        try:
            entry = claimed.entry  # fresh: another runner may have run
            if entry.held or (not self.force and entry.next_attempt > self.now):
                return
            if connection.broken is not None:
                self.defer_locked(entry, connection.broken, connection.account)
                return
            dequeued = self.deliver_entry(claimed, connection)
        finally:
            in_flight = connection.in_flight
            if in_flight is None or in_flight.claimed is not claimed:
                claimed.release()
        if dequeued:  # committed, and its lock released: free its files
            self.reap(entry.id)

    def deliver_entry(self, claimed: Claimed, connection: _Connection) -> bool:
        """Attempt one claimed entry (locked, its message checked).

        Returns whether the entry was dequeued now. When its content went out, the
        entry stays in flight instead, keeping its claim (the caller then leaves it
        held): its final reply is read once the next message's commands are sent
        (``complete``), and the claim released after.
        """
        entry, account = claimed.entry, connection.account
        states = {state.address: state for state in entry.recipients}
        pending = entry.pending
        if self.local_delivery is not None:
            local = [s for s in pending if s.route is Route.LOCAL]
            if local:
                self.complete(connection)  # nothing waits on the wire meanwhile
                file = claimed.message
                delivered = set(self.local_delivery(entry, local, file.read()))
                file.seek(0)
                for address in delivered:
                    states[address] = states[address]._replace(status=RecipientStatus.DELIVERED)
        relay = tuple(s.address for s in pending if s.route is _RELAY)
        if not relay:
            return self.settle(entry, states, None, claimed, account)
        # A recipient that stays pending whatever this server says (a LOCAL one
        # that local delivery did not take): then a full acceptance is not the end.
        pending_elsewhere = len(relay) != len(pending) and any(
            states[s.address].status is _PENDING for s in pending if s.route is not _RELAY
        )
        session = self.open_session(connection)
        if session is None:
            assert connection.broken is not None  # noqa: S101 - set when no session opens
            self.defer_locked(entry, connection.broken, account)
            return False
        failure: MailhopError | None = None
        sending = False
        try:
            with _wire_form(claimed, relay, session.capabilities) as (envelope, outgoing):
                crash_point("queue.deliver.before-send")
                sending = True
                transaction = self.begin(connection, envelope, outgoing)
                if transaction is None:  # the connection broke and no new one opens
                    assert connection.broken is not None  # noqa: S101 - see begin
                    self.defer_locked(entry, connection.broken, account)
                    return False
                session = connection.session
                assert session is not None  # noqa: S101 - begin returned a transaction
                session.transfer(transaction)
            if transaction.content_sent:
                connection.in_flight = _InFlight(
                    entry=entry,
                    states=states,
                    relay=relay,
                    pending_elsewhere=pending_elsewhere,
                    claimed=claimed,
                    transaction=transaction,
                )
                return False
            # No recipient accepted: nothing was sent, the refusals are the outcome.
            _record_outcome(states, session.finish(transaction))
            crash_point("queue.deliver.after-250")
        except MailhopError as error:
            failure = error
            if _is_refusal(error):
                # The whole transaction was refused: every relay recipient shares it.
                _record_failure(states, relay, error, error.code, error.lines)
                if connection.session is not None and not connection.session.is_open:
                    self.drop_session(connection)
            else:
                # No reply at all (connection lost, timeout, TLS): code 0, our words.
                _record_failure(states, relay, error, 0, (str(error),))
                if sending:
                    self.drop_session(connection)
        return self.settle(entry, states, failure, claimed, account)

    def begin(
        self, connection: _Connection, envelope: Envelope, outgoing: Outgoing
    ) -> Transaction | None:
        """Send a message's commands, behind the end of data of the one in flight.

        With PIPELINING (RFC 2920 §3.1) both travel in one segment, and the reply
        to the message in flight is read first; without it, that reply is read
        before anything else is sent. Returns None when the connection broke
        with the message in flight and no new one opens (``connection.broken``).
        """
        session = connection.session
        assert session is not None  # noqa: S101 - opened by the caller
        if not session.capabilities.pipelining:
            self.complete(connection)
            session = self.open_session(connection)  # again, if that reply ended it
            if session is None:
                return None
        transaction = session.begin(envelope, outgoing)
        connection.sent += 1
        self.complete(connection)
        if session.is_open:
            return transaction
        # The connection ended with the message in flight (dropped, 421): these
        # commands were never answered, no 354, no content. Nothing of this
        # message was delivered; it goes again over a new connection.
        session = self.open_session(connection)
        if session is None:
            return None
        transaction = session.begin(envelope, outgoing)
        connection.sent += 1
        return transaction

    def complete(self, connection: _Connection) -> None:
        """Read the final reply of the message in flight, if any; settle it."""
        in_flight, connection.in_flight = connection.in_flight, None
        if in_flight is None:
            return
        session = connection.session
        assert session is not None  # noqa: S101 - a message in flight has its session
        entry, states, relay = in_flight.entry, in_flight.states, in_flight.relay
        with in_flight.claimed:
            failure: MailhopError | None = None
            outcome: PerRecipientOutcome | None = None
            try:
                outcome = session.finish(in_flight.transaction)
                crash_point("queue.deliver.after-250")
            except MailhopError as error:
                failure = error
                if _is_refusal(error):
                    _record_failure(states, relay, error, error.code, error.lines)
                else:
                    # No reply: the content may or may not have arrived; no 250, so
                    # the message stays queued (it may be sent twice, never lost).
                    _record_failure(states, relay, error, 0, (str(error),))
                    session.abandon()
            if (
                outcome is not None
                and len(outcome.accepted) == len(relay)
                and not in_flight.pending_elsewhere
            ):
                # Every pending recipient accepted: nothing to record (a dequeue
                # does not rewrite the record) and nothing for settle() to decide.
                dequeued = self.dequeue(entry)
            else:
                if outcome is not None:
                    _record_outcome(states, outcome)
                dequeued = self.settle(
                    entry, states, failure, in_flight.claimed, connection.account
                )
        if dequeued:
            self.reap(entry.id)

    def open_session(self, connection: _Connection) -> SmtpSession | None:
        """The connection's open session, new after its message cap; None if it fails."""
        if connection.session is not None and (
            connection.sent >= MAX_MESSAGES_PER_CONNECTION or not connection.session.is_open
        ):
            self.drop_session(connection)
        if connection.session is None:
            from mailhop.deliver.smtp import SmtpSession  # noqa: PLC0415

            session = None
            try:
                session = SmtpSession(connection.account)
                session.open()
            except MailhopError as error:
                if session is not None:
                    session.close()
                connection.broken = error  # the server is unreachable: defer the rest
                return None
            connection.session, connection.sent = session, 0
        return connection.session

    def drop_session(self, connection: _Connection) -> None:
        """Settle the message in flight, then close the session (QUIT if it is open)."""
        self.complete(connection)
        session, connection.session = connection.session, None
        if session is not None:
            session.close()

    def reap_here(self, entry_id: str) -> None:
        """Free a dequeued entry's files in this process (a run without workers).

        A failure is reported in the run's ``unfreed``, as the parent's reaper
        reports one, and the run goes on: the entry is committed as dequeued (its
        ``ID.done``), and the next run's ``remove_orphans`` tries again.
        """
        try:
            self.spool.reap(entry_id)
        except OSError as error:
            self.tally.unfreed.append(f"{entry_id}: {error.strerror or error}")

    # --- recording outcomes -----------------------------------------------------------

    def settle(
        self,
        entry: Entry,
        states: dict[str, RecipientState],
        failure: MailhopError | None,
        claimed: Claimed,
        account: Account,
    ) -> bool:
        """Bounce what failed, then update or dequeue the entry (its lock held).

        Returns whether it was dequeued.
        """
        recipients = tuple(states[state.address] for state in entry.recipients)
        attempts = entry.attempts + 1
        expired = self.now - entry.queued_at >= account.queue_lifetime
        if expired:
            recipients = tuple(
                r._replace(status=RecipientStatus.FAILED)
                if r.status is RecipientStatus.PENDING
                else r
                for r in recipients
            )
        before: dict[str, RecipientStatus] = {}
        newly_failed: list[RecipientState] = []
        # Most attempts fail no one: the comparison with the record is for those that do.
        if any(r.status is RecipientStatus.FAILED for r in recipients):
            before = {state.address: state.status for state in entry.recipients}
            newly_failed = [
                r
                for r in recipients
                if r.status is RecipientStatus.FAILED
                and before[r.address] is not RecipientStatus.FAILED
            ]
        if newly_failed and not entry.is_bounce:
            # Only now: the DSN code (and email.utils, 20 ms to import) and the
            # header block are for the few entries that bounce.
            from mailhop.queue.bounce import FailedRecipient, read_header_block  # noqa: PLC0415

            failed = [
                FailedRecipient(
                    state=r,
                    reason="expired in the queue without being delivered"
                    if expired
                    and before[r.address] is RecipientStatus.PENDING
                    and r.last_code < 500
                    else "refused by the server",
                )
                for r in newly_failed
            ]
            self.bounce(entry, failed, read_header_block(claimed.message), account)
        if newly_failed:
            self.tally.bounced += len(newly_failed)
        if all(r.status is not RecipientStatus.PENDING for r in recipients):
            return self.dequeue(entry)
        delay = retry_delay(
            attempts, minimum=account.queue_retry_min, maximum=account.queue_retry_max
        )
        self.spool.update(
            entry._replace(
                recipients=recipients,
                attempts=attempts,
                next_attempt=self.now + delay,
                last_error=_describe(failure, recipients),
                delay_warned=self.warn_if_delayed(entry, recipients, claimed.message, account),
            )
        )
        crash_point("queue.deliver.after-update")
        self.tally.deferred += 1
        return False

    def dequeue(self, entry: Entry) -> bool:
        """Commit the removal of an entry with nothing pending (its lock held)."""
        self.spool.commit_removal(entry.id)
        crash_point("queue.deliver.after-remove")
        self.tally.delivered += 1
        return True

    def bounce(
        self, entry: Entry, failed: list[FailedRecipient], head: bytes, account: Account
    ) -> None:
        from mailhop.queue.bounce import build_dsn  # noqa: PLC0415

        notice = build_dsn(
            entry,
            failed,
            head,
            reporting_host=account.domain if account.domain != "localhost" else None,
            remote_host=account.host,
        )
        self.send_notice(entry, notice, account)
        crash_point("queue.deliver.after-bounce")
        if self.log is not None:
            names = ", ".join(item.state.address for item in failed)
            self.log(f"queue entry {entry.id}: bounced to <{entry.sender}> for {names}")

    def send_notice(self, entry: Entry, notice: bytes, account: Account) -> None:
        """Queue a notice to the entry's sender from the null sender (durably)."""
        from mailhop.queue.bounce import bounce_route  # noqa: PLC0415

        self.spool.enqueue(
            [notice],
            sender="",
            recipients=[(entry.sender, bounce_route(entry.sender, account.local_domains))],
            account=entry.account,
            config_file=entry.config_file,
            settings=entry.settings,
        )

    def warn_if_delayed(
        self,
        entry: Entry,
        recipients: Sequence[RecipientState],
        file: IO[bytes] | None,
        account: Account,
    ) -> bool:
        """Send the one delay warning an entry gets once it is old enough.

        ``file``: the entry's open message, if the caller has it. Returns the entry's
        new ``delay_warned``. The warning is queued before the record says so: a
        crash between the two can repeat a warning, never lose one.
        """
        warn_after = account.queue_delay_warning
        if entry.delay_warned or entry.is_bounce or not warn_after:
            return entry.delay_warned
        waiting = [r for r in recipients if r.status is RecipientStatus.PENDING]
        if not waiting or self.now - entry.queued_at < warn_after:
            return False
        # Only now: the DSN code and the header block are for the few late entries.
        from mailhop.queue.bounce import (  # noqa: PLC0415
            Action,
            FailedRecipient,
            build_dsn,
            read_header_block,
        )

        if file is None:
            with self.spool.open_message(entry) as message:
                head = read_header_block(message)
        else:
            head = read_header_block(file)
        notice = build_dsn(
            entry,
            [FailedRecipient(state=r, reason="not delivered yet, still trying") for r in waiting],
            head,
            action=Action.DELAYED,
            retry_until=entry.queued_at + account.queue_lifetime,
            reporting_host=account.domain if account.domain != "localhost" else None,
            remote_host=account.host,
            now=self.now,
        )
        self.send_notice(entry, notice, account)
        crash_point("queue.deliver.after-delay-warning")
        if self.log is not None:
            self.log(f"queue entry {entry.id}: delay warning sent to <{entry.sender}>")
        return True

    def defer_all(self, entry: Entry, error: MailhopError) -> None:
        try:
            with self.spool.lock(entry.id, wait=0):
                self.defer_locked(self.spool.load(entry.id), error)
        except (EntryBusyError, EntryNotFoundError, CorruptEntryError):
            return

    def defer_locked(
        self, entry: Entry, error: MailhopError, account: Account | None = None
    ) -> None:
        """Record a failed attempt that concerns the whole entry (no server reply).

        Such failures (connection refused, TLS trouble, configuration) never bounce:
        the mail is kept until the lifetime ends or the problem is fixed.
        """
        from mailhop.config.model import (  # noqa: PLC0415
            DEFAULT_QUEUE_RETRY_MAX_SECONDS,
            DEFAULT_QUEUE_RETRY_MIN_SECONDS,
        )

        minimum = account.queue_retry_min if account else DEFAULT_QUEUE_RETRY_MIN_SECONDS
        maximum = account.queue_retry_max if account else DEFAULT_QUEUE_RETRY_MAX_SECONDS
        attempts = entry.attempts + 1
        message = " ".join([str(error), *error.details])
        if isinstance(error, ConfigError):
            message += " (mail kept; fix the configuration)"
        elif classify(error) is not FailureKind.TEMPORARY:
            message += " (mail kept; fix this)"
        warned = entry.delay_warned
        if account is not None:
            warned = self.warn_if_delayed(entry, entry.recipients, None, account)
        self.spool.update(
            entry._replace(
                attempts=attempts,
                next_attempt=self.now + retry_delay(attempts, minimum=minimum, maximum=maximum),
                last_error=message,
                delay_warned=warned,
            )
        )
        self.tally.deferred += 1


def _wire_form(
    claimed: Claimed, relay: tuple[str, ...], capabilities: Capabilities
) -> contextlib.AbstractContextManager[tuple[Envelope, Outgoing]]:
    """The envelope and the content of a claimed entry as they go to this server."""
    envelope_type, outgoing_type = _wire_records()
    entry = claimed.entry
    envelope_needs_smtputf8 = not entry.sender.isascii() or any(
        not address.isascii() for address in relay
    )
    if entry.sent_as_stored and claimed.content is not None and not envelope_needs_smtputf8:
        # Decided at enqueue (mailhop.message.stored): reading and fitting the
        # message would hand back these very bytes, whatever the server offers.
        # Nothing to close: a nullcontext, not a generator's context manager (a
        # generator, its frame and its exit cost a few microseconds per message).
        return contextlib.nullcontext(
            (
                envelope_type(sender=entry.sender, recipients=relay),
                outgoing_type(chunks=(claimed.content,), size=len(claimed.content)),
            )
        )
    return _fitted_wire_form(claimed, relay, capabilities, envelope_needs_smtputf8)


@functools.cache
def _wire_records() -> tuple[type[Envelope], type[Outgoing]]:
    """The delivery stack's Envelope and Outgoing, imported on first use (this
    module does not load that stack) and then kept: an import statement run for
    every message costs about a microsecond, even of a module already loaded."""
    from mailhop.deliver.smtp import Envelope, Outgoing  # noqa: PLC0415

    return Envelope, Outgoing


def _is_refusal(error: MailhopError) -> TypeGuard[ServerReplyError]:
    """The server refused with a reply (the error carries its code and lines), as
    opposed to a failure without one; imported only on these failure paths."""
    from mailhop.deliver.errors import ServerReplyError  # noqa: PLC0415

    return isinstance(error, ServerReplyError)


@contextlib.contextmanager
def _fitted_wire_form(
    claimed: Claimed,
    relay: tuple[str, ...],
    capabilities: Capabilities,
    envelope_needs_smtputf8: bool,
) -> Iterator[tuple[Envelope, Outgoing]]:
    """The message read and fitted to the server (8BITMIME, SMTPUTF8), streamed."""
    from mailhop.deliver.smtp import Envelope, Outgoing  # noqa: PLC0415
    from mailhop.message import ServerCapabilities, prepare_transfer, read_message  # noqa: PLC0415

    entry = claimed.entry

    with (
        read_message(claimed.message, ignore_dots=True) as message,
        prepare_transfer(
            message,
            ServerCapabilities(
                eight_bit_mime=capabilities.eightbitmime, smtputf8=capabilities.smtputf8
            ),
            envelope_needs_smtputf8=envelope_needs_smtputf8,
        ) as transfer,
    ):
        yield (
            Envelope(sender=entry.sender, recipients=relay, smtputf8=transfer.smtputf8),
            Outgoing(
                chunks=transfer.chunks(),
                size=transfer.size,
                body_8bitmime=transfer.body_8bitmime,
            ),
        )


class _InFlight(NamedTuple):
    """A message whose end of data is sent and whose final reply is not read yet."""

    entry: Entry
    states: dict[str, RecipientState]
    relay: tuple[str, ...]
    pending_elsewhere: bool  # a recipient this server cannot deliver is still pending
    claimed: Claimed  # its lock and checked message, held until it is settled
    transaction: Transaction


class _Connection:
    """A worker's connection to one account's server, and the message in flight on it."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.session: SmtpSession | None = None
        self.sent = 0  # messages begun on this session
        self.broken: MailhopError | None = None  # the server is unreachable: defer the rest
        self.in_flight: _InFlight | None = None


def _record_outcome(states: dict[str, RecipientState], outcome: PerRecipientOutcome) -> None:
    """Per recipient: accepted -> DELIVERED, refused -> FAILED (5xx) or PENDING (4xx)."""
    from mailhop.deliver.smtp import reply_lines  # noqa: PLC0415

    final = outcome.acceptance.reply if outcome.acceptance else None
    # The one final reply covers every accepted recipient: its lines are made once.
    code, lines = (final.code, reply_lines(final)) if final else (250, ())
    for address in outcome.accepted:
        states[address] = _attempted(states[address], RecipientStatus.DELIVERED, code, lines)
    for address, reply in outcome.refused:
        states[address] = _attempted(
            states[address], _failed_if(reply.is_permanent), reply.code, reply_lines(reply)
        )


def _record_failure(
    states: dict[str, RecipientState],
    relay: Sequence[str],
    error: MailhopError,
    code: int,
    reply: Sequence[str],
) -> None:
    """A failure of the whole transaction: every relay recipient shares it."""
    status = _failed_if(classify(error) is FailureKind.PERMANENT)
    for address in relay:
        states[address] = _attempted(states[address], status, code, reply)


def _attempted(
    state: RecipientState, status: RecipientStatus, code: int, reply: Sequence[str]
) -> RecipientState:
    """A recipient after one more attempt that ended in ``status`` with that reply."""
    return state._replace(
        status=status,
        attempts=state.attempts + 1,
        last_code=code,
        last_reply=tuple(reply),
    )


def _failed_if(permanent: bool) -> RecipientStatus:
    """FAILED (bounced once) for a permanent refusal, else PENDING (retried alone)."""
    return RecipientStatus.FAILED if permanent else RecipientStatus.PENDING


def _describe(failure: MailhopError | None, recipients: tuple[RecipientState, ...]) -> str | None:
    if failure is not None:
        return " ".join([str(failure), *failure.details])
    for r in recipients:
        if r.status is RecipientStatus.PENDING and r.last_reply:
            return f"<{r.address}>: {' '.join(r.last_reply)}"
    return None
