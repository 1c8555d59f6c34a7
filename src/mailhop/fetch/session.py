"""The fetch driver: pump a POP3 or IMAP core over a ``mailhop.net`` transport.

Order of durable steps for every message (DESIGN.md §4 invariant 1):

1. stream the message into the destination, which returns once it is fsync'ed;
2. record it in the state file (``write_atomically``);
3. only then, and only with ``keep off``, mark it for deletion: IMAP ``UID STORE
   \\Deleted`` + ``UID EXPUNGE`` (or ``EXPUNGE``) at the end of the folder; POP3
   ``DELE``, which the server commits only at ``QUIT`` (RFC 1939 §6).

A crash between 1 and 2 leaves one message delivered and unrecorded: it is fetched
again (one duplicate). A crash after 2 leaves it recorded and not deleted: the next
run deletes it without fetching. Nothing is ever deleted that is not durable here.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

from mailhop.config.model import Auth, Protocol, TlsMode
from mailhop.errors import ExitCode
from mailhop.faults import crash_point
from mailhop.fetch.accounts import RetrievalAccount
from mailhop.fetch.destinations import Destination
from mailhop.fetch.errors import FetchAuthError, FetchProtocolError, FetchServerError
from mailhop.fetch.state import FolderState, StateFile, state_path
from mailhop.net.errors import NetTimeoutError, TLSUnavailableError
from mailhop.net.tls import TLSPolicy, client_policy
from mailhop.net.transport import Transport, open_connection
from mailhop.proto import imap, pop3, sasl
from mailhop.proto.errors import ProtocolError

__all__ = [
    "DEFAULT_IDLE_REISSUE_SECONDS",
    "RECEIVE_CHUNK_BYTES",
    "FolderResult",
    "ImapSession",
    "Pop3Session",
    "Progress",
    "StopRequested",
    "fetch_imap_folder",
    "fetch_pop3",
    "open_session",
]

# One read from the socket; bounds what the core buffers besides one line.
RECEIVE_CHUNK_BYTES = 256 * 1024
# RFC 2177 §3: servers may log out a client idle for 30 minutes (29 is the client's
# limit); re-issuing IDLE every 25 minutes keeps well inside it, with slack for NAT
# boxes that also drop quiet connections.
DEFAULT_IDLE_REISSUE_SECONDS = 25 * 60
# While idling, how often the watcher looks whether it was asked to stop: Ctrl-C
# should end ``fetch --idle`` within about a second, not at the next re-issue.
IDLE_STOP_CHECK_SECONDS = 1.0

Progress = Callable[[str, int, int], None]
"""(folder, messages done, messages to do)."""
StopRequested = Callable[[], bool]
"""True once the watcher should stop (checked between messages, and while idling)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class FolderResult:
    folder: str
    fetched: int = 0
    octets: int = 0
    deleted: int = 0
    would_fetch: tuple[str, ...] = ()  # --dry-run: what would be fetched


def _protocol_error(account: RetrievalAccount, error: ProtocolError) -> FetchProtocolError:
    return FetchProtocolError(f"{account.name}: {account.describe()}: {error}")


