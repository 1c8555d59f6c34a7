"""Client TLS: what to trust, whom to expect, and how failures are reported.

``client_policy(settings, host)`` turns the msmtp-style settings (``tls_trust_file``,
``tls_fingerprint``, ``tls_certcheck``, ``tls_cert_file``/``tls_key_file``,
``tls_host_override``) into a ``TLSPolicy``: an ``ssl.SSLContext``, the name sent as
SNI and checked against the certificate, an optional pinned fingerprint, and the
warnings the caller must print (this module never prints).

Trust precedence is msmtp's (``tls_certcheck off`` > ``tls_fingerprint`` >
``tls_trust_file``), so a configuration moved from msmtp means the same thing here.
Every context refuses protocols below TLS 1.2 (RFC 8996; RFC 8314 §4.1).

``ssl``, ``hashlib`` and ``hmac`` are imported where a TLS connection needs them:
a plain connection (``tls off``, common towards a local relay) never loads them,
and ``ssl`` alone was about 10 ms of every queue run's start.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from mailhop._records import NamedTuple
from mailhop.net.errors import (
    CertificateError,
    ConnectionLostError,
    FingerprintMismatchError,
    NetConfigError,
    TLSFileError,
    TLSHandshakeError,
    TLSUnavailableError,
    TransportError,
)

if TYPE_CHECKING:
    import datetime
    import ssl

    from mailhop.config.model import Account

__all__ = [
    "MIN_TLS_VERSION",
    "CertificateInfo",
    "Fingerprint",
    "TLSPolicy",
    "TLSSettings",
    "client_policy",
    "describe_certificate",
    "format_fingerprint",
    "parse_fingerprint",
    "ssl_reason",
    "translate_handshake_error",
]

# RFC 8996 deprecates TLS 1.0 and 1.1; RFC 8314 §4.1 asks mail clients for 1.2 or later.
# The name of an ``ssl.TLSVersion`` member: ssl is imported only for a TLS connection.
MIN_TLS_VERSION = "TLSv1_2"

# The value of tls_trust_file that means "the system's CA store" (msmtp's keyword).
SYSTEM_TRUST = "system"

# Digest lengths (hex digits) msmtp accepts for tls_fingerprint. SHA-1 and MD5 are
# accepted so that msmtp configurations keep working, with a warning: collisions can
# be made for both, so they pin a certificate less strongly than SHA-256.
_FINGERPRINT_ALGORITHMS = {64: "sha256", 40: "sha1", 32: "md5"}
_FINGERPRINT_SEPARATORS = re.compile(r"[:\s]")

# OpenSSL reasons that mean "no protocol version in common": the server is stuck
# below our TLS 1.2 floor. Retrying will not help, so these become 69, not 76.
_NO_COMMON_VERSION_REASONS = frozenset(
    {
        "UNSUPPORTED_PROTOCOL",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "NO_PROTOCOLS_AVAILABLE",
        "WRONG_SSL_VERSION",
    }
)
# The peer answered in something that is not TLS at all: typically implicit TLS
# configured against a STARTTLS or plaintext port (587, 25).
_NOT_TLS_REASONS = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST"})


class TLSSettings(NamedTuple):
    """The TLS settings of one account, with msmtp's meanings."""

    trust_file: str | None = None
    """``None`` or ``"system"``: the system CA store; ``""``: trust no CA; else a PEM file."""
    fingerprint: str | None = None
    """Pin one server certificate by its digest (hex, ``:``/space separated or not)."""
    certcheck: bool = True
    """``False`` only when the user wrote ``tls_certcheck off``: no verification at all."""
    cert_file: str | None = None
    """Client certificate (PEM); needs ``key_file``."""
    key_file: str | None = None
    """Private key of the client certificate (PEM)."""
    key_password: str | None = None
    """Passphrase of an encrypted ``key_file``; never prompted for here."""
    host_override: str | None = None
    """Name for SNI and verification instead of the configured host (``tls_host_override``)."""

    def __repr__(self) -> str:
        # The key's passphrase is a secret: never in a log or a traceback (DESIGN.md §4.7).
        shown = ", ".join(
            f"{name}={'<redacted>' if name == 'key_password' and value else repr(value)}"
            for name, value in zip(self._fields, self, strict=True)
        )
        return f"TLSSettings({shown})"


