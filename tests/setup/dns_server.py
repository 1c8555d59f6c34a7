"""A tiny authoritative DNS server on 127.0.0.1 for the autoconfig tests.

It answers SRV and MX questions from a table the test gives, over UDP, on a thread.
Its encoder is written independently of ``mailhop.config.autoconfig`` (no name
compression, except where a test asks for it) so the two check each other.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

TYPE_MX = 15
TYPE_SRV = 33
# Every read of the test server waits at most this long, so its thread ends promptly.
POLL_SECONDS = 0.2


def wire_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\0"


def srv_rdata(priority: int, weight: int, port: int, target: str) -> bytes:
    return struct.pack("!HHH", priority, weight, port) + wire_name(target)


def mx_rdata(preference: int, exchange: str) -> bytes:
    return struct.pack("!H", preference) + wire_name(exchange)


@dataclass
class DnsServer:
    """Records by (lower-case name, type); ``questions`` records what was asked."""

    records: dict[tuple[str, int], list[bytes]] = field(default_factory=dict)
    questions: list[tuple[str, int]] = field(default_factory=list)
    port: int = 0
    drop: bool = False  # never answer (timeout tests)

    def answer(self, query: bytes) -> bytes:
        identifier, _flags = struct.unpack("!HH", query[:4])
        offset, labels = 12, []
        while query[offset]:
            length = query[offset]
            labels.append(query[offset + 1 : offset + 1 + length].decode("ascii"))
            offset += 1 + length
        question_end = offset + 5
        record_type = struct.unpack("!H", query[offset + 1 : offset + 3])[0]
        name = ".".join(labels).lower()
        self.questions.append((name, record_type))
        found = self.records.get((name, record_type), [])
        rcode = 0 if found or any(key[0] == name for key in self.records) else 3
        header = struct.pack("!HHHHHH", identifier, 0x8180 | rcode, 1, len(found), 0, 0)
        body = query[12:question_end]
        for rdata in found:
            # 0xC00C: a compression pointer to the question's name (RFC 1035 §4.1.4).
            body += b"\xc0\x0c" + struct.pack("!HHIH", record_type, 1, 300, len(rdata)) + rdata
        return header + body


@contextmanager
def running(server: DnsServer) -> Iterator[DnsServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(POLL_SECONDS)
    server.port = sock.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                query, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            if not server.drop:
                sock.sendto(server.answer(query), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()
