"""Connecting, reading, writing and upgrading, against real loopback peers.

Timeouts are short (well under a second) and every assertion on elapsed time has
generous slack, so the tests stay fast without being flaky.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mailhop.errors import ExitCode
from mailhop.net import transport as transport_module
from mailhop.net.errors import (
    ConnectError,
    ConnectionLostError,
    HostNotFoundError,
    NameResolutionError,
    NetConfigError,
    NetTimeoutError,
    ProxyError,
    StartTLSInjectionError,
    TransportError,
)
from mailhop.net.tls import TLSSettings, client_policy
from mailhop.net.transport import Direction, Endpoint, open_connection, resolve_host
from tests.net.net_peers import Handler, ServeFactory

GREETING = b"220 localhost ESMTP test\r\n"
STARTTLS_READY = b"220 2.0.0 Ready to start TLS\r\n"
TIMEOUT = 3.0


def greet_and_echo(connection: socket.socket) -> None:
    connection.sendall(GREETING)
    while data := connection.recv(4096):
        connection.sendall(data)


def never_answer(connection: socket.socket) -> None:
    connection.recv(4096)  # returns at the client's close, or after SERVER_IO_TIMEOUT


def starttls_server(context: ssl.SSLContext, injected: bytes = b"") -> Handler:
    """Greets, answers the STARTTLS command, and sends ``injected`` in the same write."""

    def handle(connection: socket.socket) -> None:
        connection.sendall(GREETING)
        connection.recv(4096)  # "STARTTLS\r\n"
        connection.sendall(STARTTLS_READY + injected)
        with context.wrap_socket(connection, server_side=True) as tls_connection:
            while data := tls_connection.recv(4096):
                tls_connection.sendall(data)

    return handle


def local(port: int, **settings: Any) -> Endpoint:
    return Endpoint(host="127.0.0.1", port=port, **settings)


def receive_exactly(transport: transport_module.Transport, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = transport.receive(count - len(data), timeout=TIMEOUT)
        assert chunk, "unexpected EOF"
        data += chunk
    return data


# --- plain connections ---------------------------------------------------------------


def test_send_receive_and_eof(serve: ServeFactory) -> None:
    server = serve(greet_and_echo)
    transport = open_connection(local(server.port), timeout=TIMEOUT)
    assert transport.info.peer == f"127.0.0.1:{server.port}"
    assert not transport.is_tls
    assert receive_exactly(transport, len(GREETING)) == GREETING
    transport.send_all(b"QUIT\r\n", timeout=TIMEOUT)
    assert receive_exactly(transport, 6) == b"QUIT\r\n"
    transport.close()
    transport.close()  # idempotent
    with pytest.raises(ConnectionLostError):
        transport.receive(10, timeout=TIMEOUT)


def test_receive_never_returns_more_than_asked(serve: ServeFactory) -> None:
    server = serve(greet_and_echo)
    with open_connection(local(server.port), timeout=TIMEOUT) as transport:
        first = transport.receive(5, timeout=TIMEOUT)
        assert first == GREETING[: len(first)]
        assert 0 < len(first) <= 5
        with pytest.raises(ValueError, match="positive"):
            transport.receive(0, timeout=TIMEOUT)


def test_receive_returns_empty_bytes_at_eof(serve: ServeFactory) -> None:
    def greet_and_hang_up(connection: socket.socket) -> None:
        connection.sendall(GREETING)

    server = serve(greet_and_hang_up)
    with open_connection(local(server.port), timeout=TIMEOUT) as transport:
        assert receive_exactly(transport, len(GREETING)) == GREETING
        assert transport.receive(4096, timeout=TIMEOUT) == b""


def test_transcript_sees_traffic_and_only_the_redacted_secret(serve: ServeFactory) -> None:
    lines: list[tuple[Direction, bytes]] = []
    server = serve(greet_and_echo)
    endpoint = local(server.port)
    with open_connection(endpoint, timeout=TIMEOUT, transcript=lambda *e: lines.append(e)) as t:
        receive_exactly(t, len(GREETING))
        secret_line = b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"
        t.send_all(secret_line, timeout=TIMEOUT, redacted=b"AUTH PLAIN <redacted>\r\n")
        receive_exactly(t, len(secret_line))
    assert lines[0] == (Direction.RECEIVED, GREETING)
    assert (Direction.SENT, b"AUTH PLAIN <redacted>\r\n") in lines
    sent = b"".join(data for direction, data in lines if direction is Direction.SENT)
    assert b"AGFsaWNl" not in sent


def test_connection_refused_is_temporary(closed_port: int) -> None:
    with pytest.raises(ConnectError) as caught:
        open_connection(local(closed_port), timeout=TIMEOUT)
    assert caught.value.exit_code == ExitCode.TEMPFAIL
    assert "refused" in str(caught.value)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


def test_silent_server_read_times_out_within_the_deadline(serve: ServeFactory) -> None:
    server = serve(never_answer)
    with open_connection(local(server.port), timeout=TIMEOUT) as transport:
        started = time.monotonic()
        with pytest.raises(NetTimeoutError) as caught:
            transport.receive(4096, timeout=0.2)
        elapsed = time.monotonic() - started
    assert caught.value.exit_code == ExitCode.TEMPFAIL
    assert isinstance(caught.value, TimeoutError)
    assert 0.15 <= elapsed < 1.5
    assert "0.2 seconds" in str(caught.value)


def read_slowly(connection: socket.socket) -> None:
    # A megabyte every 50 ms for 3 s: each of the client's sends makes some progress.
    for _ in range(60):
        time.sleep(0.05)
        connection.recv(1024 * 1024)


def test_a_server_that_reads_slowly_cannot_stretch_a_send_past_its_timeout(
    serve: ServeFactory,
) -> None:
    # Plain sockets block and the kernel keeps the timeout (SO_SNDTIMEO, per send):
    # the whole send must still end within the timeout, however much is left.
    server = serve(read_slowly)
    with open_connection(local(server.port), timeout=TIMEOUT) as transport:
        started = time.monotonic()
        with pytest.raises(NetTimeoutError) as caught:
            transport.send_all(b"x" * 64 * 1024 * 1024, timeout=0.3)
        elapsed = time.monotonic() - started
    assert isinstance(caught.value, TimeoutError)
    assert 0.25 <= elapsed < 1.5
    assert "0.3 seconds" in str(caught.value)


def test_timeouts_change_per_call_and_direction(serve: ServeFactory) -> None:
    server = serve(greet_and_echo)
    with open_connection(local(server.port), timeout=TIMEOUT) as transport:
        assert receive_exactly(transport, len(GREETING)) == GREETING
        transport.send_all(b"ping\r\n", timeout=5.0)
        assert receive_exactly(transport, 6) == b"ping\r\n"
        # A short read timeout after a long one: the silence is noticed in time.
        started = time.monotonic()
        with pytest.raises(NetTimeoutError):
            transport.receive(4096, timeout=0.2)
        assert time.monotonic() - started < 1.5
        transport.send_all(b"pong\r\n", timeout=0.2)  # the connection is still usable
        assert receive_exactly(transport, 6) == b"pong\r\n"


def test_blackholed_address_times_out_within_the_deadline(blackhole: tuple[str, int]) -> None:
    started = time.monotonic()
    with pytest.raises(ConnectError) as caught:
        open_connection(local(blackhole[1]), timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert caught.value.exit_code == ExitCode.TEMPFAIL
    assert "timed out" in str(caught.value)


def fake_resolver(monkeypatch: pytest.MonkeyPatch, ports: list[int]) -> list[tuple[str, int]]:
    """Make ``resolve_host`` return one loopback address per port, in this order."""
    asked: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
        asked.append((host, port))
        return [(socket.AF_INET, ("127.0.0.1", each)) for each in ports]

    monkeypatch.setattr(transport_module, "resolve_host", resolve)
    return asked


def test_deadline_holds_across_all_addresses(
    monkeypatch: pytest.MonkeyPatch, blackhole: tuple[str, int]
) -> None:
    # msmtp would wait the full timeout for each of the three addresses.
    fake_resolver(monkeypatch, [blackhole[1]] * 3)
    started = time.monotonic()
    with pytest.raises(ConnectError) as caught:
        open_connection(Endpoint(host="mail.test", port=25), timeout=0.6)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 1.2
    assert str(caught.value).count("timed out") == 3


def test_a_blackholed_first_address_leaves_time_for_the_next(
    monkeypatch: pytest.MonkeyPatch, blackhole: tuple[str, int], serve: ServeFactory
) -> None:
    server = serve(greet_and_echo)
    fake_resolver(monkeypatch, [blackhole[1], server.port])
    started = time.monotonic()
    with open_connection(Endpoint(host="mail.test", port=25), timeout=1.0) as transport:
        assert transport.info.peer == f"127.0.0.1:{server.port}"
        assert receive_exactly(transport, len(GREETING)) == GREETING
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    ("code", "error_type", "exit_code"),
    [
        (socket.EAI_NONAME, HostNotFoundError, ExitCode.NOHOST),
        (socket.EAI_NODATA, HostNotFoundError, ExitCode.NOHOST),
        (socket.EAI_AGAIN, NameResolutionError, ExitCode.TEMPFAIL),
        (socket.EAI_FAIL, NameResolutionError, ExitCode.TEMPFAIL),
    ],
)
def test_resolver_failures(
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    error_type: type[TransportError],
    exit_code: ExitCode,
) -> None:
    # The resolver of a test machine cannot be made to fail on demand; the OS
    # boundary (getaddrinfo) is replaced, everything above it is real.
    def failing_getaddrinfo(*args: object, **kwargs: object) -> list[Any]:
        raise socket.gaierror(code, "resolver says no")

    monkeypatch.setattr(socket, "getaddrinfo", failing_getaddrinfo)
    with pytest.raises(error_type) as caught:
        open_connection(Endpoint(host="mail.test", port=25), timeout=TIMEOUT)
    assert type(caught.value) is error_type
    assert caught.value.exit_code == exit_code
    assert "mail.test" in str(caught.value)
    assert isinstance(caught.value.__cause__, socket.gaierror)


def test_invalid_host_name_is_not_found() -> None:
    with pytest.raises(HostNotFoundError):
        open_connection(Endpoint(host="a" * 64 + ".test", port=25), timeout=TIMEOUT)


def test_source_ip_is_bound(serve: ServeFactory) -> None:
    server = serve(greet_and_echo)
    with open_connection(local(server.port, source_ip="127.0.0.2"), timeout=TIMEOUT) as t:
        assert receive_exactly(t, len(GREETING)) == GREETING
    assert server.peers[0][0] == "127.0.0.2"


def test_source_ip_must_be_an_address_of_a_usable_family(serve: ServeFactory) -> None:
    server = serve(greet_and_echo)
    with pytest.raises(NetConfigError) as config_error:
        open_connection(local(server.port, source_ip="my-laptop"), timeout=TIMEOUT)
    assert config_error.value.exit_code == ExitCode.CONFIG
    with pytest.raises(ConnectError, match="no IPv6 address"):
        open_connection(local(server.port, source_ip="::1"), timeout=TIMEOUT)


def test_unix_socket(serve: ServeFactory, tmp_path: Path) -> None:
    path = tmp_path / "smtp.sock"
    serve(greet_and_echo, unix_path=path)
    endpoint = Endpoint(host="ignored.test", port=1, unix_socket=str(path))
    with open_connection(endpoint, timeout=TIMEOUT) as transport:
        assert transport.info.peer == str(path)
        assert receive_exactly(transport, len(GREETING)) == GREETING
    with pytest.raises(ConnectError) as caught:
        open_connection(Endpoint(unix_socket=str(tmp_path / "absent.sock")), timeout=TIMEOUT)
    assert caught.value.exit_code == ExitCode.TEMPFAIL
    assert "absent.sock" in str(caught.value)


# --- SOCKS5 --------------------------------------------------------------------------


class Socks5Proxy:
    """A minimal RFC 1928 proxy: no authentication, CONNECT by name, relays bytes.

    It knows one name, ``smtp.proxied.test``, which only it can resolve (to the
    loopback server); so a connection that works proves the client let it resolve.
    """

    def __init__(self, target_port: int, *, method: int = 0x00, reply: int = 0x00) -> None:
        self.target_port = target_port
        self.method = method
        self.reply = reply
        self.requests: list[bytes] = []

    def __call__(self, client: socket.socket) -> None:
        assert client.recv(3) == b"\x05\x01\x00"
        client.sendall(bytes([5, self.method]))
        if self.method != 0x00:
            return
        request = client.recv(4096)
        self.requests.append(request)
        if request[3] != 0x03 or request[5:-2] != b"smtp.proxied.test" or self.reply:
            client.sendall(bytes([5, self.reply or 0x04, 0, 1, 0, 0, 0, 0, 0, 0]))
            return
        with socket.create_connection(("127.0.0.1", self.target_port), timeout=5) as upstream:
            # The reply and the server's greeting may share a segment: the client
            # must read the reply exactly and leave the greeting.
            greeting = upstream.recv(4096)
            client.sendall(bytes([5, 0, 0, 1, 127, 0, 0, 1, 0x04, 0x38]) + greeting)
            relay(client, upstream)


def relay(first: socket.socket, second: socket.socket) -> None:
    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(4096):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    other = threading.Thread(target=pump, args=(second, first), daemon=True)
    other.start()
    pump(first, second)
    other.join(5)


def test_socks5_proxy_resolves_and_relays(serve: ServeFactory) -> None:
    server = serve(greet_and_echo)
    proxy_handler = Socks5Proxy(server.port)
    proxy = serve(proxy_handler)
    endpoint = Endpoint(
        host="smtp.proxied.test", port=587, proxy_host="127.0.0.1", proxy_port=proxy.port
    )
    with open_connection(endpoint, timeout=TIMEOUT) as transport:
        assert "via SOCKS5 proxy" in transport.info.peer
        assert receive_exactly(transport, len(GREETING)) == GREETING
        transport.send_all(b"EHLO me\r\n", timeout=TIMEOUT)
        assert receive_exactly(transport, 9) == b"EHLO me\r\n"
    # RFC 1928 §4: CONNECT, DOMAINNAME, length, name, port 587.
    assert proxy_handler.requests == [b"\x05\x01\x00\x03\x11smtp.proxied.test\x02\x4b"]


def test_socks5_proxy_wanting_authentication_is_unavailable(serve: ServeFactory) -> None:
    proxy = serve(Socks5Proxy(1, method=0xFF))
    endpoint = Endpoint(host="smtp.proxied.test", proxy_host="127.0.0.1", proxy_port=proxy.port)
    with pytest.raises(ProxyError, match="authentication") as caught:
        open_connection(endpoint, timeout=TIMEOUT)
    assert caught.value.exit_code == ExitCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("reply", "exit_code"), [(0x05, ExitCode.TEMPFAIL), (0x02, ExitCode.UNAVAILABLE)]
)
def test_socks5_proxy_failure_replies(serve: ServeFactory, reply: int, exit_code: ExitCode) -> None:
    proxy = serve(Socks5Proxy(1, reply=reply))
    endpoint = Endpoint(host="smtp.proxied.test", proxy_host="127.0.0.1", proxy_port=proxy.port)
    with pytest.raises(ProxyError) as caught:
        open_connection(endpoint, timeout=TIMEOUT)
    assert caught.value.exit_code == exit_code
    assert "smtp.proxied.test" in str(caught.value)


def test_unreachable_proxy_is_a_connect_error(closed_port: int) -> None:
    endpoint = Endpoint(host="smtp.proxied.test", proxy_host="127.0.0.1", proxy_port=closed_port)
    with pytest.raises(ConnectError, match="SOCKS5 proxy") as caught:
        open_connection(endpoint, timeout=TIMEOUT)
    assert caught.value.exit_code == ExitCode.TEMPFAIL


# --- STARTTLS ------------------------------------------------------------------------


def test_starttls_upgrade(
    serve: ServeFactory, server_context: ssl.SSLContext, ca_file: str
) -> None:
    server = serve(starttls_server(server_context))
    policy = client_policy(TLSSettings(trust_file=ca_file), "localhost")
    with open_connection(local(server.port), timeout=TIMEOUT) as transport:
        assert receive_exactly(transport, len(GREETING)) == GREETING
        transport.send_all(b"STARTTLS\r\n", timeout=TIMEOUT)
        assert receive_exactly(transport, len(STARTTLS_READY)) == STARTTLS_READY
        transport.start_tls(policy, timeout=TIMEOUT)
        assert transport.is_tls
        assert transport.info.certificate is not None
        transport.send_all(b"EHLO me\r\n", timeout=TIMEOUT)
        assert receive_exactly(transport, 9) == b"EHLO me\r\n"
        with pytest.raises(RuntimeError):
            transport.start_tls(policy, timeout=TIMEOUT)


def test_starttls_refuses_bytes_sent_before_the_handshake(
    serve: ServeFactory, server_context: ssl.SSLContext, ca_file: str
) -> None:
    # CVE-2020-14954: the injected EHLO reply would be read as if it came over TLS.
    injected = b"250-evil.test\r\n250 AUTH PLAIN\r\n"
    server = serve(starttls_server(server_context, injected))
    policy = client_policy(TLSSettings(trust_file=ca_file), "localhost")
    transport = open_connection(local(server.port), timeout=TIMEOUT)
    assert receive_exactly(transport, len(GREETING)) == GREETING
    transport.send_all(b"STARTTLS\r\n", timeout=TIMEOUT)
    assert receive_exactly(transport, len(STARTTLS_READY)) == STARTTLS_READY
    time.sleep(0.05)  # the injection travels in the same segment; leave no doubt
    with pytest.raises(StartTLSInjectionError) as caught:
        transport.start_tls(policy, timeout=TIMEOUT)
    assert caught.value.exit_code == ExitCode.PROTOCOL
    assert "before the TLS handshake" in str(caught.value)
    assert transport.is_closed


def test_starttls_when_the_server_hangs_up(serve: ServeFactory, ca_file: str) -> None:
    def hang_up_after_ready(connection: socket.socket) -> None:
        connection.sendall(STARTTLS_READY)

    server = serve(hang_up_after_ready)
    policy = client_policy(TLSSettings(trust_file=ca_file), "localhost")
    transport = open_connection(local(server.port), timeout=TIMEOUT)
    assert receive_exactly(transport, len(STARTTLS_READY)) == STARTTLS_READY
    time.sleep(0.05)
    with pytest.raises(ConnectionLostError) as caught:
        transport.start_tls(policy, timeout=TIMEOUT)
    assert caught.value.exit_code == ExitCode.TEMPFAIL


def test_starttls_handshake_failure_closes(
    serve: ServeFactory, server_context: ssl.SSLContext
) -> None:
    server = serve(starttls_server(server_context))
    untrusting = client_policy(TLSSettings(trust_file=""), "localhost")
    transport = open_connection(local(server.port), timeout=TIMEOUT)
    receive_exactly(transport, len(GREETING))
    transport.send_all(b"STARTTLS\r\n", timeout=TIMEOUT)
    receive_exactly(transport, len(STARTTLS_READY))
    with pytest.raises(TransportError) as caught:
        transport.start_tls(untrusting, timeout=TIMEOUT)
    assert caught.value.exit_code == ExitCode.UNAVAILABLE
    assert transport.is_closed


def test_implicit_tls_through_the_socks5_proxy(
    serve: ServeFactory, server_context: ssl.SSLContext, ca_file: str
) -> None:
    def tls_greeter(connection: socket.socket) -> None:
        with server_context.wrap_socket(connection, server_side=True) as tls_connection:
            tls_connection.sendall(GREETING)
            tls_connection.recv(4096)

    server = serve(tls_greeter)
    proxy = serve(TlsAwareProxy(server.port))
    endpoint = Endpoint(
        host="smtp.proxied.test", port=465, proxy_host="127.0.0.1", proxy_port=proxy.port
    )
    policy = client_policy(TLSSettings(trust_file=ca_file, host_override="localhost"), "x")
    with open_connection(endpoint, timeout=TIMEOUT, tls=policy) as transport:
        assert receive_exactly(transport, len(GREETING)) == GREETING


class TlsAwareProxy(Socks5Proxy):
    """Relays without waiting for a greeting: with TLS the client speaks first."""

    def __call__(self, client: socket.socket) -> None:
        assert client.recv(3) == b"\x05\x01\x00"
        client.sendall(b"\x05\x00")
        client.recv(4096)
        with socket.create_connection(("127.0.0.1", self.target_port), timeout=5) as upstream:
            client.sendall(bytes([5, 0, 0, 1, 127, 0, 0, 1, 0x01, 0xD1]))
            relay(client, upstream)


def test_zero_or_negative_timeouts_are_refused(serve: ServeFactory) -> None:
    # settimeout(0) would mean non-blocking, not "give up at once".
    server = serve(greet_and_echo)
    with pytest.raises(ValueError, match="positive"):
        open_connection(local(server.port), timeout=0)
    with open_connection(local(server.port), timeout=TIMEOUT) as transport:
        with pytest.raises(ValueError, match="positive"):
            transport.receive(10, timeout=0)
        with pytest.raises(ValueError, match="positive"):
            transport.send_all(b"x", timeout=-1)
        assert not transport.is_closed


@pytest.mark.parametrize(
    ("host", "looked_up"),
    [
        ("127.0.0.1", b"127.0.0.1"),
        ("mail.example.test.", b"mail.example.test."),
        ("a" * 63 + ".test", b"a" * 63 + b".test"),
        # What the idna codec must judge: it refuses the first two, encodes the last.
        ("a..test", "a..test"),
        ("a" * 64 + ".test", "a" * 64 + ".test"),
        ("bücher.test", "bücher.test"),
    ],
)
def test_a_plain_ascii_host_is_looked_up_without_the_idna_codec(
    host: str, looked_up: str | bytes
) -> None:
    assert transport_module._lookup_name(host) == looked_up


def test_a_host_the_idna_codec_refuses_is_still_refused() -> None:
    with pytest.raises(HostNotFoundError, match="not a valid host name"):
        resolve_host("a" * 64 + ".test", 25)