def account_tls_settings(account: Account) -> TLSSettings:
    """The TLS settings an account's ``tls_*`` lines give, for SMTP and retrieval alike.

    An unset ``tls_trust_file`` stays None, which means the system's CA store.
    """
    return TLSSettings(
        trust_file=account.tls_trust_file,
        fingerprint=account.tls_fingerprint.hex() if account.tls_fingerprint else None,
        certcheck=account.tls_certcheck,
        cert_file=account.tls_cert_file,
        key_file=account.tls_key_file,
        host_override=account.tls_host_override,
    )


class Fingerprint(NamedTuple):
    """A pinned certificate digest."""

    algorithm: str  # hashlib name: "sha256", "sha1" or "md5"
    digest: bytes

    def matches(self, certificate_der: bytes) -> bool:
        import hashlib  # noqa: PLC0415 - see the module docstring
        import hmac  # noqa: PLC0415

        actual = hashlib.new(self.algorithm, certificate_der).digest()
        return hmac.compare_digest(actual, self.digest)


class TLSPolicy(NamedTuple):
    """Everything a transport needs to run and judge one TLS handshake."""

    context: ssl.SSLContext
    server_hostname: str
    """Sent as SNI; checked against the certificate unless a fingerprint pins it."""
    fingerprint: Fingerprint | None = None
    """When set, the certificate must have this digest (checked right after the handshake)."""
    warnings: tuple[str, ...] = ()
    """Lines the caller prints before connecting (verification weakened, weak digest)."""

    def check_peer(self, certificate_der: bytes | None) -> None:
        """Refuse the peer unless it satisfies the pin; called after every handshake."""
        if self.fingerprint is None:
            return  # the context itself verified the chain and the name
        if certificate_der is None:
            raise FingerprintMismatchError(
                f"TLS server {self.server_hostname} sent no certificate to compare with"
                " tls_fingerprint"
            )
        if not self.fingerprint.matches(certificate_der):
            import hashlib  # noqa: PLC0415 - see the module docstring

            algorithm = self.fingerprint.algorithm.upper()
            actual = hashlib.new(self.fingerprint.algorithm, certificate_der).digest()
            raise FingerprintMismatchError(
                f"TLS certificate of {self.server_hostname} does not match tls_fingerprint:"
                f" the server sent {algorithm} {format_fingerprint(actual)}; if the server"
                " changed its certificate on purpose, check the new one and update"
                " tls_fingerprint"
            )


class CertificateInfo(NamedTuple):
    """What ``serverinfo`` shows about the server's certificate and session."""

    subject: str
    issuer: str
    not_before: datetime.datetime | None
    not_after: datetime.datetime | None
    sha256: str  # "AB:CD:..."
    sha1: str  # shown as msmtp does, labelled deprecated by the caller
    tls_version: str | None = None  # "TLSv1.3"
    cipher: str | None = None  # "TLS_AES_256_GCM_SHA384"


def format_fingerprint(digest: bytes) -> str:
    """Upper-case hex pairs joined by ``:``, as msmtp and openssl print them."""
    return ":".join(f"{byte:02X}" for byte in digest)


