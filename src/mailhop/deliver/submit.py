"""Submit one message through an account: rewrite, fit to the server, send.

This is the use case behind the sendmail personality (and, later, the queue runner
and ``mail``): given a resolved account, a message read from stdin, its envelope
sender and recipients, it rewrites the headers as the account says, opens an
``SmtpSession``, fits the message to what the server offers (8BITMIME, SMTPUTF8,
7-bit re-encoding) and sends it, all or nothing.
"""

from __future__ import annotations

from mailhop._records import NamedTuple
from mailhop.config import Account, HeaderPolicy
from mailhop.config import ToHeader as ConfigToHeader
from mailhop.message import (
    Address,
    FromHeader,
    HeaderSettings,
    Message,
    OptionalHeader,
    Recipients,
    ToHeader,
    rewrite_headers,
)

TYPE_CHECKING = False  # not typing's: the enqueue path never imports typing (CONVENTIONS)
if TYPE_CHECKING:
    # The SMTP stack (ssl, the protocol core) is imported only when a message is
    # really sent now: "queue always" enqueues without paying for it.
    from mailhop.deliver.smtp import Acceptance, Transcript


class Receipt(NamedTuple):
    """What the server said when it took the message."""

    acceptance: Acceptance
    message_id: str | None
    tls: bool
    authenticated_as: str | None


def header_settings(account: Account, *, full_name: str | None) -> HeaderSettings:
    """The account's header policy in the message layer's terms (``-F`` wins)."""
    return HeaderSettings(
        set_from_header=FromHeader(account.set_from_header.value),
        set_date_header=OptionalHeader.OFF
        if account.set_date_header is HeaderPolicy.OFF
        else OptionalHeader.AUTO,
        set_msgid_header=OptionalHeader.OFF
        if account.set_msgid_header is HeaderPolicy.OFF
        else OptionalHeader.AUTO,
        set_to_header={
            ConfigToHeader.OFF: ToHeader.OFF,
            ConfigToHeader.ON: ToHeader.ON,
            ConfigToHeader.UNDISCLOSED_RECIPIENTS: ToHeader.UNDISCLOSED_RECIPIENTS,
        }[account.set_to_header],
        remove_bcc_headers=account.remove_bcc_headers,
        from_full_name=account.from_full_name,
        full_name=full_name,
        domain=account.domain,
    )


def submit(
    account: Account,
    message: Message,
    *,
    sender: Address,
    recipients: Recipients,
    full_name: str | None = None,
    transcript: Transcript | None = None,
    warn: Transcript | None = None,
) -> Receipt:
    """Send ``message`` to every recipient through ``account``'s server, or to none.

    ``transcript`` receives the dialogue (``-v``, secrets redacted); ``warn`` the
    warnings a user must see (``tls_certcheck off``, a weak fingerprint).

    Raises:
        MailhopError: a DeliveryError, TransportError, MessageError or ConfigError,
            each with the exit code that tells temporary from permanent.
    """
    headers = rewrite_headers(
        message.headers,
        header_settings(account, full_name=full_name),
        envelope_from=sender,
        recipients=recipients,
        line_ending=message.line_ending,
        host=account.host,
    )
    message_id = headers.get("Message-ID")
    from mailhop.deliver.smtp import Envelope, Outgoing, SmtpSession  # noqa: PLC0415
    from mailhop.message import ServerCapabilities, prepare_transfer  # noqa: PLC0415

    envelope = Envelope(
        sender=sender.addr_spec,
        recipients=tuple(address.addr_spec for address in recipients.addresses),
        smtputf8=sender.needs_smtputf8 or recipients.needs_smtputf8,
    )
    with SmtpSession(account, transcript=transcript, warn=warn) as session:
        capabilities = session.open()
        with prepare_transfer(
            message.with_headers(headers),
            ServerCapabilities(
                eight_bit_mime=capabilities.eightbitmime, smtputf8=capabilities.smtputf8
            ),
            envelope_needs_smtputf8=envelope.smtputf8,
        ) as transfer:
            acceptance = session.send(
                envelope._replace(smtputf8=transfer.smtputf8),
                Outgoing(
                    chunks=transfer.chunks(),
                    size=transfer.size,
                    body_8bitmime=transfer.body_8bitmime,
                ),
            )
        return Receipt(
            acceptance=acceptance,
            message_id=message_id,
            tls=account.tls,
            authenticated_as=session.authenticated_as,
        )
