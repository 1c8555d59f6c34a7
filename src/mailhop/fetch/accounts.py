"""Retrieval accounts: a configuration ``Account`` with protocol pop3 or imap, made usable.

The grammar is msmtprc's (``account NAME``, ``protocol imap``, ``host``, ``port``,
``tls``, ``tls_starttls``, ``user``, ``password``/``passwordeval``/keyring/netrc,
``folders``, ``keep``, ``delivery``), so the password sources and the permission
check of the file are the same as for sending.

TLS is secure by default (RFC 8314 §5): unlike msmtp's ``tls off`` default for SMTP,
a retrieval account without a ``tls`` line uses TLS; plaintext only when the file
says ``tls off``. Without ``tls_starttls`` the port decides: 995/993 (or no port)
mean implicit TLS, any other port STARTTLS, which is then required.
"""

from __future__ import annotations

import dataclasses
import os

from mailhop.config.model import Account, Protocol, TlsMode
from mailhop.fetch.errors import FetchConfigError
from mailhop.net.tls import TLSSettings, account_tls_settings
from mailhop.net.transport import Endpoint

__all__ = [
    "DEFAULT_PORTS",
    "RETRIEVAL_PROTOCOLS",
    "RetrievalAccount",
    "default_state_directory",
    "retrieval_account",
]

RETRIEVAL_PROTOCOLS = (Protocol.POP3, Protocol.IMAP)
# RFC 1939 §3 (110), RFC 3501 §2.1 (143), RFC 8314 §7 (995, 993).
DEFAULT_PORTS = {
    (Protocol.POP3, TlsMode.IMPLICIT): 995,
    (Protocol.POP3, TlsMode.STARTTLS): 110,
    (Protocol.POP3, TlsMode.OFF): 110,
    (Protocol.IMAP, TlsMode.IMPLICIT): 993,
    (Protocol.IMAP, TlsMode.STARTTLS): 143,
    (Protocol.IMAP, TlsMode.OFF): 143,
}
_IMPLICIT_TLS_PORTS = frozenset({993, 995})
# Where the fetch state lives for root (FHS §5.8: state data of applications).
SYSTEM_STATE_DIRECTORY = "/var/lib/mailhop/fetch"
# Seconds per network operation when the account sets no ``timeout``: a mail server
# on the Internet answers a command in seconds; a stuck one must not hang cron.
DEFAULT_FETCH_TIMEOUT = 120.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class RetrievalAccount:
    """Everything ``mailhop fetch`` needs about one account."""

    account: Account
    protocol: Protocol
    endpoint: Endpoint
    tls_mode: TlsMode
    tls_settings: TLSSettings
    user: str
    folders: tuple[str, ...]
    keep: bool
    delivery: str
    timeout: float

    @property
    def name(self) -> str:
        return self.account.name

    def describe(self) -> str:
        return f"{self.protocol.value}://{self.user}@{self.endpoint.host}:{self.endpoint.port}"


def default_state_directory(environ: dict[str, str] | None = None) -> str:
    """``/var/lib/mailhop/fetch`` for root, ``$XDG_STATE_HOME/mailhop/fetch`` otherwise."""
    environ = dict(os.environ) if environ is None else environ
    if os.geteuid() == 0:
        return SYSTEM_STATE_DIRECTORY
    state = environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(state, "mailhop", "fetch")


def retrieval_account(account: Account) -> RetrievalAccount:
    """Check and complete a retrieval account.

    Raises:
        FetchConfigError: not pop3/imap, or host, user or delivery missing.
    """
    if account.protocol not in RETRIEVAL_PROTOCOLS:
        raise FetchConfigError(
            f"{account.where}: protocol {account.protocol.value} is not a retrieval protocol;"
            " set 'protocol pop3' or 'protocol imap' in that account"
        )
    if not account.host:
        raise FetchConfigError(f"{account.where}: host not set")
    if not account.user:
        raise FetchConfigError(f"{account.where}: user not set (the login on the server)")
    if not account.delivery:
        raise FetchConfigError(
            f"{account.where}: delivery not set; add e.g. 'delivery maildir:~/Maildir'"
        )
    tls = account.tls if "tls" in account.explicit else True
    if not tls:
        mode = TlsMode.OFF
    elif "tls_starttls" in account.explicit:
        mode = TlsMode.STARTTLS if account.tls_starttls else TlsMode.IMPLICIT
    elif account.port is None or account.port in _IMPLICIT_TLS_PORTS:
        mode = TlsMode.IMPLICIT
    else:
        mode = TlsMode.STARTTLS
    port = account.port or DEFAULT_PORTS[(account.protocol, mode)]
    folders = account.folders if account.protocol is Protocol.IMAP else ("INBOX",)
    return RetrievalAccount(
        account=account,
        protocol=account.protocol,
        endpoint=Endpoint(
            host=account.host,
            port=port,
            source_ip=account.source_ip,
            proxy_host=account.proxy_host,
            proxy_port=account.proxy_port or 1080,
        ),
        tls_mode=mode,
        tls_settings=account_tls_settings(account),
        user=account.user,
        folders=folders,
        keep=account.keep,
        delivery=account.delivery,
        timeout=float(account.timeout) if account.timeout else DEFAULT_FETCH_TIMEOUT,
    )
