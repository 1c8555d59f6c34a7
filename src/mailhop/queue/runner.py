"""The queue runner: deliver what is due, per recipient, over few reused connections.

One run: remove leftovers of interrupted enqueues, read every record (an entry that
fails its integrity check is quarantined and reported, never sent), keep those due,
group them by account and deliver each group over at most ``MAX_CONNECTIONS``
connections, many messages per connection (MAIL/RCPT/DATA pipelined, RFC 2920).

Per entry, under its lock (any number of runners may run at once; a locked entry is
skipped, so each message is sent by one runner at a time):

1. re-read the record (another runner may just have delivered it);
2. send to the pending relay recipients with ``SmtpSession.send_per_recipient``;
3. accepted recipients become DELIVERED and are never sent again; a 5xx recipient
   FAILED (bounced once); a 4xx recipient stays PENDING and is retried alone;
4. bounces are queued (durably) before the original's record changes, so a crash
   between the two can only duplicate a bounce, never lose one;
5. an entry with nothing pending is removed (record first: the commit point).

Duplicate window (documented in docs/queue.md): a crash after the server's final
250 and before the record is updated or removed resends that message to the
recipients of that attempt. Nothing is ever removed before the 250.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from mailhop.errors import ConfigError, MailhopError
from mailhop.faults import crash_point
from mailhop.queue.bounce import Action, FailedRecipient, bounce_route, build_dsn, header_block
from mailhop.queue.errors import CorruptEntryError, EntryBusyError, EntryNotFoundError
from mailhop.queue.policy import FailureKind, classify, retry_delay
from mailhop.queue.spool import (
    Entry,
    RecipientState,
    RecipientStatus,
    Route,
    Spool,
)

if TYPE_CHECKING:  # without importing the delivery stack at module load
    from mailhop.config import Account
    from mailhop.deliver.smtp import SmtpSession

# Parallel connections per account: enough to hide round trips, few enough not to
# look like abuse to a provider (Postfix's default smtp_destination_concurrency_limit
# is 20 for its own MX traffic; submission servers throttle far lower).
MAX_CONNECTIONS = 4
# Messages sent over one connection before it is closed and reopened; providers cap
# transactions per session (Gmail: about 100), and a reopen bounds any session state.
MAX_MESSAGES_PER_CONNECTION = 100
# How much of a queued message is read to find the header block a notice returns
# (the notice returns at most bounce.MAX_RETURNED_HEADER_BYTES of it).
MAX_HEADER_READ_BYTES = 64 * 1024
# ``--watch``: pause between two runs, and the bound on how long it goes on.
DEFAULT_WATCH_INTERVAL_SECONDS = 60.0

Log = Callable[[str], None]
AccountResolver = Callable[[Entry], "Account"]
# Local delivery (issue #5) plugs in here: given an entry and its LOCAL recipients,
# deliver them and return the ones delivered. None: local recipients stay pending.
LocalDelivery = Callable[[Entry, Sequence[RecipientState], bytes], Sequence[str]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunReport:
    """What one run did (``mailhop queue run`` prints it with ``-v``)."""

    delivered: int  # entries fully done and removed
    deferred: int  # entries kept for a retry
    bounced: int  # recipients failed permanently in this run
    busy: int  # entries skipped because another runner held them
    quarantined: tuple[str, ...]
    problems: tuple[str, ...]  # configuration and credential problems, loudly


@dataclasses.dataclass
class _Tally:
    delivered: int = 0
    deferred: int = 0
    bounced: int = 0
    busy: int = 0
    quarantined: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


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
) -> RunReport:
    """Deliver every due entry (``force``: every entry not on hold; ``only``: those ids)."""
    now = time.time() if now is None else now
    tally = _Tally()
    spool.remove_orphans(now=now)
    due: list[Entry] = []
    for entry_id in only if only is not None else spool.ids():
        try:
            entry = spool.load(entry_id)
        except EntryNotFoundError:
            continue
        except CorruptEntryError as error:
            _quarantine(spool, entry_id, str(error), tally, log)
            continue
        if entry.held or (not force and entry.next_attempt > now):
            continue
        due.append(entry)
    groups: dict[tuple[object, ...], list[Entry]] = {}
    for entry in due:
        groups.setdefault((entry.account, entry.config_file, entry.settings), []).append(entry)
    worker = _Worker(spool, tally, force=force, now=now, local_delivery=local_delivery, log=log)
    threads: list[threading.Thread] = []
    for entries in groups.values():
        try:
            account = resolve_account(entries[0])
        except MailhopError as error:
            # Configuration problems keep the mail and are reported, never bounced.
            problem = f"cannot deliver {len(entries)} queued message(s): {error}"
            with tally.lock:
                tally.problems.append(problem)
            for entry in entries:
                worker.defer_all(entry, error)
            continue
        slices = max(1, min(connections, len(entries)))
        for index in range(slices):
            part = entries[index::slices]
            thread = threading.Thread(target=worker.deliver_batch, args=(account, part))
            thread.start()
            threads.append(thread)
    for thread in threads:
        thread.join()
    spool.sync_entries()  # one directory fsync covers every removal of this run
    return RunReport(
        delivered=tally.delivered,
        deferred=tally.deferred,
        bounced=tally.bounced,
        busy=tally.busy,
        quarantined=tuple(tally.quarantined),
        problems=tuple(tally.problems),
    )


def _quarantine(spool: Spool, entry_id: str, reason: str, tally: _Tally, log: Log | None) -> None:
    try:
        with spool.lock(entry_id, wait=0):
            spool.quarantine(entry_id, reason)
    except EntryBusyError:
        return  # a runner holds it; it will be looked at again
    except EntryNotFoundError:
        spool.quarantine(entry_id, reason)  # a record without its message
    with tally.lock:
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
        local_delivery: LocalDelivery | None,
        log: Log | None,
    ) -> None:
        self.spool = spool
        self.tally = tally
        self.force = force
        self.now = now
        self.local_delivery = local_delivery
        self.log = log

    # --- one connection, many messages ------------------------------------------------

    def deliver_batch(self, account: Account, entries: Sequence[Entry]) -> None:
        from mailhop.deliver.smtp import SmtpSession  # noqa: PLC0415

        session: SmtpSession | None = None
        sent_on_session = 0
        broken: MailhopError | None = None  # the server is unreachable: defer the rest
        try:
            for queued in entries:
                try:
                    with self.spool.lock(queued.id, wait=0):
                        entry = self.spool.load(queued.id)  # fresh: another runner may have run
                        if entry.held or (not self.force and entry.next_attempt > self.now):
                            continue
                        if broken is not None:
                            self.defer_locked(entry, broken, account)
                            continue
                        if session is None or sent_on_session >= MAX_MESSAGES_PER_CONNECTION:
                            if session is not None:
                                session.close()
                                session = None
                            try:
                                session = SmtpSession(account)
                                session.open()
                                sent_on_session = 0
                            except MailhopError as error:
                                if session is not None:
                                    session.close()
                                session = None
                                broken = error
                                self.defer_locked(entry, error, account)
                                continue
                        keep = self.deliver_entry(entry, session, account)
                        sent_on_session += 1
                        if not keep:
                            session.close()
                            session = None
                except EntryBusyError:
                    self.tally.add(busy=1)
                except EntryNotFoundError:
                    continue
                except CorruptEntryError as error:
                    _quarantine(self.spool, queued.id, str(error), self.tally, self.log)
        finally:
            if session is not None:
                session.close()

    def deliver_entry(self, entry: Entry, session: SmtpSession, account: Account) -> bool:
        """Attempt one entry (its lock held); False when the session is no longer usable."""
        from mailhop.deliver.errors import ServerReplyError  # noqa: PLC0415
        from mailhop.deliver.smtp import Envelope, Outgoing, reply_lines  # noqa: PLC0415
        from mailhop.message import ServerCapabilities, prepare_transfer, read_message  # noqa: PLC0415

        with self.spool.open_message(entry) as file:
            head = header_block(file.read(MAX_HEADER_READ_BYTES))
            file.seek(0)
            states = {state.address: state for state in entry.recipients}
            if self.local_delivery is not None:
                local = [s for s in entry.pending if s.route is Route.LOCAL]
                if local:
                    delivered = set(self.local_delivery(entry, local, file.read()))
                    file.seek(0)
                    for address in delivered:
                        states[address] = dataclasses.replace(
                            states[address], status=RecipientStatus.DELIVERED
                        )
            relay = [s.address for s in entry.pending if s.route is Route.RELAY]
            session_usable = True
            failure: MailhopError | None = None
            if relay:
                try:
                    with read_message(file, ignore_dots=True) as message:
                        capabilities = session.capabilities
                        smtputf8 = not entry.sender.isascii() or any(
                            not address.isascii() for address in relay
                        )
                        with prepare_transfer(
                            message,
                            ServerCapabilities(
                                eight_bit_mime=capabilities.eightbitmime,
                                smtputf8=capabilities.smtputf8,
                            ),
                            envelope_needs_smtputf8=smtputf8,
                        ) as transfer:
                            crash_point("queue.deliver.before-send")
                            outcome = session.send_per_recipient(
                                Envelope(
                                    sender=entry.sender,
                                    recipients=tuple(relay),
                                    smtputf8=transfer.smtputf8,
                                ),
                                Outgoing(
                                    chunks=transfer.chunks(),
                                    size=transfer.size,
                                    body_8bitmime=transfer.body_8bitmime,
                                ),
                            )
                    crash_point("queue.deliver.after-250")
                    final = outcome.acceptance.reply if outcome.acceptance else None
                    for address in outcome.accepted:
                        states[address] = dataclasses.replace(
                            states[address],
                            status=RecipientStatus.DELIVERED,
                            attempts=states[address].attempts + 1,
                            last_code=final.code if final else 250,
                            last_reply=reply_lines(final) if final else (),
                        )
                    for address, reply in outcome.refused:
                        states[address] = dataclasses.replace(
                            states[address],
                            status=RecipientStatus.FAILED
                            if reply.is_permanent
                            else RecipientStatus.PENDING,
                            attempts=states[address].attempts + 1,
                            last_code=reply.code,
                            last_reply=reply_lines(reply),
                        )
                except ServerReplyError as error:
                    failure = error
                    kind = classify(error)
                    for address in relay:
                        states[address] = dataclasses.replace(
                            states[address],
                            status=RecipientStatus.FAILED
                            if kind is FailureKind.PERMANENT
                            else RecipientStatus.PENDING,
                            attempts=states[address].attempts + 1,
                            last_code=error.code,
                            last_reply=error.lines,
                        )
                    session_usable = session.is_open
                except MailhopError as error:
                    failure = error
                    kind = classify(error)
                    session_usable = False
                    for address in relay:
                        states[address] = dataclasses.replace(
                            states[address],
                            status=RecipientStatus.FAILED
                            if kind is FailureKind.PERMANENT
                            else RecipientStatus.PENDING,
                            attempts=states[address].attempts + 1,
                            last_code=0,
                            last_reply=(str(error),),
                        )
            self.settle(entry, states, failure, head, account)
        return session_usable

    # --- recording outcomes -----------------------------------------------------------

    def settle(
        self,
        entry: Entry,
        states: dict[str, RecipientState],
        failure: MailhopError | None,
        head: bytes,
        account: Account,
    ) -> None:
        """Bounce what failed, then update or remove the entry (its lock held)."""
        before = {state.address: state.status for state in entry.recipients}
        recipients = tuple(states[state.address] for state in entry.recipients)
        attempts = entry.attempts + 1
        expired = self.now - entry.queued_at >= account.queue_lifetime
        if expired:
            recipients = tuple(
                dataclasses.replace(r, status=RecipientStatus.FAILED)
                if r.status is RecipientStatus.PENDING
                else r
                for r in recipients
            )
        newly_failed = [
            FailedRecipient(
                state=r,
                reason="expired in the queue without being delivered"
                if expired and before[r.address] is RecipientStatus.PENDING and r.last_code < 500
                else "refused by the server",
            )
            for r in recipients
            if r.status is RecipientStatus.FAILED
            and before[r.address] is not RecipientStatus.FAILED
        ]
        if newly_failed and not entry.is_bounce:
            self.bounce(entry, newly_failed, head, account)
        if newly_failed:
            self.tally.add(bounced=len(newly_failed))
        if all(r.status is not RecipientStatus.PENDING for r in recipients):
            self.spool.remove(entry.id, sync=False)
            crash_point("queue.deliver.after-remove")
            self.tally.add(delivered=1)
            return
        delay = retry_delay(
            attempts, minimum=account.queue_retry_min, maximum=account.queue_retry_max
        )
        self.spool.update(
            dataclasses.replace(
                entry,
                recipients=recipients,
                attempts=attempts,
                next_attempt=self.now + delay,
                last_error=_describe(failure, recipients),
                delay_warned=self.warn_if_delayed(entry, recipients, head, account),
            )
        )
        crash_point("queue.deliver.after-update")
        self.tally.add(deferred=1)

    def bounce(
        self, entry: Entry, failed: list[FailedRecipient], head: bytes, account: Account
    ) -> None:
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
        head: bytes | None,
        account: Account,
    ) -> bool:
        """Send the one delay warning an entry gets once it is old enough.

        Returns the entry's new ``delay_warned``. The warning is queued before the
        record says so: a crash between the two can repeat a warning, never lose one.
        """
        warn_after = account.queue_delay_warning
        if entry.delay_warned or entry.is_bounce or not warn_after:
            return entry.delay_warned
        waiting = [r for r in recipients if r.status is RecipientStatus.PENDING]
        if not waiting or self.now - entry.queued_at < warn_after:
            return False
        if head is None:
            with self.spool.open_message(entry) as file:
                head = header_block(file.read(MAX_HEADER_READ_BYTES))
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
            dataclasses.replace(
                entry,
                attempts=attempts,
                next_attempt=self.now + retry_delay(attempts, minimum=minimum, maximum=maximum),
                last_error=message,
                delay_warned=warned,
            )
        )
        self.tally.add(deferred=1)


def _describe(failure: MailhopError | None, recipients: tuple[RecipientState, ...]) -> str | None:
    if failure is not None:
        return " ".join([str(failure), *failure.details])
    for r in recipients:
        if r.status is RecipientStatus.PENDING and r.last_reply:
            return f"<{r.address}>: {' '.join(r.last_reply)}"
    return None
