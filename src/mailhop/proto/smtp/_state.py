"""Every state transition of the SMTP cores, as tables (h11's Rule 1, h2's table).

Nothing else decides what may be sent or received when. The client and the
server each have one table ``(state, input) -> new state``; a pair that is not in
the table is a protocol error, and the connection goes to ``ERROR``.

Client, theory of operation. The client's state is where the session stands
*once every command sent so far has succeeded*: after ``MAIL`` it is ``MAIL``
even before the 250 arrives, which is what lets a PIPELINING batch
``MAIL, RCPT..., DATA`` be written at once (RFC 2920). Replies that undo that
optimism (a failed EHLO, MAIL, DATA, STARTTLS or AUTH) are inputs too. A second
rule, :func:`may_pipeline`, says whether a command may go out while earlier
replies are outstanding.

Server. The server's state moves when a command arrives and when the application
answers it; a reply decides, e.g. whether MAIL opened a transaction.
"""

from __future__ import annotations

import enum

from mailhop.proto.smtp.events import (
    Auth,
    AuthCancelled,
    AuthRequest,
    AuthResponse,
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
    Rset,
    StartTLS,
)

__all__ = [
    "ALLOWED_BEFORE_TLS",
    "CLIENT_TRANSITIONS",
    "ENDS_GROUP",
    "POSITIVE_REPLIES",
    "SERVER_COMMANDS",
    "SERVER_TRANSITIONS",
    "ClientInput",
    "ClientState",
    "ServerInput",
    "ServerState",
    "may_pipeline",
]


class _IdentityHashedEnum(enum.Enum):
    """An Enum hashed by identity, as its members compare.

    ``Enum.__hash__`` is Python code (``hash(self._name_)``) and every transition
    looks two members up in the tables below; members are singletons, so the
    built-in identity hash is equivalent and costs nothing per lookup.
    """

    __hash__ = object.__hash__


class ClientState(_IdentityHashedEnum):
    AWAIT_GREETING = enum.auto()  # connected, no 220 yet
    GREETING_REFUSED = enum.auto()  # the greeting was 554: only QUIT (RFC 5321 §3.1)
    GREETED = enum.auto()  # EHLO/HELO needed (at start and again after TLS)
    READY = enum.auto()  # EHLO/HELO done, no mail transaction
    TLS_HANDSHAKE = enum.auto()  # STARTTLS sent; after its 220 the driver does TLS
    AUTHENTICATING = enum.auto()  # AUTH sent; the core answers 334 challenges
    MAIL = enum.auto()  # MAIL sent, no RCPT yet
    RCPT = enum.auto()  # MAIL and at least one RCPT sent
    DATA = enum.auto()  # DATA sent, waiting for 354
    SEND_BODY = enum.auto()  # 354 received: message content, then EndOfData
    QUITTING = enum.auto()  # QUIT sent
    CLOSED = enum.auto()  # 221 or 421 received, or the peer closed
    ERROR = enum.auto()  # a ProtocolError happened; terminal


class ClientInput(_IdentityHashedEnum):
    # commands sent
    SEND_EHLO = enum.auto()
    SEND_HELO = enum.auto()
    SEND_STARTTLS = enum.auto()
    SEND_AUTH = enum.auto()
    SEND_MAIL = enum.auto()
    SEND_RCPT = enum.auto()
    SEND_DATA = enum.auto()
    SEND_BODY = enum.auto()
    SEND_END_OF_DATA = enum.auto()
    SEND_RSET = enum.auto()
    SEND_NOOP = enum.auto()
    SEND_QUIT = enum.auto()
    # replies and driver notices that move the state
    GREETING_OK = enum.auto()  # 220
    GREETING_REFUSED = enum.auto()  # 554
    HELLO_FAILED = enum.auto()  # EHLO/HELO got 4xx/5xx: HELO fallback is the caller's
    STARTTLS_FAILED = enum.auto()  # 454/5xx to STARTTLS: no plaintext fallback here
    TLS_DONE = enum.auto()  # the driver finished the handshake (RFC 3207 §4.2 reset)
    AUTH_DONE = enum.auto()  # 235 or a failure: either way back to READY
    MAIL_FAILED = enum.auto()  # the current transaction's MAIL got 4xx/5xx
    DATA_GO_AHEAD = enum.auto()  # 354
    DATA_FAILED = enum.auto()  # 4xx/5xx to DATA
    CLOSED = enum.auto()  # 221 to QUIT, a 421 at any time, or EOF


