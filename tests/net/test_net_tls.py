"""TLS trust decisions against real loopback TLS servers (security.md A8-A12).

Each case runs a full handshake through ``open_connection`` with implicit TLS, so what
is tested is what the SMTP driver gets: a working transport or a ``TransportError``
with the exit code of the table in ``mailhop.net.errors``.
"""

from __future__ import annotations

import datetime
import hashlib
import socket
import ssl
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from mailhop.errors import ExitCode
from mailhop.net import tls
from mailhop.net.errors import (
    CertificateError,
    ConnectionLostError,
    FingerprintMismatchError,
    NetConfigError,
    TLSFileError,
    TLSHandshakeError,
    TLSUnavailableError,
    TransportError,
)
from mailhop.net.tls import TLSSettings, client_policy, format_fingerprint
from mailhop.net.transport import Endpoint, Transport, open_connection
from tests.net.net_peers import Handler, SelfSignedCert, ServeFactory

GREETING = b"220 localhost ESMTP test\r\n"
TIMEOUT = 3.0


def greeter(context: ssl.SSLContext, received: list[bytes] | None = None) -> Handler:
    """Implicit TLS server: handshake, greet, then echo (recording what arrives)."""

    def handle(connection: socket.socket) -> None:
        with context.wrap_socket(connection, server_side=True) as tls_connection:
            tls_connection.sendall(GREETING)
            while data := tls_connection.recv(4096):
                if received is not None:
                    received.append(data)
                tls_connection.sendall(data)

    return handle


def connect(port: int, settings: TLSSettings, host: str = "localhost") -> Transport:
    policy = client_policy(settings, host)
    return open_connection(Endpoint(host="127.0.0.1", port=port), timeout=TIMEOUT, tls=policy)


def assert_refused(
    port: int, settings: TLSSettings, error_type: type[TransportError], exit_code: ExitCode
) -> TransportError:
    with pytest.raises(error_type) as caught:
        connect(port, settings)
    assert caught.value.exit_code == exit_code
    assert isinstance(caught.value.__cause__, OSError | TransportError) or (
        caught.value.__cause__ is None
    )
    return caught.value


def test_trusted_ca_works_and_reports_the_session(
    serve: ServeFactory, server_context: ssl.SSLContext, ca_file: str, server_der: bytes
) -> None:
    server = serve(greeter(server_context))
    with connect(server.port, TLSSettings(trust_file=ca_file)) as transport:
        assert transport.receive(4096, timeout=TIMEOUT) == GREETING
        transport.send_all(b"EHLO me\r\n", timeout=TIMEOUT)
        assert transport.receive(4096, timeout=TIMEOUT) == b"EHLO me\r\n"
        info = transport.info
    assert transport.is_closed
    assert info.tls_version in {"TLSv1.2", "TLSv1.3"}
    assert info.cipher
    assert info.certificate == server_der
    description = info.describe_certificate()
    assert description is not None
    assert "CN=localhost" in description.subject
    assert description.sha256 == format_fingerprint(hashlib.sha256(server_der).digest())
    assert description.tls_version == info.tls_version


def test_ip_address_host_is_verified_against_ip_san(
    serve: ServeFactory, server_context: ssl.SSLContext, ca_file: str
) -> None:
    server = serve(greeter(server_context))
    with connect(server.port, TLSSettings(trust_file=ca_file), host="127.0.0.1") as transport:
        assert transport.receive(4096, timeout=TIMEOUT) == GREETING


