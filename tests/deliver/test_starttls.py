"""Invariant 3: a configured STARTTLS is required, never a plaintext fallback.

Each case scripts a hostile or broken server (security.md A1-A4) and then reads
what the client sent: the exit code alone would not show a password or a MAIL
that crossed in clear.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from mailhop.config import Auth
from mailhop.errors import ExitCode
from tests.deliver.deliver_support import PASSWORD, exit_code, make_account, run_submit
from tests.deliver.scripted_server import (
    GREETING,
    Expect,
    Pause,
    Send,
    ServerFactory,
    StartTLS,
    accept_message,
    answer,
    ehlo,
    starttls_prelude,
)


def test_starttls_dialogue_sends_nothing_but_ehlo_and_starttls_in_clear(
    scripted: ServerFactory, ca_file: Path, tls_context: ssl.SSLContext
) -> None:
    server = scripted(
        [
            *starttls_prelude("PIPELINING", after=["PIPELINING", "AUTH PLAIN"]),
            *answer(b"AUTH PLAIN", 235, "2.7.0 Authentication successful"),
            *accept_message(),
        ],
        tls_context=tls_context,
    )
    account = make_account(server.port, ca_file, auth=Auth.CHOOSE, user="joe", password=PASSWORD)
    outcome = run_submit(account)
    assert exit_code(outcome) == ExitCode.OK, outcome
    capture = server.wait()
    assert capture.script_finished and capture.mismatch is None
    assert capture.before_tls is not None
    assert [line.split(b" ")[0] for line in capture.before_tls.split(b"\r\n") if line] == [
        b"EHLO",
        b"STARTTLS",
    ]
    # RFC 3207 §4.2: EHLO again right after the handshake, then AUTH, then the mail.
    assert capture.after_tls.startswith(b"EHLO ")
    assert b"AUTH PLAIN " in capture.after_tls
    assert capture.verbs() == [b"EHLO", b"STARTTLS", b"EHLO", b"AUTH", b"MAIL", b"RCPT",
                               b"DATA", b"QUIT"]  # fmt: skip


def test_starttls_not_offered_ends_the_attempt(scripted: ServerFactory, ca_file: Path) -> None:
    # security.md A1: the server (or a stripping attacker) hides STARTTLS.
    server = scripted([*GREETING, *ehlo("AUTH PLAIN LOGIN", "PIPELINING")])
    account = make_account(server.port, ca_file, auth=Auth.CHOOSE, user="joe", password=PASSWORD)
    outcome = run_submit(account)
    assert exit_code(outcome) == ExitCode.UNAVAILABLE
    assert "STARTTLS" in str(outcome)
    capture = server.wait()
    assert set(capture.verbs()) <= {b"EHLO", b"QUIT"}
    assert capture.verbs()[0] == b"EHLO"
    assert PASSWORD.encode() not in capture.received


def test_starttls_refused_454_is_temporary_and_sends_nothing_more(
    scripted: ServerFactory, ca_file: Path
) -> None:
    # security.md A2: 454 must not mean "carry on without TLS".
    server = scripted(
        [
            *GREETING,
            *ehlo("STARTTLS", "AUTH PLAIN", "PIPELINING"),
            *answer(b"STARTTLS", 454, "4.7.0 TLS not available due to temporary reason"),
        ]
    )
    account = make_account(server.port, ca_file, auth=Auth.CHOOSE, user="joe", password=PASSWORD)
    outcome = run_submit(account)
    assert exit_code(outcome) == ExitCode.TEMPFAIL
    capture = server.wait()
    assert capture.script_finished
    assert set(capture.verbs()) <= {b"EHLO", b"STARTTLS", b"QUIT"}
    assert not capture.sent_any(b"AUTH", b"MAIL", b"RCPT", b"DATA")


def test_starttls_refused_502_is_permanent_unavailable(
    scripted: ServerFactory, ca_file: Path
) -> None:
    server = scripted(
        [
            *GREETING,
            *ehlo("STARTTLS", "AUTH PLAIN"),
            *answer(b"STARTTLS", 502, "5.5.1 Not implemented"),
        ]
    )
    account = make_account(server.port, ca_file, auth=Auth.CHOOSE, user="joe", password=PASSWORD)
    outcome = run_submit(account)
    assert exit_code(outcome) == ExitCode.UNAVAILABLE
    capture = server.wait()
    assert set(capture.verbs()) <= {b"EHLO", b"STARTTLS", b"QUIT"}
    assert not capture.sent_any(b"AUTH", b"MAIL")


def test_bytes_injected_after_starttls_220_in_one_segment_are_refused(
    scripted: ServerFactory, ca_file: Path, tls_context: ssl.SSLContext
) -> None:
    # security.md A3 (CVE-2020-14954): the injected "250 AUTH PLAIN" must never be
    # read as a post-TLS reply. The real post-TLS EHLO would advertise no AUTH.
    server = scripted(
        [
            *GREETING,
            *ehlo("STARTTLS"),
            Expect(b"STARTTLS"),
            Send(b"220 Ready\r\n250-evil\r\n250 AUTH PLAIN\r\n"),
            StartTLS(),
            *ehlo("PIPELINING"),
            *accept_message(),
        ],
        tls_context=tls_context,
    )
    account = make_account(server.port, ca_file, auth=Auth.CHOOSE, user="joe", password=PASSWORD)
    outcome = run_submit(account)
    assert exit_code(outcome) == ExitCode.PROTOCOL
    capture = server.wait()
    assert not capture.tls_established
    assert capture.verbs() == [b"EHLO", b"STARTTLS"]
    assert not capture.sent_any(b"AUTH", b"MAIL")
    assert PASSWORD.encode() not in capture.received


def test_bytes_injected_after_starttls_220_in_a_later_segment_are_refused(
    scripted: ServerFactory, ca_file: Path, tls_context: ssl.SSLContext
) -> None:
    # The same injection, arriving after the client has read the 220 and started
    # its handshake: the plaintext lands inside the TLS stream and breaks it.
    server = scripted(
        [
            *GREETING,
            *ehlo("STARTTLS"),
            Expect(b"STARTTLS"),
            Send(b"220 Ready\r\n"),
            Pause(0.2),
            Send(b"250-evil\r\n250 AUTH PLAIN\r\n"),
        ],
        tls_context=tls_context,
    )
    account = make_account(server.port, ca_file, auth=Auth.CHOOSE, user="joe", password=PASSWORD)
    outcome = run_submit(account)
    assert exit_code(outcome) in (ExitCode.PROTOCOL, ExitCode.TEMPFAIL)
    capture = server.wait()
    assert capture.verbs()[:2] == [b"EHLO", b"STARTTLS"]
    assert not capture.sent_any(b"AUTH", b"MAIL")
    assert PASSWORD.encode() not in capture.received


def test_stale_pre_tls_auth_is_not_used(
    scripted: ServerFactory, ca_file: Path, tls_context: ssl.SSLContext
) -> None:
    # security.md A4: AUTH PLAIN advertised in clear, none after TLS.
    server = scripted(
        starttls_prelude("AUTH PLAIN LOGIN", after=["PIPELINING"]), tls_context=tls_context
    )
    account = make_account(server.port, ca_file, auth=Auth.CHOOSE, user="joe", password=PASSWORD)
    outcome = run_submit(account)
    assert exit_code(outcome) == ExitCode.UNAVAILABLE
    capture = server.wait()
    assert capture.tls_established
    assert not capture.sent_any(b"AUTH", b"MAIL")
    assert PASSWORD.encode() not in capture.received


def test_stale_pre_tls_size_and_8bitmime_are_not_used(
    scripted: ServerFactory, ca_file: Path, tls_context: ssl.SSLContext
) -> None:
    # Pre-TLS SIZE 10 would refuse the message and 8BITMIME would allow raw 8-bit:
    # after TLS neither is advertised, so neither may shape the transaction.
    server = scripted(
        [
            *starttls_prelude("SIZE 10", "8BITMIME", after=[]),
            *accept_message(),
        ],
        tls_context=tls_context,
    )
    message = "From: a@example.test\r\nSubject: ü\r\n\r\nGrüße\r\n".encode()
    outcome = run_submit(make_account(server.port, ca_file), message=message)
    assert exit_code(outcome) == ExitCode.OK, outcome
    capture = server.wait()
    [mail] = capture.commands(b"MAIL")
    assert b"SIZE=" not in mail
    assert b"BODY=8BITMIME" not in mail
    [content] = capture.data_blocks
    assert all(byte < 0x80 for byte in content)


def test_stale_pre_tls_pipelining_is_not_used(
    scripted: ServerFactory, ca_file: Path, tls_context: ssl.SSLContext
) -> None:
    server = scripted(
        [*starttls_prelude("PIPELINING", after=[]), *accept_message()], tls_context=tls_context
    )
    outcome = run_submit(make_account(server.port, ca_file))
    assert exit_code(outcome) == ExitCode.OK, outcome
    capture = server.wait()
    # Without PIPELINING the client waits for each reply: MAIL travels alone.
    assert b"RCPT" not in capture.segment_with(b"MAIL FROM")
    assert b"DATA" not in capture.segment_with(b"RCPT TO")


def test_post_tls_pipelining_is_used(
    scripted: ServerFactory, ca_file: Path, tls_context: ssl.SSLContext
) -> None:
    # The control for the test above: the batch does travel together when allowed.
    server = scripted(
        [*starttls_prelude(after=["PIPELINING"]), *accept_message()], tls_context=tls_context
    )
    outcome = run_submit(make_account(server.port, ca_file))
    assert exit_code(outcome) == ExitCode.OK, outcome
    batch = server.wait().segment_with(b"MAIL FROM")
    assert b"RCPT TO" in batch and b"DATA\r\n" in batch


@pytest.mark.parametrize("greeting", [b"421 4.3.2 busy\r\n", b"554 5.3.2 no\r\n", b"garbage\r\n"])
def test_greeting_refusals_never_lead_to_auth(
    scripted: ServerFactory, ca_file: Path, greeting: bytes
) -> None:
    # security.md A7: an odd greeting must not skip the TLS requirement.
    server = scripted([Send(greeting)])
    account = make_account(server.port, ca_file, auth=Auth.CHOOSE, user="joe", password=PASSWORD)
    outcome = run_submit(account)
    assert exit_code(outcome) != ExitCode.OK
    capture = server.wait()
    assert set(capture.verbs()) <= {b"QUIT"}
