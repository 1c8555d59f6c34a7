"""A scripted, possibly hostile SMTP server on loopback, and a recording proxy.

The delivery tests need a peer that does exactly what an attacker or a broken
server does, byte for byte, and that keeps every byte the client sent so a test
can prove what never crossed the wire (``AUTH``, ``MAIL``, a password)::

    server = ScriptedServer([
        Send(b"220 mx ESMTP\\r\\n"),
        Expect(b"EHLO"), Send(b"250-mx\\r\\n250 STARTTLS\\r\\n"),
        Expect(b"STARTTLS"), Send(b"220 Ready\\r\\n250-evil\\r\\n250 AUTH PLAIN\\r\\n"),
        StartTLS(),
        ...
    ], tls_context=context)
    ... run the client against server.port ...
    capture = server.wait()        # the (only) connection, once the client is done
    assert b"AUTH" not in capture.received

Each ``Send`` is one ``sendall``: several reply lines in one step reach the client
in one segment, as an injection needs. ``StartTLS`` runs the server side of the
handshake with the given context (a trustme certificate). When the script is over,
the server keeps reading and recording: it answers ``QUIT`` with 221 and anything
else with ``421`` and closes, so a client that goes on is recorded, never hangs.

Everything listens on 127.0.0.1, every socket operation has a short timeout and
threads are daemons joined at teardown, so a failing test cannot hang the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOOPBACK = "127.0.0.1"
# A server thread never waits longer than this for its client: bounds every test.
SERVER_IO_TIMEOUT = 10.0
# How long teardown and ``wait`` give a connection thread to finish.
SERVER_JOIN_TIMEOUT = 10.0
READ_CHUNK_SIZE = 64 * 1024


# --- the script --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Send:
    """Write ``data`` exactly, in one ``sendall``."""

    data: bytes


@dataclasses.dataclass(frozen=True)
class Expect:
    """Read one command line; it must start with ``prefix`` (case-insensitive).

    A line that does not match ends the script (recorded in ``Capture.mismatch``).
    """

    prefix: bytes = b""


@dataclasses.dataclass(frozen=True)
class ReadData:
    """Read message content up to and including the ``CRLF.CRLF`` that ends it."""


@dataclasses.dataclass(frozen=True)
class StartTLS:
    """Run the server side of the TLS handshake now."""


@dataclasses.dataclass(frozen=True)
class Pause:
    """Say nothing for ``seconds`` (a stalled server)."""

    seconds: float


@dataclasses.dataclass(frozen=True)
class Hangup:
    """Close the connection now."""


@dataclasses.dataclass(frozen=True)
class Listen:
    """Record until the client closes; answer nothing (a silent server)."""


Step = Send | Expect | ReadData | StartTLS | Pause | Hangup | Listen


def reply(code: int, *lines: str) -> bytes:
    """A (multi-line) reply: ``reply(250, "mx", "PIPELINING")``."""
    texts = lines or ("",)
    last = len(texts) - 1
    return b"".join(
        f"{code}{' ' if index == last else '-'}{text}\r\n".encode()
        for index, text in enumerate(texts)
    )


def ehlo(*capabilities: str, name: str = "mx.test") -> list[Step]:
    """Expect EHLO and answer with ``capabilities``."""
    return [Expect(b"EHLO"), Send(reply(250, name, *capabilities))]


def answer(prefix: bytes, code: int, *lines: str) -> list[Step]:
    """Expect a command starting with ``prefix`` and answer it."""
    return [Expect(prefix), Send(reply(code, *lines))]


GREETING: list[Step] = [Send(b"220 mx.test ESMTP scripted\r\n")]


def starttls_prelude(*before: str, after: Sequence[str]) -> list[Step]:
    """Greeting, EHLO (``before``), STARTTLS 220, handshake, EHLO (``after``)."""
    return [
        *GREETING,
        *ehlo(*before, "STARTTLS"),
        *answer(b"STARTTLS", 220, "2.0.0 Ready to start TLS"),
        StartTLS(),
        *ehlo(*after),
    ]


def accept_message(*, recipients: int = 1) -> list[Step]:
    """MAIL, RCPT..., DATA, content, final 250 (in the order the client sends them)."""
    commands = [
        (b"MAIL", reply(250, "2.1.0 Ok")),
        *[(b"RCPT", reply(250, "2.1.5 Ok"))] * recipients,
        (b"DATA", reply(354, "End data with <CR><LF>.<CR><LF>")),
    ]
    steps: list[Step] = []
    for prefix, data in commands:
        steps += [Expect(prefix), Send(data)]
    # With PIPELINING the replies are written as each command is read; the client
    # reads them after its DATA, in order (RFC 2920), so one script serves both.
    return [*steps, ReadData(), Send(reply(250, "2.0.0 Ok: queued as 1"))]


# --- the capture -------------------------------------------------------------------


@dataclasses.dataclass
class Capture:
    """What happened on one connection."""

    received: bytearray = dataclasses.field(default_factory=bytearray)
    """Every byte the client sent, plaintext and decrypted TLS, in order."""
    before_tls: bytes | None = None
    """``received`` at the moment the handshake began (None: no TLS step was reached)."""
    tls_established: bool = False
    handshake_error: str | None = None
    mismatch: bytes | None = None
    """The line that did not match an ``Expect`` (the script stopped there)."""
    script_finished: bool = False
    client_closed: bool = False
    segments: list[bytes] = dataclasses.field(default_factory=list)
    """Each read as it arrived: commands written in one batch (PIPELINING) share one."""
    data_blocks: list[bytes] = dataclasses.field(default_factory=list)
    """Raw content of each ``ReadData`` (from after 354 up to and including CRLF.CRLF)."""
    done: threading.Event = dataclasses.field(default_factory=threading.Event)

    @property
    def after_tls(self) -> bytes:
        """What the client sent once TLS was up."""
        if self.before_tls is None or not self.tls_established:
            return b""
        return bytes(self.received[len(self.before_tls) :])

    def lines(self) -> list[bytes]:
        """Every line received (content included), without line endings."""
        return bytes(self.received).split(b"\r\n")

    def commands(self, verb: bytes) -> list[bytes]:
        """Lines that start with ``verb`` (case-insensitive), e.g. ``commands(b"RCPT")``."""
        return [line for line in self.lines() if line[: len(verb)].upper() == verb.upper()]

    def sent_any(self, *verbs: bytes) -> bool:
        return any(self.commands(verb) for verb in verbs)

    def verbs(self) -> list[bytes]:
        """The first word of every command line outside message content, upper case."""
        verbs: list[bytes] = []
        in_data = False
        for line in self.lines():
            if in_data:
                in_data = line != b"."
                continue
            if line:
                verbs.append(line.split(b" ", 1)[0].split(b":", 1)[0].upper())
            in_data = line.upper() == b"DATA"
        return verbs

    def segment_with(self, marker: bytes) -> bytes:
        """The read that carried ``marker`` (which commands came in one batch)."""
        for segment in self.segments:
            if marker in segment:
                return segment
        raise AssertionError(f"{marker!r} was never received")


# --- the server --------------------------------------------------------------------


class _ScriptEnded(Exception):
    pass


class _Connection:
    def __init__(self, sock: socket.socket, capture: Capture) -> None:
        self.sock = sock
        self.capture = capture
        self.buffer = bytearray()
        self.eof = False

    def fill(self) -> None:
        if self.eof:
            raise _ScriptEnded
        try:
            data = self.sock.recv(READ_CHUNK_SIZE)
        except (TimeoutError, OSError):
            data = b""
        if not data:
            self.eof = True
            self.capture.client_closed = True
            raise _ScriptEnded
        self.capture.received += data
        self.capture.segments.append(data)
        self.buffer += data

    def read_line(self) -> bytes:
        while (end := self.buffer.find(b"\n")) < 0:
            self.fill()
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return line

    def read_until(self, marker: bytes) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            self.fill()
        block = bytes(self.buffer[: end + len(marker)])
        del self.buffer[: end + len(marker)]
        return block


class ScriptedServer:
    """Run ``script`` on every connection to ``port``; keep a ``Capture`` of each."""

    def __init__(
        self,
        script: Sequence[Step],
        *,
        tls_context: ssl.SSLContext | None = None,
        on_tls: Callable[[ssl.SSLSocket], None] | None = None,
        later_scripts: Sequence[Sequence[Step]] = (),
    ) -> None:
        self.script = list(script)
        # Connection 2, 3, ... run these in turn (then ``script`` again): a server
        # that behaves differently once the client comes back.
        self.later_scripts = [list(later) for later in later_scripts]
        self.tls_context = tls_context
        self.on_tls = on_tls
        self.captures: list[Capture] = []
        self._listener = socket.create_server((LOOPBACK, 0))
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepting.start()

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

    @property
    def connections(self) -> int:
        return len(self.captures)

    def wait(self, index: int = 0, timeout: float = SERVER_JOIN_TIMEOUT) -> Capture:
        """The capture of connection ``index`` once that connection is over."""
        deadline = time.monotonic() + timeout
        while len(self.captures) <= index:
            if time.monotonic() > deadline:
                raise AssertionError(f"no connection number {index} arrived")
            time.sleep(0.01)
        capture = self.captures[index]
        if not capture.done.wait(max(deadline - time.monotonic(), 0.1)):
            raise AssertionError("the connection did not finish in time")
        return capture

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accepting.join(SERVER_JOIN_TIMEOUT)
        for thread in self._threads:
            thread.join(SERVER_JOIN_TIMEOUT)

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            capture = Capture()
            self.captures.append(capture)
            index = len(self.captures) - 2
            script = self.later_scripts[index] if 0 <= index < len(self.later_scripts) else None
            thread = threading.Thread(
                target=self._serve, args=(sock, capture, script or self.script), daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, capture: Capture, script: list[Step]) -> None:
        sock.settimeout(SERVER_IO_TIMEOUT)
        connection = _Connection(sock, capture)
        try:
            self._run(connection, script)
        except (_ScriptEnded, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                connection.sock.close()
            capture.done.set()

    def _run(self, connection: _Connection, script: list[Step]) -> None:
        capture = connection.capture
        for step in script:
            if isinstance(step, Send):
                connection.sock.sendall(step.data)
            elif isinstance(step, Expect):
                line = connection.read_line()
                if not line.upper().startswith(step.prefix.upper()):
                    capture.mismatch = line
                    self._drain(connection, first=line)
                    return
            elif isinstance(step, ReadData):
                capture.data_blocks.append(connection.read_until(b"\r\n.\r\n"))
            elif isinstance(step, StartTLS):
                self._start_tls(connection)
            elif isinstance(step, Pause):
                time.sleep(step.seconds)
            elif isinstance(step, Hangup):
                capture.script_finished = True
                return
            elif isinstance(step, Listen):
                while True:
                    connection.fill()
        capture.script_finished = True
        self._drain(connection)

    def _start_tls(self, connection: _Connection) -> None:
        capture = connection.capture
        if self.tls_context is None:
            raise AssertionError("a StartTLS step needs tls_context")
        capture.before_tls = bytes(capture.received)
        # Bytes the client sent after STARTTLS but before its handshake stay recorded
        # in ``received``; they are not fed to TLS (a careful client sends none).
        connection.buffer.clear()
        try:
            tls_socket = self.tls_context.wrap_socket(connection.sock, server_side=True)
        except (ssl.SSLError, OSError) as error:
            capture.handshake_error = str(error)
            raise _ScriptEnded from error
        connection.sock = tls_socket
        capture.tls_established = True
        if self.on_tls is not None:
            self.on_tls(tls_socket)

    def _drain(self, connection: _Connection, first: bytes | None = None) -> None:
        """After the script: record what the client still sends, answer so it ends."""
        line = first
        while True:
            if line is None:
                line = connection.read_line()
            if line.upper().startswith(b"QUIT"):
                connection.sock.sendall(reply(221, "2.0.0 Bye"))
                # Keep reading: a client that goes on after QUIT is recorded too.
                while True:
                    connection.fill()
            connection.sock.sendall(reply(421, "4.3.0 unscripted command, closing"))
            while True:
                connection.fill()


class ServerFactory(Protocol):
    """The ``scripted`` fixture: start a ScriptedServer, stopped at teardown."""

    def __call__(
        self, script: Sequence[Step], *, tls_context: ssl.SSLContext | None = None
    ) -> ScriptedServer: ...


class RecordingProxy:
    """Forward loopback connections to ``target_port``, recording what clients send."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.received: list[bytearray] = []
        self._listener = socket.create_server((LOOPBACK, 0))
        self._threads: list[threading.Thread] = []
        self._done: list[threading.Event] = []
        self._accepting = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepting.start()

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

    def wait(self, index: int) -> bytes:
        deadline = time.monotonic() + SERVER_JOIN_TIMEOUT
        while len(self._done) <= index:
            if time.monotonic() > deadline:
                raise AssertionError(f"no connection number {index} arrived")
            time.sleep(0.01)
        self._done[index].wait(SERVER_JOIN_TIMEOUT)
        return bytes(self.received[index])

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._accepting.join(SERVER_JOIN_TIMEOUT)
        for thread in self._threads:
            thread.join(SERVER_JOIN_TIMEOUT)

    def __enter__(self) -> RecordingProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            record = bytearray()
            done = threading.Event()
            self.received.append(record)
            self._done.append(done)
            thread = threading.Thread(target=self._relay, args=(client, record, done), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _relay(self, client: socket.socket, record: bytearray, done: threading.Event) -> None:
        try:
            upstream = socket.create_connection((LOOPBACK, self.target_port), SERVER_IO_TIMEOUT)
        except OSError:
            client.close()
            done.set()
            return
        client.settimeout(SERVER_IO_TIMEOUT)

        def downstream() -> None:
            with contextlib.suppress(OSError):
                while data := upstream.recv(READ_CHUNK_SIZE):
                    client.sendall(data)
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=downstream, daemon=True)
        back.start()
        try:
            while data := client.recv(READ_CHUNK_SIZE):
                record += data
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)
            back.join(SERVER_JOIN_TIMEOUT)
            upstream.close()
            client.close()
            done.set()