def test_untrusted_ca_is_refused(
    serve: ServeFactory, server_context: ssl.SSLContext, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    server = serve(greeter(server_context))
    error = assert_refused(
        server.port, TLSSettings(trust_file=str(other_ca)), CertificateError, ExitCode.UNAVAILABLE
    )
    assert "not trusted" in str(error)
    assert "tls_trust_file" in str(error)
    assert "\n" not in str(error)


def test_system_store_does_not_trust_a_private_ca(
    serve: ServeFactory, server_context: ssl.SSLContext
) -> None:
    server = serve(greeter(server_context))
    assert_refused(server.port, TLSSettings(), CertificateError, ExitCode.UNAVAILABLE)


def test_empty_trust_file_trusts_no_ca(serve: ServeFactory, server_context: ssl.SSLContext) -> None:
    server = serve(greeter(server_context))
    assert_refused(server.port, TLSSettings(trust_file=""), CertificateError, ExitCode.UNAVAILABLE)


def test_wrong_host_name_is_refused(
    serve: ServeFactory,
    context_for_cert: Callable[[trustme.LeafCert], ssl.SSLContext],
    ca: trustme.CA,
    ca_file: str,
) -> None:
    server = serve(greeter(context_for_cert(ca.issue_cert("other.test"))))
    error = assert_refused(
        server.port, TLSSettings(trust_file=ca_file), CertificateError, ExitCode.UNAVAILABLE
    )
    assert "localhost" in str(error)


def test_host_override_names_the_certificate_to_expect(
    serve: ServeFactory,
    context_for_cert: Callable[[trustme.LeafCert], ssl.SSLContext],
    ca: trustme.CA,
    ca_file: str,
) -> None:
    server = serve(greeter(context_for_cert(ca.issue_cert("mail.test"))))
    settings = TLSSettings(trust_file=ca_file, host_override="mail.test")
    with connect(server.port, settings) as transport:
        assert transport.receive(4096, timeout=TIMEOUT) == GREETING


def test_expired_certificate_is_refused(
    serve: ServeFactory,
    context_for_cert: Callable[[trustme.LeafCert], ssl.SSLContext],
    ca: trustme.CA,
    ca_file: str,
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    expired = ca.issue_cert(
        "localhost",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    server = serve(greeter(context_for_cert(expired)))
    error = assert_refused(
        server.port, TLSSettings(trust_file=ca_file), CertificateError, ExitCode.UNAVAILABLE
    )
    assert "expired" in str(error)


def test_self_signed_certificate_is_refused(
    serve: ServeFactory, self_signed: SelfSignedCert, tmp_path: Path, ca_file: str
) -> None:
    server = serve(greeter(self_signed.server_context(tmp_path)))
    error = assert_refused(
        server.port, TLSSettings(trust_file=ca_file), CertificateError, ExitCode.UNAVAILABLE
    )
    assert "self-signed" in str(error) or "self signed" in str(error)


@pytest.mark.parametrize("separator", [":", "", " "])
def test_right_fingerprint_works_without_any_trusted_ca(
    serve: ServeFactory, self_signed: SelfSignedCert, tmp_path: Path, separator: str
) -> None:
    server = serve(greeter(self_signed.server_context(tmp_path)))
    digest = hashlib.sha256(self_signed.der).hexdigest()
    pinned = separator.join(digest[i : i + 2] for i in range(0, len(digest), 2))
    policy = client_policy(TLSSettings(trust_file="", fingerprint=pinned.lower()), "localhost")
    assert policy.warnings == ()
    endpoint = Endpoint(host="127.0.0.1", port=server.port)
    with open_connection(endpoint, timeout=TIMEOUT, tls=policy) as transport:
        assert transport.receive(4096, timeout=TIMEOUT) == GREETING
        assert transport.info.certificate == self_signed.der


def test_fingerprint_takes_precedence_over_an_untrusted_ca(
    serve: ServeFactory, server_context: ssl.SSLContext, server_der: bytes
) -> None:
    server = serve(greeter(server_context))
    fingerprint = format_fingerprint(hashlib.sha256(server_der).digest())
    # System trust does not know the test CA; the pin alone admits the server.
    with connect(server.port, TLSSettings(fingerprint=fingerprint)) as transport:
        assert transport.receive(4096, timeout=TIMEOUT) == GREETING


def test_wrong_fingerprint_is_refused_before_any_byte_is_sent(
    serve: ServeFactory, server_context: ssl.SSLContext, server_der: bytes, ca_file: str
) -> None:
    received: list[bytes] = []
    server = serve(greeter(server_context, received))
    wrong = hashlib.sha256(server_der + b"x").hexdigest()
    # Even a certificate the CA file would trust must match the pin.
    error = assert_refused(
        server.port,
        TLSSettings(trust_file=ca_file, fingerprint=wrong),
        FingerprintMismatchError,
        ExitCode.UNAVAILABLE,
    )
    assert format_fingerprint(hashlib.sha256(server_der).digest()) in str(error)
    server.stop()
    assert received == []


def test_sha1_fingerprint_still_pins_but_warns(
    serve: ServeFactory, server_context: ssl.SSLContext, server_der: bytes
) -> None:
    server = serve(greeter(server_context))
    sha1 = hashlib.sha1(server_der).hexdigest()  # noqa: S324  msmtp compatibility
    policy = client_policy(TLSSettings(fingerprint=sha1), "localhost")
    assert len(policy.warnings) == 1
    assert "SHA-256" in policy.warnings[0]
    endpoint = Endpoint(host="127.0.0.1", port=server.port)
    with open_connection(endpoint, timeout=TIMEOUT, tls=policy) as transport:
        assert transport.receive(4096, timeout=TIMEOUT) == GREETING
    wrong = client_policy(TLSSettings(fingerprint="00" * 20), "localhost")
    with pytest.raises(FingerprintMismatchError):
        open_connection(endpoint, timeout=TIMEOUT, tls=wrong)


@pytest.mark.parametrize("value", ["abc", "zz" * 32, "AB:CD", "00" * 33])
def test_malformed_fingerprint_is_a_configuration_error(value: str) -> None:
    with pytest.raises(NetConfigError) as caught:
        client_policy(TLSSettings(fingerprint=value), "localhost")
    assert caught.value.exit_code == ExitCode.CONFIG


def test_certcheck_off_connects_to_anything_with_a_warning(
    serve: ServeFactory, self_signed: SelfSignedCert, tmp_path: Path
) -> None:
    server = serve(greeter(self_signed.server_context(tmp_path)))
    policy = client_policy(TLSSettings(certcheck=False, trust_file=""), "localhost")
    assert len(policy.warnings) == 1
    assert "tls_certcheck is off" in policy.warnings[0]
    endpoint = Endpoint(host="127.0.0.1", port=server.port)
    with open_connection(endpoint, timeout=TIMEOUT, tls=policy) as transport:
        assert transport.receive(4096, timeout=TIMEOUT) == GREETING
        description = transport.info.describe_certificate()
    assert description is not None
    assert description.subject == "CN=localhost"  # readable even though unverified
    assert description.issuer == "CN=localhost"


def test_verification_is_on_unless_switched_off_and_never_below_tls_1_2(ca_file: str) -> None:
    default = client_policy(TLSSettings(), "localhost").context
    assert default.verify_mode == ssl.CERT_REQUIRED
    assert default.check_hostname
    with_file = client_policy(TLSSettings(trust_file=ca_file), "localhost").context
    assert with_file.verify_mode == ssl.CERT_REQUIRED
    assert with_file.check_hostname
    for settings in (
        TLSSettings(),
        TLSSettings(trust_file=ca_file),
        TLSSettings(fingerprint="00" * 32),
        TLSSettings(certcheck=False),
    ):
        context = client_policy(settings, "localhost").context
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_server_limited_to_tls_1_1_is_refused(
    serve: ServeFactory, server_cert: trustme.LeafCert, ca_file: str, tmp_path: Path
) -> None:
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(old)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # exactly what we want
            old.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 hides TLS 1.1 above level 0
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ssl.SSLError, ValueError) as setup_error:
        pytest.skip(f"this OpenSSL cannot serve TLS 1.1: {setup_error}")
    server = serve(greeter(old))
    # First prove that the server really speaks TLS 1.1 to a client that allows it.
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    permissive.load_verify_locations(ca_file)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
            permissive.minimum_version = ssl.TLSVersion.TLSv1
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw,
            permissive.wrap_socket(raw, server_hostname="localhost") as probe,
        ):
            version = probe.version()
    except (ssl.SSLError, OSError, ValueError) as probe_error:
        pytest.skip(f"this OpenSSL build refuses TLS 1.1 on both ends: {probe_error}")
    assert version == "TLSv1.1"
    error = assert_refused(
        server.port, TLSSettings(trust_file=ca_file), TLSUnavailableError, ExitCode.UNAVAILABLE
    )
    assert "TLS 1.2" in str(error)


def test_plaintext_server_on_implicit_tls_is_a_protocol_error(
    serve: ServeFactory, ca_file: str
) -> None:
    def plaintext(connection: socket.socket) -> None:
        connection.sendall(GREETING)
        connection.recv(4096)

    server = serve(plaintext)
    error = assert_refused(
        server.port, TLSSettings(trust_file=ca_file), TLSHandshakeError, ExitCode.PROTOCOL
    )
    assert "tls_starttls" in str(error)


def test_handshake_cut_off_is_temporary(serve: ServeFactory, ca_file: str) -> None:
    def hang_up(connection: socket.socket) -> None:
        connection.recv(1)  # the ClientHello begins; then the line drops

    server = serve(hang_up)
    assert_refused(
        server.port, TLSSettings(trust_file=ca_file), ConnectionLostError, ExitCode.TEMPFAIL
    )


def test_silent_server_makes_the_handshake_time_out_within_the_deadline(
    serve: ServeFactory, ca_file: str
) -> None:
    def silent(connection: socket.socket) -> None:
        connection.recv(4096)
        connection.recv(4096)  # waits for our give-up (EOF) or its own timeout

    server = serve(silent)
    policy = client_policy(TLSSettings(trust_file=ca_file), "localhost")
    started = time.monotonic()
    with pytest.raises(ConnectionLostError) as caught:
        open_connection(Endpoint(host="127.0.0.1", port=server.port), timeout=0.3, tls=policy)
    assert caught.value.exit_code == ExitCode.TEMPFAIL
    assert time.monotonic() - started < 2.0


def test_client_certificate_is_presented(
    serve: ServeFactory, ca: trustme.CA, ca_file: str, server_cert: trustme.LeafCert, tmp_path: Path
) -> None:
    seen: list[dict[str, object]] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED

    def require_client_cert(connection: socket.socket) -> None:
        with context.wrap_socket(connection, server_side=True) as tls_connection:
            seen.append(dict(tls_connection.getpeercert() or {}))
            tls_connection.sendall(GREETING)
            tls_connection.recv(4096)

    server = serve(require_client_cert)
    client = ca.issue_cert("client@example.test")
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(cert_file))
    client.private_key_pem.write_to_path(str(key_file))
    settings = TLSSettings(trust_file=ca_file, cert_file=str(cert_file), key_file=str(key_file))
    with connect(server.port, settings) as transport:
        assert transport.receive(4096, timeout=TIMEOUT) == GREETING
    assert seen
    assert seen[0].get("subjectAltName") == (("email", "client@example.test"),)


