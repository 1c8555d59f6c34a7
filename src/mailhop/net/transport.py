"""A blocking byte stream to a mail server: TCP, SOCKS5 or a Unix socket, with TLS.

``open_connection`` connects under one deadline for the whole establishment (every
address of the host, the SOCKS5 negotiation, the implicit TLS handshake) and returns
a ``Transport``. The caller (the SMTP, POP3 or IMAP driver) passes a timeout to every
read and write, chosen by protocol phase (``mailhop.net.timeouts``).

The transport keeps no buffer of its own: ``receive`` hands over at most
``max_bytes`` straight from the socket, so nothing received before a STARTTLS
handshake can hide here, and ``start_tls`` refuses to begin while the socket holds
unread bytes (RFC 3207 §4.2). It never logs; a transcript hook sees what is sent and
received, with the redacted form of anything secret.
"""

from __future__ import annotations

import enum
import math
import socket
import struct
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from mailhop._records import NamedTuple
from mailhop.errors import ExitCode
from mailhop.net import tls as tls_module
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

__all__ = [
    "DEFAULT_PROXY_PORT",
    "ConnectionInfo",
    "Direction",
    "Endpoint",
    "TranscriptHook",
    "Transport",
    "open_connection",
    "resolve_host",
]

# msmtp's default for proxy_port, the SOCKS port of RFC 1928 §3.
DEFAULT_PROXY_PORT = 1080
# RFC 1928 §5: DST.ADDR of type DOMAINNAME carries its length in one octet.
MAX_SOCKS_HOST_LENGTH = 255
# SO_RCVTIMEO/SO_SNDTIMEO take a struct timeval; a zero one means "wait forever",
# so a timeout rounds up to at least one microsecond.
_MICROSECONDS = 1_000_000
_TIMEVAL = struct.Struct("@ll")

# getaddrinfo results that say the name itself has no address. Every other failure
# (EAI_AGAIN, EAI_FAIL, EAI_SYSTEM, ...) may pass: see errors.py for why.
_NO_SUCH_HOST = frozenset({socket.EAI_NONAME, socket.EAI_NODATA, socket.EAI_ADDRFAMILY})

# RFC 1928 §6 reply codes: what the proxy says about the target.
_SOCKS_REPLIES = {
    0x01: ("general SOCKS server failure", ExitCode.TEMPFAIL),
    0x02: ("connection not allowed by ruleset", ExitCode.UNAVAILABLE),
    0x03: ("network unreachable", ExitCode.TEMPFAIL),
    0x04: ("host unreachable", ExitCode.TEMPFAIL),
    0x05: ("connection refused", ExitCode.TEMPFAIL),
    0x06: ("TTL expired", ExitCode.TEMPFAIL),
    0x07: ("command not supported", ExitCode.UNAVAILABLE),
    0x08: ("address type not supported", ExitCode.UNAVAILABLE),
}
_SOCKS_VERSION = 0x05
_SOCKS_NO_AUTHENTICATION = 0x00  # RFC 1928 §3
_SOCKS_CONNECT = 0x01  # RFC 1928 §4
_SOCKS_IPV4, _SOCKS_DOMAIN, _SOCKS_IPV6 = 0x01, 0x03, 0x04  # RFC 1928 §5

SocketAddress = tuple[Any, ...]  # (host, port) or (host, port, flowinfo, scope_id)


class Direction(enum.Enum):
    """Which way bytes went, for the transcript hook."""

    SENT = "sent"
    RECEIVED = "received"


TranscriptHook = Callable[[Direction, bytes], None]


class Endpoint(NamedTuple):
    """Where to connect, with msmtp's settings of the same names."""

    host: str = ""
    port: int = 25
    unix_socket: str | None = None
    """msmtp ``socket``: a Unix socket path; overrides host, port and proxy."""
    source_ip: str | None = None
    """Bind the local end to this address; only its address family is tried."""
    proxy_host: str | None = None
    """SOCKS5 proxy (RFC 1928, no authentication); it resolves ``host`` itself."""
    proxy_port: int = DEFAULT_PROXY_PORT

    def describe(self) -> str:
        if self.unix_socket:
            return f"socket {self.unix_socket}"
        where = f"{self.host} port {self.port}"
        if self.proxy_host:
            where += f" via SOCKS5 proxy {self.proxy_host} port {self.proxy_port}"
        return where


