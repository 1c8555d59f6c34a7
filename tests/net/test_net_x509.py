"""The DER reader behind serverinfo: right on real certificates, safe on hostile ones."""

from __future__ import annotations

import datetime
import hashlib

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from mailhop.net import _x509
from mailhop.net.tls import describe_certificate, format_fingerprint


def build(
    subject: x509.Name,
    *,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test CA")]))
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )


def der_of(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


START = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Mail Test"),
        x509.NameAttribute(NameOID.COMMON_NAME, "smtp.example.test"),
        x509.NameAttribute(NameOID.EMAIL_ADDRESS, "postmaster@example.test"),
    ]
)
CERTIFICATE = build(SUBJECT, not_before=START, not_after=START + datetime.timedelta(days=90))
DER = der_of(CERTIFICATE)


def test_fields_match_what_cryptography_reads() -> None:
    fields = _x509.read_certificate(DER)
    assert fields is not None
    assert fields.subject == (
        "C=DE, O=Mail Test, CN=smtp.example.test, emailAddress=postmaster@example.test"
    )
    assert fields.issuer == "O=Test CA"
    assert fields.not_before == CERTIFICATE.not_valid_before_utc == START
    assert fields.not_after == CERTIFICATE.not_valid_after_utc


def test_generalized_time_after_2049_and_utc_time_before_it() -> None:
    # RFC 5280 §4.1.2.5: dates from 2050 on are GeneralizedTime.
    late = datetime.datetime(2051, 6, 1, tzinfo=datetime.UTC)
    certificate = build(SUBJECT, not_before=START, not_after=late)
    fields = _x509.read_certificate(der_of(certificate))
    assert fields is not None
    assert fields.not_after == late
    early = datetime.datetime(1999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
    fields = _x509.read_certificate(der_of(build(SUBJECT, not_before=early, not_after=late)))
    assert fields is not None
    assert fields.not_before == early


def test_control_characters_in_names_cannot_reach_the_terminal() -> None:
    hostile = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil\x1b[2J\u202eexe.test")])
    fields = _x509.read_certificate(der_of(build(hostile, not_before=START, not_after=START)))
    assert fields is not None
    assert "\x1b" not in fields.subject
    assert "\u202e" not in fields.subject
    assert fields.subject.startswith("CN=evil\\x1b[2J")


def test_trustme_certificates_read() -> None:
    leaf = trustme.CA().issue_cert("localhost", common_name="localhost")
    pem = leaf.cert_chain_pems[0].bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    description = describe_certificate(der, tls_version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256")
    assert "CN=localhost" in description.subject
    assert "O=trustme" in description.issuer
    assert description.sha256 == format_fingerprint(hashlib.sha256(der).digest())
    assert len(description.sha1.split(":")) == 20
    assert description.tls_version == "TLSv1.3"


def test_every_truncation_is_refused_not_crashed() -> None:
    for length in range(len(DER)):
        assert _x509.read_certificate(DER[:length]) is None


@given(st.binary(max_size=600))
def test_garbage_never_raises(data: bytes) -> None:
    _x509.read_certificate(data)


@given(st.integers(min_value=0, max_value=len(DER) - 1), st.integers(min_value=0, max_value=255))
def test_single_byte_corruption_never_raises(position: int, value: int) -> None:
    corrupted = DER[:position] + bytes([value]) + DER[position + 1 :]
    result = _x509.read_certificate(corrupted)
    if result is not None:
        assert "\n" not in result.subject + result.issuer


def test_unreadable_certificate_is_still_fingerprinted() -> None:
    description = describe_certificate(b"\x30\x03junk")
    assert description.subject == "(unreadable)"
    assert description.sha256 == format_fingerprint(hashlib.sha256(b"\x30\x03junk").digest())