def test_unreadable_trust_file_is_noinput(tmp_path: Path) -> None:
    with pytest.raises(TLSFileError) as caught:
        client_policy(TLSSettings(trust_file=str(tmp_path / "missing.pem")), "localhost")
    assert caught.value.exit_code == ExitCode.NOINPUT
    assert "missing.pem" in str(caught.value)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(TLSFileError):
        client_policy(TLSSettings(trust_file=str(garbage)), "localhost")


def test_client_key_problems(tmp_path: Path, ca: trustme.CA) -> None:
    with pytest.raises(NetConfigError):
        client_policy(TLSSettings(cert_file="/x/cert.pem"), "localhost")
    with pytest.raises(TLSFileError) as caught:
        client_policy(
            TLSSettings(cert_file=str(tmp_path / "c.pem"), key_file=str(tmp_path / "k.pem")),
            "localhost",
        )
    assert caught.value.exit_code == ExitCode.NOINPUT
    # A key that does not belong to the certificate.
    first, second = ca.issue_cert("a.test"), ca.issue_cert("b.test")
    first.cert_chain_pems[0].write_to_path(str(tmp_path / "a.pem"))
    second.private_key_pem.write_to_path(str(tmp_path / "b.key"))
    with pytest.raises(TLSFileError):
        client_policy(
            TLSSettings(cert_file=str(tmp_path / "a.pem"), key_file=str(tmp_path / "b.key")),
            "localhost",
        )


def test_translation_covers_the_table() -> None:
    translate: Callable[[OSError, str], TransportError] = tls.translate_handshake_error
    assert translate(TimeoutError(), "h").exit_code == ExitCode.TEMPFAIL
    assert translate(ConnectionResetError(), "h").exit_code == ExitCode.TEMPFAIL
    assert translate(ssl.SSLEOFError(), "h").exit_code == ExitCode.TEMPFAIL
    assert translate(ssl.SSLError(1, "odd"), "h").exit_code == ExitCode.PROTOCOL


def test_the_key_passphrase_never_shows_in_repr() -> None:
    settings = TLSSettings(key_file="/etc/ssl/private/client.pem", key_password="hunter2-secret")
    shown = repr(settings)
    assert "hunter2-secret" not in shown
    assert "key_password=<redacted>" in shown
    assert "client.pem" in shown  # the rest stays visible for debugging
    assert "key_password=None" in repr(TLSSettings())