class ConnectionInfo(NamedTuple):
    """What is known about an open connection (for -v, logs and serverinfo)."""

    peer: str
    """The address actually connected to: ``[::1]:465``, ``/run/smtp.sock``, or the
    target and the proxy."""
    tls_version: str | None = None
    cipher: str | None = None
    certificate: bytes | None = None
    """The server's certificate (DER) once TLS is up, verified or pinned."""

    def describe_certificate(self) -> tls_module.CertificateInfo | None:
        if self.certificate is None:
            return None
        return tls_module.describe_certificate(
            self.certificate, tls_version=self.tls_version, cipher=self.cipher
        )


# RFC 1035 §2.3.4: a label of a domain name is at most 63 octets.
MAX_LABEL_OCTETS = 63


def resolve_host(host: str, port: int) -> list[tuple[socket.AddressFamily, SocketAddress]]:
    """All TCP addresses of ``host`` in the resolver's order (RFC 6724 via gai.conf)."""
    try:
        results = socket.getaddrinfo(_lookup_name(host), port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        if error.errno in _NO_SUCH_HOST:
            raise HostNotFoundError(
                f"host {host} not found: {error.strerror}; check the host setting"
            ) from error
        raise NameResolutionError(
            f"cannot look up host {host}: {error.strerror}; check the network or try again later"
        ) from error
    except UnicodeError as error:
        raise HostNotFoundError(f"{host!r} is not a valid host name") from error
    return [(family, address) for family, _type, _proto, _name, address in results]


def _lookup_name(host: str) -> str | bytes:
    # An ASCII name whose labels the idna codec accepts (1-63 octets, RFC 1035 §2.3.4;
    # the last may be empty) is its own IDNA form (RFC 3490 §4.1): as bytes,
    # getaddrinfo does not load that codec (encodings.idna, stringprep, unicodedata)
    # on every run's first connection. Anything else goes as str, for the codec to
    # encode or refuse as before.
    if host.isascii():
        *labels, last = host.split(".")
        inner_labels_fit = all(0 < len(label) <= MAX_LABEL_OCTETS for label in labels)
        if inner_labels_fit and len(last) <= MAX_LABEL_OCTETS:
            return host.encode("ascii")
    return host


def open_connection(
    endpoint: Endpoint,
    *,
    timeout: float,
    tls: tls_module.TLSPolicy | None = None,
    transcript: TranscriptHook | None = None,
) -> Transport:
    """Connect within ``timeout`` seconds in total; with ``tls``, as implicit TLS.

    Raises a ``TransportError`` (see ``mailhop.net.errors``) and leaves no socket open.
    """
    _check_timeout(timeout)
    deadline = time.monotonic() + timeout
    if endpoint.unix_socket:
        sock = _connect_unix(endpoint.unix_socket, deadline)
        peer = endpoint.unix_socket
    elif endpoint.proxy_host:
        proxy = Endpoint(
            host=endpoint.proxy_host, port=endpoint.proxy_port, source_ip=endpoint.source_ip
        )
        sock, proxy_peer = _connect_tcp(proxy, deadline, what=f"SOCKS5 proxy {proxy.describe()}")
        try:
            _socks5_connect(sock, endpoint, deadline)
        except BaseException:
            sock.close()
            raise
        peer = f"{endpoint.host}:{endpoint.port} via SOCKS5 proxy {proxy_peer}"
    else:
        sock, peer = _connect_tcp(endpoint, deadline)
    transport = Transport(sock, peer=peer, transcript=transcript)
    if tls is not None:
        try:
            remaining = _remaining(deadline)
        except TimeoutError as error:
            transport.close()
            raise ConnectError(
                f"cannot connect to {endpoint.describe()}: no time left for the TLS"
                f" handshake within {timeout:g} seconds; try again later"
            ) from error
        transport._handshake(tls, remaining)  # closes the transport on failure
    return transport


class Transport:
    """An open connection: blocking socket, optional TLS, a timeout on every call."""

    def __init__(
        self, sock: socket.socket, *, peer: str, transcript: TranscriptHook | None = None
    ) -> None:
        self._socket: socket.socket | None = sock
        self._transcript = transcript
        self._info = ConnectionInfo(peer=peer)
        # The timeout the socket holds now. Each settimeout is a syscall (it switches
        # the descriptor's blocking mode) and the SMTP driver uses the same few
        # timeouts for thousands of reads and writes in a row: set it only on change.
        self._timeout: float | None = sock.gettimeout()
        # Until TLS starts, the socket blocks and the kernel keeps the timeouts
        # (SO_RCVTIMEO, SO_SNDTIMEO; EAGAIN when one passes), one per direction: a
        # Python timeout polls before every recv and send, and the SMTP driver,
        # which alternates reading and writing with different timeouts, would
        # switch it (an ioctl) at almost every call. TLS sockets keep Python's
        # timeout: an SSL read may need a write, and the reverse.
        self._kernel_timeouts = not _is_tls(sock)
        self._receive_timeout: float | None = None  # what SO_RCVTIMEO holds
        self._send_timeout: float | None = None  # what SO_SNDTIMEO holds
        if self._kernel_timeouts:
            sock.settimeout(None)
            self._timeout = None

    @property
    def info(self) -> ConnectionInfo:
        return self._info

    @property
    def is_tls(self) -> bool:
        return self._info.tls_version is not None

    @property
    def is_closed(self) -> bool:
        return self._socket is None

    def send_all(self, data: bytes, *, timeout: float, redacted: bytes | None = None) -> None:
        """Send every byte of ``data`` within ``timeout`` seconds.

        The transcript hook sees ``redacted`` instead of ``data`` when it is given:
        the SMTP driver passes ``b"AUTH PLAIN <redacted>\\r\\n"`` for a credential line.
        """
        _check_timeout(timeout)
        sock = self._open_socket()
        if self._transcript is not None:
            self._transcript(Direction.SENT, data if redacted is None else redacted)
        try:
            if self._kernel_timeouts:
                self._send_within(sock, data, timeout)
            else:
                self._set_timeout(sock, timeout)
                sock.sendall(data)
        except (TimeoutError, BlockingIOError) as error:
            raise NetTimeoutError(
                f"{self._info.peer} did not accept data within {timeout:g} seconds; try again later"
            ) from error
        except OSError as error:
            self.close()
            raise ConnectionLostError(
                f"connection to {self._info.peer} lost while sending: {_reason(error)};"
                " try again later"
            ) from error

    def receive(self, max_bytes: int, *, timeout: float) -> bytes:
        """Wait up to ``timeout`` seconds for data; at most ``max_bytes``, ``b""`` at EOF."""
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        _check_timeout(timeout)
        sock = self._open_socket()
        try:
            if self._kernel_timeouts:
                if timeout != self._receive_timeout:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(timeout))
                    self._receive_timeout = timeout
            else:
                self._set_timeout(sock, timeout)
            data = sock.recv(max_bytes)
        except (TimeoutError, BlockingIOError) as error:
            raise NetTimeoutError(
                f"no answer from {self._info.peer} within {timeout:g} seconds; try again later"
            ) from error
        except OSError as error:
            self.close()
            raise ConnectionLostError(
                f"connection to {self._info.peer} lost while reading: {_reason(error)};"
                " try again later"
            ) from error
        if data and self._transcript is not None:
            self._transcript(Direction.RECEIVED, data)
        return data

    def start_tls(self, policy: tls_module.TLSPolicy, *, timeout: float) -> None:
        """Upgrade to TLS after the server agreed to STARTTLS (RFC 3207 §4).

        The caller has read the server's ``220`` reply and nothing more. If anything
        else already waits on the socket, it was sent in plaintext before the
        handshake and could be taken for a reply protected by TLS (CVE-2020-14954):
        refuse and close rather than start TLS on a poisoned stream.
        """
        _check_timeout(timeout)
        sock = self._open_socket()
        if _is_tls(sock):
            raise RuntimeError("start_tls on a connection that already uses TLS")
        try:
            sock.setblocking(False)
            self._timeout = 0.0
            waiting = sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            waiting = None  # the expected case: nothing arrived after the 220
        except OSError as error:
            self.close()
            raise ConnectionLostError(
                f"connection to {self._info.peer} lost before the TLS handshake:"
                f" {_reason(error)}; try again later"
            ) from error
        if waiting is not None:
            self.close()
            if not waiting:
                raise ConnectionLostError(
                    f"{self._info.peer} closed the connection instead of starting TLS;"
                    " try again later"
                )
            raise StartTLSInjectionError(
                f"server {self._info.peer} sent data before the TLS handshake: possible"
                " injection attack (RFC 3207 §4.2); nothing was sent, the connection is"
                " closed; if it repeats, tell the server's administrator"
            )
        self._handshake(policy, timeout)

    def close(self) -> None:
        """Close the connection; safe to call more than once."""
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _send_within(self, sock: socket.socket, data: bytes, timeout: float) -> None:
        """``sendall`` on the blocking socket, every byte within ``timeout`` seconds.

        SO_SNDTIMEO bounds each send; after a partial send, the next one gets only
        what is left of the deadline (a peer that drains slowly cannot stretch it).
        """
        if timeout != self._send_timeout:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(timeout))
            self._send_timeout = timeout
        deadline = time.monotonic() + timeout
        sent = sock.send(data)
        if sent >= len(data):
            return  # all at once, as nearly every write of a few KiB goes
        view = memoryview(data)
        while True:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                raise TimeoutError("the send deadline passed")
            if timeout != self._send_timeout:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(timeout))
                self._send_timeout = timeout
            sent += sock.send(view[sent:])
            if sent >= len(view):
                return

    def _set_timeout(self, sock: socket.socket, timeout: float) -> None:
        if timeout != self._timeout:
            sock.settimeout(timeout)
            self._timeout = timeout

    def _open_socket(self) -> socket.socket:
        if self._socket is None:
            raise ConnectionLostError(f"connection to {self._info.peer} is already closed")
        return self._socket

    def _handshake(self, policy: tls_module.TLSPolicy, timeout: float) -> None:
        """Run the TLS client handshake, then the fingerprint check; close on failure."""
        raw = self._open_socket()
        try:
            raw.settimeout(timeout)  # Python ≥ 3.5: a bound on the whole handshake
            self._timeout = timeout
            self._kernel_timeouts = False  # from here on, Python's (see __init__)
            tls_socket = policy.context.wrap_socket(
                raw, server_hostname=policy.server_hostname, do_handshake_on_connect=False
            )
        except ValueError as error:  # a server name ssl cannot send (NUL, empty label)
            self.close()
            raise NetConfigError(
                f"cannot use {policy.server_hostname!r} as TLS server name: {error}"
            ) from error
        except OSError as error:
            self.close()
            raise tls_module.translate_handshake_error(error, policy.server_hostname) from error
        self._socket = tls_socket  # wrap_socket detached ``raw``; this one owns the fd
        try:
            tls_socket.do_handshake()
            certificate = tls_socket.getpeercert(binary_form=True)
            # With tls_fingerprint the context did not verify: this check is the
            # verification, and it runs before a single byte goes to the server.
            policy.check_peer(certificate)
        except OSError as error:
            self.close()
            raise tls_module.translate_handshake_error(error, policy.server_hostname) from error
        except TransportError:
            self.close()
            raise
        cipher = tls_socket.cipher()
        self._info = self._info._replace(
            tls_version=tls_socket.version(),
            cipher=cipher[0] if cipher else None,
            certificate=certificate,
        )


