"""Server replies and network failures to exit codes, and all-or-nothing recipients.

Issue #3's promise (DESIGN.md §3): 4xx anywhere and network trouble are 75 (try
again), 5xx to the message or a recipient 65, a server refusing service 69, a
broken protocol 76. Each case also checks what the client did on the wire: a
refused recipient must leave nothing delivered, so the final dot never goes out.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from mailhop.config import Account, DsnReturn
from mailhop.deliver.errors import ServerReplyError
from mailhop.errors import ExitCode
from tests.deliver.deliver_support import exit_code, make_account, run_submit
from tests.deliver.scripted_server import (
    GREETING,
    Expect,
    Hangup,
    Listen,
    ReadData,
    Send,
    ServerFactory,
    Step,
    accept_message,
    answer,
    ehlo,
    reply,
)

TWO = ("good@example.test", "bad@example.test")


def plain_account(port: int, **settings: Any) -> Account:
    return make_account(port, tls=False, **settings)


def _codes_of(outcome: object) -> int | None:
    return outcome.code if isinstance(outcome, ServerReplyError) else None


@pytest.mark.parametrize(
    ("greeting", "expected"),
    [
        (b"421 4.3.2 Service not available, closing\r\n", ExitCode.TEMPFAIL),
        (b"554 5.3.2 No SMTP service here\r\n", ExitCode.UNAVAILABLE),
    ],
)
def test_greeting_refusal(scripted: ServerFactory, greeting: bytes, expected: ExitCode) -> None:
    server = scripted([Send(greeting)])
    outcome = run_submit(plain_account(server.port))
    assert exit_code(outcome) == expected, outcome
    assert set(server.wait().verbs()) <= {b"QUIT"}


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "no-pipelining"])
@pytest.mark.parametrize(("code", "expected"), [(451, ExitCode.TEMPFAIL), (550, ExitCode.DATAERR)])
def test_sender_refused(
    scripted: ServerFactory, code: int, expected: ExitCode, pipelining: bool
) -> None:
    refused = reply(code, f"{code // 100}.1.0 sender refused")
    script: list[Step] = [*GREETING, *ehlo(*(["PIPELINING"] if pipelining else []))]
    if pipelining:
        script += [
            Expect(b"MAIL"), Send(refused),
            Expect(b"RCPT"), Send(reply(503, "5.5.1 need MAIL")),
            Expect(b"DATA"), Send(reply(503, "5.5.1 need RCPT")),
            *answer(b"RSET", 250, "ok"),
        ]  # fmt: skip
    else:
        script += [Expect(b"MAIL"), Send(refused)]
    server = scripted(script)
    outcome = run_submit(plain_account(server.port))
    assert exit_code(outcome) == expected, outcome
    assert _codes_of(outcome) == code
    capture = server.wait()
    assert capture.mismatch is None
    assert not capture.data_blocks
    if not pipelining:
        assert not capture.sent_any(b"RCPT", b"DATA")


@pytest.mark.parametrize(("code", "expected"), [(450, ExitCode.TEMPFAIL), (550, ExitCode.DATAERR)])
def test_one_refused_recipient_with_pipelining_delivers_nothing(
    scripted: ServerFactory, code: int, expected: ExitCode
) -> None:
    server = scripted(
        [
            *GREETING,
            *ehlo("PIPELINING"),
            *answer(b"MAIL", 250, "2.1.0 ok"),
            *answer(b"RCPT TO:<good@", 250, "2.1.5 ok"),
            *answer(b"RCPT TO:<bad@", code, f"{code // 100}.1.1 no such user"),
            *answer(b"DATA", 354, "go ahead"),
            ReadData(),
            Send(reply(250, "2.0.0 queued: an empty message was delivered")),
        ]
    )
    outcome = run_submit(plain_account(server.port), recipients=TWO)
    assert exit_code(outcome) == expected, outcome
    assert isinstance(outcome, ServerReplyError)
    assert outcome.recipient == "bad@example.test"
    capture = server.wait()
    # The server said 354 but the client hung up without the final dot
    # (RFC 5321 §4.1.1.4): nothing was delivered to the good recipient either.
    assert capture.mismatch is None
    assert capture.data_blocks == []
    assert capture.client_closed
    assert not capture.received.endswith(b"\r\n.\r\n")
    assert b"Hello." not in capture.received


@pytest.mark.parametrize(("code", "expected"), [(450, ExitCode.TEMPFAIL), (550, ExitCode.DATAERR)])
def test_one_refused_recipient_without_pipelining_resets(
    scripted: ServerFactory, code: int, expected: ExitCode
) -> None:
    server = scripted(
        [
            *GREETING,
            *ehlo(),
            *answer(b"MAIL", 250, "2.1.0 ok"),
            *answer(b"RCPT TO:<good@", 250, "2.1.5 ok"),
            *answer(b"RCPT TO:<bad@", code, f"{code // 100}.1.1 no such user"),
            *answer(b"RSET", 250, "2.0.0 ok"),
        ]
    )
    outcome = run_submit(plain_account(server.port), recipients=TWO)
    assert exit_code(outcome) == expected, outcome
    capture = server.wait()
    assert capture.script_finished and capture.mismatch is None
    assert not capture.sent_any(b"DATA")
    assert capture.verbs() == [b"EHLO", b"MAIL", b"RCPT", b"RCPT", b"RSET", b"QUIT"]


def test_permanent_refusal_wins_over_temporary(scripted: ServerFactory) -> None:
    # 450 for one and 550 for another: retrying cannot help the 550 one.
    server = scripted(
        [
            *GREETING,
            *ehlo("PIPELINING"),
            *answer(b"MAIL", 250, "ok"),
            *answer(b"RCPT", 450, "4.2.0 later"),
            *answer(b"RCPT", 550, "5.1.1 never"),
            *answer(b"DATA", 554, "5.5.1 no valid recipients"),
            *answer(b"RSET", 250, "ok"),
        ]
    )
    outcome = run_submit(plain_account(server.port), recipients=TWO)
    assert exit_code(outcome) == ExitCode.DATAERR, outcome
    assert _codes_of(outcome) == 550


@pytest.mark.parametrize(("code", "expected"), [(452, ExitCode.TEMPFAIL), (554, ExitCode.DATAERR)])
def test_end_of_data_refusal(scripted: ServerFactory, code: int, expected: ExitCode) -> None:
    server = scripted(
        [
            *GREETING,
            *ehlo("PIPELINING"),
            *answer(b"MAIL", 250, "ok"),
            *answer(b"RCPT", 250, "ok"),
            *answer(b"DATA", 354, "go"),
            ReadData(),
            Send(reply(code, f"{code // 100}.3.0 not accepted")),
        ]
    )
    outcome = run_submit(plain_account(server.port))
    assert exit_code(outcome) == expected, outcome
    assert _codes_of(outcome) == code
    assert len(server.wait().data_blocks) == 1


def test_connection_refused_is_temporary() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    assert exit_code(run_submit(plain_account(port))) == ExitCode.TEMPFAIL


@pytest.mark.parametrize(
    "script",
    [
        [Listen()],  # no greeting at all
        [*GREETING, *ehlo(), Listen()],  # no answer to MAIL
        [*GREETING, *ehlo(), *accept_message()[:-1], Listen()],  # none after the dot
    ],
    ids=["greeting", "mail", "end-of-data"],
)
def test_silent_server_times_out_as_temporary(scripted: ServerFactory, script: list[Step]) -> None:
    server = scripted(script)
    started = time.monotonic()
    outcome = run_submit(plain_account(server.port, timeout=1))
    elapsed = time.monotonic() - started
    assert exit_code(outcome) == ExitCode.TEMPFAIL, outcome
    assert elapsed < 4, elapsed


@pytest.mark.parametrize(
    "script",
    [
        [Hangup()],
        [*GREETING, Hangup()],
        [*GREETING, *ehlo(), Expect(b"MAIL"), Hangup()],
        [
            *GREETING,
            *ehlo(),
            *answer(b"MAIL", 250, "ok"),
            *answer(b"RCPT", 250, "ok"),
            *answer(b"DATA", 354, "go"),
            ReadData(),
            Hangup(),
        ],
    ],
    ids=["before-greeting", "after-greeting", "at-mail", "after-dot"],
)
def test_server_closing_mid_dialogue_is_temporary(
    scripted: ServerFactory, script: list[Step]
) -> None:
    server = scripted(script)
    outcome = run_submit(plain_account(server.port))
    assert exit_code(outcome) == ExitCode.TEMPFAIL, outcome


@pytest.mark.parametrize(
    "bad_reply",
    [
        b"hello there\r\n",  # not a reply at all
        b"250-mx.test\r\n550 PIPELINING\r\n",  # mixed codes in one reply
        b"2500 mx.test\r\n",  # four digits
        b"250 " + b"x" * 70000 + b"\r\n",  # a line beyond any limit
        b"354 go ahead\r\n",  # a reply that does not answer EHLO
    ],
    ids=["garbage", "mixed-codes", "four-digits", "too-long", "wrong-code"],
)
def test_malformed_reply_is_a_protocol_error(scripted: ServerFactory, bad_reply: bytes) -> None:
    server = scripted([*GREETING, Expect(b"EHLO"), Send(bad_reply)])
    outcome = run_submit(plain_account(server.port))
    assert exit_code(outcome) == ExitCode.PROTOCOL, outcome
    assert not server.wait().sent_any(b"MAIL")


def test_message_larger_than_size_is_refused_before_mail(scripted: ServerFactory) -> None:
    server = scripted([*GREETING, *ehlo("SIZE 20", "PIPELINING")])
    outcome = run_submit(plain_account(server.port))
    assert exit_code(outcome) == ExitCode.DATAERR, outcome
    assert set(server.wait().verbs()) <= {b"EHLO", b"QUIT"}


def test_size_is_declared_when_it_fits(scripted: ServerFactory) -> None:
    server = scripted([*GREETING, *ehlo("SIZE 100000", "PIPELINING"), *accept_message()])
    outcome = run_submit(plain_account(server.port))
    assert exit_code(outcome) == ExitCode.OK, outcome
    [mail] = server.wait().commands(b"MAIL")
    assert b" SIZE=" in mail


def test_dsn_requested_but_not_offered(scripted: ServerFactory) -> None:
    server = scripted([*GREETING, *ehlo("PIPELINING")])
    outcome = run_submit(plain_account(server.port, dsn_notify="failure"))
    assert exit_code(outcome) == ExitCode.UNAVAILABLE, outcome
    assert "DSN" in str(outcome)
    assert set(server.wait().verbs()) <= {b"EHLO", b"QUIT"}


def test_dsn_parameters_on_mail_and_every_rcpt(scripted: ServerFactory) -> None:
    server = scripted([*GREETING, *ehlo("PIPELINING", "DSN"), *accept_message(recipients=2)])
    account = plain_account(server.port, dsn_notify="failure,delay", dsn_return=DsnReturn.HEADERS)
    outcome = run_submit(account, recipients=TWO)
    assert exit_code(outcome) == ExitCode.OK, outcome
    capture = server.wait()
    [mail] = capture.commands(b"MAIL")
    assert mail.endswith(b" RET=HDRS")
    rcpts = capture.commands(b"RCPT")
    assert len(rcpts) == 2
    assert all(line.endswith(b" NOTIFY=FAILURE,DELAY") for line in rcpts), rcpts


def test_421_in_the_middle_of_a_pipelined_batch_is_temporary(scripted: ServerFactory) -> None:
    # RFC 5321 §3.8: 421 may answer any command, and then the server closes.
    server = scripted(
        [
            *GREETING,
            *ehlo("PIPELINING"),
            Expect(b"MAIL"),
            Send(reply(421, "4.3.0 shutting down")),
            Hangup(),
        ]
    )
    outcome = run_submit(plain_account(server.port))
    assert exit_code(outcome) == ExitCode.TEMPFAIL, outcome
    assert not server.wait().data_blocks


def test_utf8_recipient_without_smtputf8_is_refused_before_mail(scripted: ServerFactory) -> None:
    # security.md C5: no faithful downgrade of a UTF-8 mailbox exists.
    server = scripted([*GREETING, *ehlo("PIPELINING", "8BITMIME")])
    outcome = run_submit(plain_account(server.port), recipients=("jörg@例え.jp",))
    assert exit_code(outcome) == ExitCode.UNAVAILABLE, outcome
    assert not server.wait().sent_any(b"MAIL", b"RCPT")


def test_utf8_recipient_with_smtputf8(scripted: ServerFactory) -> None:
    server = scripted([*GREETING, *ehlo("PIPELINING", "8BITMIME", "SMTPUTF8"), *accept_message()])
    outcome = run_submit(plain_account(server.port), recipients=("jörg@例え.jp",))
    assert exit_code(outcome) == ExitCode.OK, outcome
    capture = server.wait()
    [mail] = capture.commands(b"MAIL")
    assert b" SMTPUTF8" in mail
    assert capture.commands(b"RCPT") == ["RCPT TO:<jörg@例え.jp>".encode()]
