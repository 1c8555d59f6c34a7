"""Find an address's submission server: provider table, SRV records, MX records.

Order (``discover``):

1. the built-in provider table by the address's domain (``gmail.com``);
2. DNS SRV ``_submissions._tcp.DOMAIN`` (implicit TLS) then ``_submission._tcp.DOMAIN``
   (STARTTLS), RFC 6186 §3.1 as updated by RFC 8314 §5.1, which prefers implicit TLS;
3. DNS MX of the domain, matched against the table's MX patterns (a company domain
   hosted by Google Workspace or Microsoft 365);
4. nothing found: the caller probes guesses (``smtp.DOMAIN``, ``mail.DOMAIN``).

DNS is spoken here directly, over UDP, with a small sans-IO codec (``encode_query``
/ ``decode_response``) instead of a new dependency: two record types, one question
each. The resolver address is injectable so tests use their own DNS server on
127.0.0.1; by default it is the first ``nameserver`` of ``/etc/resolv.conf``.
"""

from __future__ import annotations

import dataclasses
import enum
import secrets
import struct

from mailhop.config.model import TlsMode
from mailhop.config.providers import Provider, for_domain, for_mx_hosts
from mailhop.errors import ConfigError, ExitCode

# RFC 1035 §3.2.2 type codes and §3.2.4 class IN.
TYPE_MX = 15
TYPE_SRV = 33  # RFC 2782
CLASS_IN = 1
# RFC 1035 §4.2.1: a UDP message is at most 512 octets without EDNS; we send no EDNS
# option, so a larger answer comes truncated (TC) and we read at most this much.
MAX_UDP_MESSAGE_BYTES = 512
# RFC 1035 §2.3.4: a name is at most 255 octets, a label at most 63.
MAX_NAME_BYTES = 255
MAX_LABEL_BYTES = 63
# A compressed name may point backwards many times, but a hostile answer can loop;
# a name of 255 octets cannot need more than 128 jumps (each label is >= 2 octets).
MAX_COMPRESSION_JUMPS = 128
# Records one answer may carry that we look at; a real SRV/MX set is a handful.
MAX_ANSWER_RECORDS = 64
# How long to wait for one DNS answer, and how often to ask (RFC 1536 §1: resolvers
# retransmit; two tries cover one lost datagram without making configure slow).
DEFAULT_DNS_TIMEOUT_SECONDS = 3.0
DNS_ATTEMPTS = 2
DNS_PORT = 53
RESOLV_CONF = "/etc/resolv.conf"
# RFC 1035 §4.1.1 header flags and response codes.
_FLAG_RESPONSE = 0x8000
_FLAG_TRUNCATED = 0x0200
_FLAG_RECURSION_DESIRED = 0x0100
RCODE_NOERROR = 0
RCODE_NXDOMAIN = 3


class DnsFormatError(ValueError):
    """The DNS message is malformed (the reason says where)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class SrvRecord:
    """RFC 2782: a service offered at target:port, chosen by priority then weight."""

    priority: int
    weight: int
    port: int
    target: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class MxRecord:
    """RFC 1035 §3.3.9: a mail exchanger with its preference (lower wins)."""

    preference: int
    exchange: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class DnsResponse:
    """A decoded answer: its id, response code, truncation flag and records."""

    identifier: int
    rcode: int
    truncated: bool
    records: tuple[SrvRecord | MxRecord, ...]


class Source(enum.Enum):
    """Where the discovered settings came from (``configure`` says so)."""

    PROVIDER = "provider table"
    SRV = "DNS SRV record"
    MX = "provider recognised from the MX records"
    COMMAND_LINE = "command line"
    GUESS = "guess"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Discovery:
    """One candidate submission server for an address."""

    host: str
    port: int
    tls_mode: TlsMode
    source: Source
    provider: Provider | None = None


# --- the sans-IO codec ---------------------------------------------------------------


def encode_name(name: str) -> bytes:
    """RFC 1035 §3.1: a name as length-prefixed labels ending in the root's zero."""
    labels = [label for label in name.rstrip(".").split(".") if label] if name != "." else []
    encoded = bytearray()
    for label in labels:
        raw = label.encode("idna") if not label.isascii() else label.encode("ascii")
        if len(raw) > MAX_LABEL_BYTES:
            raise DnsFormatError(f"label {label!r} is longer than {MAX_LABEL_BYTES} octets")
        encoded += bytes([len(raw)]) + raw
    encoded.append(0)
    if len(encoded) > MAX_NAME_BYTES:
        raise DnsFormatError(f"name {name!r} is longer than {MAX_NAME_BYTES} octets")
    return bytes(encoded)


