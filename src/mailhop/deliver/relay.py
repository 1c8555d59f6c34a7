"""The relay step between the sendmail command line and the server: queue modes.

``queue off`` is msmtp: deliver now, the exit code tells the result.
``queue fallback`` (the default) delivers now and, on a temporary failure (75: 4xx,
connection refused, timeout), stores the message durably and reports success.
``queue always`` stores durably and returns at once; a detached runner delivers.

Exit 0 therefore always means "at the next hop, or durably in the queue" (DESIGN.md
§4 invariant 1). Headers are rewritten once, here, so the queued copy carries the
Message-ID and Date it will keep through every retry.
"""

from __future__ import annotations

from mailhop._records import NamedTuple
from mailhop.config import Account, QueueMode
from mailhop.deliver.submit import Receipt, header_settings, submit
from mailhop.errors import ExitCode, MailhopError
from mailhop.message import Address, Message, Recipients, rewrite_headers

TYPE_CHECKING = False  # not typing's: the enqueue path never imports typing (CONVENTIONS)
if TYPE_CHECKING:
    from mailhop.deliver.smtp import Transcript


class RelayOutcome(NamedTuple):
    """Sent now (``receipt``), or queued (``queue_id``, with the error that deferred it)."""

    receipt: Receipt | None = None
    queue_id: str | None = None
    deferred_by: MailhopError | None = None
    message_id: str | None = None


def relay(
    account: Account,
    message: Message,
    *,
    sender: Address,
    recipients: Recipients,
    full_name: str | None = None,
    transcript: Transcript | None = None,
    warn: Transcript | None = None,
    config_file: str | None = None,
    settings: tuple[tuple[str, str], ...] = (),
    queue_dir: str | None = None,
) -> RelayOutcome:
    """Deliver or queue ``message`` as ``account.queue`` says.

    ``config_file`` and ``settings`` are recorded in a queue entry so the runner
    resolves the same account later.

    Raises:
        MailhopError: delivery failed and the mode does not queue this failure
            (``off``, or a permanent failure), or the queue could not store it
            (StoreError: 75 when the disk is full).
    """
    headers = rewrite_headers(
        message.headers,
        header_settings(account, full_name=full_name),
        envelope_from=sender,
        recipients=recipients,
        line_ending=message.line_ending,
        host=account.host,
    )
    prepared = message.with_headers(headers)
    message_id = headers.get("Message-ID")
    if account.queue is QueueMode.ALWAYS:
        return _enqueue(
            account, prepared, sender, recipients, config_file, settings, queue_dir, None
        )
    try:
        receipt = submit(
            account,
            prepared,
            sender=sender,
            recipients=recipients,
            full_name=full_name,
            transcript=transcript,
            warn=warn,
        )
    except MailhopError as error:
        if account.queue is QueueMode.OFF or error.exit_code != ExitCode.TEMPFAIL:
            raise
        outcome = _enqueue(
            account, prepared, sender, recipients, config_file, settings, queue_dir, error
        )
        return outcome._replace(deferred_by=error)
    _kick_if_waiting(account, config_file, queue_dir)
    return RelayOutcome(receipt=receipt, message_id=message_id)


def _enqueue(  # noqa: PLR0917 - a private helper of relay(), called twice
    account: Account,
    message: Message,
    sender: Address,
    recipients: Recipients,
    config_file: str | None,
    settings: tuple[tuple[str, str], ...],
    queue_dir: str | None,
    failure: MailhopError | None,
) -> RelayOutcome:
    from mailhop.queue import Route, enqueue, queue_directory  # noqa: PLC0415
    from mailhop.queue.kick import kick  # noqa: PLC0415

    directory = queue_directory(account, queue_dir)
    host_given = any(name == "host" and value for name, value in settings)
    message_id = message.headers.get("Message-ID")
    entry = enqueue(
        message.chunks(),
        sender=sender.addr_spec,
        recipients=[(address.addr_spec, Route.RELAY) for address in recipients.addresses],
        queue_dir=directory,
        account=None if host_given else account.name,
        config_file=config_file,
        settings=settings,
        message_id=message_id,
        first_failure=" ".join([str(failure), *failure.details]) if failure else None,
        # The direct attempt just failed: the next is due after the minimum backoff.
        retry_after=account.queue_retry_min if failure else 0.0,
    )
    if failure is None:
        kick(directory, config_file=config_file)
    return RelayOutcome(queue_id=entry.id, message_id=message_id)


def _kick_if_waiting(account: Account, config_file: str | None, queue_dir: str | None) -> None:
    """After a delivery worked, start a runner if older mail is waiting."""
    import os  # noqa: PLC0415

    from mailhop.queue.kick import kick  # noqa: PLC0415
    from mailhop.queue.location import queue_directory  # noqa: PLC0415

    directory = queue_directory(account, queue_dir)
    try:
        waiting = any(name.endswith(".json") for name in os.listdir(f"{directory}/entries"))
    except OSError:
        return
    if waiting:
        kick(directory, config_file=config_file)
