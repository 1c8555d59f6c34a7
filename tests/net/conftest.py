"""Fixtures for the net tests: loopback servers, a trustme CA, odd certificates."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from tests.net.net_peers import Handler, LoopbackServer, SelfSignedCert, ServeFactory, context_for


@pytest.fixture
def serve() -> Iterator[ServeFactory]:
    """``serve(handler, host="127.0.0.1", unix_path=None)`` starts a LoopbackServer."""
    servers: list[LoopbackServer] = []

    def start(
        handler: Handler, *, host: str = "127.0.0.1", unix_path: Path | None = None
    ) -> LoopbackServer:
        if unix_path is not None:
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(unix_path))
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            listener = socket.socket(family, socket.SOCK_STREAM)
            listener.bind((host, 0))
        listener.listen(8)
        server = LoopbackServer(listener, handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def blackhole() -> Iterator[tuple[str, int]]:
    """A loopback address where connect() hangs: a listener whose backlog is full.

    Linux drops a SYN when the accept queue is full, so the client retransmits and
    waits, exactly like a firewall that drops packets.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(address)
        fillers.append(filler)
    yield address
    for filler in fillers:
        filler.close()
    listener.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nobody listening: connect() is refused."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1", common_name="localhost")


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def server_context(server_cert: trustme.LeafCert) -> ssl.SSLContext:
    """A TLS server context presenting ``server_cert`` (trusted through ``ca_file``)."""
    return context_for(server_cert)


@pytest.fixture(scope="session")
def server_der(server_cert: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(server_cert.cert_chain_pems[0].bytes().decode("ascii"))


@pytest.fixture
def context_for_cert() -> Callable[[trustme.LeafCert], ssl.SSLContext]:
    return context_for


@pytest.fixture(scope="session")
def self_signed() -> SelfSignedCert:
    return SelfSignedCert()
