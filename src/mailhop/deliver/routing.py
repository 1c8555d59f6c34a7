"""Local or remote: which recipients this machine keeps, and the domain it mails as.

A recipient is local when it has no domain, or its domain is one of this host's
names (issue #5 item 1): ``localhost``, ``localhost.localdomain``, the host name, its
fully qualified name, the first line of ``/etc/mailname``, and the ``local_domains``
the configuration lists. The comparison ignores case and a trailing dot.

The FQDN needs the resolver; it is asked only when an address has a domain that the
cheap names do not settle, so ``echo hi | sendmail root`` from cron never waits on DNS.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Iterable

__all__ = ["MAILNAME_PATH", "LocalDomains", "mail_domain"]

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
    try:
        results = socket.getaddrinfo(host, None, flags=socket.AI_CANONNAME)
    except OSError:
        return host
    for result in results:
        if result[3]:
            return result[3]
    return host


class LocalDomains:
    """The set of domains that mean "this machine"."""

    def __init__(self, extra: Iterable[str] = (), *, mailname_path: str = MAILNAME_PATH) -> None:
        self.host = socket.gethostname()
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