_C, _I = ClientState, ClientInput
_ANY_TIME = {_I.CLOSED: _C.CLOSED}
CLIENT_TRANSITIONS: dict[ClientState, dict[ClientInput, ClientState]] = {
    _C.AWAIT_GREETING: {
        _I.GREETING_OK: _C.GREETED, _I.GREETING_REFUSED: _C.GREETING_REFUSED, **_ANY_TIME,
    },
    _C.GREETING_REFUSED: {_I.SEND_QUIT: _C.QUITTING, **_ANY_TIME},
    _C.GREETED: {
        _I.SEND_EHLO: _C.READY, _I.SEND_HELO: _C.READY, _I.SEND_NOOP: _C.GREETED,
        _I.SEND_RSET: _C.GREETED, _I.SEND_QUIT: _C.QUITTING, **_ANY_TIME,
    },
    _C.READY: {
        _I.SEND_EHLO: _C.READY, _I.SEND_HELO: _C.READY, _I.HELLO_FAILED: _C.GREETED,
        _I.SEND_STARTTLS: _C.TLS_HANDSHAKE, _I.SEND_AUTH: _C.AUTHENTICATING,
        _I.SEND_MAIL: _C.MAIL, _I.SEND_NOOP: _C.READY, _I.SEND_RSET: _C.READY,
        _I.MAIL_FAILED: _C.READY, _I.SEND_QUIT: _C.QUITTING, **_ANY_TIME,
    },
    _C.TLS_HANDSHAKE: {
        _I.STARTTLS_FAILED: _C.READY, _I.TLS_DONE: _C.GREETED, **_ANY_TIME,
    },
    _C.AUTHENTICATING: {_I.AUTH_DONE: _C.READY, **_ANY_TIME},
    _C.MAIL: {
        _I.SEND_RCPT: _C.RCPT, _I.MAIL_FAILED: _C.READY, _I.SEND_RSET: _C.READY,
        _I.SEND_NOOP: _C.MAIL, _I.SEND_QUIT: _C.QUITTING, **_ANY_TIME,
    },
    _C.RCPT: {
        _I.SEND_RCPT: _C.RCPT, _I.SEND_DATA: _C.DATA, _I.MAIL_FAILED: _C.READY,
        _I.SEND_RSET: _C.READY, _I.SEND_NOOP: _C.RCPT, _I.SEND_QUIT: _C.QUITTING,
        **_ANY_TIME,
    },
    # A failed MAIL while DATA is outstanding changes nothing: the DATA reply decides.
    _C.DATA: {
        _I.DATA_GO_AHEAD: _C.SEND_BODY, _I.DATA_FAILED: _C.READY,
        _I.MAIL_FAILED: _C.DATA, **_ANY_TIME,
    },
    _C.SEND_BODY: {
        _I.SEND_BODY: _C.SEND_BODY, _I.SEND_END_OF_DATA: _C.READY, **_ANY_TIME,
    },
    _C.QUITTING: {_I.MAIL_FAILED: _C.QUITTING, **_ANY_TIME},
    _C.CLOSED: {},
    _C.ERROR: {},
}  # fmt: skip

# RFC 2920 §3.1: with PIPELINING, RSET, MAIL and RCPT may be followed by more
# commands before their replies arrive; every other command (EHLO, DATA, NOOP,
# QUIT, and STARTTLS/AUTH, whose replies change the session) ends a group. "The
# actual transfer of message content is explicitly allowed to be the first
# 'command' in a group": the end of data may be followed at once by the next
# transaction's RSET/MAIL/RCPT/DATA (its reply comes first, replies are in order).
# Without PIPELINING each command waits for the reply to the one before.
_GROUP_CONTINUES = frozenset({_I.SEND_RSET, _I.SEND_MAIL, _I.SEND_RCPT, _I.SEND_END_OF_DATA})


# The commands that end a group: nothing may follow them before their reply
# (message content, never outstanding itself, is in neither set).
ENDS_GROUP = frozenset({
    _I.SEND_EHLO, _I.SEND_HELO, _I.SEND_STARTTLS, _I.SEND_AUTH, _I.SEND_DATA,
    _I.SEND_NOOP, _I.SEND_QUIT,
})  # fmt: skip


def may_pipeline(outstanding: int, group_enders: int, *, pipelining: bool) -> bool:
    """Whether a command may be sent while ``outstanding`` commands await replies,
    ``group_enders`` of them in :data:`ENDS_GROUP`.

    Counts, not the commands: the client keeps both as it sends and as replies
    arrive, so the check costs the same however long a pipelined group grows.
    """
    if not outstanding:
        return True
    return pipelining and not group_enders


class ServerState(_IdentityHashedEnum):
    GREETING = enum.auto()  # the application must send the greeting first
    GREETED = enum.auto()  # waiting for EHLO/HELO
    READY = enum.auto()  # EHLO/HELO done, no transaction
    MAIL = enum.auto()  # MAIL accepted
    RCPT = enum.auto()  # MAIL and at least one RCPT accepted
    BODY = enum.auto()  # 354 sent: content until CRLF.CRLF
    AUTH = enum.auto()  # a 334 was sent: the next line is a SASL response
    TLS_HANDSHAKE = enum.auto()  # 220 to STARTTLS sent; the driver does TLS
    CLOSED = enum.auto()  # 221 or 421 sent, or the peer closed
    ERROR = enum.auto()


