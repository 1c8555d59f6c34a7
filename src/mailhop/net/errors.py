"""Errors of the net layer: every socket, DNS and TLS failure, with its sysexits code.

``OSError``, ``socket.gaierror`` and ``ssl.SSLError`` never leave ``mailhop.net``: the
code that calls the OS translates them here with ``raise ... from``. The tree, with
the exit code of each class and why::

    TransportError                       base of the layer (never raised itself)
    ├── NetConfigError              78   a setting cannot work: bad source_ip, bad
    │                                    tls_fingerprint syntax, cert without key, ...
    ├── ConnectError                75   refused, unreachable, reset or timed out while
    │   │                                connecting, across all addresses: the network
    │   │                                or the server may be back later
    │   ├── NameResolutionError     75   the resolver failed (EAI_AGAIN, SERVFAIL, no
    │   │   │                            network): says nothing about the name itself
    │   │   └── HostNotFoundError   68   the name does not exist (EAI_NONAME/NODATA)
    │   └── ProxyError            75/69  the SOCKS5 proxy failed or refused (RFC 1928 §6)
    ├── ConnectionLostError         75   reset, broken pipe or a TLS record error after
    │                                    the connection was up (also a handshake cut off)
    ├── NetTimeoutError             75   a read or write passed its deadline; also a
    │                                    ``TimeoutError`` for callers that want that
    └── TLSError                    69   TLS could not protect the connection
        ├── TLSFileError            66   trust, certificate or key file unreadable
        ├── CertificateError        69   the server's certificate is not trusted:
        │   │                            unknown CA, self-signed, expired, wrong name
        │   └── FingerprintMismatchError 69  not the certificate tls_fingerprint pins
        ├── TLSUnavailableError     69   no common protocol (the server is below
        │                                TLS 1.2, RFC 8996) or no TLS at all
        ├── TLSHandshakeError       76   the handshake broke the TLS protocol
        └── StartTLSInjectionError  76   bytes arrived before the STARTTLS handshake
                                         (RFC 3207 §4.2; CVE-2020-14954 class)

Choices, deliberately made:

* A name that does not exist is 68 (EX_NOHOST), as msmtp reports it and sendmail
  callers expect: an authoritative "no such name" will not fix itself by retrying.
  Only EAI_NONAME/EAI_NODATA/EAI_ADDRFAMILY say that; every other resolver failure
  (EAI_AGAIN, EAI_FAIL, EAI_SYSTEM, a laptop without network) is 75, so mail is
  kept whenever we are not sure.
* Certificate problems are 69 (EX_UNAVAILABLE), as in msmtp: retrying will meet
  the same certificate; a person must change the trust settings.
* A handshake that is *cut off* (reset, EOF, timeout) is network trouble: 75.
  A handshake that *fails by protocol* (alert, garbage, plaintext on a TLS port)
  is 76 (EX_PROTOCOL), as msmtp reports it. A server that only speaks TLS 1.0/1.1
  cannot ever satisfy our floor: 69.
* Errors after the connection is up (reset, timeout) are 75, not msmtp's 74: the
  next hop has not accepted the message, so the caller must keep it and retry.
"""

from __future__ import annotations

from mailhop.errors import ExitCode, MailhopError

__all__ = [
    "CertificateError",
    "ConnectError",
    "ConnectionLostError",
    "FingerprintMismatchError",
    "HostNotFoundError",
    "NameResolutionError",
    "NetConfigError",
    "NetTimeoutError",
    "ProxyError",
    "StartTLSInjectionError",
    "TLSError",
    "TLSFileError",
    "TLSHandshakeError",
    "TLSUnavailableError",
    "TransportError",
]


class TransportError(MailhopError):
    """Base of every error raised by ``mailhop.net``."""

    exit_code = ExitCode.TEMPFAIL


class NetConfigError(TransportError):
    """A connection or TLS setting cannot work as written."""

    exit_code = ExitCode.CONFIG


class ConnectError(TransportError):
    """No connection could be opened to any address of the server."""

    exit_code = ExitCode.TEMPFAIL


class NameResolutionError(ConnectError):
    """The resolver could not answer now; the name may well exist."""

    exit_code = ExitCode.TEMPFAIL


class HostNotFoundError(NameResolutionError):
    """The host name does not exist (or has no address)."""

    exit_code = ExitCode.NOHOST


class ProxyError(ConnectError):
    """The SOCKS5 proxy failed; the exit code depends on its reply."""

    exit_code = ExitCode.TEMPFAIL


class ConnectionLostError(TransportError):
    """The connection broke after it was established."""

    exit_code = ExitCode.TEMPFAIL


class NetTimeoutError(TransportError, TimeoutError):
    """A read or write did not complete within its deadline."""

    exit_code = ExitCode.TEMPFAIL


class TLSError(TransportError):
    """TLS could not be set up as required."""

    exit_code = ExitCode.UNAVAILABLE


class TLSFileError(TLSError):
    """A trust, certificate or key file cannot be read or holds nothing usable."""

    exit_code = ExitCode.NOINPUT


class CertificateError(TLSError):
    """The server's certificate is not trusted under the configured rules."""

    exit_code = ExitCode.UNAVAILABLE


class FingerprintMismatchError(CertificateError):
    """The server's certificate is not the one ``tls_fingerprint`` pins."""


class TLSUnavailableError(TLSError):
    """The server cannot speak TLS as required (no TLS, or only below TLS 1.2)."""

    exit_code = ExitCode.UNAVAILABLE


class TLSHandshakeError(TLSError):
    """The TLS handshake failed by protocol (an alert, or data that is not TLS)."""

    exit_code = ExitCode.PROTOCOL


class StartTLSInjectionError(TLSError):
    """The server (or someone on the path) sent bytes before the TLS handshake."""

    exit_code = ExitCode.PROTOCOL
