"""The IMAP4rev1 client core for retrieval (RFC 3501, RFC 2177 IDLE, RFC 6851 MOVE).

Sans-IO like :mod:`mailhop.proto.smtp`::

    client = ImapClient(tls_active=True)
    client.receive_data(sock.recv(...))     # b"" when the peer closed
    event = client.next_event()             # Greeting, Completed, ..., or NEED_DATA
    client.send(Select(mailbox="INBOX"))    # queues "A0001 SELECT INBOX\\r\\n"
    sock.sendall(client.data_to_send())

One tagged command is outstanding at a time; IDLE is ended by :class:`Done`.
The body of ``BODY[]`` in a FETCH response is streamed as :class:`BodyChunk`
events between :class:`BodyStart` and the :class:`FetchResponse` that carries the
other attributes (UID, FLAGS, RFC822.SIZE), so a message of any size passes
through a bounded buffer. Every other literal is held in memory only up to
``MAX_INLINE_LITERAL_LENGTH``; a body literal larger than ``max_message_size`` is
refused before a byte of it is read (a server announcing ``{4294967295}`` costs
nothing, cpython gh-119511).

Security rules the core enforces (DESIGN.md §4 invariants 3, 5, 6):

* an argument with CR, LF or NUL is refused (RFC 3501 §4.3 quoted strings cannot
  hold them; CVE-2025-15366 class);
* ``PREAUTH`` on a connection that was to be upgraded with STARTTLS is an attack
  (CVE-2020-12398): the core raises instead of entering the authenticated state
  without TLS;
* bytes after the STARTTLS ``OK`` are refused (RFC 3501 §6.2.1, CVE-2020-14954),
  and everything learned before TLS (capabilities) is forgotten after it;
* LOGIN and cleartext SASL mechanisms need TLS unless explicitly allowed; LOGIN is
  refused when the server says LOGINDISABLED (RFC 3501 §6.2.3).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import re

from mailhop.proto._buffer import ByteStream, LineTooLongError
from mailhop.proto.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from mailhop.proto.sasl import Flow, Mechanism

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_INLINE_LITERAL_LENGTH",
    "MAX_RESPONSE_LINE_LENGTH",
    "MAX_SEARCH_RESULTS",
    "NEED_DATA",
    "Authenticate",
    "BodyChunk",
    "BodyStart",
    "Capability",
    "CapabilityList",
    "Close",
    "Command",
    "Completed",
    "ConnectionClosed",
    "Continuation",
    "Done",
    "Expunge",
    "Expunged",
    "FetchResponse",
    "Greeting",
    "Idle",
    "ImapClient",
    "ImapEvent",
    "ImapState",
    "Login",
    "Logout",
    "MailboxSize",
    "MailboxStatus",
    "Noop",
    "SearchResult",
    "Select",
    "StartTLS",
    "TLSUpgradeRequired",
    "UidExpunge",
    "UidFetch",
    "UidMove",
    "UidSearch",
    "UidStore",
    "UntaggedStatus",
    "encode_mailbox_name",
]

# RFC 3501 sets no line limit; RFC 7162 §4 asks clients to accept at least 8192
# octets per command line. Responses other than literals (CAPABILITY, FLAGS, the
# FETCH attributes around a body) are short; 64 KiB is far above them and bounded.
MAX_RESPONSE_LINE_LENGTH = 64 * 1024
# Literals other than a message body (a quoted header field, a mailbox name) are
# small; a larger one is a hostile server trying to make us buffer it.
MAX_INLINE_LITERAL_LENGTH = 1024 * 1024
# Bodies are streamed, so this bounds the disk, not the memory: far above every
# provider's limit (Gmail 50 MB, Outlook 150 MB) and the lab's.
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024 * 1024
# A SEARCH answer has one number per message; more than this is no real mailbox.
MAX_SEARCH_RESULTS = 10_000_000
# The number of response parts (text and literals) of one response: FETCH of one
# message has a handful; this only stops a hostile stream of tiny literals.
MAX_RESPONSE_PARTS = 1024
# Nesting depth of parenthesised lists (BODYSTRUCTURE of a deep MIME tree is the
# worst legitimate case) before the parser stops.
MAX_LIST_DEPTH = 64

_LITERAL_AT_END = re.compile(rb"~?\{([0-9]{1,20})\}\r\n\Z")
_BODY_ITEM_AT_END = re.compile(rb"(?:BODY\[\]|BODY\[\]<0>|RFC822|BINARY\[\]) ~?\{[0-9]+\}\r\n\Z")
_FETCH_START = re.compile(rb"\* ([0-9]{1,10}) FETCH \(")
_TAG_FORMAT = "A{:04d}"
_SEQUENCE_SET = re.compile(
    r"(?:[0-9]{1,10}|\*)(?::(?:[0-9]{1,10}|\*))?(?:,(?:[0-9]{1,10}|\*)(?::(?:[0-9]{1,10}|\*))?)*"
)
_FLAG = re.compile(r"\\?[A-Za-z0-9$_.-]{1,64}")


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


# --- commands -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Capability:
    pass


@dataclasses.dataclass(frozen=True, kw_only=True)
class StartTLS:
    pass


@dataclasses.dataclass(frozen=True, kw_only=True)
class Login:
    user: str
    password: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Authenticate:
    """RFC 3501 §6.2.2 with SASL-IR (RFC 4959) when the server offers it."""

    mechanism: Mechanism


@dataclasses.dataclass(frozen=True, kw_only=True)
class Select:
    """SELECT, or EXAMINE when ``read_only`` (RFC 3501 §6.3.1-2)."""

    mailbox: str
    read_only: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class UidSearch:
    """``UID SEARCH UID first:*`` (all messages from ``first_uid`` on) or ``ALL``."""

    first_uid: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class UidFetch:
    """``UID FETCH uids (UID RFC822.SIZE [BODY.PEEK[]])``; PEEK keeps \\Seen unset."""

    uids: str
    body: bool = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class UidStore:
    """``UID STORE uids +FLAGS.SILENT (flags)``."""

    uids: str
    flags: tuple[str, ...]


@dataclasses.dataclass(frozen=True, kw_only=True)
class UidMove:
    """RFC 6851 ``UID MOVE``."""

    uids: str
    mailbox: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class UidExpunge:
    """RFC 4315 (UIDPLUS) ``UID EXPUNGE``: only these messages."""

    uids: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Expunge:
    pass


@dataclasses.dataclass(frozen=True, kw_only=True)
class Close:
    pass


@dataclasses.dataclass(frozen=True, kw_only=True)
class Idle:
    """RFC 2177: the server answers ``+``; end with :class:`Done`."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Done:
    """Ends IDLE (an untagged line, RFC 2177 §3)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Noop:
    pass


@dataclasses.dataclass(frozen=True, kw_only=True)
class Logout:
    pass


Command = (
    Capability | StartTLS | Login | Authenticate | Select | UidSearch | UidFetch | UidStore
    | UidMove | UidExpunge | Expunge | Close | Idle | Done | Noop | Logout
)  # fmt: skip


# --- events ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Greeting:
    status: str  # OK, PREAUTH or BYE
    code: str | None
    text: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Completed:
    """The tagged completion of ``command`` (RFC 3501 §7.1)."""

    command: Command
    status: str  # OK, NO or BAD
    code: str | None
    text: str

    @property
    def ok(self) -> bool:
        return self.status == "OK"


@dataclasses.dataclass(frozen=True, kw_only=True)
class UntaggedStatus:
    """``* OK/NO/BAD/BYE [code] text`` outside the greeting."""

    status: str
    code: str | None
    text: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class CapabilityList:
    capabilities: frozenset[str]


@dataclasses.dataclass(frozen=True, kw_only=True)
class MailboxSize:
    """``* N EXISTS``: what IDLE waits for."""

    exists: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class Expunged:
    sequence: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchResult:
    numbers: tuple[int, ...]


@dataclasses.dataclass(frozen=True, kw_only=True)
class BodyStart:
    sequence: int
    size: int  # the literal's announced length, already checked against the limit


@dataclasses.dataclass(frozen=True, kw_only=True)
class BodyChunk:
    data: bytes  # raw message bytes, CRLF line endings as the server sent them


@dataclasses.dataclass(frozen=True, kw_only=True)
class FetchResponse:
    sequence: int
    uid: int | None
    size: int | None  # RFC822.SIZE
    flags: tuple[str, ...] | None
    has_body: bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class Continuation:
    """``+ text`` outside AUTHENTICATE: the server is idling (RFC 2177)."""

    text: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class TLSUpgradeRequired:
    pass


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConnectionClosed:
    pass


ImapEvent = (
    Greeting | Completed | UntaggedStatus | CapabilityList | MailboxSize | Expunged
    | SearchResult | BodyStart | BodyChunk | FetchResponse | Continuation
    | TLSUpgradeRequired | ConnectionClosed
)  # fmt: skip


@dataclasses.dataclass(frozen=True, kw_only=True)
class MailboxStatus:
    """What SELECT/EXAMINE said about the mailbox (RFC 3501 §6.3.1)."""

    name: str
    uidvalidity: int | None = None
    uidnext: int | None = None
    exists: int = 0


# --- states ---------------------------------------------------------------------------


class ImapState(enum.Enum):
    AWAIT_GREETING = enum.auto()
    NOT_AUTHENTICATED = enum.auto()  # RFC 3501 §3.1
    TLS_HANDSHAKE = enum.auto()  # STARTTLS OK received; the driver does TLS
    AUTHENTICATED = enum.auto()  # §3.2
    SELECTED = enum.auto()  # §3.3
    IDLING = enum.auto()  # IDLE sent (RFC 2177)
    LOGOUT = enum.auto()  # §3.4: BYE received, LOGOUT done, or the peer closed
    ERROR = enum.auto()  # a ProtocolError happened; terminal


# What each state allows to be sent (RFC 3501 §6).
_ANY_STATE = (Capability, Noop, Logout)
_ALLOWED: dict[ImapState, tuple[type[Command], ...]] = {
    ImapState.NOT_AUTHENTICATED: (*_ANY_STATE, StartTLS, Login, Authenticate),
    ImapState.AUTHENTICATED: (*_ANY_STATE, Select),
    ImapState.SELECTED: (
        *_ANY_STATE, Select, UidSearch, UidFetch, UidStore, UidMove, UidExpunge, Expunge,
        Close, Idle,
    ),
    ImapState.IDLING: (Done,),
}  # fmt: skip

# The one table of state changes: (state, command, completion status) -> new state.
# A pair that is absent leaves the state as it is.
_ON_COMPLETION: dict[tuple[ImapState, type[Command], str], ImapState] = {
    (ImapState.NOT_AUTHENTICATED, Login, "OK"): ImapState.AUTHENTICATED,
    (ImapState.NOT_AUTHENTICATED, Authenticate, "OK"): ImapState.AUTHENTICATED,
    (ImapState.NOT_AUTHENTICATED, StartTLS, "OK"): ImapState.TLS_HANDSHAKE,
    (ImapState.AUTHENTICATED, Select, "OK"): ImapState.SELECTED,
    (ImapState.SELECTED, Select, "OK"): ImapState.SELECTED,
    # RFC 3501 §6.3.1: a failed SELECT leaves no mailbox selected.
    (ImapState.SELECTED, Select, "NO"): ImapState.AUTHENTICATED,
    (ImapState.SELECTED, Select, "BAD"): ImapState.AUTHENTICATED,
    (ImapState.SELECTED, Close, "OK"): ImapState.AUTHENTICATED,
    (ImapState.IDLING, Idle, "OK"): ImapState.SELECTED,
    (ImapState.IDLING, Idle, "NO"): ImapState.SELECTED,
    (ImapState.IDLING, Idle, "BAD"): ImapState.SELECTED,
    **{(state, Logout, status): ImapState.LOGOUT for state in ImapState
       for status in ("OK", "NO", "BAD")},
}  # fmt: skip


# --- argument encoding ----------------------------------------------------------------


def _refuse_controls(text: str, what: str) -> None:
    if any(character in text for character in "\r\n\0"):
        raise LocalProtocolError(f"{what} contains CR, LF or NUL")


def _quoted(text: str, what: str) -> bytes:
    """RFC 3501 §4.3 quoted string: ASCII text, ``"`` and ``\\`` escaped."""
    _refuse_controls(text, what)
    if not text.isascii():
        raise LocalProtocolError(f"{what} is not ASCII; use AUTHENTICATE instead of LOGIN")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return b'"' + escaped.encode("ascii") + b'"'