def parse_fingerprint(text: str) -> tuple[Fingerprint, tuple[str, ...]]:
    """Read a ``tls_fingerprint`` value; returns the pin and any warnings."""
    hex_digits = _FINGERPRINT_SEPARATORS.sub("", text)
    algorithm = _FINGERPRINT_ALGORITHMS.get(len(hex_digits))
    try:
        digest = bytes.fromhex(hex_digits)
    except ValueError:
        digest = b""
    if algorithm is None or not digest:
        raise NetConfigError(
            f"tls_fingerprint {text!r} is not a SHA-256 fingerprint (64 hex digits,"
            " optionally separated by ':'); get it with mailhop serverinfo"
        )
    warnings: tuple[str, ...] = ()
    if algorithm != "sha256":
        warnings = (
            f"tls_fingerprint is a {algorithm.upper()} digest, which can be forged;"
            " replace it with the SHA-256 fingerprint that mailhop serverinfo shows",
        )
    return Fingerprint(algorithm=algorithm, digest=digest), warnings


def client_policy(settings: TLSSettings, host: str) -> TLSPolicy:
    """Build the TLS policy for connecting to ``host`` under ``settings``."""
    server_hostname = settings.host_override or host
    if not server_hostname:
        raise NetConfigError("TLS needs a server name to verify; set host or tls_host_override")
    warnings: list[str] = []
    fingerprint: Fingerprint | None = None
    if not settings.certcheck:
        context = _unverified_context()
        warnings.append(
            f"tls_certcheck is off: the TLS certificate of {server_hostname} is not checked,"
            " so anyone on the network path can read and change this connection; set"
            " tls_trust_file or tls_fingerprint instead"
        )
    elif settings.fingerprint:
        fingerprint, fingerprint_warnings = parse_fingerprint(settings.fingerprint)
        warnings.extend(fingerprint_warnings)
        context = _unverified_context()
    else:
        context = _verifying_context(settings.trust_file)
    _load_client_certificate(context, settings)
    return TLSPolicy(
        context=context,
        server_hostname=server_hostname,
        fingerprint=fingerprint,
        warnings=tuple(warnings),
    )


def _verifying_context(trust_file: str | None) -> ssl.SSLContext:
    import ssl  # noqa: PLC0415 - see the module docstring

    # PROTOCOL_TLS_CLIENT starts with CERT_REQUIRED and check_hostname=True.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion[MIN_TLS_VERSION]
    if trust_file is None or trust_file == SYSTEM_TRUST:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    elif trust_file == "":
        pass  # msmtp: an empty tls_trust_file trusts no CA (only a fingerprint can pass)
    else:
        try:
            context.load_verify_locations(cafile=trust_file)
        except ssl.SSLError as error:
            raise TLSFileError(
                f"tls_trust_file {trust_file} holds no usable PEM certificate"
                f" ({ssl_reason(error)}); point it at the CA bundle in PEM format"
            ) from error
        except OSError as error:
            raise TLSFileError(
                f"cannot read tls_trust_file {trust_file}: {error.strerror or error}"
            ) from error
    return context


def _unverified_context() -> ssl.SSLContext:
    # THE ONLY PLACE THAT TURNS CERTIFICATE VERIFICATION OFF. Two callers, both chosen
    # explicitly by the user, in msmtp's precedence:
    #  * tls_fingerprint: the pin replaces the CA check, so the handshake must not
    #    require a chain the user never configured; TLSPolicy.check_peer compares the
    #    digest of the presented certificate right after the handshake, and the
    #    transport closes the connection on a mismatch before sending a byte.
    #  * tls_certcheck off: no check at all, announced by a warning.
    import ssl  # noqa: PLC0415 - see the module docstring

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion[MIN_TLS_VERSION]
    context.check_hostname = False  # must precede CERT_NONE (ssl refuses otherwise)
    context.verify_mode = ssl.CERT_NONE
    return context