# --- certificates ------------------------------------------------------------------


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    return context


def loopback_cert(ca: trustme.CA) -> trustme.LeafCert:
    """A certificate valid for the names the tests connect to."""
    return ca.issue_cert("127.0.0.1", "localhost")


def odd_cert_context(directory: Path, *, self_signed: bool = False, expired: bool = False,
                     issuer: trustme.CA | None = None) -> ssl.SSLContext:  # fmt: skip
    """A server context with a certificate for 127.0.0.1 that is wrong in one way.

    ``self_signed``: signed by its own key; ``expired``: validity ended yesterday,
    signed by ``issuer`` (a CA the client trusts).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    if expired:
        not_before, not_after = now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)
    else:
        not_before, not_after = now - datetime.timedelta(days=1), now + datetime.timedelta(days=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), False
        )
    )
    if self_signed or issuer is None:
        certificate = builder.issuer_name(name).sign(key, hashes.SHA256())
    else:
        issuer_cert = x509.load_pem_x509_certificate(issuer.cert_pem.bytes())
        issuer_key = serialization.load_pem_private_key(issuer.private_key_pem.bytes(), None)
        certificate = builder.issuer_name(issuer_cert.subject).sign(
            issuer_key,  # type: ignore[arg-type]
            hashes.SHA256(),
        )
    cert_path, key_path = directory / "odd.pem", directory / "odd.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


def certificate_der(context_cert: trustme.LeafCert) -> bytes:
    pem = context_cert.cert_chain_pems[0].bytes()
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


# --- an independent reference server -----------------------------------------------


@dataclasses.dataclass(frozen=True)
class Envelope:
    """One message as aiosmtpd took it (content unstuffed, CRLF line ends)."""

    sender: str
    recipients: tuple[str, ...]
    mail_options: tuple[str, ...]
    content: bytes


class _AiosmtpdRecorder:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(
            Envelope(
                sender=envelope.mail_from,
                recipients=tuple(envelope.rcpt_tos),
                mail_options=tuple(envelope.mail_options),
                content=envelope.original_content,
            )
        )
        return "250 2.0.0 Ok: queued"


class ReferenceServer:
    """aiosmtpd on loopback (no TLS, no AUTH) behind a ``RecordingProxy``.

    ``port`` is the proxy's: ``wire(index)`` is what the client sent on connection
    ``index``, ``envelopes`` what aiosmtpd reconstructed from it.
    """

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        with socket.socket() as probe:
            probe.bind((LOOPBACK, 0))
            upstream_port = probe.getsockname()[1]
        self._recorder = _AiosmtpdRecorder()
        self._controller = Controller(
            self._recorder,
            hostname=LOOPBACK,
            port=upstream_port,
            enable_SMTPUTF8=True,
            data_size_limit=0,  # no SIZE limit: the memory test streams a lot
        )
        self._controller.start()
        self._proxy = RecordingProxy(upstream_port)

    @property
    def port(self) -> int:
        return self._proxy.port

    @property
    def envelopes(self) -> list[Envelope]:
        return self._recorder.envelopes

    def wire(self, index: int = 0) -> bytes:
        return self._proxy.wait(index)

    def stop(self) -> None:
        self._proxy.stop()
        self._controller.stop()

    def __enter__(self) -> ReferenceServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
