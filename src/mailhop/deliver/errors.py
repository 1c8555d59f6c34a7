"""Why a delivery attempt failed, with the exit code a caller needs to act on it.

The rule behind the codes (issue #3, DESIGN.md §3): a caller must tell "try again
later" from "this will never work" from the exit status alone::

    DeliveryError                      (MailhopError)
    ├── ServerReplyError               the server said no: code + lines + what was asked
    │     4xx at any stage -> 75 TEMPFAIL (kept for retry)
    │     5xx to MAIL/RCPT/DATA/end of data -> 65 DATAERR (the message or a recipient)
    │     5xx to the greeting -> 69 UNAVAILABLE (the server refuses service)
    ├── AuthenticationRefusedError     535 and other 5xx to AUTH -> 77 NOPERM
    ├── MissingCapabilityError         the account needs STARTTLS/AUTH/DSN/SIZE room the
    │                                  server does not offer -> 69 UNAVAILABLE
    ├── InsecureAuthenticationError    a password would cross without TLS -> 69
    ├── ProtocolViolationError         the server broke SMTP (a bad reply, bytes
    │                                  injected before STARTTLS's handshake) -> 76
    └── ConnectionDroppedError         the server hung up mid-dialogue -> 75

Network and TLS failures are ``mailhop.net.errors.TransportError`` (75, 69, 76 ...),
configuration problems ``mailhop.config`` errors (78): they pass through unchanged.
"""

from __future__ import annotations

from mailhop.errors import ExitCode, MailhopError


class DeliveryError(MailhopError):
    """A delivery attempt failed; ``exit_code`` says whether to retry."""

    exit_code = ExitCode.TEMPFAIL


class ServerReplyError(DeliveryError):
    """The server refused a step; ``code`` and ``lines`` are its reply."""

    def __init__(
        self,
        message: str,
        *,
        code: int,
        lines: tuple[str, ...],
        exit_code: ExitCode,
        recipient: str | None = None,
    ) -> None:
        super().__init__(message, details=lines, exit_code=exit_code)
        self.code = code
        self.lines = lines
        self.recipient = recipient

    @property
    def is_temporary(self) -> bool:
        return 400 <= self.code < 500


class AuthenticationRefusedError(ServerReplyError):
    """The server refused our credentials (exit 77)."""


class MissingCapabilityError(DeliveryError):
    """The account requires something the server does not offer (exit 69)."""

    exit_code = ExitCode.UNAVAILABLE


class InsecureAuthenticationError(DeliveryError):
    """Authentication would expose the password without TLS (exit 69)."""

    exit_code = ExitCode.UNAVAILABLE


class ProtocolViolationError(DeliveryError):
    """The server broke the SMTP protocol (exit 76)."""

    exit_code = ExitCode.PROTOCOL


class ConnectionDroppedError(DeliveryError):
    """The server closed the connection in the middle of the dialogue (exit 75)."""

    exit_code = ExitCode.TEMPFAIL