def _load_client_certificate(context: ssl.SSLContext, settings: TLSSettings) -> None:
    if not settings.cert_file and not settings.key_file:
        return
    if not settings.cert_file or not settings.key_file:
        raise NetConfigError("a TLS client certificate needs both tls_cert_file and tls_key_file")
    # A callable password keeps OpenSSL from prompting on the terminal for an encrypted
    # key; without a configured passphrase the load fails with a clear error instead.
    passphrase = settings.key_password or ""
    import ssl  # noqa: PLC0415 - see the module docstring

    try:
        context.load_cert_chain(settings.cert_file, settings.key_file, lambda: passphrase)
    except ssl.SSLError as error:
        raise TLSFileError(
            f"cannot use TLS client certificate {settings.cert_file} with key"
            f" {settings.key_file}: {ssl_reason(error)} (wrong passphrase, a key that"
            " does not belong to the certificate, or not PEM)"
        ) from error
    except OSError as error:
        raise TLSFileError(
            f"cannot read TLS client certificate or key: {error.filename or ''}"
            f" {error.strerror or error}".strip()
        ) from error


def translate_handshake_error(error: OSError, server_hostname: str) -> TransportError:
    """Map a failed ``do_handshake`` to the error table of ``mailhop.net.errors``."""
    import ssl  # noqa: PLC0415 - loaded already: a handshake was attempted

    if isinstance(error, ssl.SSLCertVerificationError):
        reason = getattr(error, "verify_message", None) or str(error)
        return CertificateError(
            f"TLS certificate of {server_hostname} not trusted: {reason}; set"
            " tls_trust_file to the server's CA, or pin the certificate with"
            " tls_fingerprint (mailhop serverinfo shows it)"
        )
    if isinstance(error, ssl.SSLError) and not isinstance(
        error, ssl.SSLEOFError | ssl.SSLZeroReturnError
    ):
        reason = getattr(error, "reason", None) or ""  # absent when built by hand
        if reason in _NO_COMMON_VERSION_REASONS:
            return TLSUnavailableError(
                f"TLS server {server_hostname} offers no protocol version mailhop accepts"
                " (TLS 1.2 or later, RFC 8996); the server must be upgraded"
            )
        if reason in _NOT_TLS_REASONS:
            return TLSHandshakeError(
                f"TLS handshake with {server_hostname} failed: the server did not answer in"
                " TLS; if this port expects STARTTLS (usually 587 or 25), set"
                " tls_starttls on"
            )
        return TLSHandshakeError(f"TLS handshake with {server_hostname} failed: {reason or error}")
    if isinstance(error, TimeoutError):
        return ConnectionLostError(
            f"TLS handshake with {server_hostname} timed out; try again later"
        )
    # SSLEOFError, SSLZeroReturnError, ConnectionResetError, BrokenPipeError, ...
    return ConnectionLostError(
        f"connection to {server_hostname} closed during the TLS handshake; try again later"
    )


def ssl_reason(error: OSError) -> str:
    """OpenSSL's short reason (``CERTIFICATE_VERIFY_FAILED``), else the message."""
    return getattr(error, "reason", None) or error.strerror or str(error) or type(error).__name__


def describe_certificate(
    certificate_der: bytes, *, tls_version: str | None = None, cipher: str | None = None
) -> CertificateInfo:
    """Describe a certificate (verified or not) for ``serverinfo``."""
    # Only serverinfo, doctor and test describe certificates: the DER reader (and the
    # datetime module it needs) stays off the sending and queue-run paths.
    import hashlib  # noqa: PLC0415 - see the module docstring

    from mailhop.net import _x509  # noqa: PLC0415

    fields = _x509.read_certificate(certificate_der)
    return CertificateInfo(
        subject=fields.subject if fields else "(unreadable)",
        issuer=fields.issuer if fields else "(unreadable)",
        not_before=fields.not_before if fields else None,
        not_after=fields.not_after if fields else None,
        sha256=format_fingerprint(hashlib.sha256(certificate_der).digest()),
        sha1=format_fingerprint(hashlib.sha1(certificate_der).digest()),  # noqa: S324  display only
        tls_version=tls_version,
        cipher=cipher,
    )