class ServerInput(_IdentityHashedEnum):
    """What the application's reply meant, for the command it answers."""

    GREETING_SENT = enum.auto()
    HELLO_OK = enum.auto()
    MAIL_OK = enum.auto()
    RCPT_OK = enum.auto()
    DATA_GO_AHEAD = enum.auto()  # 354
    MESSAGE_DONE = enum.auto()  # any reply to the end of data
    RSET_OK = enum.auto()
    AUTH_CHALLENGE = enum.auto()  # 334
    AUTH_DONE = enum.auto()  # 235 or a failure
    STARTTLS_OK = enum.auto()  # 220
    TLS_DONE = enum.auto()
    CLOSE = enum.auto()  # 221 to QUIT, or 421


_S, _V = ServerState, ServerInput
SERVER_TRANSITIONS: dict[ServerState, dict[ServerInput, ServerState]] = {
    _S.GREETING: {_V.GREETING_SENT: _S.GREETED, _V.CLOSE: _S.CLOSED},
    _S.GREETED: {
        _V.HELLO_OK: _S.READY, _V.RSET_OK: _S.GREETED, _V.STARTTLS_OK: _S.TLS_HANDSHAKE,
        _V.CLOSE: _S.CLOSED,
    },
    _S.READY: {
        _V.HELLO_OK: _S.READY, _V.RSET_OK: _S.READY, _V.STARTTLS_OK: _S.TLS_HANDSHAKE,
        _V.AUTH_CHALLENGE: _S.AUTH, _V.AUTH_DONE: _S.READY, _V.MAIL_OK: _S.MAIL,
        _V.CLOSE: _S.CLOSED,
    },
    # RFC 5321 §4.1.4: EHLO and RSET both end a transaction.
    _S.MAIL: {
        _V.HELLO_OK: _S.READY, _V.RSET_OK: _S.READY, _V.RCPT_OK: _S.RCPT,
        _V.CLOSE: _S.CLOSED,
    },
    _S.RCPT: {
        _V.HELLO_OK: _S.READY, _V.RSET_OK: _S.READY, _V.RCPT_OK: _S.RCPT,
        _V.DATA_GO_AHEAD: _S.BODY, _V.CLOSE: _S.CLOSED,
    },
    _S.BODY: {_V.MESSAGE_DONE: _S.READY, _V.CLOSE: _S.CLOSED},
    _S.AUTH: {_V.AUTH_CHALLENGE: _S.AUTH, _V.AUTH_DONE: _S.READY, _V.CLOSE: _S.CLOSED},
    _S.TLS_HANDSHAKE: {_V.TLS_DONE: _S.GREETED, _V.CLOSE: _S.CLOSED},
    _S.CLOSED: {},
    _S.ERROR: {},
}  # fmt: skip

# Which commands the server accepts in each state; any other gets 503 (RFC 5321
# §4.1.4: bad sequence). VRFY, EXPN and HELP are harmless anywhere outside DATA.
_ALWAYS = frozenset({"NOOP", "RSET", "QUIT", "EHLO", "HELO", "VRFY", "EXPN", "HELP"})
SERVER_COMMANDS: dict[ServerState, frozenset[str]] = {
    _S.GREETED: _ALWAYS | {"STARTTLS"},
    # RFC 4954 §4: AUTH is not permitted during a mail transaction.
    _S.READY: _ALWAYS | {"STARTTLS", "AUTH", "MAIL"},
    _S.MAIL: _ALWAYS | {"RCPT"},
    _S.RCPT: _ALWAYS | {"RCPT", "DATA"},
}
# aiosmtpd's ALLOWED_BEFORE_STARTTLS, plus HELO and RSET which reveal nothing: when
# TLS is required, everything else waits for it (530, RFC 3207 §4).
ALLOWED_BEFORE_TLS = frozenset({"NOOP", "EHLO", "HELO", "STARTTLS", "QUIT", "RSET"})

# RFC 5321 §4.3.2: the positive replies each command may get; 4xx and 5xx always
# may. Anything else (354 to EHLO, 221 to STARTTLS, ...) means a desynchronised or
# hostile peer (security.md C8) on the client, a bug in the application on the
# server. None stands for the greeting. Keyed by the event class.
POSITIVE_REPLIES: dict[type[object] | None, frozenset[int]] = {
    None: frozenset({220}),
    Ehlo: frozenset({250}),
    Helo: frozenset({250}),
    StartTLS: frozenset({220}),
    Auth: frozenset({235, 334}),
    AuthRequest: frozenset({235, 334}),
    AuthResponse: frozenset({235, 334}),
    AuthCancelled: frozenset(),
    MailFrom: frozenset({250}),
    RcptTo: frozenset({250, 251}),
    Data: frozenset({354}),
    DataChunk: frozenset(),
    EndOfData: frozenset({250}),
    Rset: frozenset({250}),
    Noop: frozenset({250}),
    Quit: frozenset({221}),
    OtherCommand: frozenset({211, 214, 250, 251, 252}),  # HELP, VRFY, EXPN
}
