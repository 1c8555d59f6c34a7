"""Local or remote: which recipients this machine keeps, and the domain it mails as.

A recipient is local when it has no domain, or its domain is one of this host's
names (issue #5 item 1): ``localhost``, ``localhost.localdomain``, the host name, its
fully qualified name, the first line of ``/etc/mailname``, and the ``local_domains``
the configuration lists. The comparison ignores case and a trailing dot.

The FQDN needs the resolver; it is asked only when an address has a domain that the
cheap names do not settle, so ``echo hi | sendmail root`` from cron never waits on DNS.
"""

from __future__ import annotations

# The host name and the resolver come from the socket module's C core: ``socket``
# itself, a wrapper that turns its constants into enums, costs a queued message 4-5 ms
# of imports (its IntEnums, selectors, array), and nothing on that path opens a
# socket. ``socket.gethostname`` and ``socket.getaddrinfo`` are these functions; the
# wrapper only converts the family and type of each result, which are not read here.
import _socket
import functools
from collections.abc import Iterable

from mailhop._records import NamedTuple
from mailhop.deliver.errors import DeliveryError
from mailhop.errors import ExitCode, MailhopError
from mailhop.message import Address, Recipients

TYPE_CHECKING = False  # not typing's: the enqueue path never imports typing (CONVENTIONS)
if TYPE_CHECKING:
    from mailhop.config import Account
    from mailhop.deliver.aliases import Destination
    from mailhop.message import Message

__all__ = [
    "MAILNAME_PATH",
    "LocalDomains",
    "RoutedMail",
    "mail_domain",
    "route_and_deliver_locally",
]

MAILNAME_PATH = "/etc/mailname"
# Names every host answers to (RFC 2606 §2 reserves localhost; Debian adds the other).
ALWAYS_LOCAL = ("localhost", "localhost.localdomain")
# The first line of /etc/mailname is a host name: at most 253 octets (RFC 1035 §2.3.4).
MAX_MAILNAME_BYTES = 255


