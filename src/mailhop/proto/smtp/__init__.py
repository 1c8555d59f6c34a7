"""Sans-IO SMTP: the client and server cores, their events, replies and DATA codec.

``ClientConnection`` and ``ServerConnection`` share one grammar (``_grammar``), one
reply parser (``replies``) and one file of state tables (``_state``), so they can be
tested back to back over bytes. The server core's names load on first use
(``mailhop._lazy``): a sendmail process is a client only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailhop._lazy import lazy_exports
from mailhop.proto.smtp._state import ClientState, ServerState
from mailhop.proto.smtp.capabilities import Capabilities
from mailhop.proto.smtp.client import (
    DEFAULT_REPLY_TIMEOUT,
    REDACTED,
    REPLY_TIMEOUTS,
    ClientConnection,
    ClientEvent,
)
from mailhop.proto.smtp.dotstuff import DataDecoder, DataEncoder
from mailhop.proto.smtp.events import (
    NEED_DATA,
    Auth,
    AuthCancelled,
    AuthRequest,
    AuthResponse,
    Command,
    CommandRejected,
    ConnectionClosed,
    Data,
    DataChunk,
    Ehlo,
    EndOfData,
    Helo,
    MailFrom,
    Noop,
    OtherCommand,
    Quit,
    RcptTo,
    Reply,
    Rset,
    Sentinel,
    StartTLS,
    TLSUpgradeRequired,
)
from mailhop.proto.smtp.replies import (
    MAX_REPLY_LINE_LENGTH,
    MAX_REPLY_LINES,
    MAX_REPLY_SIZE,
    ReplyParser,
    parse_reply,
)

if TYPE_CHECKING:
    from mailhop.proto.smtp.server import (
        DEFAULT_MAX_MESSAGE_SIZE,
        MAX_AUTH_LINE_LENGTH,
        MAX_COMMAND_LINE_LENGTH,
        MAX_PARAMETER_LINE_LENGTH,
        ServerConnection,
        ServerEvent,
    )

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_REPLY_TIMEOUT",
    "MAX_AUTH_LINE_LENGTH",
    "MAX_COMMAND_LINE_LENGTH",
    "MAX_PARAMETER_LINE_LENGTH",
    "MAX_REPLY_LINES",
    "MAX_REPLY_LINE_LENGTH",
    "MAX_REPLY_SIZE",
    "NEED_DATA",
    "REDACTED",
    "REPLY_TIMEOUTS",
    "Auth",
    "AuthCancelled",
    "AuthRequest",
    "AuthResponse",
    "Capabilities",
    "ClientConnection",
    "ClientEvent",
    "ClientState",
    "Command",
    "CommandRejected",
    "ConnectionClosed",
    "Data",
    "DataChunk",
    "DataDecoder",
    "DataEncoder",
    "Ehlo",
    "EndOfData",
    "Helo",
    "MailFrom",
    "Noop",
    "OtherCommand",
    "Quit",
    "RcptTo",
    "Reply",
    "ReplyParser",
    "Rset",
    "Sentinel",
    "ServerConnection",
    "ServerEvent",
    "ServerState",
    "StartTLS",
    "TLSUpgradeRequired",
    "parse_reply",
]

# Hidden from mypy, which then checks every imported name against the imports above.
if not TYPE_CHECKING:
    __getattr__ = lazy_exports(
        __name__,
        dict.fromkeys(
            (
                "DEFAULT_MAX_MESSAGE_SIZE",
                "MAX_AUTH_LINE_LENGTH",
                "MAX_COMMAND_LINE_LENGTH",
                "MAX_PARAMETER_LINE_LENGTH",
                "ServerConnection",
                "ServerEvent",
            ),
            "mailhop.proto.smtp.server",
        ),
    )