class _Session:
    """What the POP3 and IMAP sessions share: the transport and the pump."""

    core: Any

    def __init__(self, account: RetrievalAccount, password: str | None) -> None:
        self.account = account
        self.password = password
        self.policy: TLSPolicy | None = None
        if account.tls_mode is not TlsMode.OFF:
            self.policy = client_policy(account.tls_settings, account.endpoint.host)
        implicit = account.tls_mode is TlsMode.IMPLICIT
        self.transport: Transport = open_connection(
            account.endpoint,
            timeout=account.timeout,
            tls=self.policy if implicit else None,
        )

    def close(self) -> None:
        self.transport.close()

    def flush(self) -> None:
        data = self.core.data_to_send()
        if data:
            self.transport.send_all(data, timeout=self.account.timeout)

    def next_event(self, timeout: float | None = None) -> Any:  # noqa: ANN401 - POP3 or IMAP event
        """The next event of the core, reading from the network as needed."""
        try:
            while True:
                event = self.core.next_event()
                if event is not self.need_data:
                    self.flush()
                    return event
                self.flush()
                data = self.transport.receive(
                    RECEIVE_CHUNK_BYTES, timeout=timeout or self.account.timeout
                )
                self.core.receive_data(data)
        except ProtocolError as error:
            self.close()
            raise _protocol_error(self.account, error) from error

    def send(self, command: object) -> None:
        try:
            self.core.send(command)
        except ProtocolError as error:
            self.close()
            raise _protocol_error(self.account, error) from error
        self.flush()

    def start_tls(self) -> None:
        assert self.policy is not None  # noqa: S101 - STARTTLS only when TLS is on
        self.transport.start_tls(self.policy, timeout=self.account.timeout)
        try:
            self.core.start_tls_done()
        except ProtocolError as error:
            self.close()
            raise _protocol_error(self.account, error) from error

    need_data: object = None

    def _no_tls(self, what: str) -> TLSUnavailableError:
        self.close()
        return TLSUnavailableError(
            f"{self.account.name}: {self.account.describe()} {what}; not continuing without"
            " TLS (check tls_starttls, or use the implicit TLS port 995/993)",
            exit_code=ExitCode.UNAVAILABLE,
        )

    def mechanism(self, offered: frozenset[str]) -> sasl.Mechanism | None:
        """The SASL mechanism to use, or None for USER/PASS or LOGIN."""
        account = self.account.account
        password = self.password or ""
        if account.auth in (Auth.XOAUTH2, Auth.OAUTHBEARER):
            if account.auth is Auth.XOAUTH2:
                return sasl.XOAuth2(self.account.user, password)
            return sasl.OAuthBearer(
                self.account.user,
                password,
                host=self.account.endpoint.host,
                port=self.account.endpoint.port,
            )
        name = account.auth.mechanism
        if name is not None:
            return sasl.password_mechanism(name, self.account.user, password)
        try:
            chosen = sasl.choose_mechanism(
                offered,
                tls_active=self.core.tls_active,
                allow_plaintext=account.allow_plaintext_auth,
            )
        except sasl.NoSuitableMechanismError:
            return None
        return sasl.password_mechanism(chosen, self.account.user, password)


# --- POP3 -----------------------------------------------------------------------------


class Pop3Session(_Session):
    need_data = pop3.NEED_DATA

    def __init__(self, account: RetrievalAccount, password: str | None) -> None:
        super().__init__(account, password)
        self.core = pop3.Pop3Client(
            tls_active=account.tls_mode is TlsMode.IMPLICIT,
            allow_plaintext_auth=account.account.allow_plaintext_auth,
        )
        # The selected mailbox's size as the server last told it (None outside a
        # selected mailbox), and whether it grew since the SELECT: an EXISTS may come
        # with any response (RFC 3501 §7.3.1), also in the middle of a fetch pass,
        # after its search; the server does not repeat it when IDLE starts.
        self.known_size: int | None = None
        self.new_mail_announced = False
        greeting = self.next_event()
        if not isinstance(greeting, pop3.Greeting) or not greeting.ok:
            self.close()
            raise FetchServerError(f"{account.name}: the POP3 server refused the connection")
        if account.tls_mode is TlsMode.STARTTLS:
            capabilities = self.capabilities()
            if "STLS" not in capabilities:
                raise self._no_tls("does not offer STLS")
            self.send(pop3.Stls())
            event = self.next_event()
            if not isinstance(event, pop3.TLSUpgradeRequired):
                raise self._no_tls("refused STLS")
            self.start_tls()
        self.login()

    def command(self, command: pop3.Command) -> pop3.Pop3Event:
        self.send(command)
        return self.next_event()  # type: ignore[no-any-return]

    def capabilities(self) -> frozenset[str]:
        event = self.command(pop3.Capa())
        if not isinstance(event, pop3.Listing):
            return frozenset()
        return frozenset(line.decode("ascii", "replace").upper() for line in event.lines)

    def login(self) -> None:
        capabilities = self.capabilities()
        offered = frozenset(
            word for line in capabilities if line.startswith("SASL ") for word in line.split()[1:]
        )
        mechanism = self.mechanism(offered)
        if mechanism is not None and (offered or self.account.account.auth.mechanism):
            event = self.command(pop3.Auth(mechanism=mechanism))
        else:
            event = self.command(pop3.User(name=self.account.user))
            if isinstance(event, pop3.Response) and event.ok:
                event = self.command(pop3.Pass(password=self.password or ""))
        if not isinstance(event, pop3.Response) or not event.ok:
            self.close()
            text = event.text if isinstance(event, pop3.Response) else "no answer"
            raise FetchAuthError(
                f"{self.account.name}: the POP3 server refused the login of"
                f" {self.account.user}: {text}"
            )

    def uidl(self) -> list[tuple[int, str]]:
        event = self.command(pop3.Uidl())
        if not isinstance(event, pop3.Listing):
            self.close()
            raise FetchServerError(f"{self.account.name}: the POP3 server refused UIDL")
        try:
            return [pop3.parse_uidl_line(line) for line in event.lines]
        except ProtocolError as error:
            self.close()
            raise _protocol_error(self.account, error) from error

    def retrieve(self, number: int) -> Iterator[bytes]:
        """The message's bytes (LF endings) as they arrive."""
        event = self.command(pop3.Retr(number=number))
        while not isinstance(event, pop3.EndOfMessage):
            if isinstance(event, pop3.MessageChunk):
                yield event.data
            elif isinstance(event, pop3.Response) and not event.ok:
                raise FetchServerError(f"{self.account.name}: RETR {number} refused: {event.text}")
            event = self.next_event()

    def quit(self) -> bool:
        event = self.command(pop3.Quit())
        self.close()
        return isinstance(event, pop3.Response) and event.ok


