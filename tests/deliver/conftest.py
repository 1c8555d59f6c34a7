"""Fixtures for the delivery tests: a trustme CA, its PEM file, scripted servers."""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import trustme

from tests.deliver.scripted_server import (
    ScriptedServer,
    ServerFactory,
    Step,
    loopback_cert,
    server_context,
)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def tls_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server context whose certificate is valid for 127.0.0.1 under ``ca``."""
    return server_context(loopback_cert(ca))


@pytest.fixture
def scripted() -> Iterator[ServerFactory]:
    """``scripted(script, tls_context=None)`` starts a ScriptedServer, stopped at teardown."""
    servers: list[ScriptedServer] = []

    def start(
        script: Sequence[Step], *, tls_context: ssl.SSLContext | None = None
    ) -> ScriptedServer:
        server = ScriptedServer(script, tls_context=tls_context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