def encode_query(identifier: int, name: str, record_type: int) -> bytes:
    """A standard query (RFC 1035 §4.1) for one question, recursion desired."""
    header = struct.pack("!HHHHHH", identifier, _FLAG_RECURSION_DESIRED, 1, 0, 0, 0)
    return header + encode_name(name) + struct.pack("!HH", record_type, CLASS_IN)


def decode_name(message: bytes, offset: int) -> tuple[str, int]:
    """Read a possibly compressed name (RFC 1035 §4.1.4); return it and the next offset."""
    labels: list[str] = []
    jumps = 0
    end: int | None = None
    length_total = 0
    while True:
        if offset >= len(message):
            raise DnsFormatError("name runs past the end of the message")
        length = message[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(message):
                raise DnsFormatError("compression pointer cut off")
            jumps += 1
            if jumps > MAX_COMPRESSION_JUMPS:
                raise DnsFormatError("compression pointers loop")
            if end is None:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | message[offset + 1]
            continue
        if length & 0xC0:
            raise DnsFormatError(f"unknown label type 0x{length:02x}")
        offset += 1
        if length == 0:
            break
        label = message[offset : offset + length]
        if len(label) != length:
            raise DnsFormatError("label runs past the end of the message")
        length_total += length + 1
        if length_total > MAX_NAME_BYTES:
            raise DnsFormatError(f"name longer than {MAX_NAME_BYTES} octets")
        labels.append(label.decode("ascii", "replace"))
        offset += length
    return ".".join(labels), (end if end is not None else offset)


def decode_response(message: bytes) -> DnsResponse:
    """Decode an answer: header, skip the question, keep SRV and MX records.

    Raises:
        DnsFormatError: malformed message.
    """
    if len(message) < 12:
        raise DnsFormatError("shorter than a DNS header")
    identifier, flags, questions, answers, _authority, _additional = struct.unpack(
        "!HHHHHH", message[:12]
    )
    if not flags & _FLAG_RESPONSE:
        raise DnsFormatError("not a response")
    offset = 12
    for _ in range(questions):
        _name, offset = decode_name(message, offset)
        offset += 4
    records: list[SrvRecord | MxRecord] = []
    for _ in range(min(answers, MAX_ANSWER_RECORDS)):
        _name, offset = decode_name(message, offset)
        if offset + 10 > len(message):
            raise DnsFormatError("record header cut off")
        record_type, record_class, _ttl, length = struct.unpack(
            "!HHIH", message[offset : offset + 10]
        )
        offset += 10
        data_end = offset + length
        if data_end > len(message):
            raise DnsFormatError("record data cut off")
        if record_class == CLASS_IN and record_type == TYPE_SRV and length >= 7:
            priority, weight, port = struct.unpack("!HHH", message[offset : offset + 6])
            target, _ = decode_name(message, offset + 6)
            records.append(SrvRecord(priority=priority, weight=weight, port=port, target=target))
        elif record_class == CLASS_IN and record_type == TYPE_MX and length >= 3:
            (preference,) = struct.unpack("!H", message[offset : offset + 2])
            exchange, _ = decode_name(message, offset + 2)
            records.append(MxRecord(preference=preference, exchange=exchange))
        offset = data_end
    return DnsResponse(
        identifier=identifier,
        rcode=flags & 0x000F,
        truncated=bool(flags & _FLAG_TRUNCATED),
        records=tuple(records),
    )


# --- the I/O --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Resolver:
    """Where DNS questions go (a recursive resolver) and how long to wait."""

    host: str
    port: int = DNS_PORT
    timeout: float = DEFAULT_DNS_TIMEOUT_SECONDS

    @classmethod
    def parse(cls, text: str, *, timeout: float = DEFAULT_DNS_TIMEOUT_SECONDS) -> Resolver:
        """``HOST`` or ``HOST:PORT`` (``[v6]:PORT``), as ``--resolver`` takes it."""
        host, port = text, DNS_PORT
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            if rest.startswith(":"):
                port = int(rest[1:])
        elif text.count(":") == 1:
            host, _, number = text.partition(":")
            port = int(number)
        return cls(host=host, port=port, timeout=timeout)

    @classmethod
    def from_system(cls, path: str = RESOLV_CONF) -> Resolver:
        """The first ``nameserver`` of resolv.conf(5), else the local stub."""
        try:
            with open(path, encoding="utf-8", errors="replace") as file:
                for line in file:
                    words = line.split()
                    if len(words) >= 2 and words[0] == "nameserver":
                        return cls(host=words[1])
        except OSError:
            pass
        return cls(host="127.0.0.1")


def query(resolver: Resolver, name: str, record_type: int) -> DnsResponse:
    """Ask ``resolver`` one question over UDP; None answers are an empty record list.

    Raises:
        ConfigError: no answer in time, or a malformed one (exit 75: try again later).
    """
    import socket  # noqa: PLC0415 - configure and doctor only

    family = socket.AF_INET6 if ":" in resolver.host else socket.AF_INET
    last_problem = "no answer"
    for _attempt in range(DNS_ATTEMPTS):
        identifier = secrets.randbelow(0x10000)  # RFC 5452 §4: unpredictable ids
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(resolver.timeout)
            try:
                sock.connect((resolver.host, resolver.port))
                sock.send(encode_query(identifier, name, record_type))
                while True:
                    data = sock.recv(MAX_UDP_MESSAGE_BYTES)
                    try:
                        response = decode_response(data)
                    except DnsFormatError as error:
                        last_problem = f"malformed answer ({error})"
                        break
                    if response.identifier == identifier:
                        return response
                    # RFC 5452 §9.1: an answer with another id is not ours; keep waiting.
            except TimeoutError:
                last_problem = f"no answer within {resolver.timeout:g} s"
            except OSError as error:
                last_problem = error.strerror or str(error)
    raise ConfigError(
        f"DNS: cannot ask {resolver.host} about {name}: {last_problem}",
        exit_code=ExitCode.TEMPFAIL,
    )


def srv_services(resolver: Resolver, domain: str) -> list[Discovery]:
    """RFC 6186 §3.1 / RFC 8314 §5.1: submission services, implicit TLS first.

    Within each service, records are ordered by priority then by weight (heaviest
    first; RFC 2782's weighted random choice matters for load, not for configure).
    A target of ``.`` means the service is decidedly not offered (RFC 2782).
    """
    found: list[Discovery] = []
    for service, mode in (("_submissions", TlsMode.IMPLICIT), ("_submission", TlsMode.STARTTLS)):
        response = query(resolver, f"{service}._tcp.{domain}", TYPE_SRV)
        records = sorted(
            (record for record in response.records if isinstance(record, SrvRecord)),
            key=lambda record: (record.priority, -record.weight),
        )
        for record in records:
            if record.target in ("", ".") or record.port == 0:
                continue
            found.append(
                Discovery(host=record.target, port=record.port, tls_mode=mode, source=Source.SRV)
            )
    return found


def mx_hosts(resolver: Resolver, domain: str) -> list[str]:
    """The domain's MX host names, most preferred first."""
    response = query(resolver, domain, TYPE_MX)
    records = [record for record in response.records if isinstance(record, MxRecord)]
    return [record.exchange for record in sorted(records, key=lambda r: r.preference)]


def discover(domain: str, *, resolver: Resolver | None) -> list[Discovery]:
    """Candidates for ``domain``, best first: table, SRV, MX, then guesses.

    ``resolver`` None skips DNS (provider table and guesses only).
    """
    provider = for_domain(domain)
    if provider is not None:
        return [_from_provider(provider, Source.PROVIDER)]
    candidates: list[Discovery] = []
    if resolver is not None:
        candidates += srv_services(resolver, domain)
        if not candidates:
            hosted_by = for_mx_hosts(mx_hosts(resolver, domain))
            if hosted_by is not None:
                candidates.append(_from_provider(hosted_by, Source.MX))
    if not candidates:
        candidates += [
            Discovery(host=f"{prefix}.{domain}", port=port, tls_mode=mode, source=Source.GUESS)
            for prefix in ("smtp", "mail")
            for port, mode in ((465, TlsMode.IMPLICIT), (587, TlsMode.STARTTLS))
        ]
    return candidates


def _from_provider(provider: Provider, source: Source) -> Discovery:
    return Discovery(
        host=provider.host,
        port=provider.port,
        tls_mode=provider.tls_mode,
        source=source,
        provider=provider,
    )
