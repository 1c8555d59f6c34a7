"""Certificates: only a verified (or pinned) server gets a single byte after the handshake.

The matrix of security.md A8/A9/A11: {STARTTLS, implicit TLS} x {wrong name,
expired, self-signed, unknown CA}, each refused with 69 and nothing sent once the
handshake was attempted; a right ``tls_fingerprint`` is the one way to trust a
certificate from outside the trust file.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from mailhop.config import Auth
from mailhop.errors import ExitCode
from tests.deliver.deliver_support import PASSWORD, exit_code, make_account, run_submit
from tests.deliver.scripted_server import (
    GREETING,
    Expect,
    Send,
    ServerFactory,
    StartTLS,
    Step,
    accept_message,
    answer,
    certificate_der,
    ehlo,
    odd_cert_context,
    server_context,
)


def _script(*, implicit: bool) -> list[Step]:
    if implicit:
        return [StartTLS(), *GREETING, *ehlo("PIPELINING", "AUTH PLAIN"), *_rest()]
    return [
        *GREETING,
        *ehlo("STARTTLS", "AUTH PLAIN"),
        *answer(b"STARTTLS", 220, "Ready"),
        StartTLS(),
        *ehlo("PIPELINING", "AUTH PLAIN"),
        *_rest(),
    ]


def _rest() -> list[Step]:
    return [Expect(b"AUTH PLAIN"), Send(b"235 ok\r\n"), *accept_message()]


BadContext = Callable[[trustme.CA, Path], ssl.SSLContext]

BAD_CERTIFICATES: dict[str, BadContext] = {
    "wrong host name": lambda ca, _: server_context(ca.issue_cert("other.test")),
    "expired": lambda ca, directory: odd_cert_context(directory, expired=True, issuer=ca),
    "self-signed": lambda _, directory: odd_cert_context(directory, self_signed=True),
    "unknown CA": lambda _, __: server_context(trustme.CA().issue_cert("127.0.0.1")),
}


@pytest.mark.parametrize(
    "case",
    [(problem, implicit) for problem in BAD_CERTIFICATES for implicit in (False, True)],
    ids=lambda case: f"{case[0]}-{'implicit' if case[1] else 'starttls'}",
)
def test_untrusted_certificate_is_refused_and_nothing_is_sent(
    scripted: ServerFactory, ca: trustme.CA, ca_file: Path, tmp_path: Path, case: tuple[str, bool]
) -> None:
    problem, implicit = case
    context = BAD_CERTIFICATES[problem](ca, tmp_path)
    server = scripted(_script(implicit=implicit), tls_context=context)
    account = make_account(
        server.port,
        ca_file,
        tls_starttls=not implicit,
        auth=Auth.CHOOSE,
        user="joe",
        password=PASSWORD,
    )
    outcome = run_submit(account)
    assert exit_code(outcome) == ExitCode.UNAVAILABLE, outcome
    capture = server.wait()
    assert capture.before_tls is not None, "the client never reached the handshake"
    assert capture.after_tls == b""
    assert capture.received == capture.before_tls
    assert not capture.sent_any(b"AUTH", b"MAIL")
    assert PASSWORD.encode() not in capture.received
    if implicit:
        assert capture.before_tls == b""


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit"])
def test_trusted_certificate_is_accepted(
    scripted: ServerFactory, ca_file: Path, tls_context: ssl.SSLContext, implicit: bool
) -> None:
    # The control for the matrix above, and implicit TLS (port 465 style) working.
    server = scripted(_script(implicit=implicit), tls_context=tls_context)
    account = make_account(
        server.port,
        ca_file,
        tls_starttls=not implicit,
        auth=Auth.CHOOSE,
        user="joe",
        password=PASSWORD,
    )
    outcome = run_submit(account)
    assert exit_code(outcome) == ExitCode.OK, outcome
    capture = server.wait()
    assert capture.tls_established and capture.script_finished
    if implicit:
        assert capture.before_tls == b""  # not one byte in clear
    assert b"AUTH PLAIN " in capture.after_tls


def test_right_fingerprint_trusts_a_certificate_from_an_unknown_ca(
    scripted: ServerFactory, ca_file: Path
) -> None:
    leaf = trustme.CA().issue_cert("127.0.0.1")
    server = scripted(_script(implicit=False), tls_context=server_context(leaf))
    account = make_account(
        server.port,
        ca_file,  # the trust file does not hold this CA: only the pin can make it work
        tls_fingerprint=hashlib.sha256(certificate_der(leaf)).digest(),
        auth=Auth.CHOOSE,
        user="joe",
        password=PASSWORD,
    )
    outcome = run_submit(account)
    assert exit_code(outcome) == ExitCode.OK, outcome
    assert server.wait().script_finished


def test_wrong_fingerprint_is_refused_even_for_a_trusted_certificate(
    scripted: ServerFactory, ca_file: Path, tls_context: ssl.SSLContext
) -> None:
    server = scripted(_script(implicit=False), tls_context=tls_context)
    account = make_account(
        server.port,
        ca_file,
        tls_fingerprint=hashlib.sha256(b"some other certificate").digest(),
        auth=Auth.CHOOSE,
        user="joe",
        password=PASSWORD,
    )
    outcome = run_submit(account)
    assert exit_code(outcome) == ExitCode.UNAVAILABLE, outcome
    capture = server.wait()
    assert capture.after_tls == b""
    assert not capture.sent_any(b"AUTH", b"MAIL")
