"""A small blocking SMTP listener on loopback, built on the sans-IO server core.

It is the embedded default server: ``mailhop demo`` sends to it, tests use it as
the independent peer made of our own server core, and ``mailhop serve`` will grow
from it. Each accepted message is handed to a ``deliver`` callback; the 250 is
only sent after the callback returns, so whatever the callback makes durable is
durable before the client hears "accepted" (DESIGN.md §4 invariant 1).

Deliberately small: no TLS and no AUTH (it listens on loopback only), one thread
per connection, a bounded number of connections and a per-read timeout.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Callable

from mailhop.proto.errors import ProtocolError
from mailhop.proto.smtp import (
    NEED_DATA,
    CommandRejected,
    ConnectionClosed,
    Data,
    DataChunk,
    Ehlo,
    EndOfData,
    Helo,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Reply,
    Rset,
    ServerConnection,
)

# Loopback only: the listener has no TLS and no authentication.
LOOPBACK = "127.0.0.1"
# A client that says nothing for this long is dropped (RFC 5321 §4.5.3.2.7 asks a
# server to wait at least 5 minutes; a loopback peer that stalls is broken).
DEFAULT_IDLE_TIMEOUT_SECONDS = 300.0
# Concurrent sessions served; more wait in the kernel's backlog.
MAX_SESSIONS = 16
# What one message may weigh; advertised with SIZE (RFC 1870).
DEFAULT_MAX_MESSAGE_SIZE = 50 * 1024 * 1024
READ_CHUNK_SIZE = 64 * 1024


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReceivedMessage:
    """One message as the listener took it: envelope plus content (CRLF lines)."""

    sender: str
    recipients: tuple[str, ...]
    content: bytes
    helo: str


Deliver = Callable[[ReceivedMessage], None]


class Listener:
    """Accept SMTP on ``LOOPBACK``; call ``deliver`` for each message before the 250."""

    def __init__(
        self,
        deliver: Deliver,
        *,
        port: int = 0,
        hostname: str = "localhost",
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT_SECONDS,
    ) -> None:
        self.deliver = deliver
        self.hostname = hostname
        self.max_message_size = max_message_size
        self.idle_timeout = idle_timeout
        self._socket = socket.create_server((LOOPBACK, port))
        self._slots = threading.BoundedSemaphore(MAX_SESSIONS)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stopping = False

    @property
    def port(self) -> int:
        port: int = self._socket.getsockname()[1]
        return port

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        self._socket.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Listener:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self) -> None:
        while not self._stopping:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return  # closed by stop()
            self._slots.acquire()
            threading.Thread(target=self._session, args=(connection,), daemon=True).start()

    def _session(self, connection: socket.socket) -> None:
        try:
            with connection:
                connection.settimeout(self.idle_timeout)
                Session(self, connection).run()
        except (OSError, ProtocolError):
            pass  # the client went away or broke the protocol: nothing was accepted
        finally:
            self._slots.release()


class Session:
    """One connection: answer each event of the core, in order."""

    def __init__(self, listener: Listener, connection: socket.socket) -> None:
        self._listener = listener
        self._connection = connection
        self._core = ServerConnection(max_message_size=listener.max_message_size)
        self._helo = ""
        self._sender: str | None = None
        self._recipients: list[str] = []
        self._content = bytearray()

    def run(self) -> None:
        self._reply(220, f"{self._listener.hostname} ESMTP mailhop")
        while True:
            event = self._core.next_event()
            if event is NEED_DATA:
                self._connection.sendall(self._core.data_to_send())
                self._core.receive_data(self._connection.recv(READ_CHUNK_SIZE))
                continue
            if isinstance(event, ConnectionClosed):
                return
            if isinstance(event, CommandRejected):
                continue  # the core already answered (500/501/503)
            if isinstance(event, DataChunk):
                self._content += event.data
                continue
            if not self._answer(event):
                self._connection.sendall(self._core.data_to_send())
                return

    def _answer(self, event: object) -> bool:
        """Reply to one event; False when the session is over."""
        listener = self._listener
        if isinstance(event, Ehlo):
            self._helo = event.domain
            self._reply(
                250,
                listener.hostname,
                "PIPELINING",
                f"SIZE {listener.max_message_size}",
                "8BITMIME",
                "SMTPUTF8",
                "ENHANCEDSTATUSCODES",
            )
        elif isinstance(event, Helo):
            self._helo = event.domain
            self._reply(250, listener.hostname)
        elif isinstance(event, MailFrom):
            self._sender, self._recipients, self._content = event.address, [], bytearray()
            self._reply(250, "2.1.0 Ok")
        elif isinstance(event, RcptTo):
            self._recipients.append(event.address)
            self._reply(250, "2.1.5 Ok")
        elif isinstance(event, Data):
            if self._recipients:
                self._reply(354, "End data with <CR><LF>.<CR><LF>")
            else:
                self._reply(554, "5.5.1 No valid recipients")
        elif isinstance(event, EndOfData):
            self._end_of_data(event)
        elif isinstance(event, Quit):
            self._reply(221, "2.0.0 Bye")
            return False
        elif isinstance(event, Rset | Noop):
            self._reply(250, "2.0.0 Ok")
        else:
            # STARTTLS, AUTH, VRFY ... are not offered by a loopback-only listener.
            self._reply(502, "5.5.1 Command not implemented")
        return True

    def _end_of_data(self, event: EndOfData) -> None:
        if event.oversized:
            self._reply(552, "5.3.4 Message too big")
        elif event.bare_line_endings:
            # RFC 5321 §2.3.8: bare CR or LF is not allowed (SMTP smuggling class).
            self._reply(550, "5.6.0 Bare CR or LF in message")
        else:
            self._listener.deliver(
                ReceivedMessage(
                    sender=self._sender or "",
                    recipients=tuple(self._recipients),
                    content=bytes(self._content),
                    helo=self._helo,
                )
            )
            self._reply(250, "2.0.0 Ok: accepted")
        self._sender, self._recipients, self._content = None, [], bytearray()

    def _reply(self, code: int, *lines: str) -> None:
        self._core.send(Reply(code=code, lines=lines or ("",)))