def _remaining(deadline: float) -> float:
    """Seconds left; ``TimeoutError`` once none are (a timeout of 0 means non-blocking)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed")
    return remaining


def _timeval(seconds: float) -> bytes:
    """A struct timeval for SO_RCVTIMEO/SO_SNDTIMEO, at least one microsecond."""
    whole, fraction = divmod(max(1, math.ceil(seconds * _MICROSECONDS)), _MICROSECONDS)
    return _TIMEVAL.pack(whole, fraction)


def _check_timeout(timeout: float) -> None:
    # socket.settimeout(0) silently switches to non-blocking mode, and None to
    # waiting forever (security.md A14): neither is a timeout.
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")


def _is_tls(sock: socket.socket) -> bool:
    # ssl is imported by mailhop.net.tls for a TLS connection only; until it is, no
    # socket can be an SSLSocket (and no error an SSLError), so a plain connection
    # never loads it.
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(sock, ssl.SSLSocket)


def _reason(error: OSError) -> str:
    ssl = sys.modules.get("ssl")  # see _is_tls
    if ssl is not None and isinstance(error, ssl.SSLError):
        return f"TLS error {tls_module.ssl_reason(error)}"
    return error.strerror or str(error) or type(error).__name__


def _format_address(address: SocketAddress) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _connect_tcp(
    endpoint: Endpoint, deadline: float, *, what: str | None = None
) -> tuple[socket.socket, str]:
    """Try every address of the host in turn, all within one deadline."""
    addresses = resolve_host(endpoint.host, endpoint.port)
    if endpoint.source_ip:
        import ipaddress  # noqa: PLC0415 - only with source_ip or a proxy

        try:
            source_version = ipaddress.ip_address(endpoint.source_ip).version
        except ValueError as error:
            raise NetConfigError(
                f"source_ip {endpoint.source_ip!r} is not an IP address"
            ) from error
        family = socket.AF_INET if source_version == 4 else socket.AF_INET6
        addresses = [entry for entry in addresses if entry[0] == family]
        if not addresses:
            raise ConnectError(
                f"{endpoint.host} has no IPv{source_version} address to reach from"
                f" source_ip {endpoint.source_ip}; change source_ip or host"
            )
    failures: list[str] = []
    last_error: OSError | None = None
    for index, (family, address) in enumerate(addresses):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        # Share the time left among the addresses not tried yet, so one that drops
        # packets cannot use up the deadline of the others (the idea of RFC 8305).
        attempt_timeout = remaining / (len(addresses) - index)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if endpoint.source_ip:
                sock.bind((endpoint.source_ip, 0))
            sock.settimeout(attempt_timeout)
            sock.connect(address)
        except TimeoutError as error:
            sock.close()
            failures.append(f"{_format_address(address)}: timed out")
            last_error = error
            continue
        except OSError as error:
            sock.close()
            failures.append(f"{_format_address(address)}: {_reason(error)}")
            last_error = error
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # commands are small
        return sock, _format_address(address)
    untried = len(addresses) - len(failures)
    if untried:
        failures.append(f"{untried} address(es) not tried: out of time")
    raise ConnectError(
        f"cannot connect to {what or endpoint.describe()}"
        f" ({'; '.join(failures) or 'no address'}); check host and port, or try again later"
    ) from last_error


def _connect_unix(path: str, deadline: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(_remaining(deadline))
        sock.connect(path)
    except OSError as error:
        sock.close()
        raise ConnectError(
            f"cannot connect to socket {path}: {_reason(error)}; is the server running?"
        ) from error
    except BaseException:
        sock.close()
        raise
    return sock


def _socks5_connect(sock: socket.socket, target: Endpoint, deadline: float) -> None:
    """RFC 1928: no-authentication method, CONNECT to the target by name or address."""
    proxy = f"SOCKS5 proxy {target.proxy_host} port {target.proxy_port}"
    address_field = _socks_address(target.host)
    try:
        # §3: offer exactly one method, "no authentication required".
        sock.settimeout(_remaining(deadline))
        sock.sendall(bytes([_SOCKS_VERSION, 1, _SOCKS_NO_AUTHENTICATION]))
        version, method = _receive_exactly(sock, 2, deadline, proxy)
        if version != _SOCKS_VERSION:
            raise ProxyError(
                f"{proxy} does not speak SOCKS5; check proxy_host and proxy_port",
                exit_code=ExitCode.UNAVAILABLE,
            )
        if method != _SOCKS_NO_AUTHENTICATION:
            raise ProxyError(
                f"{proxy} requires authentication, which mailhop (like msmtp) does not"
                " support; use a proxy that accepts local clients without it",
                exit_code=ExitCode.UNAVAILABLE,
            )
        # §4: VER CMD RSV ATYP DST.ADDR DST.PORT
        request = bytes([_SOCKS_VERSION, _SOCKS_CONNECT, 0]) + address_field
        sock.settimeout(_remaining(deadline))
        sock.sendall(request + target.port.to_bytes(2, "big"))
        # §6: VER REP RSV ATYP BND.ADDR BND.PORT. Read exactly the reply and no more:
        # the server's greeting may follow in the same segment.
        version, reply, _reserved, address_type = _receive_exactly(sock, 4, deadline, proxy)
        if version != _SOCKS_VERSION:
            raise ProxyError(f"{proxy} sent a malformed reply", exit_code=ExitCode.PROTOCOL)
        if reply != 0:
            meaning, exit_code = _SOCKS_REPLIES.get(reply, (f"error {reply}", ExitCode.UNAVAILABLE))
            raise ProxyError(
                f"{proxy} cannot reach {target.host} port {target.port}: {meaning}",
                exit_code=exit_code,
            )
        if address_type == _SOCKS_IPV4:
            bound_length = 4
        elif address_type == _SOCKS_IPV6:
            bound_length = 16
        elif address_type == _SOCKS_DOMAIN:
            bound_length = _receive_exactly(sock, 1, deadline, proxy)[0]
        else:
            raise ProxyError(
                f"{proxy} sent an unknown address type {address_type}",
                exit_code=ExitCode.PROTOCOL,
            )
        _receive_exactly(sock, bound_length + 2, deadline, proxy)  # BND.ADDR, BND.PORT
    except TimeoutError as error:
        raise ProxyError(f"{proxy} did not answer in time; try again later") from error
    except OSError as error:
        raise ProxyError(
            f"connection to {proxy} lost: {_reason(error)}; try again later"
        ) from error


def _receive_exactly(sock: socket.socket, count: int, deadline: float, proxy: str) -> bytes:
    received = b""
    while len(received) < count:
        sock.settimeout(_remaining(deadline))
        chunk = sock.recv(count - len(received))
        if not chunk:
            raise ProxyError(
                f"{proxy} closed the connection during the SOCKS5 negotiation; try again later"
            )
        received += chunk
    return received


def _socks_address(host: str) -> bytes:
    """RFC 1928 §5 ATYP and DST.ADDR: an IP literal as such, a name for the proxy."""
    import ipaddress  # noqa: PLC0415 - only with source_ip or a proxy

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        address_type = _SOCKS_IPV4 if address.version == 4 else _SOCKS_IPV6
        return bytes([address_type]) + address.packed
    try:
        name = host.encode("idna")
    except UnicodeError as error:
        raise HostNotFoundError(f"{host!r} is not a valid host name") from error
    if not 0 < len(name) <= MAX_SOCKS_HOST_LENGTH:
        raise HostNotFoundError(f"host name {host!r} is too long for SOCKS5")
    return bytes([_SOCKS_DOMAIN, len(name)]) + name  # the proxy resolves it
