"""SASL mechanisms: RFC example vectors, the generator contract, and the chooser."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from mailhop.proto import sasl
from mailhop.proto.errors import LocalProtocolError, RemoteProtocolError


def run(mechanism: sasl.Mechanism, challenges: list[bytes | None]) -> list[bytes | None]:
    """Drive a flow: the initial response, then one response per challenge."""
    flow = mechanism.flow()
    responses = [next(flow)]
    for challenge in challenges:
        try:
            responses.append(flow.send(challenge))
        except StopIteration:
            responses.append(b"<done>")
    return responses


def test_plain() -> None:
    assert run(sasl.Plain("tim", "tanstaaftanstaaf"), [None]) == [
        b"\0tim\0tanstaaftanstaaf", b"<done>"
    ]  # fmt: skip
    assert next(sasl.Plain("u", "p", authzid="z").flow()) == b"z\0u\0p"


def test_login() -> None:
    assert run(sasl.Login("user", "pw"), [b"Username:", b"Password:", None]) == [
        None, b"user", b"pw", b"<done>"
    ]  # fmt: skip


def test_cram_md5_rfc2195_example() -> None:
    challenge = b"<1896.697170952@postoffice.reston.mci.net>"
    responses = run(sasl.CramMD5("tim", "tanstaaftanstaaf"), [challenge])
    assert responses[1] == b"tim b913a602c7eda7a495b4e6e7334d3890"


def test_scram_sha1_rfc5802_example() -> None:
    mechanism = sasl.ScramSHA1("user", "pencil", nonce="fyko+d2lbbFgONRv9qkxdawL")
    server_first = b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
    server_final = b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="
    assert run(mechanism, [server_first, server_final, None]) == [
        b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        b"",
        b"<done>",
    ]


RFC7677_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)


def test_scram_sha256_rfc7677_example() -> None:
    mechanism = sasl.ScramSHA256("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    server_final = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert run(mechanism, [RFC7677_FIRST, server_final, None]) == [
        b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        b"",
        b"<done>",
    ]


@pytest.mark.parametrize(
    ("server_first", "server_final"),
    [
        (RFC7677_FIRST, b"v=" + base64.b64encode(b"\0" * 32)),  # wrong signature
        (RFC7677_FIRST, b"e=invalid-proof"),
        (RFC7677_FIRST, b"v=!!!"),
        (RFC7677_FIRST, b"nonsense"),
        (RFC7677_FIRST, None),  # success claimed without the server's proof
        (b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", b""),  # nonce not extended
        (b"r=someone-elses-nonce,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", b""),
        (b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=999999999", b""),
        (b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=x", b""),
        (b"r=rOprNGfwEbeRWgbNEkqOx,i=4096", b""),  # no salt
        (b"m=ext,r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", b""),
        (None, b""),
    ],
)
def test_scram_refuses_a_server_that_does_not_prove_itself(
    server_first: bytes | None, server_final: bytes | None
) -> None:
    flow = sasl.ScramSHA256("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO").flow()
    next(flow)
    with pytest.raises(sasl.AuthenticationError):
        flow.send(server_first)
        flow.send(server_final)
    assert issubclass(sasl.AuthenticationError, RemoteProtocolError)


def test_scram_escapes_the_user_name_and_makes_a_fresh_nonce() -> None:
    first = next(sasl.ScramSHA1("a=b,c", "pw").flow())
    assert first is not None and first.startswith(b"n,,n=a=3Db=2Cc,r=")
    assert first != next(sasl.ScramSHA1("a=b,c", "pw").flow())


def test_scram_with_a_computed_server() -> None:
    """A SCRAM-SHA-256 server written from RFC 5802 §3 accepts our proof."""
    salt, iterations, password = b"salt-of-the-earth", 4096, b"p\xc3\xa4ss"
    mechanism = sasl.ScramSHA256("usér", "päss", nonce="abc")
    flow = mechanism.flow()
    client_first = next(flow)
    assert client_first is not None
    server_first = b"r=abcdef,s=" + base64.b64encode(salt) + b",i=4096"
    client_final = flow.send(server_first)
    assert client_final is not None
    salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
    auth_message = client_first[3:] + b"," + server_first + b"," + client_final.split(b",p=")[0]
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    signature = hmac.new(hashlib.sha256(client_key).digest(), auth_message, "sha256").digest()
    proof = base64.b64decode(client_final.split(b",p=")[1])
    assert hashlib.sha256(bytes(a ^ b for a, b in zip(proof, signature, strict=True))).digest() == (
        hashlib.sha256(client_key).digest()
    )
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    verifier = base64.b64encode(hmac.new(server_key, auth_message, "sha256").digest())
    assert flow.send(b"v=" + verifier) == b""


def test_saslprep() -> None:
    assert sasl.saslprep("I\u00adX") == "IX"  # RFC 4013 §3 examples
    assert sasl.saslprep("user") == "user"
    assert sasl.saslprep("\u00aa") == "a"
    assert sasl.saslprep("\u2168") == "IX"
    assert sasl.saslprep("a\u00a0b") == "a b"
    for bad in ("\u0007", "\u0627\u0031"):
        with pytest.raises(LocalProtocolError):
            sasl.saslprep(bad)
    assert sasl.saslprep("\u0627\u0628") == "\u0627\u0628"


def test_oauth_mechanisms() -> None:
    assert run(sasl.XOAuth2("me@x.test", "tok"), [None]) == [
        b"user=me@x.test\x01auth=Bearer tok\x01\x01", b"<done>"
    ]  # fmt: skip
    # On failure the server sends a JSON challenge and expects an empty answer.
    assert run(sasl.XOAuth2("me", "tok"), [b'{"status":"400"}'])[1] == b""
    bearer = sasl.OAuthBearer("me,=x", "tok", host="mx.test", port=587)
    assert run(bearer, [b'{"status":"invalid_token"}']) == [
        b"n,a=me=2C=3Dx,\x01host=mx.test\x01port=587\x01auth=Bearer tok\x01\x01", b"\x01"
    ]  # fmt: skip
    assert run(bearer, [None])[1] == b"<done>"
    assert run(sasl.External(), [None]) == [b"", b"<done>"]


def test_early_success_and_extra_challenges() -> None:
    with pytest.raises(sasl.AuthenticationError):
        run(sasl.Login("u", "p"), [None])
    assert run(sasl.Plain("u", "p"), [b"unexpected"]) == [b"\0u\0p", b"<done>"]


def test_repr_hides_credentials() -> None:
    assert "secret" not in repr(sasl.Plain("user", "secret"))
    assert repr(sasl.Plain("user", "secret")) == "<Plain PLAIN>"


@pytest.mark.parametrize(
    ("offered", "tls", "allowed", "expected"),
    [
        (["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256"], True, False,
         "SCRAM-SHA-256"),
        (["plain", "login", "scram-sha-1"], True, False, "SCRAM-SHA-1"),
        (["LOGIN", "PLAIN", "CRAM-MD5"], True, False, "PLAIN"),
        (["LOGIN", "CRAM-MD5"], True, False, "CRAM-MD5"),
        (["LOGIN", "XOAUTH2"], True, False, "LOGIN"),
        (["LOGIN", "PLAIN", "CRAM-MD5"], False, False, "CRAM-MD5"),
        (["LOGIN", "PLAIN"], False, True, "PLAIN"),
    ],
)  # fmt: skip
def test_choose_mechanism(offered: list[str], tls: bool, allowed: bool, expected: str) -> None:
    assert sasl.choose_mechanism(offered, tls_active=tls, allow_plaintext=allowed) == expected


def test_choose_mechanism_refuses_clear_text_and_says_why() -> None:
    with pytest.raises(sasl.NoSuitableMechanismError, match="in clear without TLS"):
        sasl.choose_mechanism(["PLAIN", "LOGIN"], tls_active=False)
    with pytest.raises(sasl.NoSuitableMechanismError, match="offers XOAUTH2"):
        sasl.choose_mechanism(["XOAUTH2"], tls_active=True)
    with pytest.raises(sasl.NoSuitableMechanismError, match="no supported"):
        sasl.choose_mechanism([], tls_active=True)


def test_password_mechanism() -> None:
    assert isinstance(sasl.password_mechanism("scram-sha-256", "u", "p"), sasl.ScramSHA256)
    with pytest.raises(LocalProtocolError):
        sasl.password_mechanism("XOAUTH2", "u", "p")