def encode_mailbox_name(name: str) -> bytes:
    """A mailbox name as an astring: modified UTF-7 (RFC 3501 §5.1.3), quoted."""
    _refuse_controls(name, "the folder name")
    if not name:
        raise LocalProtocolError("the folder name is empty")
    if name.upper() == "INBOX":
        return b"INBOX"
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append(
                "&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-"
            )
            pending.clear()

    for character in name:
        if " " <= character <= "~":
            flush()
            out.append("&-" if character == "&" else character)
        else:
            pending.append(character)
    flush()
    return _quoted("".join(out), "the folder name")


def _sequence_set(uids: str) -> bytes:
    if not _SEQUENCE_SET.fullmatch(uids):
        raise LocalProtocolError(f"not an IMAP sequence set: {uids[:40]!r}")
    return uids.encode("ascii")


# --- response parsing -----------------------------------------------------------------


class _Literal(bytes):
    """A literal's content inside a response, kept apart from the surrounding text."""


_BODY_MARKER = object()


def _tokens(parts: list[bytes | object]) -> list[object]:
    """Parse a response's text and literals into nested lists of tokens.

    Tokens: ``str`` atoms (``BODY[]``, ``\\Seen``, ``123``), ``bytes`` for quoted
    strings and literals, ``list`` for parenthesised lists, ``_BODY_MARKER`` where a
    streamed body was. Brackets inside an atom (``BODY[HEADER]``) stay in the atom.
    """
    root: list[object] = []
    stack: list[list[object]] = [root]
    for part in parts:
        if not isinstance(part, bytes) or isinstance(part, _Literal):
            stack[-1].append(part)
            continue
        text, position, length = part, 0, len(part)
        while position < length:
            character = text[position : position + 1]
            if character == b" ":
                position += 1
            elif character == b"(":
                if len(stack) > MAX_LIST_DEPTH:
                    raise RemoteProtocolError("IMAP response nested too deeply")
                nested: list[object] = []
                stack[-1].append(nested)
                stack.append(nested)
                position += 1
            elif character == b")":
                if len(stack) == 1:
                    raise RemoteProtocolError("unbalanced ')' in IMAP response")
                stack.pop()
                position += 1
            elif character == b'"':
                value = bytearray()
                position += 1
                while True:
                    if position >= length:
                        raise RemoteProtocolError("unterminated quoted string in IMAP response")
                    byte = text[position : position + 1]
                    if byte == b"\\" and position + 1 < length:
                        value += text[position + 1 : position + 2]
                        position += 2
                    elif byte == b'"':
                        position += 1
                        break
                    else:
                        value += byte
                        position += 1
                stack[-1].append(bytes(value))
            else:
                start, depth = position, 0
                while position < length:
                    byte = text[position : position + 1]
                    if byte == b"[":
                        depth += 1
                    elif byte == b"]" and depth:
                        depth -= 1
                    elif depth == 0 and byte in (b" ", b"(", b")"):
                        break
                    position += 1
                stack[-1].append(text[start:position].decode("utf-8", "replace"))
    if len(stack) != 1:
        raise RemoteProtocolError("unbalanced '(' in IMAP response")
    return root


