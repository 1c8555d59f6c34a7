"""Events of the SMTP cores: frozen keyword-only records, one per thing that happens.

The same command classes travel both ways: the client core *sends* them (``send``)
and the server core *produces* them (``next_event``) after parsing a command line.
:class:`Reply` is what the client receives and what the server application sends.

Addresses and text are ``str`` (UTF-8 on the wire, which is ASCII unless SMTPUTF8
was negotiated, RFC 6531); message content is ``bytes``.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Literal

from mailhop.proto._event import Event, field

if TYPE_CHECKING:
    from mailhop.proto.sasl import Mechanism

__all__ = [
    "NEED_DATA",
    "Auth",
    "AuthCancelled",
    "AuthRequest",
    "AuthResponse",
    "Command",
    "CommandRejected",
    "ConnectionClosed",
    "Data",
    "DataChunk",
    "Ehlo",
    "EndOfData",
    "Helo",
    "MailFrom",
    "Noop",
    "OtherCommand",
    "Quit",
    "RcptTo",
    "Reply",
    "Rset",
    "Sentinel",
    "StartTLS",
    "TLSUpgradeRequired",
]


class Sentinel(enum.Enum):
    """``next_event`` returns this when it needs more bytes (h11's vocabulary)."""

    NEED_DATA = enum.auto()


NEED_DATA: Literal[Sentinel.NEED_DATA] = Sentinel.NEED_DATA


# --- commands (RFC 5321 §4.1.1, plus the extensions we speak) ------------------------


class Ehlo(Event):
    """``EHLO domain`` (RFC 5321 §4.1.1.1)."""

    domain: str


class Helo(Event):
    """``HELO domain``: the fallback for servers that refuse EHLO."""

    domain: str


class StartTLS(Event):
    """``STARTTLS`` (RFC 3207)."""


class Auth(Event):
    """Client side of ``AUTH`` (RFC 4954): the core runs the SASL mechanism's exchange.

    The client core sends ``AUTH <name> <initial response>`` and answers each 334
    challenge itself with the mechanism's next response; the caller sees the replies
    and finally a 235 (success) or an error reply.
    """

    mechanism: Mechanism


class MailFrom(Event):
    """``MAIL FROM:<address> [parameters]``; ``address=""`` is the null reverse-path."""

    address: str
    size: int | None = None  # SIZE= (RFC 1870)
    body: Literal["7BIT", "8BITMIME"] | None = None  # BODY= (RFC 6152)
    smtputf8: bool = False  # SMTPUTF8 (RFC 6531 §3.4)
    ret: Literal["FULL", "HDRS"] | None = None  # RET= (RFC 3461 §4.3)
    envid: str | None = None  # ENVID= (RFC 3461 §4.4), xtext-encoded on the wire
    parameters: tuple[tuple[str, str | None], ...] = ()  # any other (keyword, value)


class RcptTo(Event):
    """``RCPT TO:<address> [parameters]``."""

    address: str
    notify: tuple[Literal["NEVER", "SUCCESS", "FAILURE", "DELAY"], ...] = ()  # RFC 3461 §4.1
    orcpt: str | None = None  # original recipient, ``rfc822;`` type (RFC 3461 §4.2)
    parameters: tuple[tuple[str, str | None], ...] = ()


class Data(Event):
    """``DATA``: asks for the 354 go-ahead."""


class DataChunk(Event):
    """A piece of the message after 354.

    Client: raw message bytes with any line endings, split anywhere; the core
    normalises them to CRLF and dot-stuffs them. Server: the unstuffed content.
    """

    data: bytes


class EndOfData(Event):
    """The end of the message (the ``CRLF.CRLF`` on the wire).

    The client sends it bare. The server core fills in what it saw, and refuses a
    2xx reply when ``oversized`` or ``bare_line_endings`` (unless configured otherwise).
    """

    size: int = 0  # content octets after unstuffing (server side)
    oversized: bool = False  # more than the server's limit arrived (and was dropped)
    bare_line_endings: bool = False  # a lone CR or LF was seen (smuggling class)


class Rset(Event):
    """``RSET``: abort the mail transaction."""


class Noop(Event):
    """``NOOP``."""


class Quit(Event):
    """``QUIT``."""


Command = (
    Ehlo | Helo | StartTLS | Auth | MailFrom | RcptTo | Data | DataChunk | EndOfData | Rset
    | Noop | Quit
)  # fmt: skip


# --- server-only events ------------------------------------------------------------


class AuthRequest(Event):
    """Server side of ``AUTH mechanism [initial-response]`` (RFC 4954 §4).

    ``initial_response`` is decoded; ``b""`` stands for the ``=`` form, None for absent.
    """

    mechanism: str
    # The decoded credentials of PLAIN or LOGIN: never shown (a log of events).
    initial_response: bytes | None = field(default=None, repr=False)


class AuthResponse(Event):
    """A decoded client line answering a 334 challenge."""

    data: bytes = field(repr=False)  # a password, for LOGIN: never shown


class AuthCancelled(Event):
    """The client answered a 334 challenge with ``*`` (RFC 4954 §4): reply 501."""


class OtherCommand(Event):
    """A recognised command the core does not model (VRFY, EXPN, HELP)."""

    verb: str
    argument: str


class CommandRejected(Event):
    """The server core answered a command itself (syntax, sequence, length, TLS).

    The reply is already queued; the event lets the application count bad commands
    and drop an abusive client. Only the verb is kept: the line may hold a secret.
    """

    verb: str
    reply: Reply


# --- events for both sides ---------------------------------------------------------


class Reply(Event):
    """An SMTP reply (RFC 5321 §4.2): a code, maybe an enhanced status, text lines.

    ``enhanced_status`` (RFC 3463, e.g. ``"5.1.1"``) is split off every line that
    carries it; ``lines`` hold the remaining text. On the client, ``command`` is
    the command this reply answers (None for the greeting and unsolicited 421).
    """

    code: int
    lines: tuple[str, ...] = ("",)
    enhanced_status: str | None = None
    command: Command | None = field(default=None, compare=False)

    @property
    def text(self) -> str:
        """The lines joined by LF, as a log or an error message shows them."""
        return "\n".join(self.lines)

    @property
    def is_positive(self) -> bool:
        """2xx (completion) or 3xx (intermediate: 334, 354)."""
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        """4xx: try again later; the message must be kept."""
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        """5xx: do not retry as is."""
        return 500 <= self.code < 600

    def to_bytes(self) -> bytes:
        """Serialise for the wire; the server core validates before calling this."""
        out = bytearray()
        for index, line in enumerate(self.lines):
            separator = b" " if index == len(self.lines) - 1 else b"-"
            text = line.encode("utf-8", "surrogateescape")
            if self.enhanced_status is not None:
                text = self.enhanced_status.encode("ascii") + (b" " + text if text else b"")
            out += b"%d%s%s\r\n" % (self.code, separator, text)
        return bytes(out)


class TLSUpgradeRequired(Event):
    """The server said 220 to STARTTLS: the driver must do the TLS handshake now.

    Then it calls ``start_tls_done()``; until then nothing may be sent.
    """

    reply: Reply


class ConnectionClosed(Event):
    """The peer closed the connection (the driver passed ``b""``)."""
