"""queue layer of mailhop (see DESIGN.md §2): the durable outgoing queue.

Public API::

    queue_directory(account=None, override=None) -> str
    enqueue(chunks, *, sender, recipients, queue_dir, account=None, config_file=None,
            settings=(), message_id=None) -> Entry
    Spool(root)                     the spool itself (spool.py)
    run(spool, ...) -> RunReport    deliver what is due (runner.py)
    kick(queue_dir, config_file=)   start a detached runner, never blocking (kick.py)

``enqueue`` is what other delivery code (local delivery, issue #5) calls to keep a
message it could not deliver now: ``recipients`` are ``(address, Route)`` pairs, so
an entry can hold local recipients (``Route.LOCAL``) as well as relayed ones.
Modules: ``spool`` (layout, records, locks), ``policy`` (retry), ``runner``,
``bounce`` (RFC 3464 DSN), ``errors``, ``location`` (where the queue lives) and
``kick``.

The spool's names load on first use (``mailhop._lazy``): importing
``mailhop.queue.location`` or ``mailhop.queue.kick`` runs this file first, and a
successful send, which only asks whether older mail waits, must not pay for the
spool's records, checksums and JSON.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailhop._lazy import lazy_exports
from mailhop.queue.location import queue_directory

TYPE_CHECKING = False  # not typing's: the enqueue path never imports typing (CONVENTIONS)
if TYPE_CHECKING:
    from mailhop.queue.spool import (
        Entry,
        RecipientState,
        RecipientStatus,
        Route,
        Spool,
    )

__all__ = [
    "Entry",
    "RecipientState",
    "RecipientStatus",
    "Route",
    "Spool",
    "enqueue",
    "queue_directory",
]


def enqueue(
    chunks: Iterable[bytes],
    *,
    sender: str,
    recipients: Iterable[tuple[str, Route]],
    queue_dir: str,
    account: str | None = None,
    config_file: str | None = None,
    settings: tuple[tuple[str, str], ...] = (),
    message_id: str | None = None,
    first_failure: str | None = None,
    retry_after: float = 0.0,
) -> Entry:
    """Store one message durably in ``queue_dir``; on return it survives a crash.

    Raises:
        UsageError: an envelope value holds CR, LF or NUL (64; nothing written).
        StoreError: the disk refused (no space: 75; nothing left behind).
    """
    from mailhop.queue.spool import Spool  # noqa: PLC0415 - see the module docstring

    return Spool(queue_dir).enqueue(
        chunks,
        sender=sender,
        recipients=recipients,
        account=account,
        config_file=config_file,
        settings=settings,
        message_id=message_id,
        first_failure=first_failure,
        retry_after=retry_after,
    )


# Hidden from mypy, which then checks every imported name against the imports above.
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(
        __name__,
        dict.fromkeys(
            ("Entry", "RecipientState", "RecipientStatus", "Route", "Spool"), "mailhop.queue.spool"
        ),
    )
