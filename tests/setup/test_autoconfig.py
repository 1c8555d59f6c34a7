"""The DNS codec and SRV/MX discovery, against a DNS server of the tests on 127.0.0.1."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailhop.config import TlsMode
from mailhop.config.autoconfig import (
    TYPE_MX,
    TYPE_SRV,
    DnsFormatError,
    MxRecord,
    Resolver,
    Source,
    decode_response,
    discover,
    encode_query,
)
from mailhop.config.providers import by_key
from mailhop.errors import ConfigError, ExitCode
from tests.setup.dns_server import DnsServer, mx_rdata, running, srv_rdata


def test_query_encoding_is_rfc_1035() -> None:
    query = encode_query(0x1234, "_submissions._tcp.example.test", TYPE_SRV)
    assert query[:12] == struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    assert query[12:] == b"\x0c_submissions\x04_tcp\x07example\x04test\x00\x00\x21\x00\x01"


def test_answer_with_compressed_names_decodes() -> None:
    server = DnsServer(records={("example.test", TYPE_MX): [mx_rdata(10, "mx.example.test")]})
    response = decode_response(server.answer(encode_query(7, "example.test", TYPE_MX)))
    assert response.identifier == 7
    assert response.records == (MxRecord(preference=10, exchange="mx.example.test"),)


def test_pointer_loop_is_refused() -> None:
    header = struct.pack("!HHHHHH", 1, 0x8180, 0, 1, 0, 0)
    looping = header + b"\xc0\x0c" + struct.pack("!HHIH", TYPE_MX, 1, 1, 4) + b"\x00\x01\xc0\x0c"
    with pytest.raises(DnsFormatError):
        decode_response(header + b"\xc0\x0c")
    with pytest.raises(DnsFormatError, match="loop"):
        decode_response(looping)


@given(st.binary(max_size=600))
def test_decoder_never_crashes_on_garbage(data: bytes) -> None:
    with contextlib.suppress(DnsFormatError):
        decode_response(data)


def test_srv_prefers_implicit_tls_then_priority() -> None:
    server = DnsServer(
        records={
            ("_submission._tcp.example.test", TYPE_SRV): [
                srv_rdata(0, 1, 587, "smtp.example.test")
            ],
            ("_submissions._tcp.example.test", TYPE_SRV): [
                srv_rdata(20, 1, 465, "backup.example.test"),
                srv_rdata(10, 1, 465, "smtp.example.test"),
            ],
        }
    )
    with running(server):
        found = discover("example.test", resolver=Resolver(host="127.0.0.1", port=server.port))
    assert [(f.host, f.port, f.tls_mode, f.source) for f in found] == [
        ("smtp.example.test", 465, TlsMode.IMPLICIT, Source.SRV),
        ("backup.example.test", 465, TlsMode.IMPLICIT, Source.SRV),
        ("smtp.example.test", 587, TlsMode.STARTTLS, Source.SRV),
    ]


def test_srv_target_dot_means_not_offered() -> None:
    server = DnsServer(
        records={
            ("_submissions._tcp.example.test", TYPE_SRV): [srv_rdata(0, 0, 0, ".")],
            ("_submission._tcp.example.test", TYPE_SRV): [srv_rdata(0, 0, 587, "m.example.test")],
        }
    )
    with running(server):
        found = discover("example.test", resolver=Resolver(host="127.0.0.1", port=server.port))
    assert [(f.host, f.port) for f in found] == [("m.example.test", 587)]


def test_google_hosted_domain_from_a_test_mx_answer() -> None:
    server = DnsServer(
        records={
            ("company.test", TYPE_MX): [
                mx_rdata(5, "alt1.aspmx.l.google.com"),
                mx_rdata(1, "aspmx.l.google.com"),
            ]
        }
    )
    with running(server):
        found = discover("company.test", resolver=Resolver(host="127.0.0.1", port=server.port))
    assert found[0].source is Source.MX
    assert found[0].provider is by_key("google-workspace")
    assert (found[0].host, found[0].port) == ("smtp.gmail.com", 465)
    assert ("_submissions._tcp.company.test", TYPE_SRV) in server.questions


def test_provider_table_wins_without_asking_dns() -> None:
    server = DnsServer()
    with running(server):
        found = discover("qq.com", resolver=Resolver(host="127.0.0.1", port=server.port))
    assert found[0].source is Source.PROVIDER and found[0].host == "smtp.qq.com"
    assert server.questions == []


def test_nothing_found_gives_guesses() -> None:
    server = DnsServer()
    with running(server):
        found = discover("nothing.test", resolver=Resolver(host="127.0.0.1", port=server.port))
    assert {f.source for f in found} == {Source.GUESS}
    assert found[0].host == "smtp.nothing.test" and found[0].port == 465


def test_silent_resolver_is_a_temporary_failure() -> None:
    server = DnsServer(drop=True)
    with running(server), pytest.raises(ConfigError) as caught:
        discover("x.test", resolver=Resolver(host="127.0.0.1", port=server.port, timeout=0.2))
    assert caught.value.exit_code is ExitCode.TEMPFAIL
    assert "no answer" in str(caught.value)


def test_resolver_parsing(tmp_path: object) -> None:
    assert Resolver.parse("127.0.0.1:5353") == Resolver(host="127.0.0.1", port=5353)
    assert Resolver.parse("[::1]:53").host == "::1"
    assert Resolver.parse("9.9.9.9").port == 53
