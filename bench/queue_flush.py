"""Flushing 1000 queued messages: mailhop's runner vs msmtp per message vs smtp-source.

All three drive the same server in one run, over loopback, each server in turn:

- Postfix's ``smtp-sink``, which accepts and discards: the server costs next to
  nothing, so this measures the clients' CPU alone (C against Python);
- the lab's Postfix (``scripts/lab.sh up``; run as root), which queues each message
  and delivers it into a Maildir (``lab_postfix.py``), as the servers users send to
  do. The bench waits until every message of one command has arrived, and checks
  the count, before it starts the next.

- the same smtp-sink behind a round-trip time (``--rtt-ms``, default 1 and 20 ms),
  made by ``delay_proxy.py`` on loopback (this kernel has no netem). A round trip
  costs each tool what it waits for: ``smtp-source -d`` waits for each of MAIL,
  RCPT, DATA and the end of data, 4 round trips per message per session (its
  manual, under BUGS: "No SMTP command pipelining support"; ``strace`` shows its 4
  writes per message, each after a read). With ``-d`` each session is one
  connection for many messages (``smtp-sink -v`` shows connect, HELO, then MAIL,
  RCPT, DATA and the end of data per message, no RSET, one QUIT at the end);
  msmtp starts a process and a connection per message (connect, greeting, EHLO,
  the pipelined envelope, the end of data, QUIT); mailhop writes each message's
  MAIL, RCPT and DATA behind the previous end of data (RFC 2920), about 1 round
  trip per message per connection.

Then one table of the delayed rounds: a line per round trip with the round trip
the proxy added (a NOOP probe through it less the same probe without it), each
tool's messages per second, and mailhop's ratios.

Printed for each: messages per second of each tool, and mailhop's ratios; for
mailhop's run also the CPU per message of the run and its worker processes, and the
files it left behind.
Aims (issue #4): at least 10x msmtp (one process and one connection per message,
as cron + msmtp do) and at least 0.5x ``smtp-source`` (Postfix's C load generator,
the practical ceiling). Also: the time of one enqueue (``queue always``, with the
background runner it starts, as users get it) vs one msmtp direct send.

Usage::

    .venv/bin/python bench/queue_flush.py [--messages 1000] [--msmtp-messages 100]
                                          [--rounds 3] [--no-postfix] [--rtt-ms 1,20]
                                          [--rtt-messages 200] [--rtt-msmtp-messages 20]

msmtp is slow enough that it is timed on ``--msmtp-messages`` and scaled; the
rate is per message either way.

The message is shaped like the one ``smtp-source -l 1024`` sends (seen with
``smtp-sink -d``): four short headers, then a body of ``BODY_OCTETS`` octets on the
wire in lines of 80 octets (a digit, 77 ``X``, CRLF) and a shorter last line. So
every tool moves the same bytes, and no line exceeds RFC 5322's 998 octets (a longer
line would make mailhop re-encode the message, work smtp-source never does).
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from delay_proxy import DelayProxy, measured_round_trip
from lab_postfix import REPOSITORY, PostfixMailbox, lab_mailbox
from measure import COMMAND_TIMEOUT_SECONDS, Measured, run_timed

# Postfix keeps its test tools out of PATH on Debian.
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
# smtp-source parallel sessions: the same number of connections mailhop may open.
PARALLEL_SESSIONS = 4
BODY_OCTETS = 1024
# smtp-source's body lines: 78 octets of text and CRLF (seen with smtp-sink -d).
BODY_LINE_OCTETS = 80
# Alternating rounds of one enqueue and one msmtp send; an odd count has a median.
ENQUEUE_ROUNDS = 21
# After an enqueue: how often to look whether its runner has emptied the queue, and
# how long to let that runner exit before the next measured command starts.
KICKED_RUNNER_POLL_SECONDS = 0.01
KICKED_RUNNER_EXIT_SECONDS = 0.1
# Alternating rounds of mailhop's flush and smtp-source on loopback (medians count):
# one round was 0.47x one run and 0.77x the next against Postfix on this machine.
# Behind a round trip the times are the round trips' and vary little: one round.
DEFAULT_ROUNDS = 3
# Round trips of the delayed rounds (milliseconds): a LAN, and a provider a country
# away. Fewer messages there: smtp-source needs four round trips per message per
# session, so 1000 at 20 ms would take it 20 s; rates are per message all the same.
DEFAULT_RTT_MS = "1,20"
DEFAULT_RTT_MESSAGES = 200
DEFAULT_RTT_MSMTP_MESSAGES = 20


def wait_until_empty(directory: Path) -> None:
    """Wait until a kicked runner has delivered and freed everything, then a little
    longer for it to exit (it is not this process's child: nothing to wait on)."""
    deadline = time.monotonic() + COMMAND_TIMEOUT_SECONDS
    while any(directory.iterdir()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the kicked runner left {directory} full")
        time.sleep(KICKED_RUNNER_POLL_SECONDS)
    time.sleep(KICKED_RUNNER_EXIT_SECONDS)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def body() -> bytes:
    """smtp-source's body with LF line ends: ``BODY_OCTETS`` once LF becomes CRLF."""
    lines = []
    left = BODY_OCTETS
    number = 1
    while left > BODY_LINE_OCTETS:
        lines.append(str(number % 10).encode() + b"X" * (BODY_LINE_OCTETS - 3))
        left -= BODY_LINE_OCTETS
        number += 1
    lines.append(b"X" * (left - 2))
    return b"".join(line + b"\n" for line in lines)


def message(index: int) -> bytes:
    return (
        f"From: bench@example.test\nTo: sink@example.test\nSubject: bench {index}\n"
        f"Message-ID: <bench{index}@example.test>\n\n"
    ).encode() + body()


def write_config(directory: Path, port: int, queue: str) -> Path:
    path = directory / f"msmtprc-{queue}"
    path.write_text(
        "account default\nhost 127.0.0.1\n"
        f"port {port}\ntls off\nfrom bench@example.test\n"
        f"queue {queue}\nqueue_dir {directory / 'queue'}\n"
    )
    path.chmod(0o600)
    return path


class Server(NamedTuple):
    """A server the three tools deliver to, and how to settle it after each command."""

    name: str
    port: int  # on 127.0.0.1
    recipient: str
    # Called after each measured command with the number of messages it sent: waits
    # until the server has delivered them (and checks the count) and clears them.
    settle: Callable[[int], None]


class Rates(NamedTuple):
    """Seconds per ``count`` messages for each tool against one server."""

    mailhop: Measured
    left: int  # entries still queued after the run
    files_left: int  # files still in the spool's directory after the run
    msmtp: float  # scaled from ``msmtp_count`` messages
    msmtp_count: int
    source: float
    rounds: int  # mailhop's and smtp-source's times are medians of this many


def nothing_to_settle(count: int) -> None:
    """smtp-sink keeps nothing: nothing to wait for."""


def measure_server(
    server: Server,
    directory: Path,
    count: int,
    msmtp_count: int,
    env: dict[str, str],
    *,
    rounds: int = 1,
) -> Rates:
    """Flush ``count`` queued messages with mailhop and send ``count`` with smtp-source,
    alternately ``rounds`` times (the medians count: a burst of load on a shared
    machine slows one round, not the result), and ``msmtp_count`` with msmtp, one
    process each, all to ``server``."""
    flushes: list[tuple[Measured, int, int]] = []
    sources: list[float] = []
    for _ in range(rounds):
        flushes.append(flush_queue(server, directory, count, env))
        sources.append(run_smtp_source(server, count))
    # The run of median time: the CPU printed is its own. What was left: the most any
    # run left (each should leave nothing).
    flush = sorted((run[0] for run in flushes), key=lambda measured: measured.seconds)[rounds // 2]
    left = max(run[1] for run in flushes)
    files_left = max(run[2] for run in flushes)

    msmtp_config = write_msmtp_config(directory, server.port)
    msmtp_seconds = 0.0
    for index in range(msmtp_count):
        msmtp_seconds += run_timed(
            ["msmtp", "-C", str(msmtp_config), server.recipient], input=message(index)
        ).seconds
    server.settle(msmtp_count)
    return Rates(
        flush,
        left,
        files_left,
        msmtp_seconds / msmtp_count * count,
        msmtp_count,
        statistics.median(sources),
        rounds,
    )


def flush_queue(
    server: Server, directory: Path, count: int, env: dict[str, str]
) -> tuple[Measured, int, int]:
    """Queue ``count`` messages for ``server``, then time ``mailhop queue run``; also
    return how many entries and files it left in the spool."""
    from mailhop.queue import Route, Spool

    always = write_config(directory, server.port, "always")
    spool = Spool(str(directory / "queue"))
    for index in range(count):
        spool.enqueue(
            [message(index).replace(b"\n", b"\r\n")],
            sender="bench@example.test",
            recipients=[(server.recipient, Route.RELAY)],
            account="default",
            config_file=str(always),
        )
    # The run's CPU includes its worker processes (it waits for them). Any process it
    # left running would not be counted; it leaves none, and the files it leaves are
    # counted below.
    flush = run_timed([sys.executable, "-m", "mailhop", "queue", "-C", str(always), "run"], env=env)
    left = len(spool.ids())
    # Any file still there (a freeing left for later) would be work not timed.
    files_left = len(os.listdir(spool.entries))
    server.settle(count - left)
    return flush, left, files_left


def run_smtp_source(server: Server, count: int) -> float:
    """Seconds smtp-source takes to send ``count`` messages to ``server``."""
    source = run_timed(
        [
            SMTP_SOURCE,
            "-d",
            "-s",
            str(PARALLEL_SESSIONS),
            "-m",
            str(count),
            "-l",
            str(BODY_OCTETS),
            "-f",
            "bench@example.test",
            "-t",
            server.recipient,
            f"127.0.0.1:{server.port}",
        ]
    )
    server.settle(count)
    return source.seconds


def write_msmtp_config(directory: Path, port: int) -> Path:
    path = directory / f"msmtprc-plain-{port}"
    path.write_text(
        f"account default\nhost 127.0.0.1\nport {port}\ntls off\nfrom bench@example.test\n"
    )
    path.chmod(0o600)
    return path


def measure_enqueue(directory: Path, port: int, env: dict[str, str]) -> tuple[float, float]:
    """Median seconds of one enqueue (``queue always``) and of one msmtp direct send.

    The two alternate, so a burst of load slows both alike. mailhop runs as installed
    (the console script that install-mta links as sendmail), not through ``python -m``.
    The enqueue starts its background runner (the kick) as it does for users; that
    runner delivers the message, and the next command waits until it has, so it never
    shares the cores with a measured one.
    """
    always = write_config(directory, port, "always")
    msmtp_config = write_msmtp_config(directory, port)
    program = str(Path(sys.executable).parent / "mailhop")
    kicking = {name: text for name, text in env.items() if name != "MAILHOP_QUEUE_NO_KICK"}
    enqueue_times: list[float] = []
    send_times: list[float] = []
    for index in range(ENQUEUE_ROUNDS):
        enqueue_times.append(
            run_timed(
                [program, "sendmail", "-C", str(always), "-i", "sink@example.test"],
                input=message(index),
                env=kicking,
            ).seconds
        )
        wait_until_empty(directory / "queue" / "entries")
        send_times.append(
            run_timed(
                ["msmtp", "-C", str(msmtp_config), "-i", "sink@example.test"],
                input=message(index),
            ).seconds
        )
    return statistics.median(enqueue_times), statistics.median(send_times)


def print_rates(server: Server, count: int, rates: Rates) -> None:
    def rate(seconds: float) -> float:
        return count / seconds

    medians = f", medians of {rates.rounds} alternating rounds" if rates.rounds > 1 else ""
    print(f"{server.name}, {count} messages{medians}:")
    print(
        f"  mailhop queue run : {rate(rates.mailhop.seconds):9.0f} msg/s ({rates.left} left"
        f" in the queue, {rates.files_left} files left in its directory on return;"
        f" {rates.mailhop.cpu_seconds / count * 1e6:.0f} us CPU per message, workers included)"
    )
    print(f"  msmtp per message : {rate(rates.msmtp):9.0f} msg/s (timed on {rates.msmtp_count})")
    print(f"  smtp-source -s {PARALLEL_SESSIONS}  : {rate(rates.source):9.0f} msg/s")
    print(f"  mailhop / msmtp       = {rates.msmtp / rates.mailhop.seconds:6.1f}x  (aim >= 10)")
    print(f"  mailhop / smtp-source = {rates.source / rates.mailhop.seconds:6.2f}x  (aim >= 0.5)")


def print_rtt_table(
    count: int, delayed: list[Rates], rtt_rows: list[tuple[float, float, float]]
) -> None:
    """One line per round trip, to read down: how each tool's rate falls as the round
    trip grows, and mailhop's ratios. The proxy's CPU shares the cores with the
    tools, so the ratios, not the absolute rates, are what carries over to a real link.
    """
    print(
        f"smtp-sink behind delay_proxy.py, {count} messages each"
        f" (msmtp timed on {delayed[0].msmtp_count if delayed else 0} and scaled), msg/s:"
    )
    print(
        "  RTT ms  proxy adds ms  mailhop  msmtp  smtp-source  mailhop/smtp-source  mailhop/msmtp"
    )
    for rates, (asked_ms, through_proxy, direct) in zip(delayed, rtt_rows, strict=True):
        print(
            f"  {asked_ms:6g}  {(through_proxy - direct) * 1000:13.1f}"
            f"  {count / rates.mailhop.seconds:7.0f}  {count / rates.msmtp:5.0f}"
            f"  {count / rates.source:11.0f}"
            f"  {rates.source / rates.mailhop.seconds:18.2f}x"
            f"  {rates.msmtp / rates.mailhop.seconds:12.1f}x"
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--msmtp-messages", type=int, default=100)
    parser.add_argument(
        "--no-postfix", action="store_true", help="only smtp-sink, not the lab's Postfix"
    )
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--rtt-ms", default=DEFAULT_RTT_MS, help="delayed rounds; '' for none")
    parser.add_argument("--rtt-messages", type=int, default=DEFAULT_RTT_MESSAGES)
    parser.add_argument("--rtt-msmtp-messages", type=int, default=DEFAULT_RTT_MSMTP_MESSAGES)
    options = parser.parse_args()
    # An installed mailhop runs from bytecode (pip compiles it at install time); a
    # checkout's __pycache__ may be missing or stale (PYTHONDONTWRITEBYTECODE is
    # common in CI shells), and every process would then time the compiler too.
    compileall.compile_dir(str(REPOSITORY / "src"), quiet=1)
    sys.path.insert(0, str(REPOSITORY / "src"))
    count: int = options.messages
    msmtp_count = min(count, options.msmtp_messages)
    port = free_port()
    sink_argv = [SMTP_SINK, "-c", f"127.0.0.1:{port}", "256"]
    if os.geteuid() == 0:
        sink_argv[1:1] = ["-u", "nobody"]
    servers = [
        Server("smtp-sink (accepts and discards)", port, "sink@example.test", nothing_to_settle)
    ]
    mailbox = "--no-postfix given" if options.no_postfix else lab_mailbox()
    if isinstance(mailbox, PostfixMailbox):
        mailbox.empty()
        servers.append(
            Server(
                "the lab's Postfix (queues, delivers into a Maildir)",
                mailbox.port,
                mailbox.address,
                mailbox.settle,
            )
        )
    sink = subprocess.Popen(sink_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    results = []
    delayed = []
    # (round trip asked in ms, measured through the proxy, measured without it), seconds.
    rtt_rows: list[tuple[float, float, float]] = []
    try:
        with tempfile.TemporaryDirectory() as temporary:
            directory = Path(temporary)
            env = {**os.environ, "HOME": temporary, "MAILHOP_QUEUE_NO_KICK": "1"}
            # First, while the file system is quiet: the Postfix rounds leave its
            # journal busy freeing thousands of delivered files, and an enqueue
            # fsyncs (msmtp writes nothing).
            enqueue_seconds, send_seconds = measure_enqueue(directory, port, env)
            for server in servers:
                results.append(
                    measure_server(
                        server, directory, count, msmtp_count, env, rounds=options.rounds
                    )
                )
            # The same probe without the proxy: what the proxy adds is the difference.
            direct_round_trip = measured_round_trip(port)
            for rtt_ms in filter(None, options.rtt_ms.split(",")):
                with DelayProxy(port, float(rtt_ms) / 1000) as proxy:
                    measured = measured_round_trip(proxy.port)
                    rtt_rows.append((float(rtt_ms), measured, direct_round_trip))
                    server = Server(
                        f"smtp-sink behind a {rtt_ms} ms round trip (delay_proxy.py;"
                        f" measured {measured * 1000:.1f} ms)",
                        proxy.port,
                        "sink@example.test",
                        nothing_to_settle,
                    )
                    rates = measure_server(
                        server, directory, options.rtt_messages, options.rtt_msmtp_messages, env
                    )
                delayed.append((server, rates))
    finally:
        sink.terminate()
        sink.wait(timeout=30)

    print(f"messages of {BODY_OCTETS} octets, every tool on 127.0.0.1")
    for server, rates in zip(servers, results, strict=True):
        print_rates(server, count, rates)
    if not isinstance(mailbox, PostfixMailbox):
        print(f"the lab's Postfix: skipped ({mailbox})")
    for server, rates in delayed:
        print_rates(server, options.rtt_messages, rates)
    if delayed:
        print_rtt_table(options.rtt_messages, [rates for _, rates in delayed], rtt_rows)
    print(
        f"enqueue per call {enqueue_seconds * 1000:.0f} ms vs msmtp send"
        f" {send_seconds * 1000:.0f} ms (medians of {ENQUEUE_ROUNDS} alternating calls,"
        f" smtp-sink) = {enqueue_seconds / send_seconds:.2f}x  (aim <= 1.5)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
