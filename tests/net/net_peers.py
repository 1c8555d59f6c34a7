"""Loopback peers for the net tests: threaded servers and odd certificates.

Imported by ``conftest.py`` (fixtures) and by tests for types. Every server
listens on 127.0.0.1 (or a Unix socket in tmp_path), handles each connection in its
own daemon thread with short socket timeouts, and is stopped at teardown, so a test
that fails cannot leave a thread blocking the run.
"""

from __future__ import annotations

import contextlib
import datetime
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# A server thread never waits longer than this for its client: bounds every test.
SERVER_IO_TIMEOUT = 5.0
# How long teardown waits for server threads before giving up on them (daemons).
SERVER_JOIN_TIMEOUT = 2.0

Handler = Callable[[socket.socket], None]


class LoopbackServer:
    """Accept connections on ``listener`` and run ``handler`` on each, in threads."""

    def __init__(self, listener: socket.socket, handler: Handler) -> None:
        self.listener = listener
        self.handler = handler
        self.peers: list[Any] = []  # the client address of each accepted connection
        self.received: list[bytes] = []  # what handlers chose to record
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepting.start()

    @property
    def port(self) -> int:
        port: int = self.listener.getsockname()[1]
        return port

    def _accept_loop(self) -> None:
        while True:
            try:
                connection, peer = self.listener.accept()
            except OSError:
                return  # listener closed at teardown
            self.peers.append(peer)
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        connection.settimeout(SERVER_IO_TIMEOUT)
        try:
            self.handler(connection)
        except OSError:
            pass  # the client hung up or refused our TLS: that is what many tests do
        finally:
            connection.close()

    def stop(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone may not.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._accepting.join(SERVER_JOIN_TIMEOUT)
        for thread in self._threads:
            thread.join(SERVER_JOIN_TIMEOUT)


class ServeFactory(Protocol):
    """The ``serve`` fixture: start a LoopbackServer, stopped at teardown."""

    def __call__(
        self, handler: Handler, *, host: str = "127.0.0.1", unix_path: Path | None = None
    ) -> LoopbackServer: ...


def context_for(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    return context


class SelfSignedCert:
    """A self-signed leaf for ``localhost`` built with cryptography (trustme has none)."""

    def __init__(self, common_name: str = "localhost") -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .sign(key, hashes.SHA256())
        )
        self.der = certificate.public_bytes(serialization.Encoding.DER)
        self.cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
        self.key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def server_context(self, directory: Path) -> ssl.SSLContext:
        (directory / "self.pem").write_bytes(self.cert_pem)
        (directory / "self.key").write_bytes(self.key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(directory / "self.pem", directory / "self.key")
        return context