def _deliver(destination: Destination, chunks: Iterator[bytes]) -> int:
    """Deliver, then make sure the protocol stream was read to its end."""
    size = 0

    def counted() -> Iterator[bytes]:
        nonlocal size
        for chunk in chunks:
            size += len(chunk)
            yield chunk

    stream = counted()
    destination.deliver(stream)
    for _rest in stream:  # a destination that stopped early (an MDA that exited)
        pass
    return size


def fetch_pop3(
    session: Pop3Session,
    destination: Destination,
    state_file: StateFile,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    stop: StopRequested | None = None,
) -> FolderResult:
    account = session.account
    listing = session.uidl()
    state = state_file.load()
    on_server = {uid for _number, uid in listing}
    known = state.uidls & on_server
    todo = [(number, uid) for number, uid in listing if uid not in known]
    if dry_run:
        session.quit()
        return FolderResult(folder="INBOX", would_fetch=tuple(uid for _n, uid in todo))
    if known != state.uidls:
        state = dataclasses.replace(state, uidls=frozenset(known))
        state_file.save(state)
    fetched = octets = 0
    for number, uid in todo:
        if stop is not None and stop():
            break  # what is fetched so far is durable and recorded
        octets += _deliver(destination, session.retrieve(number))
        crash_point("fetch.delivered")
        state = dataclasses.replace(state, uidls=state.uidls | {uid})
        state_file.save(state)
        crash_point("fetch.recorded")
        fetched += 1
        if progress is not None:
            progress("INBOX", fetched, len(todo))
    deleted = 0
    if not account.keep:
        for number, uid in listing:
            if uid in state.uidls:
                event = session.command(pop3.Dele(number=number))
                if isinstance(event, pop3.Response) and event.ok:
                    deleted += 1
        crash_point("fetch.before-quit")
    if not session.quit() and deleted:
        raise FetchServerError(
            f"{account.name}: QUIT failed; the server may not have deleted the messages"
        )
    return FolderResult(folder="INBOX", fetched=fetched, octets=octets, deleted=deleted)


# --- IMAP -----------------------------------------------------------------------------


