"""AUTH: a password never crosses without TLS unless the account says so.

The capture is searched for the password itself and for every base64 form a
mechanism would put on the wire (PLAIN's ``\\0user\\0password``, LOGIN's bare
password), so a leak cannot hide behind an encoding.
"""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest

from mailhop.config import Auth
from mailhop.deliver.errors import AuthenticationRefusedError
from mailhop.errors import ExitCode
from tests.deliver.deliver_support import PASSWORD, exit_code, make_account, run_submit
from tests.deliver.scripted_server import (
    GREETING,
    Capture,
    Expect,
    Send,
    ServerFactory,
    accept_message,
    answer,
    ehlo,
    starttls_prelude,
)

USER = "joe"


def secret_forms(password: str = PASSWORD, user: str = USER) -> list[bytes]:
    """Every way the password could appear on the wire."""
    plain = f"\0{user}\0{password}".encode()
    forms = [password.encode(), base64.b64encode(password.encode()), base64.b64encode(plain)]
    # A base64 run can start at any of three alignments within a larger payload.
    for prefix in (b"\0", b"\0\0"):
        encoded = base64.b64encode(prefix + password.encode())
        forms.append(encoded[4:-4])
    return forms


def assert_no_secret(capture: Capture) -> None:
    for form in secret_forms():
        assert form not in capture.received, form


def test_secret_forms_are_found_when_present() -> None:
    # The search above must be able to fail: PLAIN's payload is one of the forms.
    payload = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())
    assert any(form in b"AUTH PLAIN " + payload for form in secret_forms())


@pytest.mark.parametrize("auth", [Auth.CHOOSE, Auth.PLAIN, Auth.LOGIN])
def test_no_password_mechanism_without_tls(
    scripted: ServerFactory, auth: Auth, ca_file: Path
) -> None:
    server = scripted([*GREETING, *ehlo("AUTH PLAIN LOGIN", "PIPELINING")])
    account = make_account(server.port, ca_file, tls=False, auth=auth, user=USER, password=PASSWORD)
    outcome = run_submit(account)
    assert exit_code(outcome) == ExitCode.UNAVAILABLE, outcome
    assert "allow_plaintext_auth" in str(outcome)
    capture = server.wait()
    assert set(capture.verbs()) <= {b"EHLO", b"QUIT"}
    assert_no_secret(capture)


def test_plaintext_auth_when_explicitly_allowed(scripted: ServerFactory) -> None:
    server = scripted(
        [
            *GREETING,
            *ehlo("AUTH PLAIN LOGIN", "PIPELINING"),
            *answer(b"AUTH PLAIN", 235, "2.7.0 ok"),
            *accept_message(),
        ]
    )
    account = make_account(
        server.port,
        tls=False,
        auth=Auth.CHOOSE,
        user=USER,
        password=PASSWORD,
        allow_plaintext_auth=True,
    )
    outcome = run_submit(account)
    assert exit_code(outcome) == ExitCode.OK, outcome
    [auth_line] = server.wait().commands(b"AUTH")
    assert auth_line == b"AUTH PLAIN " + base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())


def test_login_exchange_when_explicitly_allowed(scripted: ServerFactory) -> None:
    server = scripted(
        [
            *GREETING,
            *ehlo("AUTH LOGIN"),
            *answer(b"AUTH LOGIN", 334, "VXNlcm5hbWU6"),
            *answer(base64.b64encode(USER.encode()), 334, "UGFzc3dvcmQ6"),
            *answer(base64.b64encode(PASSWORD.encode()), 235, "2.7.0 ok"),
            *accept_message(),
        ]
    )
    account = make_account(
        server.port,
        tls=False,
        auth=Auth.LOGIN,
        user=USER,
        password=PASSWORD,
        allow_plaintext_auth=True,
    )
    outcome = run_submit(account)
    assert exit_code(outcome) == ExitCode.OK, outcome
    capture = server.wait()
    assert capture.mismatch is None and capture.script_finished


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (b"535 5.7.8 Authentication credentials invalid\r\n", ExitCode.NOPERM),
        (b"454 4.7.0 Temporary authentication failure\r\n", ExitCode.TEMPFAIL),
        (b"534 5.7.9 Authentication mechanism is too weak\r\n", ExitCode.NOPERM),
    ],
)
def test_auth_refusals(
    scripted: ServerFactory,
    ca_file: Path,
    tls_context: ssl.SSLContext,
    reply: bytes,
    expected: ExitCode,
) -> None:
    server = scripted(
        [*starttls_prelude(after=["AUTH PLAIN"]), Expect(b"AUTH PLAIN"), Send(reply)],
        tls_context=tls_context,
    )
    account = make_account(server.port, ca_file, auth=Auth.CHOOSE, user=USER, password=PASSWORD)
    outcome = run_submit(account)
    assert exit_code(outcome) == expected, outcome
    if expected == ExitCode.NOPERM:
        assert isinstance(outcome, AuthenticationRefusedError)
    assert not server.wait().sent_any(b"MAIL")


def test_transcript_redacts_the_credentials(
    scripted: ServerFactory, ca_file: Path, tls_context: ssl.SSLContext
) -> None:
    server = scripted(
        [
            *starttls_prelude(after=["AUTH PLAIN LOGIN", "PIPELINING"]),
            *answer(b"AUTH PLAIN", 235, "2.7.0 ok"),
            *accept_message(),
        ],
        tls_context=tls_context,
    )
    lines: list[str] = []
    account = make_account(server.port, ca_file, auth=Auth.CHOOSE, user=USER, password=PASSWORD)
    outcome = run_submit(account, transcript=lines.append)
    assert exit_code(outcome) == ExitCode.OK, outcome
    assert "--> AUTH PLAIN <redacted>" in lines
    text = "\n".join(lines).encode()
    for form in secret_forms():
        assert form not in text
    # And the wire did carry the credentials (over TLS): the redaction is the transcript's.
    assert base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()) in server.wait().after_tls


def test_failing_passwordeval_stops_before_auth(
    scripted: ServerFactory, ca_file: Path, tls_context: ssl.SSLContext
) -> None:
    server = scripted(
        [*starttls_prelude(after=["AUTH PLAIN"]), *answer(b"AUTH", 235, "ok")],
        tls_context=tls_context,
    )
    account = make_account(
        server.port,
        ca_file,
        auth=Auth.CHOOSE,
        user=USER,
        passwordeval=f"echo {PASSWORD}; exit 3",
    )
    outcome = run_submit(account)
    assert exit_code(outcome) == ExitCode.CONFIG, outcome
    capture = server.wait()
    assert not capture.sent_any(b"AUTH", b"MAIL")
    assert_no_secret(capture)
