"""Fetch every folder of a retrieval account once, or keep watching with IDLE.

``fetch_account`` is one pass: connect, log in, fetch each folder, log out, and a
summary. ``watch`` runs one thread per (account, folder): fetch, then IMAP IDLE
(re-issued every ``DEFAULT_IDLE_REISSUE_SECONDS``), fetch again on new mail;
without IDLE (or for POP3) it polls at an interval; any failure reconnects after
an exponential backoff.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence

from mailhop.config.model import Protocol
from mailhop.errors import MailhopError
from mailhop.fetch.accounts import RetrievalAccount
from mailhop.fetch.destinations import open_destination
from mailhop.fetch.session import (
    DEFAULT_IDLE_REISSUE_SECONDS,
    FolderResult,
    ImapSession,
    Pop3Session,
    Progress,
    fetch_imap_folder,
    fetch_pop3,
    folder_state_file,
    open_session,
)

__all__ = [
    "DEFAULT_POLL_SECONDS",
    "MAX_BACKOFF_SECONDS",
    "AccountSummary",
    "fetch_account",
    "watch",
]

# Polling interval without IDLE: fetchmail's and getmail's usual 5 minutes.
DEFAULT_POLL_SECONDS = 300.0
# Reconnect backoff after a failure: start small (a server restart), double, cap at
# 10 minutes so a long outage costs few connection attempts.
MIN_BACKOFF_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 600.0
# After ``stop`` is set, how long ``watch`` waits for each folder's thread to finish
# the message in hand and log out. An idling thread notices within a second; one in
# the middle of a message needs that message's transfer. A thread still busy after
# this is abandoned: what it was writing is not yet recorded, so it is fetched again
# next time (a duplicate at worst, never a loss).
STOP_GRACE_SECONDS = 30.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class AccountSummary:
    name: str
    folders: tuple[FolderResult, ...]

    @property
    def fetched(self) -> int:
        return sum(folder.fetched for folder in self.folders)

    def line(self, *, dry_run: bool = False) -> str:
        if dry_run:
            items = [f"{f.folder}: {len(f.would_fetch)}" for f in self.folders]
            return f"{self.name}: would fetch " + ", ".join(items)
        octets = sum(folder.octets for folder in self.folders)
        deleted = sum(folder.deleted for folder in self.folders)
        text = f"{self.name}: {self.fetched} message(s) fetched ({octets} octets)"
        return text + (f", {deleted} deleted on the server" if deleted else "")


def fetch_account(
    account: RetrievalAccount,
    password: str | None,
    state_directory: str,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> AccountSummary:
    destination = open_destination(account.delivery)
    session = open_session(account, password)
    results: list[FolderResult] = []
    try:
        if isinstance(session, Pop3Session):
            state = folder_state_file(account, "INBOX", state_directory)
            results.append(
                fetch_pop3(session, destination, state, dry_run=dry_run, progress=progress)
            )
        else:
            for folder in account.folders:
                state = folder_state_file(account, folder, state_directory)
                results.append(
                    fetch_imap_folder(
                        session, folder, destination, state, dry_run=dry_run, progress=progress
                    )
                )
            session.logout()
    finally:
        session.close()
    return AccountSummary(name=account.name, folders=tuple(results))


def watch(
    accounts: Sequence[tuple[RetrievalAccount, str | None]],
    state_directory: str,
    *,
    report: Callable[[str], None],
    stop: threading.Event,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    idle_seconds: float = DEFAULT_IDLE_REISSUE_SECONDS,
) -> None:
    """Watch every folder of every account at once until ``stop`` is set."""
    threads = []
    for account, password in accounts:
        for folder in account.folders:
            thread = threading.Thread(
                target=_watch_folder,
                args=(account, password, folder, state_directory),
                kwargs={
                    "report": report,
                    "stop": stop,
                    "poll_seconds": poll_seconds,
                    "idle_seconds": idle_seconds,
                },
                name=f"fetch-{account.name}-{folder}",
                daemon=True,
            )
            thread.start()
            threads.append(thread)
    for thread in threads:
        while thread.is_alive() and not stop.is_set():
            thread.join(1.0)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.0))


def _watch_folder(
    account: RetrievalAccount,
    password: str | None,
    folder: str,
    state_directory: str,
    *,
    report: Callable[[str], None],
    stop: threading.Event,
    poll_seconds: float,
    idle_seconds: float,
) -> None:
    backoff = MIN_BACKOFF_SECONDS
    destination = open_destination(account.delivery)
    state = folder_state_file(account, folder, state_directory)
    while not stop.is_set():
        try:
            session = open_session(account, password)
            try:
                while True:
                    if isinstance(session, Pop3Session):
                        result = fetch_pop3(session, destination, state, stop=stop.is_set)
                    else:
                        result = fetch_imap_folder(
                            session, folder, destination, state, stop=stop.is_set
                        )
                    if result.fetched:
                        report(f"{account.name}/{folder}: {result.fetched} message(s) fetched")
                    backoff = MIN_BACKOFF_SECONDS
                    if stop.is_set():
                        _log_out_quietly(session)
                        break
                    if (
                        account.protocol is Protocol.IMAP
                        and isinstance(session, ImapSession)
                        and "IDLE" in session.core.capabilities
                    ):
                        if session.new_mail_announced:
                            continue  # announced during the pass: fetch it before idling
                        session.idle(idle_seconds, stop.is_set)
                        if stop.is_set():
                            _log_out_quietly(session)
                            break
                    else:
                        if isinstance(session, ImapSession):
                            session.logout()
                        stop.wait(poll_seconds)
                        break  # POP3 shows new mail only in a new session
            finally:
                session.close()
        except MailhopError as error:
            report(f"{account.name}/{folder}: {error}; retrying in {backoff:g} seconds")
            stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)


def _log_out_quietly(session: ImapSession | Pop3Session) -> None:
    """End an IMAP session politely when stopping; a failure there changes nothing."""
    if isinstance(session, ImapSession):
        # The stored mail is durable and recorded; the connection closes anyway.
        with contextlib.suppress(MailhopError):
            session.logout()
