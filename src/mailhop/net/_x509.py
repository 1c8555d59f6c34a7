"""Read subject, issuer and validity from a DER certificate (RFC 5280 §4.1).

``ssl`` decodes a certificate only after it was verified (``getpeercert()`` returns
``{}`` under ``CERT_NONE``), but ``serverinfo`` must describe exactly the certificates
that are *not* trusted yet, so the user can decide to pin one. The standard library
has no public DER reader and mailhop has no runtime dependencies, so this module
reads the few fields shown, and nothing else. Input is the server's: every length is
checked, anything unexpected gives ``None``, and text is made safe for a terminal.
"""

from __future__ import annotations

import datetime

from mailhop._records import NamedTuple

# DER tags used in a TBSCertificate (X.690 §8; RFC 5280 §4.1).
_SEQUENCE = 0x30
_SET = 0x31
_OBJECT_IDENTIFIER = 0x06
_EXPLICIT_VERSION = 0xA0  # [0] EXPLICIT Version, absent in v1 certificates
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18
_STRING_CODECS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "latin-1",  # PrintableString (ASCII subset)
    0x14: "latin-1",  # TeletexString, decoded as Latin-1 like OpenSSL does
    0x16: "latin-1",  # IA5String
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}
# Attribute types of RFC 5280 §4.1.2.4 shown by their usual short names.
_ATTRIBUTE_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "1.2.840.113549.1.9.1": "emailAddress",
    "0.9.2342.19200300.100.1.25": "DC",
}
# A length field longer than 4 octets would describe more than 4 GiB: not a certificate.
_MAX_LENGTH_OCTETS = 4


class _MalformedError(ValueError):
    """The DER is not what RFC 5280 describes."""


class CertificateFields(NamedTuple):
    subject: str
    issuer: str
    not_before: datetime.datetime
    not_after: datetime.datetime


def read_certificate(der: bytes) -> CertificateFields | None:
    """Subject, issuer and validity of ``der``, or ``None`` if it cannot be read."""
    try:
        tag, certificate, _ = _read_element(der, 0)
        _expect(tag, _SEQUENCE)
        tag, tbs, _ = _read_element(certificate, 0)
        _expect(tag, _SEQUENCE)
        fields = _children(tbs)
        if fields and fields[0][0] == _EXPLICIT_VERSION:
            fields = fields[1:]
        # serialNumber, signature, issuer, validity, subject (RFC 5280 §4.1.1.1)
        if len(fields) < 5:
            raise _MalformedError("TBSCertificate too short")
        issuer, validity, subject = fields[2], fields[3], fields[4]
        times = _children(_expect_content(validity, _SEQUENCE))
        if len(times) != 2:
            raise _MalformedError("validity is not two times")
        return CertificateFields(
            subject=_read_name(_expect_content(subject, _SEQUENCE)),
            issuer=_read_name(_expect_content(issuer, _SEQUENCE)),
            not_before=_read_time(*times[0]),
            not_after=_read_time(*times[1]),
        )
    except (_MalformedError, ValueError):
        return None


def _read_element(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """One tag-length-value at ``offset``: (tag, content, offset after it)."""
    if offset + 2 > len(data):
        raise _MalformedError("truncated element")
    tag, length = data[offset], data[offset + 1]
    if tag & 0x1F == 0x1F:
        raise _MalformedError("high tag numbers do not occur in these fields")
    offset += 2
    if length & 0x80:
        length_octets = length & 0x7F
        if not 0 < length_octets <= _MAX_LENGTH_OCTETS or offset + length_octets > len(data):
            raise _MalformedError("bad length")
        length = int.from_bytes(data[offset : offset + length_octets], "big")
        offset += length_octets
    end = offset + length
    if end > len(data):
        raise _MalformedError("element longer than its container")
    return tag, data[offset:end], end


def _children(content: bytes) -> list[tuple[int, bytes]]:
    children = []
    offset = 0
    while offset < len(content):
        tag, value, offset = _read_element(content, offset)
        children.append((tag, value))
    return children


def _expect(tag: int, expected: int) -> None:
    if tag != expected:
        raise _MalformedError(f"tag {tag:#x} where {expected:#x} belongs")


def _expect_content(element: tuple[int, bytes], expected: int) -> bytes:
    _expect(element[0], expected)
    return element[1]


def _read_name(content: bytes) -> str:
    """RFC 5280 §4.1.2.4 Name as ``CN=x, O=y`` in certificate order."""
    parts = []
    for set_tag, relative_name in _children(content):
        _expect(set_tag, _SET)
        for sequence_tag, attribute in _children(relative_name):
            _expect(sequence_tag, _SEQUENCE)
            attribute_fields = _children(attribute)
            if len(attribute_fields) != 2:
                raise _MalformedError("attribute is not type and value")
            oid = _read_oid(_expect_content(attribute_fields[0], _OBJECT_IDENTIFIER))
            value_tag, value = attribute_fields[1]
            codec = _STRING_CODECS.get(value_tag)
            text = value.decode(codec, "replace") if codec else value.hex()
            parts.append(f"{_ATTRIBUTE_NAMES.get(oid, oid)}={_printable(text)}")
    return ", ".join(parts)


def _read_oid(content: bytes) -> str:
    """X.690 §8.19: base-128 arcs, the first octet packs the first two."""
    arcs: list[int] = []
    value = 0
    for octet in content:
        value = (value << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(value)
            value = 0
    if not arcs:
        raise _MalformedError("empty object identifier")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])


def _read_time(tag: int, content: bytes) -> datetime.datetime:
    """RFC 5280 §4.1.2.5: UTCTime YYMMDDHHMMSSZ (50-99 are 19xx) or GeneralizedTime."""
    text = content.decode("ascii")
    if tag == _UTC_TIME:
        parsed = datetime.datetime.strptime(text, "%y%m%d%H%M%SZ")
        if parsed.year >= 2050:  # strptime pivots at 69; RFC 5280 pivots at 50
            parsed = parsed.replace(year=parsed.year - 100)
    elif tag == _GENERALIZED_TIME:
        parsed = datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ")
    else:
        raise _MalformedError("not a time")
    return parsed.replace(tzinfo=datetime.UTC)


def _printable(text: str) -> str:
    """Escape control characters: a hostile subject must not drive the terminal."""
    return "".join(
        character if character.isprintable() else f"\\x{ord(character):02x}" for character in text
    )