def _normal(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


def read_mailname(path: str = MAILNAME_PATH) -> str | None:
    """The first line of ``/etc/mailname``, or None when missing or empty."""
    try:
        with open(path, "rb") as file:
            line = file.readline(MAX_MAILNAME_BYTES)
    except OSError:
        return None
    name = line.decode("ascii", "replace").strip()
    return name if name and all(c.isalnum() or c in "-._" for c in name) else None


@functools.cache
def _fully_qualified(host: str) -> str:
    # An ASCII name is its own IDNA form (RFC 3490 §4.1 ToASCII): as bytes it spares every
    # sendmail process the idna codec (encodings.idna, stringprep, unicodedata) that
    # getaddrinfo loads to encode a str.
    name: str | bytes = host.encode("ascii") if host.isascii() else host
    try:
        results = _socket.getaddrinfo(name, None, flags=_socket.AI_CANONNAME)
    except OSError:
        return host
    for result in results:
        if result[3]:
            return result[3]
    return host


class LocalDomains:
    """The set of domains that mean "this machine"."""

    def __init__(self, extra: Iterable[str] = (), *, mailname_path: str = MAILNAME_PATH) -> None:
        self.host = _socket.gethostname()
        self.mailname = read_mailname(mailname_path)
        names = {*ALWAYS_LOCAL, self.host, *extra}
        if self.mailname:
            names.add(self.mailname)
        self._cheap = frozenset(_normal(name) for name in names if name)

    def __contains__(self, domain: object) -> bool:
        if not isinstance(domain, str):
            return False
        wanted = _normal(domain)
        if not wanted or wanted in self._cheap:
            return True
        return wanted == _normal(_fully_qualified(self.host))

    def is_local_address(self, address: str) -> bool:
        _, at, domain = address.rpartition("@")
        return not at or domain in self

    @property
    def names(self) -> frozenset[str]:
        return self._cheap | {_normal(_fully_qualified(self.host))}


def mail_domain(domains: LocalDomains) -> str:
    """The domain bare local names are qualified with: /etc/mailname, else the FQDN."""
    return domains.mailname or _fully_qualified(domains.host)


# ---------------------------------------------------------------- the routing step


class RoutedMail(NamedTuple):
    """What is left for the relay after local delivery: recipients, the envelope
    sender and the message with system-mail headers fixed (None recipients: nothing
    leaves the machine)."""

    remote: Recipients | None
    message: Message
    sender: Address
    local_deliveries: tuple[str, ...] = ()


def route_and_deliver_locally(
    account: Account,
    message: Message,
    *,
    sender: Address,
    recipients: Recipients,
    relay_problem: MailhopError | None = None,
) -> RoutedMail:
    """Expand aliases, deliver the local part now, and return the part for the relay.

    ``relay_problem`` is why there is no relay account (no configuration at all): if
    any destination is remote, nothing is delivered and exit 75 keeps the mail.

    Raises:
        AliasError, LocalDeliveryError, StoreError, DeliveryError (see their codes).
    """
    domains = LocalDomains(account.local_domains)
    addresses = [address.addr_spec for address in recipients.addresses]
    local: list[Destination] = []
    if any(domains.is_local_address(address) for address in addresses):
        local, remote = _expand_aliases(account, addresses, domains)
    else:
        # Both alias tables name local users only (aliases(5) applies to local
        # recipients, msmtp's file to bare names, which are local), so with no local
        # recipient there is nothing to expand or deliver here: the alias and local
        # delivery code is not even imported on cron's usual path to the relay.
        # Duplicates are dropped as expansion drops them: the first, ignoring case.
        first: dict[str, str] = {}
        for address in addresses:
            first.setdefault(address.lower(), address)
        remote = list(first.values())
    if remote and relay_problem is not None:
        raise DeliveryError(
            f"mail for {remote[0]} must go through a relay account, and none is "
            f"configured ({relay_problem}); nothing was delivered, keep the message and "
            "try again once an account exists (mailhop configure, or ~/.msmtprc)",
            exit_code=ExitCode.TEMPFAIL,
        )
    done: tuple[str, ...] = ()
    if local:
        from mailhop.deliver.local import (  # noqa: PLC0415 - only with local recipients
            LocalSettings,
            MailboxKind,
            deliver_locally,
        )

        settings = LocalSettings(
            spool_directory=account.mail_spool,
            mailbox=MailboxKind(account.local_mailbox),
            host=domains.mailname or domains.host,
        )
        deliveries = deliver_locally(message, local, sender=sender.addr_spec, settings=settings)
        done = tuple(delivery.where for delivery in deliveries)
    if not remote:
        return RoutedMail(remote=None, message=message, sender=sender, local_deliveries=done)
    from mailhop.message.system_mail import SystemMailSettings, fix_system_mail  # noqa: PLC0415

    relay_sender = sender
    if not sender.is_null and not sender.domain:
        # RFC 5321 §4.1.2: a reverse-path beyond this machine needs a domain. A bare
        # local name (``-f root``) is qualified with the mail domain, as Postfix's
        # append_at_myorigin does, so the server accepts it and a bounce finds it.
        relay_sender = sender._replace(addr_spec=f"{sender.addr_spec}@{mail_domain(domains)}")
    fixed = fix_system_mail(
        message.headers,
        SystemMailSettings(
            qualify_recipients=account.qualify_recipients,
            rewrite_from=account.rewrite_from,
            mail_domain=mail_domain(domains),
            account_address=account.from_address,
        ),
        is_local=domains.is_local_address,
        line_ending=message.line_ending,
    )
    by_spec = {address.addr_spec: address for address in recipients.addresses}
    relayed = tuple(by_spec.get(spec) or Address(addr_spec=spec) for spec in remote)
    return RoutedMail(
        remote=Recipients(addresses=relayed, hidden=recipients.hidden),
        message=message.with_headers(fixed),
        sender=relay_sender,
        local_deliveries=done,
    )


def _expand_aliases(
    account: Account, addresses: list[str], domains: LocalDomains
) -> tuple[list[Destination], list[str]]:
    """The local destinations and the remote addresses after both alias tables."""
    import os  # noqa: PLC0415

    from mailhop.deliver.aliases import (  # noqa: PLC0415 - only with local recipients
        AliasFormat,
        DestinationKind,
        expand,
        load_aliases,
    )

    system = None
    if account.system_aliases and os.path.exists(account.system_aliases):
        system = load_aliases(account.system_aliases)
    msmtp = load_aliases(account.aliases, AliasFormat.MSMTP) if account.aliases else None
    expansion = expand(addresses, system=system, msmtp=msmtp, is_local_domain=domains.__contains__)
    local = [d for d in expansion.destinations if d.kind is not DestinationKind.ADDRESS]
    remote = [d.value for d in expansion.destinations if d.kind is DestinationKind.ADDRESS]
    return local, remote
