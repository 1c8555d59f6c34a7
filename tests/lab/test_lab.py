"""The lab itself, end to end: what scripts/lab.sh promises in docs/lab.md holds.

Each test talks to the real Postfix and Dovecot with the stdlib clients only, so a failure
here is a lab problem, not a mailhop one.
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.lab.support import (
    DEFAULT_NETWORK_TIMEOUT,
    CertificatePair,
    Lab,
    message_id_for,
    unique_token,
    wait_for_message,
    wait_for_messages,
    without_lab_trace,
)

pytestmark = pytest.mark.lab

TIMEOUT = DEFAULT_NETWORK_TIMEOUT
REMOTE_ADDRESS = "someone@remote.invalid"


def submit(lab: Lab, sender: str, recipients: list[str], message: bytes) -> None:
    """Submit over 465 (implicit TLS, verified) as alice."""
    alice = lab.user("alice")
    with smtplib.SMTP_SSL(
        lab.host, lab.ports.submissions, context=lab.tls_context(), timeout=TIMEOUT
    ) as client:
        client.login(alice.login, alice.password)
        refused = client.sendmail(sender, recipients, message)
    assert refused == {}


def test_submissions_465_delivers_and_imaps_reads_it_back(lab: Lab) -> None:
    token = unique_token()
    alice, bob = lab.user("alice"), lab.user("bob")
    message = (
        f"From: Alice <{alice.address}>\r\n"
        f"To: {bob.address}\r\n"
        f"Subject: lab round trip {token}\r\n"
        f"Message-ID: {message_id_for(token)}\r\n"
        "\r\n"
        "Hello Bob.\r\n"
    ).encode("ascii")

    submit(lab, alice.address, [bob.address], message)

    raw = wait_for_message(lab, bob, token)
    assert without_lab_trace(raw) == message
    assert f"Delivered-To: {bob.address}".encode() in raw


def test_lab_certificate_is_not_trusted_by_the_system_store(lab: Lab) -> None:
    # Proves the verification above is real: only the lab CA makes the handshake pass.
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL(
            lab.host, lab.ports.submissions, context=ssl.create_default_context(), timeout=TIMEOUT
        )


def test_submission_587_offers_auth_only_after_starttls(lab: Lab) -> None:
    with smtplib.SMTP(lab.host, lab.ports.submission, timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        code, reply = client.mail(lab.user("alice").address)
        assert code == 530, reply  # "Must issue a STARTTLS command first"
        client.rset()

        client.starttls(context=lab.tls_context())
        client.ehlo()
        assert client.has_extn("auth")
        advertised = set(client.esmtp_features["auth"].upper().split())
        assert set(lab.sasl_mechanisms) <= advertised


def test_submission_587_requires_auth_to_accept_mail(lab: Lab) -> None:
    with smtplib.SMTP(lab.host, lab.ports.submission, timeout=TIMEOUT) as client:
        client.starttls(context=lab.tls_context())
        client.ehlo()
        assert client.mail(lab.user("alice").address)[0] == 250
        code, reply = client.rcpt(lab.user("bob").address)
        assert code == 554, reply


def test_smtp_25_offers_starttls_and_never_auth(lab: Lab) -> None:
    with smtplib.SMTP(lab.host, lab.ports.smtp, timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        client.starttls(context=lab.tls_context())
        client.ehlo()
        assert not client.has_extn("auth")
        assert client.has_extn("size")
        assert int(client.esmtp_features["size"]) == lab.message_size_limit


def test_smtp_25_refuses_relaying_to_a_remote_domain(lab: Lab) -> None:
    with smtplib.SMTP(lab.host, lab.ports.smtp, timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.mail("nobody@example.net")[0] == 250
        code, reply = client.rcpt(REMOTE_ADDRESS)
        assert code == 554, reply
        assert b"Relay access denied" in reply


def test_authenticated_mail_to_a_remote_domain_is_refused_at_rcpt(lab: Lab) -> None:
    # Even after AUTH: the error: default_transport makes smtpd refuse the recipient
    # itself, so nothing is queued, bounced later, or sent anywhere.
    alice = lab.user("alice")
    with smtplib.SMTP_SSL(
        lab.host, lab.ports.submissions, context=lab.tls_context(), timeout=TIMEOUT
    ) as client:
        client.login(alice.login, alice.password)
        assert client.mail(alice.address)[0] == 250
        code, reply = client.rcpt(REMOTE_ADDRESS)
    assert code == 550, reply
    assert reply.startswith(b"5.7.1 ")
    assert b"outbound mail is disabled in the mailhop lab" in reply


def test_special_recipients_fail_at_rcpt_time(lab: Lab) -> None:
    with smtplib.SMTP(lab.host, lab.ports.smtp, timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.mail("nobody@example.net")[0] == 250
        assert client.rcpt(lab.tempfail_recipient)[0] == 451
        assert client.rcpt(lab.permfail_recipient)[0] == 550
        assert client.rcpt(lab.user("carol").address)[0] == 250


def test_postfix_adds_and_drops_no_header(lab: Lab) -> None:
    # No From, To, Date or Message-ID, and a Bcc: Postfix by default would add the first
    # four and drop the last, hiding exactly the client bugs the tests must catch.
    token = unique_token()
    message = (
        f"Subject: bare {token}\r\nBcc: {lab.user('carol').address}\r\n\r\nbody {token}\r\n"
    ).encode("ascii")
    submit(lab, lab.user("alice").address, [lab.user("bob").address], message)

    raw = wait_for_message(lab, lab.user("bob"), token)
    delivered = without_lab_trace(raw)
    assert delivered == message
    header = delivered.split(b"\r\n\r\n", 1)[0].lower()
    for name in (b"date:", b"message-id:", b"from:", b"to:"):
        assert name not in header


def test_postfix_refuses_a_bare_lf(lab: Lab) -> None:
    # Postfix would otherwise quietly turn a bare LF into CRLF (smtpd_forbid_bare_newline).
    alice = lab.user("alice")
    with smtplib.SMTP_SSL(
        lab.host, lab.ports.submissions, context=lab.tls_context(), timeout=TIMEOUT
    ) as client:
        client.login(alice.login, alice.password)
        with pytest.raises((smtplib.SMTPDataError, smtplib.SMTPServerDisconnected)) as caught:
            client.sendmail(alice.address, [alice.address], b"Subject: x\r\n\r\nbare\nLF\r\n")
    if isinstance(caught.value, smtplib.SMTPDataError):
        assert caught.value.smtp_code == 550


def test_every_user_logs_in_over_imaps(lab: Lab) -> None:
    # dave's password has spaces, quotes and a backslash: the passwd-file must keep them.
    for user in lab.users:
        with imaplib.IMAP4_SSL(
            lab.host, lab.ports.imaps, ssl_context=lab.tls_context(), timeout=TIMEOUT
        ) as client:
            status, _ = client.login(user.login, user.password)
            assert status == "OK"
            assert client.select("INBOX", readonly=True)[0] == "OK"


def test_imap_143_refuses_login_before_starttls(lab: Lab) -> None:
    # On the strict address: on 127.0.0.1 Dovecot counts a loopback client as secured.
    alice = lab.user("alice")
    host = lab.dovecot_strict_host
    with imaplib.IMAP4(host, lab.ports.imap, timeout=TIMEOUT) as client:
        assert "LOGINDISABLED" in client.capabilities
        with pytest.raises(imaplib.IMAP4.error):
            client.login(alice.login, alice.password)
    with imaplib.IMAP4(host, lab.ports.imap, timeout=TIMEOUT) as client:
        client.starttls(ssl_context=lab.tls_context())
        assert client.login(alice.login, alice.password)[0] == "OK"


def test_pop3s_995_logs_in(lab: Lab) -> None:
    bob = lab.user("bob")
    client = poplib.POP3_SSL(lab.host, lab.ports.pop3s, context=lab.tls_context(), timeout=TIMEOUT)
    try:
        client.user(bob.login)
        assert client.pass_(bob.password).startswith(b"+OK")
        count, _size = client.stat()
        assert count >= 0
    finally:
        client.quit()


def test_pop3_110_requires_stls_before_login(lab: Lab) -> None:
    alice = lab.user("alice")
    client = poplib.POP3(lab.dovecot_strict_host, lab.ports.pop3, timeout=TIMEOUT)
    try:
        assert "STLS" in client.capa()
        with pytest.raises(poplib.error_proto) as refused:
            client.user(alice.login)
            client.pass_(alice.password)
        # poplib puts the server's reply (bytes) in args; str() of it trips -bb.
        assert b"Plaintext authentication disallowed" in refused.value.args[0]
        client.stls(context=lab.tls_context())
        client.user(alice.login)
        assert client.pass_(alice.password).startswith(b"+OK")
    finally:
        client.quit()


def test_plus_addressing_reaches_the_user(lab: Lab) -> None:
    token = unique_token()
    carol = lab.user("carol")
    tagged = carol.address.replace("@", "+tests@")
    submit(lab, lab.user("alice").address, [tagged], f"Subject: {token}\r\n\r\nx\r\n".encode())
    (raw,) = wait_for_messages(lab, carol, token=token, predicate=lambda m: b"+tests@" in m)
    assert f"X-Original-To: {tagged}".encode() in raw


@contextmanager
def tls_server(pair: CertificatePair) -> Iterator[int]:
    """A one-shot TLS server on 127.0.0.1 presenting ``pair``; yields its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(pair.cert), str(pair.key))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)

    def serve() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            try:
                with context.wrap_socket(connection, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass  # the client is expected to abort the handshake

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(TIMEOUT)


@pytest.mark.parametrize(
    ("which", "reason"),
    [
        ("expired", "certificate has expired"),
        ("wrong_host", "Hostname mismatch"),
        ("self_signed", "self-signed certificate"),
    ],
)
def test_bad_certificates_are_refused_for_the_documented_reason(
    lab: Lab, which: str, reason: str
) -> None:
    pair: CertificatePair = getattr(lab.bad_certs, which)
    with tls_server(pair) as port:
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        with raw, pytest.raises(ssl.SSLCertVerificationError, match=reason):
            lab.tls_context().wrap_socket(raw, server_hostname=lab.tls_server_name)
