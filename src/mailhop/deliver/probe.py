"""Probe a submission server: which port and TLS mode work, what it offers.

``mailhop configure`` tries implicit TLS on 465 first, then STARTTLS on 587 (RFC
8314 §3.3 prefers implicit TLS for submission), each through the same
``SmtpSession.open(authenticate=False)`` the sendmail path uses, so a probe that
succeeds means a real send will get as far as AUTH. Nothing is logged in: probing
never sends a password.
"""

from __future__ import annotations

import dataclasses

from mailhop.config import Account, TlsMode
from mailhop.deliver.smtp import SmtpSession
from mailhop.errors import MailhopError
from mailhop.net.tls import CertificateInfo
from mailhop.proto.smtp.capabilities import Capabilities

# The two submission setups RFC 8314 §3.3 and RFC 6409 §3.1 define, best first.
SUBMISSION_CANDIDATES: tuple[tuple[int, TlsMode], ...] = (
    (465, TlsMode.IMPLICIT),
    (587, TlsMode.STARTTLS),
)
# A probe is interactive (someone waits at configure): a server that does not greet
# within this is not the one to configure.
DEFAULT_PROBE_TIMEOUT_SECONDS = 10


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProbeResult:
    """One working setup: where, how, and what the server said about itself."""

    host: str
    port: int
    tls_mode: TlsMode
    capabilities: Capabilities
    certificate: CertificateInfo | None


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProbeFailure:
    """One setup that did not work, with the error a user can read."""

    host: str
    port: int
    tls_mode: TlsMode
    error: MailhopError


def probe_account(base: Account, host: str, port: int, tls_mode: TlsMode) -> ProbeResult:
    """Connect to ``host:port`` in ``tls_mode`` with ``base``'s TLS trust settings.

    Raises:
        MailhopError: the connection, TLS or greeting failed (with its exit code).
    """
    account = base._replace(
        host=host,
        port=port,
        tls=tls_mode is not TlsMode.OFF,
        tls_starttls=tls_mode is TlsMode.STARTTLS,
    )
    with SmtpSession(account) as session:
        capabilities = session.open(authenticate=False)
        certificate = session.transport.info.describe_certificate()
    return ProbeResult(
        host=host, port=port, tls_mode=tls_mode, capabilities=capabilities, certificate=certificate
    )


def probe(
    base: Account,
    host: str,
    candidates: tuple[tuple[int, TlsMode], ...] = SUBMISSION_CANDIDATES,
) -> tuple[ProbeResult | None, tuple[ProbeFailure, ...]]:
    """Try ``candidates`` in order; return the first that works and what failed before."""
    failures: list[ProbeFailure] = []
    for port, mode in candidates:
        try:
            return probe_account(base, host, port, mode), tuple(failures)
        except MailhopError as error:
            failures.append(ProbeFailure(host=host, port=port, tls_mode=mode, error=error))
    return None, tuple(failures)