class ImapSession(_Session):
    need_data = imap.NEED_DATA

    def __init__(self, account: RetrievalAccount, password: str | None) -> None:
        super().__init__(account, password)
        starttls = account.tls_mode is TlsMode.STARTTLS
        self.core = imap.ImapClient(
            tls_active=account.tls_mode is TlsMode.IMPLICIT,
            starttls_required=starttls,
            allow_plaintext_auth=account.account.allow_plaintext_auth,
        )
        # The selected mailbox's size as the server last told it (None outside a
        # selected mailbox), and whether it grew since the SELECT: an EXISTS may come
        # with any response (RFC 3501 §7.3.1), also in the middle of a fetch pass,
        # after its search; the server does not repeat it when IDLE starts.
        self.known_size: int | None = None
        self.new_mail_announced = False
        greeting = self.next_event()
        if not isinstance(greeting, imap.Greeting) or greeting.status != "OK":
            self.close()
            raise FetchServerError(f"{account.name}: the IMAP server refused the connection")
        if starttls:
            if not self.core.capabilities:
                self.command(imap.Capability())
            if "STARTTLS" not in self.core.capabilities:
                raise self._no_tls("does not offer STARTTLS")
            self.send(imap.StartTLS())
            event = self.next_event_skipping_untagged()
            if not isinstance(event, imap.TLSUpgradeRequired):
                raise self._no_tls("refused STARTTLS")
            self.start_tls()
        self.login()

    def next_event(self, timeout: float | None = None) -> Any:  # noqa: ANN401 - as the base
        event = super().next_event(timeout)
        if self.known_size is not None:
            if isinstance(event, imap.MailboxSize):
                # EXISTS counts messages; only a growth is new mail (an EXPUNGE
                # already lowered the count we compare with, RFC 3501 §7.4.1).
                if event.exists > self.known_size:
                    self.new_mail_announced = True
                self.known_size = event.exists
            elif isinstance(event, imap.Expunged):
                self.known_size = max(self.known_size - 1, 0)
        return event

    def next_event_skipping_untagged(self, timeout: float | None = None) -> imap.ImapEvent:
        while True:
            event = self.next_event(timeout)
            if event is None or isinstance(
                event, imap.UntaggedStatus | imap.CapabilityList | imap.MailboxSize
                | imap.Expunged | imap.SearchResult
            ):  # fmt: skip
                continue
            return event  # type: ignore[no-any-return]

    def command(self, command: imap.Command) -> imap.Completed:
        self.send(command)
        event = self.next_event_skipping_untagged()
        if not isinstance(event, imap.Completed):
            self.close()
            raise FetchProtocolError(f"{self.account.name}: unexpected IMAP response {event}")
        return event

    def login(self) -> None:
        if not self.core.capabilities:
            self.command(imap.Capability())
        offered = frozenset(
            name.removeprefix("AUTH=")
            for name in self.core.capabilities
            if name.startswith("AUTH=")
        )
        mechanism = self.mechanism(offered)
        if mechanism is not None:
            completed = self.command(imap.Authenticate(mechanism=mechanism))
        else:
            completed = self.command(
                imap.Login(user=self.account.user, password=self.password or "")
            )
        if not completed.ok:
            self.close()
            raise FetchAuthError(
                f"{self.account.name}: the IMAP server refused the login of"
                f" {self.account.user}: {completed.text}"
            )
        if not self.core.capabilities:
            self.command(imap.Capability())

    def select(self, folder: str, *, read_only: bool) -> imap.MailboxStatus:
        self.known_size = None  # the SELECT's own EXISTS is the size, not new mail
        completed = self.command(imap.Select(mailbox=folder, read_only=read_only))
        if not completed.ok or self.core.mailbox is None:
            raise FetchServerError(
                f"{self.account.name}: cannot open folder {folder!r}: {completed.text}"
            )
        mailbox: imap.MailboxStatus = self.core.mailbox
        self.known_size = mailbox.exists
        self.new_mail_announced = False
        return mailbox

    def search_all(self) -> list[int]:
        self.send(imap.UidSearch())
        uids: list[int] = []
        while True:
            event = self.next_event()
            if isinstance(event, imap.SearchResult):
                uids.extend(event.numbers)
            elif isinstance(event, imap.Completed):
                if not event.ok:
                    raise FetchServerError(f"{self.account.name}: UID SEARCH failed: {event.text}")
                return sorted(uids)

    def fetch_body(self, uid: int) -> Iterator[bytes]:
        """The raw bytes of message ``uid`` (CRLF endings); empty if it vanished."""
        self.send(imap.UidFetch(uids=str(uid)))
        while True:
            event = self.next_event()
            if isinstance(event, imap.BodyChunk):
                yield event.data
            elif isinstance(event, imap.Completed):
                if not event.ok:
                    raise FetchServerError(
                        f"{self.account.name}: UID FETCH {uid} failed: {event.text}"
                    )
                return

    def delete(self, uids: list[int]) -> int:
        if not uids:
            return 0
        sequence = _sequence_set(uids)
        completed = self.command(imap.UidStore(uids=sequence, flags=("\\Deleted",)))
        if not completed.ok:
            raise FetchServerError(f"{self.account.name}: cannot mark messages deleted")
        crash_point("fetch.after-store")
        if "UIDPLUS" in self.core.capabilities:
            completed = self.command(imap.UidExpunge(uids=sequence))
        else:
            completed = self.command(imap.Expunge())
        if not completed.ok:
            raise FetchServerError(f"{self.account.name}: EXPUNGE failed: {completed.text}")
        return len(uids)

    def logout(self) -> None:
        try:
            self.command(imap.Logout())
        finally:
            self.close()

    def idle(self, seconds: float, stop: StopRequested | None = None) -> bool:
        """IDLE up to ``seconds``; True if new mail (EXISTS) arrived (RFC 2177).

        The caller checks ``new_mail_announced`` first: mail announced during the
        fetch pass is not announced again here. Returns soon after ``stop()`` turns
        true, ending the IDLE with DONE.
        """
        self.send(imap.Idle())
        # A message that arrived after the fetch's search but before IDLE is announced
        # by an EXISTS the server sends with (or before) its "+ idling": it counts, or
        # that mail would wait until the next re-issue, many minutes later.
        while not isinstance(event := self.next_event(), imap.Continuation):
            if event is not None and not isinstance(
                event, imap.MailboxSize | imap.UntaggedStatus | imap.CapabilityList | imap.Expunged
            ):
                raise FetchServerError(f"{self.account.name}: the server refused IDLE")
        deadline = time.monotonic() + seconds
        while not self.new_mail_announced and not (stop is not None and stop()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                self.next_event(min(remaining, IDLE_STOP_CHECK_SECONDS))
            except NetTimeoutError:
                continue  # nothing arrived in this slice
        self.send(imap.Done())
        while not isinstance(self.next_event(), imap.Completed):
            pass
        return self.new_mail_announced


def _sequence_set(uids: list[int]) -> str:
    """``1:3,7`` for [1, 2, 3, 7]: compact, so the command line stays short."""
    ranges: list[str] = []
    start = previous = uids[0]
    for uid in [*uids[1:], None]:
        if uid is not None and uid == previous + 1:
            previous = uid
            continue
        ranges.append(str(start) if start == previous else f"{start}:{previous}")
        if uid is not None:
            start = previous = uid
    return ",".join(ranges)


def fetch_imap_folder(
    session: ImapSession,
    folder: str,
    destination: Destination,
    state_file: StateFile,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    stop: StopRequested | None = None,
) -> FolderResult:
    account = session.account
    mailbox = session.select(folder, read_only=account.keep or dry_run)
    state = state_file.load()
    if state.uidvalidity != mailbox.uidvalidity:
        # RFC 3501 §2.3.1.1: a new UIDVALIDITY invalidates every UID we recorded.
        state = FolderState(uidvalidity=mailbox.uidvalidity)
    uids = session.search_all() if mailbox.exists else []
    todo = [uid for uid in uids if uid > state.last_uid]
    if dry_run:
        return FolderResult(folder=folder, would_fetch=tuple(str(uid) for uid in todo))
    fetched = octets = 0
    for uid in todo:
        if stop is not None and stop():
            break  # what is fetched so far is durable and recorded
        octets += _deliver(destination, session.fetch_body(uid))
        crash_point("fetch.delivered")
        state = dataclasses.replace(state, last_uid=uid)
        state_file.save(state)
        crash_point("fetch.recorded")
        fetched += 1
        if progress is not None:
            progress(folder, fetched, len(todo))
    deleted = 0
    if not account.keep:
        deleted = session.delete([uid for uid in uids if uid <= state.last_uid])
    return FolderResult(folder=folder, fetched=fetched, octets=octets, deleted=deleted)


def folder_state_file(account: RetrievalAccount, folder: str, directory: str) -> StateFile:
    key = "\0".join(
        (account.protocol.value, account.endpoint.host, str(account.endpoint.port),
         account.user, folder)
    )  # fmt: skip
    return StateFile(state_path(directory, key, f"{account.name}-{folder}"))


def open_session(account: RetrievalAccount, password: str | None) -> Pop3Session | ImapSession:
    if account.protocol is Protocol.POP3:
        return Pop3Session(account, password)
    return ImapSession(account, password)
