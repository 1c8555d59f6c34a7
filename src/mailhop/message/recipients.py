"""Who gets the message: command-line recipients, plus the headers' with ``-t``.

``-t`` follows Postfix and msmtp rather than classic sendmail: recipients found in the
headers are *added to* the argument recipients. When the message has been resent (any
``Resent-*`` field), only the ``Resent-To/Cc/Bcc`` of the first (most recent) resent
block count, since the original ``To``/``Cc`` already received it (RFC 5322 §3.6.6).

A resent block is the run of consecutive ``Resent-*`` fields that starts at the first
one; it ends at the first other field or when a ``Resent-*`` name repeats (the next
block begins, as when two resends are stacked with no trace field between them).

Bcc recipients are remembered as *hidden*, so that header rewriting never writes
them into a ``To:`` (msmtp's ``set_to_header on`` does; we do not).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mailhop._records import NamedTuple
from mailhop.message.addresses import Address, parse_address_list
from mailhop.message.errors import AddressError
from mailhop.message.headers import HeaderBlock, HeaderField

__all__ = ["Recipients", "collect_recipients", "first_resent_block", "header_sender"]

_RECIPIENT_FIELDS = frozenset({"to", "cc", "bcc"})
_RESENT_RECIPIENT_FIELDS = frozenset({"resent-to", "resent-cc", "resent-bcc"})
_HIDDEN_FIELDS = frozenset({"bcc", "resent-bcc"})


class Recipients(NamedTuple):
    """The envelope recipients in order, without exact duplicates.

    ``hidden`` holds the lower-cased ``addr_spec`` of every address named in a ``Bcc``
    or ``Resent-Bcc`` field of the message; those are never written into a header.
    """

    addresses: tuple[Address, ...]
    hidden: frozenset[str] = frozenset()

    @property
    def visible(self) -> tuple[Address, ...]:
        return tuple(a for a in self.addresses if a.addr_spec.lower() not in self.hidden)

    @property
    def needs_smtputf8(self) -> bool:
        return any(address.needs_smtputf8 for address in self.addresses)

    def __bool__(self) -> bool:
        return bool(self.addresses)


def first_resent_block(headers: HeaderBlock) -> list[HeaderField]:
    """The fields of the first resent block, or ``[]`` if the message was not resent."""
    block: list[HeaderField] = []
    seen: set[str] = set()
    for field in headers:
        name = field.lower_name
        if not name.startswith("resent-"):
            if block:
                break
            continue
        if name in seen:
            break
        seen.add(name)
        block.append(field)
    return block


def _addresses_of(fields: Iterable[HeaderField]) -> list[Address]:
    found: list[Address] = []
    for field in fields:
        found.extend(
            parse_address_list(field.value, source=f"{field.name} header", from_command_line=False)
        )
    return found


def collect_recipients(
    arguments: Sequence[str], headers: HeaderBlock | None = None, *, read_headers: bool = False
) -> Recipients:
    """Recipients from ``arguments`` and, with ``read_headers`` (``-t``), the headers.

    Each argument is parsed like a ``To:`` value; an unusable one raises AddressError
    with exit 64, an unusable header address (with ``-t``) exit 65. ``headers`` is
    also used without ``-t``, to learn which recipients are Bcc and must stay hidden.
    """
    addresses: list[Address] = []
    for argument in arguments:
        addresses.extend(parse_address_list(argument, source="recipient"))
    hidden: set[str] = set()
    if headers is not None:
        resent = first_resent_block(headers)
        if read_headers:
            if resent:
                chosen = [f for f in resent if f.lower_name in _RESENT_RECIPIENT_FIELDS]
            else:
                chosen = [f for f in headers if f.lower_name in _RECIPIENT_FIELDS]
            addresses.extend(_addresses_of(chosen))
        for field in headers:
            if field.lower_name not in _HIDDEN_FIELDS:
                continue
            try:
                hidden.update(a.addr_spec.lower() for a in _addresses_of([field]))
            except AddressError:
                if read_headers:
                    raise
                # Without -t a Bcc field we cannot read only matters for hiding; a
                # token-wise fallback hides anything that looks like an address in it.
                hidden.update(word.strip("<>,;").lower() for word in field.value.split())
    unique: dict[str, Address] = {}
    for address in addresses:
        unique.setdefault(address.addr_spec, address)
    return Recipients(addresses=tuple(unique.values()), hidden=frozenset(hidden))


def header_sender(headers: HeaderBlock) -> Address | None:
    """The author address for ``--read-envelope-from`` and ``%F``.

    The first ``From`` or ``Resent-From`` field, whichever comes first (msmtp 1.8.26),
    and its first mailbox. None when there is neither; AddressError (65) when it
    cannot be read.
    """
    for field in headers:
        if field.lower_name in ("from", "resent-from"):
            addresses = _addresses_of([field])
            return addresses[0] if addresses else None
    return None
