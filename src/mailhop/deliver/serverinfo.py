"""What an account's server offers: greeting, TLS, certificate, capabilities.

``mailhop serverinfo`` and ``sendmail -S`` print this in msmtp's ``--serverinfo``
layout, plus what msmtp cannot show: the capabilities seen *before* STARTTLS next to
those after it, which is how a user sees that AUTH is only offered over TLS. The
session stops before AUTH: serverinfo never logs in.
"""

from __future__ import annotations

import datetime

from mailhop.config import Account
from mailhop.deliver.smtp import SmtpSession, Transcript, reply_lines
from mailhop.net.tls import CertificateInfo
from mailhop.proto.smtp.capabilities import Capabilities

MEBIBYTE = 1024 * 1024


def server_report(account: Account, *, warn: Transcript | None = None) -> str:
    """Connect to ``account``'s server and describe it (msmtp ``--serverinfo``).

    Raises:
        MailhopError: the connection, TLS or greeting failed (with its exit code).
    """
    with SmtpSession(account, warn=warn) as session:
        capabilities = session.open(authenticate=False)
        info = session.transport.info
        certificate = info.describe_certificate()
        greeting = session.greeting
    where = account.socket or f"{account.host} ({info.peer}), port {account.port}"
    lines = [f"SMTP server at {where}:"]
    if greeting is not None:
        lines += [f"    {line[4:]}" for line in reply_lines(greeting)]
    if certificate is not None:
        lines += _tls_lines(certificate)
    if session.capabilities_before_tls is not None:
        lines.append("Capabilities before STARTTLS:")
        lines += _capability_lines(session.capabilities_before_tls)
        lines.append("Capabilities after STARTTLS:")
    else:
        lines.append("Capabilities:")
    lines += _capability_lines(capabilities)
    return "\n".join(lines) + "\n"


def _tls_lines(certificate: CertificateInfo) -> list[str]:
    return [
        "TLS session parameters:",
        f"    {certificate.tls_version or '?'} {certificate.cipher or ''}".rstrip(),
        "TLS certificate information:",
        "    Subject:",
        f"        {certificate.subject}",
        "    Issuer:",
        f"        {certificate.issuer}",
        "    Validity:",
        f"        Activation time: {_time(certificate.not_before)}",
        f"        Expiration time: {_time(certificate.not_after)}",
        "    Fingerprints:",
        f"        SHA256: {certificate.sha256}",
        f"        SHA1 (deprecated): {certificate.sha1}",
    ]


def _capability_lines(capabilities: Capabilities) -> list[str]:
    lines = []
    if capabilities.size is not None:
        if capabilities.size:
            size = capabilities.size
            lines.append(f"    SIZE {size}:")
            lines.append(
                f"        Maximum message size is {size} bytes = {size / MEBIBYTE:.2f} MiB"
            )
        else:
            lines.append("    SIZE:")
            lines.append("        No maximum message size is announced")
    features = [
        (capabilities.pipelining, "PIPELINING", "Support for command grouping for speed-up"),
        (capabilities.eightbitmime, "8BITMIME", "Support for 8-bit message bodies"),
        (capabilities.smtputf8, "SMTPUTF8", "Support for UTF-8 in addresses and headers"),
        (capabilities.dsn, "DSN", "Support for Delivery Status Notifications"),
        (capabilities.chunking, "CHUNKING", "Support for BDAT message transfer"),
        (capabilities.starttls, "STARTTLS", "Support for TLS encryption via the STARTTLS command"),
    ]
    for offered, name, meaning in features:
        if offered:
            lines += [f"    {name}:", f"        {meaning}"]
    if capabilities.auth:
        lines.append("    AUTH:")
        lines.append("        Supported authentication methods:")
        lines.append(f"        {' '.join(sorted(capabilities.auth))}")
    if not lines:
        lines.append("    (none: the server did not answer EHLO, or offers no extensions)")
    return lines


def _time(moment: datetime.datetime | None) -> str:
    return moment.strftime("%a %b %d %H:%M:%S %Y %Z").strip() if moment else "unknown"
