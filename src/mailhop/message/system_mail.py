"""Make system mail (cron, smartd, mdadm, logwatch) acceptable to a provider's relay.

Two header fixes, applied only to the copy that leaves through the relay (msmtp
issues #7, #54, #98, #146, #185 are these failures):

* ``qualify_recipients``: a bare local name in ``To:``/``Cc:`` (``root``) is not an
  address a provider accepts (RFC 5322 §3.4.1 wants ``local@domain``); it becomes
  ``root@<mail domain>``. Addresses that have a domain are left alone.
* ``rewrite_from``: a ``From:`` whose address is local (``root``, ``root@host``, as
  cron writes ``From: root (Cron Daemon)``) becomes the account's address, keeping
  the display name (cron's comment ``(Cron Daemon)`` counts as one), so providers
  that insist on the authenticated sender accept it. A ``Sender:`` that is local is
  made the account's address too; one with a real domain is left alone.

Only fields that change are rebuilt; every other byte stays as it came.
"""

from __future__ import annotations

from collections.abc import Callable

from mailhop._records import NamedTuple
from mailhop.message.addresses import Address, parse_address_list
from mailhop.message.errors import AddressError
from mailhop.message.headers import HeaderBlock, HeaderField
from mailhop.message.rewrite import encode_display_name

__all__ = ["SystemMailSettings", "fix_system_mail"]

_QUALIFIED_FIELDS = frozenset({"to", "cc"})

IsLocal = Callable[[str], bool]


class SystemMailSettings(NamedTuple):
    """What to fix. ``account_address`` None: no From rewrite possible."""

    mail_domain: str
    qualify_recipients: bool = True
    rewrite_from: bool = True
    account_address: str | None = None


def _mailbox(address: Address) -> str:
    if not address.display_name:
        return address.addr_spec
    return f"{encode_display_name(address.display_name)} <{address.addr_spec}>"


def _read(field: HeaderField) -> list[Address] | None:
    try:
        return parse_address_list(
            field.value, source=f"{field.name} header", from_command_line=False
        )
    except AddressError:
        return None  # not ours to repair: it leaves as it came


def _qualified(field: HeaderField, domain: str, line_ending: bytes) -> HeaderField:
    addresses = _read(field)
    if not addresses or all("@" in address.addr_spec for address in addresses):
        return field
    fixed = [
        address
        if "@" in address.addr_spec
        else address._replace(addr_spec=f"{address.addr_spec}@{domain}")
        for address in addresses
    ]
    return HeaderField.build(
        field.name, ", ".join(_mailbox(a) for a in fixed), line_ending=line_ending
    )


def _as_account(
    field: HeaderField, account_address: str, is_local: IsLocal, line_ending: bytes
) -> HeaderField:
    addresses = _read(field)
    if not addresses or len(addresses) != 1 or not is_local(addresses[0].addr_spec):
        return field
    name = addresses[0].display_name
    if not name:
        name = _comment_text(field.value)
    address = Address(addr_spec=account_address, display_name=name)
    return HeaderField.build(field.name, _mailbox(address), line_ending=line_ending)


def _comment_text(value: str) -> str:
    """The text of the first comment in ``value``: ``root (Cron Daemon)`` -> ``Cron Daemon``."""
    import re  # noqa: PLC0415 - only a local sender without a display name needs it

    comment = re.search(r"\(([^()]*)\)", value)
    return comment.group(1).strip() if comment else ""


def fix_system_mail(
    headers: HeaderBlock,
    settings: SystemMailSettings,
    *,
    is_local: IsLocal,
    line_ending: bytes = b"\n",
) -> HeaderBlock:
    """``headers`` with bare To/Cc names qualified and a local From/Sender rewritten."""
    fields: list[HeaderField] = []
    for field in headers:
        name = field.lower_name
        if settings.qualify_recipients and name in _QUALIFIED_FIELDS:
            fields.append(_qualified(field, settings.mail_domain, line_ending))
        elif settings.rewrite_from and settings.account_address and name in ("from", "sender"):
            fields.append(_as_account(field, settings.account_address, is_local, line_ending))
        else:
            fields.append(field)
    return HeaderBlock(fields)
