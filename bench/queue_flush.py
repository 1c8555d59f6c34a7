"""Flushing 1000 queued messages: mailhop's runner vs msmtp per message vs smtp-source.

All three drive the same server in one run: Postfix's ``smtp-sink`` on a loopback
port (it accepts and discards, so the server is never the bottleneck). Printed:
messages per second of each, and mailhop's ratios; for mailhop's run also the CPU
per message of the run and its worker processes, and the files it left behind.
Aims (issue #4): at least 10x msmtp (one process and one connection per message,
as cron + msmtp do) and at least 0.5x ``smtp-source`` (Postfix's C load generator,
the practical ceiling). Also: the time of one enqueue (``queue always``, with the
background runner it starts, as users get it) vs one msmtp direct send.

Usage::

    .venv/bin/python bench/queue_flush.py [--messages 1000] [--msmtp-messages 100]

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
from pathlib import Path

from measure import COMMAND_TIMEOUT_SECONDS, run_timed

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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--msmtp-messages", type=int, default=100)
    options = parser.parse_args()
    # An installed mailhop runs from bytecode (pip compiles it at install time); a
    # checkout's __pycache__ may be missing or stale (PYTHONDONTWRITEBYTECODE is
    # common in CI shells), and every process would then time the compiler too.
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "src"), quiet=1)
    count: int = options.messages
    port = free_port()
    sink_argv = [SMTP_SINK, "-c", f"127.0.0.1:{port}", "256"]
    if os.geteuid() == 0:
        sink_argv[1:1] = ["-u", "nobody"]
    sink = subprocess.Popen(sink_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        with tempfile.TemporaryDirectory() as temporary:
            directory = Path(temporary)
            env = {**os.environ, "HOME": temporary, "MAILHOP_QUEUE_NO_KICK": "1"}
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
            from mailhop.queue import Route, Spool

            always = write_config(directory, port, "always")
            spool = Spool(str(directory / "queue"))
            for index in range(count):
                spool.enqueue(
                    [message(index).replace(b"\n", b"\r\n")],
                    sender="bench@example.test",
                    recipients=[("sink@example.test", Route.RELAY)],
                    account="default",
                    config_file=str(always),
                )
            # The run's CPU includes its worker processes (it waits for them). Any
            # process it left running would not be counted; it leaves none, and the
            # files it leaves are counted below.
            flush = run_timed(
                [sys.executable, "-m", "mailhop", "queue", "-C", str(always), "run"], env=env
            )
            mailhop_seconds, mailhop_cpu_seconds = flush.seconds, flush.cpu_seconds
            left = len(spool.ids())
            # Any file still there (a freeing left for later) would be work not timed.
            files_left = len(os.listdir(spool.entries))

            msmtp_config = directory / "msmtprc-plain"
            msmtp_config.write_text(
                f"account default\nhost 127.0.0.1\nport {port}\ntls off\nfrom bench@example.test\n"
            )
            msmtp_config.chmod(0o600)

            # Enqueue cost per call (queue always), the caller's view, against one msmtp
            # send: the two alternate, so a burst of load slows both alike, and the
            # medians are compared. mailhop runs as installed (the console script that
            # install-mta links as sendmail), not through ``python -m``.
            # The enqueue starts its background runner (the kick) as it does for users;
            # that runner delivers the message, and the next command waits until it
            # has, so it never shares the cores with a measured one.
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
            enqueue_seconds = statistics.median(enqueue_times)
            send_seconds = statistics.median(send_times)

            msmtp_count = min(count, options.msmtp_messages)
            msmtp_seconds = (
                sum(
                    run_timed(
                        ["msmtp", "-C", str(msmtp_config), "sink@example.test"],
                        input=message(index),
                    ).seconds
                    for index in range(msmtp_count)
                )
                / msmtp_count
                * count
            )

            source_seconds = run_timed(
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
                    "sink@example.test",
                    f"127.0.0.1:{port}",
                ]
            ).seconds
    finally:
        sink.terminate()
        sink.wait(timeout=30)

    def rate(seconds: float) -> float:
        return count / seconds

    print(f"messages: {count} of {BODY_OCTETS} octets, smtp-sink on 127.0.0.1:{port}")
    print(
        f"mailhop queue run : {rate(mailhop_seconds):9.0f} msg/s ({left} left in the queue,"
        f" {files_left} files left in its directory on return;"
        f" {mailhop_cpu_seconds / count * 1e6:.0f} us CPU per message, workers included)"
    )
    print(f"msmtp per message : {rate(msmtp_seconds):9.0f} msg/s (timed on {msmtp_count})")
    print(f"smtp-source -s {PARALLEL_SESSIONS}  : {rate(source_seconds):9.0f} msg/s")
    print(f"mailhop / msmtp       = {msmtp_seconds / mailhop_seconds:6.1f}x  (aim >= 10)")
    print(f"mailhop / smtp-source = {source_seconds / mailhop_seconds:6.2f}x  (aim >= 0.5)")
    print(
        f"enqueue per call {enqueue_seconds * 1000:.0f} ms vs msmtp send"
        f" {send_seconds * 1000:.0f} ms (medians of {ENQUEUE_ROUNDS} alternating calls)"
        f" = {enqueue_seconds / send_seconds:.2f}x  (aim <= 1.5)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