def _status_text(rest: str) -> tuple[str | None, str]:
    """Split ``[CODE args] text`` (RFC 3501 §7.1)."""
    if rest.startswith("["):
        end = rest.find("]")
        if end == -1:
            raise RemoteProtocolError("unterminated response code in IMAP status response")
        return rest[1:end], rest[end + 1 :].lstrip(" ")
    return None, rest


def _number(token: object, what: str) -> int:
    if not isinstance(token, str) or not token.isdigit() or len(token) > 10:
        raise RemoteProtocolError(f"IMAP {what} is not a number: {str(token)[:40]!r}")
    return int(token)


class ImapClient(ByteStream):
    """One IMAP session.

    ``tls_active``: TLS from the first byte (port 993). ``starttls_required``: the
    driver will upgrade this plaintext connection, so a PREAUTH greeting (which
    would skip STARTTLS) is refused as an attack.
    """

    def __init__(
        self,
        *,
        tls_active: bool = False,
        starttls_required: bool = False,
        allow_plaintext_auth: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        super().__init__()
        self.tls_active = tls_active
        self.starttls_required = starttls_required and not tls_active
        self.allow_plaintext_auth = allow_plaintext_auth
        self.max_message_size = max_message_size
        self.capabilities: frozenset[str] = frozenset()
        """From the last CAPABILITY response or code; emptied by STARTTLS."""
        self.mailbox: MailboxStatus | None = None
        self._state = ImapState.AWAIT_GREETING
        self._tag_number = 0
        self._pending: Command | None = None
        self._pending_tag = ""
        self._flow: Flow | None = None
        self._parts: list[bytes | object] = []  # the response being assembled
        self._literal_remaining = 0  # bytes of an inline literal still to read
        self._literal = bytearray()
        self._body_remaining: int | None = None  # bytes of a streamed body still to read
        self._body_sequence = 0

    @property
    def state(self) -> ImapState:
        return self._state

    @property
    def pending(self) -> Command | None:
        return self._pending

    # --- public API -------------------------------------------------------------------

    def send(self, command: Command) -> None:
        try:
            self._send(command)
        except ProtocolError:
            self._state = ImapState.ERROR
            raise

    def next_event(self) -> ImapEvent | _NeedData:
        if self._state is ImapState.ERROR:
            raise LocalProtocolError("the connection is in the ERROR state")
        try:
            return self._next_event()
        except ProtocolError:
            self._state = ImapState.ERROR
            raise

    def start_tls_done(self) -> None:
        """The handshake after STARTTLS completed: forget what came before it."""
        try:
            if self._state is not ImapState.TLS_HANDSHAKE:
                raise LocalProtocolError("no STARTTLS OK to complete")
            if len(self._buffer):
                raise RemoteProtocolError("the server sent data during the TLS handshake")
            self._state = ImapState.NOT_AUTHENTICATED
            self.tls_active = True
            self.starttls_required = False
            self.capabilities = frozenset()
        except ProtocolError:
            self._state = ImapState.ERROR
            raise

    # --- sending ----------------------------------------------------------------------

    def _send(self, command: Command) -> None:
        if self._state is ImapState.AWAIT_GREETING:
            raise LocalProtocolError("the server has not greeted yet")
        if not isinstance(command, _ALLOWED.get(self._state, ())):
            raise LocalProtocolError(
                f"cannot send {type(command).__name__} in state {self._state.name}"
            )
        if isinstance(command, Done):
            self._outgoing += b"DONE\r\n"
            return
        if self._pending is not None:
            raise LocalProtocolError("a command is still outstanding")
        arguments = self._arguments(command)
        self._tag_number += 1
        self._pending_tag = _TAG_FORMAT.format(self._tag_number)
        self._outgoing += self._pending_tag.encode("ascii") + b" " + arguments + b"\r\n"
        self._pending = command
        if isinstance(command, Idle):
            self._state = ImapState.IDLING
        if isinstance(command, Select):
            self.mailbox = MailboxStatus(name=command.mailbox)

    def _arguments(self, command: Command) -> bytes:
        clear_ok = self.tls_active or self.allow_plaintext_auth
        if isinstance(command, StartTLS):
            if self.tls_active:
                raise LocalProtocolError("TLS is already active")
            return b"STARTTLS"
        if isinstance(command, Login):
            if not clear_ok:
                raise LocalProtocolError("LOGIN would send the password in clear without TLS")
            if "LOGINDISABLED" in self.capabilities:
                raise LocalProtocolError("the server disabled LOGIN (RFC 3501 §6.2.3)")
            return (
                b"LOGIN " + _quoted(command.user, "the user name") + b" "
                + _quoted(command.password, "the password")
            )  # fmt: skip
        if isinstance(command, Authenticate):
            return self._authenticate(command.mechanism, clear_ok)
        if isinstance(command, Select):
            verb = b"EXAMINE " if command.read_only else b"SELECT "
            return verb + encode_mailbox_name(command.mailbox)
        if isinstance(command, UidSearch):
            if command.first_uid is None:
                return b"UID SEARCH ALL"
            if command.first_uid < 1:
                raise LocalProtocolError("UIDs start at 1 (RFC 3501 §2.3.1.1)")
            return b"UID SEARCH UID %d:*" % command.first_uid
        if isinstance(command, UidFetch):
            items = b"(UID RFC822.SIZE BODY.PEEK[])" if command.body else b"(UID RFC822.SIZE)"
            return b"UID FETCH " + _sequence_set(command.uids) + b" " + items
        if isinstance(command, UidStore):
            for flag in command.flags:
                if not _FLAG.fullmatch(flag):
                    raise LocalProtocolError(f"not an IMAP flag: {flag[:40]!r}")
            flags = " ".join(command.flags).encode("ascii")
            return b"UID STORE " + _sequence_set(command.uids) + b" +FLAGS.SILENT (" + flags + b")"
        if isinstance(command, UidMove):
            if "MOVE" not in self.capabilities:
                raise LocalProtocolError("the server did not advertise MOVE (RFC 6851)")
            return (
                b"UID MOVE " + _sequence_set(command.uids) + b" "
                + encode_mailbox_name(command.mailbox)
            )  # fmt: skip
        if isinstance(command, UidExpunge):
            if "UIDPLUS" not in self.capabilities:
                raise LocalProtocolError("the server did not advertise UIDPLUS (RFC 4315)")
            return b"UID EXPUNGE " + _sequence_set(command.uids)
        if isinstance(command, Idle) and "IDLE" not in self.capabilities:
            raise LocalProtocolError("the server did not advertise IDLE (RFC 2177)")
        return type(command).__name__.upper().encode("ascii")

    def _authenticate(self, mechanism: Mechanism, clear_ok: bool) -> bytes:
        if mechanism.sends_secret_in_clear and not clear_ok:
            raise LocalProtocolError(
                f"AUTHENTICATE {mechanism.name} would send the secret in clear without TLS"
            )
        if f"AUTH={mechanism.name}" not in self.capabilities:
            raise LocalProtocolError(f"the server did not advertise AUTH={mechanism.name}")
        self._flow = mechanism.flow()
        initial = next(self._flow)
        line = b"AUTHENTICATE " + mechanism.name.encode("ascii")
        if initial is not None:
            if "SASL-IR" in self.capabilities:
                # RFC 4959 §3: an empty initial response is sent as "=".
                line += b" " + (base64.b64encode(initial) if initial else b"=")
            else:
                self._deferred_initial = initial
        return line

    _deferred_initial: bytes | None = None

    # --- receiving --------------------------------------------------------------------

    def _next_event(self) -> ImapEvent | _NeedData:
        while True:
            if self._body_remaining is not None:
                event = self._read_body()
                if event is not None:
                    return event
                if self._body_in_progress():
                    break  # more body bytes needed
                continue
            if self._literal_remaining:
                if not self._read_literal():
                    break
                continue
            try:
                line = self._buffer.extract_line(MAX_RESPONSE_LINE_LENGTH)
            except LineTooLongError:
                raise RemoteProtocolError("IMAP response line too long") from None
            if line is None:
                break
            result = self._handle_line(line)
            if result is not None:
                return result
        if not self._eof:
            return NEED_DATA
        if len(self._buffer) or self._parts or self._body_remaining is not None:
            raise RemoteProtocolError("the connection closed in the middle of a response")
        if self._pending is not None and not isinstance(self._pending, Logout):
            raise RemoteProtocolError(
                "the server closed the connection without completing"
                f" {type(self._pending).__name__}"
            )
        self._pending = None
        self._state = ImapState.LOGOUT
        return ConnectionClosed()

    def _handle_line(self, line: bytes) -> ImapEvent | None:
        if not line.endswith(b"\r\n"):
            raise RemoteProtocolError("IMAP line not ended by CRLF (RFC 3501 §2.2)")
        if self._state is ImapState.TLS_HANDSHAKE:
            raise RemoteProtocolError("the server sent data after its STARTTLS OK")
        literal = _LITERAL_AT_END.search(line)
        if literal is not None:
            if len(self._parts) >= MAX_RESPONSE_PARTS:
                raise RemoteProtocolError("IMAP response with too many literals")
            size = int(literal.group(1))
            text = line[: literal.start()]
            first = self._parts[0] if self._parts else text
            fetch = _FETCH_START.match(first) if isinstance(first, bytes) else None
            if fetch is not None and _BODY_ITEM_AT_END.search(line):
                if size > self.max_message_size:
                    raise RemoteProtocolError(
                        f"the server announced a message of {size} octets, more than the limit"
                        f" of {self.max_message_size}"
                    )
                self._parts.append(text)
                self._parts.append(_BODY_MARKER)
                self._body_remaining = size
                self._body_sequence = int(fetch.group(1))
                return BodyStart(sequence=self._body_sequence, size=size)
            if size > MAX_INLINE_LITERAL_LENGTH:
                raise RemoteProtocolError(
                    f"the server announced a literal of {size} octets outside a message body"
                )
            self._parts.append(text)
            self._literal_remaining = size
            self._literal = bytearray()
            if size == 0:
                self._literal_remaining = 0
                self._parts.append(_Literal(b""))
            return None
        parts, self._parts = [*self._parts, line[:-2]], []
        return self._dispatch(parts)

    def _body_in_progress(self) -> bool:
        return self._body_remaining is not None

    def _read_literal(self) -> bool:
        data = self._buffer.extract_all()
        take = data[: self._literal_remaining]
        self._buffer.append(data[len(take) :])
        self._literal += take
        self._literal_remaining -= len(take)
        if self._literal_remaining:
            return False
        self._parts.append(_Literal(bytes(self._literal)))
        self._literal = bytearray()
        return True

    def _read_body(self) -> BodyChunk | None:
        assert self._body_remaining is not None  # noqa: S101 - caller checked
        if not self._body_remaining:
            self._body_remaining = None
            return None
        data = self._buffer.extract_all()
        if not data:
            return None
        take = data[: self._body_remaining]
        self._buffer.append(data[len(take) :])
        self._body_remaining -= len(take)
        if not self._body_remaining:
            self._body_remaining = None
        return BodyChunk(data=take)

    def _dispatch(self, parts: list[bytes | object]) -> ImapEvent | None:
        first = parts[0]
        assert isinstance(first, bytes)  # noqa: S101 - a line always comes first
        if first.startswith(b"+"):
            return self._continuation(first)
        if first.startswith(b"* "):
            return self._untagged(parts)
        tag, _, rest = first.partition(b" ")
        if self._pending is None or tag.decode("ascii", "replace") != self._pending_tag:
            raise RemoteProtocolError(f"IMAP response with an unknown tag: {first[:80]!r}")
        if len(parts) > 1:
            raise RemoteProtocolError("literal in a tagged IMAP response")
        status, _, text = rest.decode("utf-8", "replace").partition(" ")
        status = status.upper()
        if status not in ("OK", "NO", "BAD"):
            raise RemoteProtocolError(f"tagged IMAP response is not OK/NO/BAD: {first[:80]!r}")
        code, text = _status_text(text)
        return self._complete(status, code, text)

    def _complete(self, status: str, code: str | None, text: str) -> ImapEvent:
        command = self._pending
        assert command is not None  # noqa: S101 - checked by _dispatch
        self._pending = None
        self._absorb_code(code)
        if isinstance(command, Authenticate):
            self._finish_auth(status == "OK")
        new_state = _ON_COMPLETION.get((self._state, type(command), status))
        if new_state is not None:
            self._state = new_state
        # RFC 3501 §6.2.3: capabilities may change after authentication.
        fresh_capabilities = code is not None and code.upper().startswith("CAPABILITY")
        if isinstance(command, Login | Authenticate) and status == "OK" and not fresh_capabilities:
            self.capabilities = frozenset()
        if isinstance(command, StartTLS) and status == "OK":
            # RFC 3501 §6.2.1 / CVE-2020-14954: nothing may follow the OK in the clear.
            if len(self._buffer):
                raise RemoteProtocolError("the server sent data after its STARTTLS OK")
            return TLSUpgradeRequired()
        return Completed(command=command, status=status, code=code, text=text)

    def _continuation(self, line: bytes) -> ImapEvent | None:
        command = self._pending
        if isinstance(command, Authenticate) and self._flow is not None:
            if self._deferred_initial is not None:
                response: bytes | None = self._deferred_initial
                self._deferred_initial = None
            else:
                try:
                    challenge = base64.b64decode(line[2:], validate=True)
                except binascii.Error:
                    raise RemoteProtocolError("AUTHENTICATE challenge is not base64") from None
                try:
                    response = self._flow.send(challenge)
                except StopIteration:
                    response = None
            # RFC 3501 §6.2.2: "*" cancels the exchange.
            self._outgoing += b"*\r\n" if response is None else base64.b64encode(response) + b"\r\n"
            return None
        if isinstance(command, Idle):
            return Continuation(text=line[2:].decode("utf-8", "replace"))
        raise RemoteProtocolError("unexpected IMAP continuation request")

    def _finish_auth(self, ok: bool) -> None:
        flow, self._flow = self._flow, None
        self._deferred_initial = None
        if flow is None:
            return
        if ok:
            try:
                flow.send(None)
            except StopIteration:
                pass
            else:
                flow.close()
                raise RemoteProtocolError("the server declared success before the exchange ended")
        flow.close()

    def _absorb_code(self, code: str | None) -> None:
        if code is None:
            return
        name, _, arguments = code.partition(" ")
        name = name.upper()
        if name == "CAPABILITY":
            self.capabilities = frozenset(arguments.upper().split())
        elif self.mailbox is not None and name in ("UIDVALIDITY", "UIDNEXT"):
            value = _number(arguments.strip(), name)
            if name == "UIDVALIDITY":
                self.mailbox = dataclasses.replace(self.mailbox, uidvalidity=value)
            else:
                self.mailbox = dataclasses.replace(self.mailbox, uidnext=value)

    def _untagged(self, parts: list[bytes | object]) -> ImapEvent | None:
        first = parts[0]
        assert isinstance(first, bytes)  # noqa: S101
        if self._state is ImapState.AWAIT_GREETING:
            return self._greeting(first)
        words = first[2:].split(b" ", 2)
        keyword = words[0].upper()
        if keyword in (b"OK", b"NO", b"BAD", b"BYE"):
            code, text = _status_text(
                first[2 + len(keyword) :].lstrip(b" ").decode("utf-8", "replace")
            )
            if keyword == b"OK":
                self._absorb_code(code)
            return UntaggedStatus(status=keyword.decode(), code=code, text=text)
        if keyword == b"PREAUTH":
            raise RemoteProtocolError("PREAUTH after the greeting")
        if keyword == b"CAPABILITY":
            self.capabilities = frozenset(first[2:].decode("ascii", "replace").upper().split()[1:])
            return CapabilityList(capabilities=self.capabilities)
        if keyword == b"SEARCH":
            tokens = first[2:].split()[1:]
            if len(tokens) > MAX_SEARCH_RESULTS:
                raise RemoteProtocolError("SEARCH result too long")
            return SearchResult(
                numbers=tuple(
                    _number(t.decode("ascii", "replace"), "SEARCH result") for t in tokens
                )
            )
        if len(words) >= 2 and words[0].isdigit():
            number = _number(words[0].decode("ascii"), "message number")
            kind = words[1].upper()
            if kind == b"EXISTS":
                if self.mailbox is not None:
                    self.mailbox = dataclasses.replace(self.mailbox, exists=number)
                return MailboxSize(exists=number)
            if kind == b"EXPUNGE":
                return Expunged(sequence=number)
            if kind == b"FETCH":
                return self._fetch(number, parts)
        return None  # FLAGS, RECENT, LIST, ENABLED, ...: nothing retrieval needs

    def _greeting(self, line: bytes) -> Greeting:
        keyword, _, rest = line[2:].partition(b" ")
        status = keyword.upper().decode("ascii", "replace")
        if status not in ("OK", "PREAUTH", "BYE"):
            raise RemoteProtocolError(f"IMAP greeting is not OK, PREAUTH or BYE: {line[:80]!r}")
        code, text = _status_text(rest.decode("utf-8", "replace"))
        if status == "PREAUTH" and (self.starttls_required or not self.tls_active):
            # CVE-2020-12398: PREAUTH skips STARTTLS; everything after it would be in
            # clear, and a man in the middle can send it to strip TLS.
            raise RemoteProtocolError(
                "the server greeted with PREAUTH on a connection without TLS: possible"
                " STARTTLS stripping attack; the connection is refused"
            )
        self._absorb_code(code)
        self._state = {
            "OK": ImapState.NOT_AUTHENTICATED,
            "PREAUTH": ImapState.AUTHENTICATED,
            "BYE": ImapState.LOGOUT,
        }[status]
        return Greeting(status=status, code=code, text=text)

    def _fetch(self, sequence: int, parts: list[bytes | object]) -> FetchResponse:
        first = parts[0]
        assert isinstance(first, bytes)  # noqa: S101
        match = _FETCH_START.match(first)
        if match is None:
            raise RemoteProtocolError("malformed FETCH response")
        tokens = _tokens([first[match.end() - 1 :], *parts[1:]])
        if len(tokens) != 1 or not isinstance(tokens[0], list):
            raise RemoteProtocolError("malformed FETCH response")
        attributes = tokens[0]
        uid = size = None
        flags: tuple[str, ...] | None = None
        has_body = False
        for index in range(0, len(attributes) - 1, 2):
            name, value = attributes[index], attributes[index + 1]
            if not isinstance(name, str):
                raise RemoteProtocolError("malformed FETCH attribute name")
            upper = name.upper()
            if upper == "UID":
                uid = _number(value, "UID")
            elif upper == "RFC822.SIZE":
                size = _number(value, "RFC822.SIZE")
            elif upper == "FLAGS" and isinstance(value, list):
                flags = tuple(str(flag) for flag in value)
            elif value is _BODY_MARKER:
                has_body = True
        return FetchResponse(sequence=sequence, uid=uid, size=size, flags=flags, has_body=has_body)
