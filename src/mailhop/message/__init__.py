"""message layer of mailhop (see DESIGN.md §2): what sendmail does to a message.

Read stdin, find the recipients, rewrite the headers, fit the message to the server::

    with read_message(sys.stdin.buffer, ignore_dots=options.ignore_dots) as message:
        recipients = collect_recipients(
            options.recipients, message.headers, read_headers=options.read_recipients
        )
        sender = parse_envelope_sender(options.envelope_from or account_from)
        headers = rewrite_headers(
            message.headers, settings, envelope_from=sender, recipients=recipients,
            line_ending=message.line_ending, host=account_host,
        )
        with prepare_transfer(
            message.with_headers(headers),
            ServerCapabilities(eight_bit_mime=..., smtputf8=...),
            envelope_needs_smtputf8=sender.needs_smtputf8 or recipients.needs_smtputf8,
        ) as transfer:
            # MAIL FROM:<sender> [SIZE=transfer.size] [BODY=8BITMIME] [SMTPUTF8]
            for chunk in transfer.chunks(): ...

Only the standard library is used, and only the light parts of it on this path: the
``email`` package is imported when a message must be re-encoded, ``tempfile`` when a
body outgrows memory. ``transfer`` (fitting a message to a server) loads on first
use (``mailhop._lazy``): a queued message is not sent by this process.
"""

from __future__ import annotations

from mailhop._lazy import lazy_exports
from mailhop.message.addresses import Address, parse_address_list, parse_envelope_sender
from mailhop.message.body import BodyScan, Spool
from mailhop.message.errors import (
    AddressError,
    HeaderBlockTooLargeError,
    MalformedMessageError,
    MessageError,
    ServerCapabilityError,
    UnsafeValueError,
)
from mailhop.message.headers import HeaderBlock, HeaderField
from mailhop.message.reader import MAX_HEADER_BLOCK_BYTES, Message, read_message
from mailhop.message.recipients import Recipients, collect_recipients, header_sender
from mailhop.message.rewrite import (
    FromHeader,
    HeaderSettings,
    OptionalHeader,
    ToHeader,
    rewrite_headers,
)

TYPE_CHECKING = False  # not typing's: the enqueue path never imports typing (CONVENTIONS)
if TYPE_CHECKING:
    from mailhop.message.transfer import (
        ServerCapabilities,
        Transfer,
        TransferForm,
        prepare_transfer,
    )

__all__ = [
    "MAX_HEADER_BLOCK_BYTES",
    "Address",
    "AddressError",
    "BodyScan",
    "FromHeader",
    "HeaderBlock",
    "HeaderBlockTooLargeError",
    "HeaderField",
    "HeaderSettings",
    "MalformedMessageError",
    "Message",
    "MessageError",
    "OptionalHeader",
    "Recipients",
    "ServerCapabilities",
    "ServerCapabilityError",
    "Spool",
    "ToHeader",
    "Transfer",
    "TransferForm",
    "UnsafeValueError",
    "collect_recipients",
    "header_sender",
    "parse_address_list",
    "parse_envelope_sender",
    "prepare_transfer",
    "read_message",
    "rewrite_headers",
]

# Hidden from mypy, which then checks every imported name against the imports above.
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(
        __name__,
        dict.fromkeys(
            ("ServerCapabilities", "Transfer", "TransferForm", "prepare_transfer"),
            "mailhop.message.transfer",
        ),
    )
