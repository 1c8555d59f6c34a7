"""The runner pipelines each message's commands behind the previous end of data.

RFC 2920 §3.1 lets message content open a group: the runner writes the next
message's MAIL/RCPT/DATA right behind this one's end of data and only then reads
that end's reply. These tests drive it against scripted servers that answer byte
for byte (a client that waited for the reply first would stall the script and
time out) and against aiosmtpd (an independent server), and check that every
reply, refusal and lost connection is charged to the message it belongs to.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from mailhop.deliver.smtp import CONTENT_WRITE_OCTETS
from mailhop.queue import RecipientStatus, Route, Spool
from mailhop.queue.runner import run
from tests.deliver.scripted_server import (
    GREETING,
    Expect,
    Hangup,
    ReadData,
    ScriptedServer,
    Send,
    Step,
    ehlo,
    reply,
)
from tests.queue.queue_support import CountingHandler, closed_port, make_message, write_config

SENDER = "sender@example.test"
# A client that waits for a reply the script only sends later stalls until this.
ACCOUNT_TIMEOUT = "timeout 3"

PIPELINING_EHLO = ehlo("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES")
ENVELOPE: list[Step] = [Expect(b"MAIL"), Expect(b"RCPT"), Expect(b"DATA")]
GO_AHEAD = reply(250, "2.1.0 Ok") + reply(250, "2.1.5 Ok") + reply(354, "End data with .")
QUEUED = reply(250, "2.0.0 Ok: queued")
BYE: list[Step] = [Expect(b"QUIT"), Send(reply(221, "2.0.0 Bye"))]


def queue_messages(
    tmp_path: Path,
    port: int,
    count: int,
    *,
    recipients: Sequence[str] = (),
    body_lines: Sequence[int] = (),
) -> tuple[Spool, list[str]]:
    """``count`` entries: message ``i`` is ``pipe-i``, to ``recipients[i]`` (by default
    ``r{i}@example.test``), ``body_lines[i]`` lines long (by default 3); their ids in
    order."""
    config = write_config(tmp_path, port, ACCOUNT_TIMEOUT, queue="always")
    spool = Spool(str(tmp_path / "queue"))
    ids = [
        spool.enqueue(
            [
                make_message(
                    f"pipe-{index}", body_lines=body_lines[index] if body_lines else 3
                ).replace(b"\n", b"\r\n")
            ],
            sender=SENDER,
            recipients=[
                (recipients[index] if recipients else f"r{index}@example.test", Route.RELAY)
            ],
            account="default",
            config_file=str(config),
        ).id
        for index in range(count)
    ]
    return spool, ids


def end_of(index: int) -> bytes:
    """The last line of message ``index`` and its end of data, as on the wire."""
    return f"line 2 of pipe-{index}\r\n.\r\n".encode()


@pytest.fixture
def scripted() -> Iterator[Any]:
    servers: list[ScriptedServer] = []

    def start(script: Sequence[Step], *later: Sequence[Step]) -> ScriptedServer:
        server = ScriptedServer(script, later_scripts=later)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_each_message_after_the_first_shares_the_previous_end_of_data_segment(
    scripted: Any, tmp_path: Path
) -> None:
    server = scripted([
        *GREETING, *PIPELINING_EHLO,
        *ENVELOPE, Send(GO_AHEAD), ReadData(),
        # The script answers the first end of data only once the second message's
        # commands have arrived: a client that waits for that reply first stalls.
        *ENVELOPE, Send(QUEUED + GO_AHEAD), ReadData(),
        *ENVELOPE, Send(QUEUED + GO_AHEAD), ReadData(),
        Send(QUEUED), *BYE,
    ])  # fmt: skip
    spool, _ = queue_messages(tmp_path, server.port, 3)
    report = run(spool, connections=1)
    assert (report.delivered, report.deferred) == (3, 0)
    assert spool.ids() == []
    capture = server.wait(0)
    assert capture.script_finished and server.connections == 1
    for index in (0, 1):
        # One write: the end of data, then the next MAIL, RCPT and DATA.
        segment = capture.segment_with(end_of(index))
        assert segment.endswith(
            end_of(index)
            + f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<r{index + 1}@example.test>\r\nDATA\r\n".encode()
        )
    assert [block.endswith(end_of(index)) for index, block in enumerate(capture.data_blocks)] == [
        True,
        True,
        True,
    ]


def test_a_refusal_of_the_message_in_flight_is_charged_to_it_alone(
    scripted: Any, tmp_path: Path
) -> None:
    server = scripted([
        *GREETING, *PIPELINING_EHLO,
        *ENVELOPE, Send(GO_AHEAD), ReadData(),
        *ENVELOPE, Send(reply(554, "5.6.0 content rejected") + GO_AHEAD), ReadData(),
        Send(QUEUED), *BYE,
    ])  # fmt: skip
    spool, (first, second) = queue_messages(tmp_path, server.port, 2)
    report = run(spool, connections=1)
    assert (report.delivered, report.deferred, report.bounced) == (2, 0, 1)
    assert server.wait(0).script_finished
    (notice_id,) = spool.ids()  # both dequeued; the first one's bounce waits to be sent
    notice = spool.load(notice_id)
    assert notice.is_bounce and [r.address for r in notice.recipients] == [SENDER]
    with spool.open_message(notice) as file:
        dsn = file.read()
    assert b"r0@example.test" in dsn and b"5.6.0" in dsn
    assert b"r1@example.test" not in dsn
    assert first not in spool.ids() and second not in spool.ids()


def test_a_refused_transaction_behind_the_end_of_data_is_reset_and_the_session_goes_on(
    scripted: Any, tmp_path: Path
) -> None:
    server = scripted([
        *GREETING, *PIPELINING_EHLO,
        *ENVELOPE, Send(GO_AHEAD), ReadData(),
        # The first is accepted; the second's MAIL is refused, so its RCPT and DATA
        # are out of sequence (RFC 2920 §3.1: the server answers each, in order).
        *ENVELOPE,
        Send(QUEUED + reply(451, "4.3.0 try later") + reply(503, "5.5.1 no MAIL") * 2),
        Expect(b"RSET"), Send(reply(250, "2.0.0 Ok")),
        *ENVELOPE, Send(GO_AHEAD), ReadData(),
        Send(QUEUED), *BYE,
    ])  # fmt: skip
    spool, (_, second, _) = queue_messages(tmp_path, server.port, 3)
    report = run(spool, connections=1)
    assert (report.delivered, report.deferred, report.bounced) == (2, 1, 0)
    capture = server.wait(0)
    assert capture.script_finished and server.connections == 1
    assert spool.ids() == [second]
    (state,) = spool.load(second).recipients
    assert state.status is RecipientStatus.PENDING and state.last_code == 451
    assert [block.endswith(end_of(index)) for index, block in enumerate(capture.data_blocks)] == [
        True,
        False,  # the third message's content, sent after the reset
    ]
    assert capture.data_blocks[1].endswith(end_of(2))


@pytest.mark.parametrize(
    ("after_the_first_end", "code"),
    [
        ([Hangup()], 0),  # the connection is lost: no reply at all
        ([Send(reply(421, "4.3.2 shutting down")), Hangup()], 421),
    ],
    ids=["dropped", "421"],
)
def test_a_connection_ended_after_the_first_end_of_data_keeps_that_message_only(
    scripted: Any, tmp_path: Path, after_the_first_end: list[Step], code: int
) -> None:
    server = scripted(
        [
            *GREETING, *PIPELINING_EHLO,
            *ENVELOPE, Send(GO_AHEAD), ReadData(),
            *ENVELOPE,  # the second message's commands, pipelined, then the end
            *after_the_first_end,
        ],
        [
            *GREETING, *PIPELINING_EHLO,
            *ENVELOPE, Send(GO_AHEAD), ReadData(), Send(QUEUED), *BYE,
        ],
    )  # fmt: skip
    spool, (first, _) = queue_messages(tmp_path, server.port, 2)
    report = run(spool, connections=1)
    # No final reply for the first: kept, never counted as sent. The second had not
    # been sent (no 354, no content): it goes again over a new connection.
    assert (report.delivered, report.deferred, report.bounced) == (1, 1, 0)
    assert spool.ids() == [first]
    (state,) = spool.load(first).recipients
    assert state.status is RecipientStatus.PENDING and state.last_code == code
    assert state.attempts == 1
    lost, again = server.wait(0), server.wait(1)
    assert lost.commands(b"RCPT") == [b"RCPT TO:<r0@example.test>", b"RCPT TO:<r1@example.test>"]
    assert again.script_finished and again.data_blocks[0].endswith(end_of(1))


def test_pipelined_messages_against_aiosmtpd_keep_their_own_outcomes(tmp_path: Path) -> None:
    handler = CountingHandler(
        ["250 2.0.0 ok", "554 5.6.0 rejected", "250 2.0.0 ok", "451 4.3.0 later", "250 2.0.0 ok"],
        pipelining=True,
    )
    port = closed_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        spool, ids = queue_messages(tmp_path, port, 5)
        report = run(spool, connections=1)
    finally:
        controller.stop()
    assert handler.sessions == 1
    assert handler.accepted == [("r0@example.test",), ("r2@example.test",), ("r4@example.test",)]
    assert (report.delivered, report.deferred, report.bounced) == (4, 1, 1)
    left = {entry_id: spool.load(entry_id) for entry_id in spool.ids()}
    assert ids[3] in left and left[ids[3]].recipients[0].last_code == 451
    (notice,) = [entry for entry in left.values() if entry.is_bounce]
    with spool.open_message(notice) as file:
        assert b"r1@example.test" in file.read()


def test_a_connection_lost_before_any_reply_keeps_the_message_and_the_next_goes_on(
    scripted: Any, tmp_path: Path
) -> None:
    server = scripted(
        [*GREETING, *PIPELINING_EHLO, *ENVELOPE, Hangup()],
        [*GREETING, *PIPELINING_EHLO, *ENVELOPE, Send(GO_AHEAD), ReadData(), Send(QUEUED), *BYE],
    )
    spool, (first, _) = queue_messages(tmp_path, server.port, 2)
    report = run(spool, connections=1)
    assert (report.delivered, report.deferred) == (1, 1)
    assert spool.ids() == [first]
    (state,) = spool.load(first).recipients
    assert state.status is RecipientStatus.PENDING and state.last_code == 0
    assert server.wait(1).data_blocks[0].endswith(end_of(1))


def test_no_new_connection_after_one_lost_with_a_message_in_flight_defers_the_next(
    scripted: Any, tmp_path: Path
) -> None:
    server = scripted(
        [*GREETING, *PIPELINING_EHLO, *ENVELOPE, Send(GO_AHEAD), ReadData(), *ENVELOPE, Hangup()],
        [Hangup()],  # the server is going down: no greeting for the next connection
    )
    spool, (first, second) = queue_messages(tmp_path, server.port, 2)
    report = run(spool, connections=1)
    assert (report.delivered, report.deferred) == (0, 2)
    assert spool.ids() == [first, second]
    assert spool.load(first).recipients[0].last_code == 0  # its own loss
    # The second had sent nothing but its commands: deferred for the failed reconnect.
    later = spool.load(second)
    assert later.recipients[0].attempts == 0 and later.attempts == 1
    assert "closed the connection" in (later.last_error or "")


@pytest.mark.parametrize("taken_locally", [True, False], ids=["local-done", "local-pending"])
def test_a_message_in_flight_accepted_whole_is_dequeued_only_if_nothing_else_waits(
    scripted: Any, tmp_path: Path, taken_locally: bool
) -> None:
    # The first message also has a LOCAL recipient: the server's 250 for its relay
    # recipient ends the entry only when local delivery took the local one.
    server = scripted([
        *GREETING, *PIPELINING_EHLO,
        *ENVELOPE, Send(GO_AHEAD), ReadData(),
        *ENVELOPE, Send(QUEUED + GO_AHEAD), ReadData(),
        Send(QUEUED), *BYE,
    ])  # fmt: skip
    config = write_config(tmp_path, server.port, ACCOUNT_TIMEOUT, queue="always")
    spool = Spool(str(tmp_path / "queue"))
    mixed, plain = (
        spool.enqueue(
            [make_message(f"pipe-{index}").replace(b"\n", b"\r\n")],
            sender=SENDER,
            recipients=recipients,
            account="default",
            config_file=str(config),
        ).id
        for index, recipients in enumerate(
            [
                [("r0@example.test", Route.RELAY), ("root", Route.LOCAL)],
                [("r1@example.test", Route.RELAY)],
            ]
        )
    )
    taken: list[str] = []

    def local_delivery(entry: Any, local: Sequence[Any], content: bytes) -> list[str]:
        taken.extend(state.address for state in local)
        return [state.address for state in local] if taken_locally else []

    report = run(spool, connections=1, local_delivery=local_delivery)
    assert server.wait(0).script_finished and taken == ["root"]
    assert plain not in spool.ids()
    if taken_locally:
        assert (report.delivered, report.deferred) == (2, 0) and spool.ids() == []
        return
    assert (report.delivered, report.deferred) == (1, 1) and spool.ids() == [mixed]
    statuses = {state.address: state.status for state in spool.load(mixed).recipients}
    assert statuses == {
        "r0@example.test": RecipientStatus.DELIVERED,
        "root": RecipientStatus.PENDING,
    }


@pytest.mark.parametrize(
    "second_body_lines",
    # One content write, and more than one (CONTENT_WRITE_OCTETS): a large message's
    # first block goes alone, and the fault must surface there too.
    [3, CONTENT_WRITE_OCTETS // 16],
    ids=["small", "large"],
)
def test_after_a_broken_reply_behind_a_250_the_next_message_s_content_is_not_sent(
    scripted: Any, tmp_path: Path, second_body_lines: int
) -> None:
    # The 250 for the first message arrives with the second's 250 250 354 and a
    # reply to no command in the same segment: the first is delivered; the second's
    # content must not go out on a connection known to be broken, or a server
    # that accepted it (a reply never read) would get it again at the next try.
    # The fault is the session's error (the entry deferred), never the core's
    # ProtocolError escaping the run.
    server = scripted([
        *GREETING, *PIPELINING_EHLO,
        *ENVELOPE, Send(GO_AHEAD), ReadData(),
        *ENVELOPE, Send(QUEUED + GO_AHEAD + reply(250, "2.0.0 reply to no command")),
        Expect(b"QUIT"),
    ])  # fmt: skip
    spool, (_, second) = queue_messages(tmp_path, server.port, 2, body_lines=(3, second_body_lines))
    report = run(spool, connections=1)
    capture = server.wait(0)
    assert end_of(0) in capture.received
    assert b"of pipe-1" not in capture.received
    assert capture.client_closed and capture.mismatch is None
    assert (report.delivered, report.deferred, report.bounced) == (1, 1, 0)
    assert spool.ids() == [second]
    (state,) = spool.load(second).recipients
    assert state.status is RecipientStatus.PENDING


def test_a_message_refused_before_it_is_sent_does_not_strand_the_one_in_flight(
    scripted: Any, tmp_path: Path
) -> None:
    # The second message's RCPT is refused by the client itself (its domain ends in
    # a hyphen: no RFC 5321 §4.1.2 address; sendmail refuses one now, but a queue
    # from an older mailhop may hold one). That happens while the first message's
    # content and end of data wait, unsent, to leave with the second's commands. The
    # first must then still go and have its reply read: sending its end of data and
    # never reading the 250 would keep it queued after the server accepted it, to be
    # delivered again at the next run.
    server = scripted([
        *GREETING, *PIPELINING_EHLO,
        *ENVELOPE, Send(GO_AHEAD), ReadData(), Send(QUEUED),
        *BYE,
    ])  # fmt: skip
    spool, (first, refused) = queue_messages(
        tmp_path, server.port, 2, recipients=("r0@example.test", "r1@example.test-")
    )
    report = run(spool, connections=1)
    capture = server.wait(0)
    assert end_of(0) in capture.received
    assert capture.script_finished and capture.mismatch is None
    assert (report.delivered, report.deferred, report.bounced) == (1, 1, 0)
    assert spool.ids() == [refused]
    assert first not in spool.ids()
