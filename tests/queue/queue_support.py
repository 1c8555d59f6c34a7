"""Helpers for the queue tests: an msmtprc with a queue, the real command line, peers.

Every helper runs the real ``python -m mailhop`` as cron would, with the background
kick turned off (``MAILHOP_QUEUE_NO_KICK``) so each test decides when a runner runs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mailhop.deliver.listener import Listener, ReceivedMessage
from mailhop.queue import Route, Spool

# One command of the queue tests; a loopback peer answers in milliseconds.
SUBPROCESS_TIMEOUT_SECONDS = 60.0
# The account's own timeout: a closed loopback port fails at once anyway.
ACCOUNT_TIMEOUT_SECONDS = 10


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def write_config(
    directory: Path, port: int, *lines: str, queue: str = "fallback", host: str = "127.0.0.1"
) -> Path:
    """An msmtprc (0600) with a plaintext loopback account and its queue directory."""
    path = directory / "msmtprc"
    settings = [
        f"host {host}",
        f"port {port}",
        f"timeout {ACCOUNT_TIMEOUT_SECONDS}",
        "from sender@example.test",
        "tls off",
        f"queue {queue}",
        f"queue_dir {directory / 'queue'}",
        *lines,
    ]
    path.write_text("account default\n" + "".join(f"{line}\n" for line in settings))
    path.chmod(0o600)
    return path


def environment(home: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "xdg"),
        "LC_ALL": "C.UTF-8",
        "MAILHOP_QUEUE_NO_KICK": "1",
        **extra,
    }
    if "MAILHOP_FAULT" not in extra:
        env.pop("MAILHOP_FAULT", None)
    return env


def mailhop(
    config: Path, *arguments: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``python -m mailhop ARGUMENTS`` with the test's HOME and no background kick."""
    return subprocess.run(
        [sys.executable, "-m", "mailhop", *arguments],
        input=stdin,
        capture_output=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS,
        env=environment(config.parent, **(env or {})),
        check=False,
    )


def sendmail(
    config: Path, *recipients: str, message: bytes, **extra_env: str
) -> subprocess.CompletedProcess[bytes]:
    return mailhop(
        config, "sendmail", "-C", str(config), "-i", *recipients, stdin=message, env=extra_env
    )


def queue_run(
    config: Path, *arguments: str, **extra_env: str
) -> subprocess.CompletedProcess[bytes]:
    return mailhop(config, "queue", "-C", str(config), "run", *arguments, env=extra_env)


def make_message(token: str, *, body_lines: int = 3) -> bytes:
    body = "".join(f"line {index} of {token}\n" for index in range(body_lines))
    return (
        f"From: sender@example.test\nTo: rcpt@example.test\nSubject: {token}\n"
        f"Message-ID: <{token}@example.test>\n\n{body}"
    ).encode()


def fill_spool(spool: Spool, count: int, *, prefix: str, config: Path | None) -> None:
    """Queue ``count`` relayed messages (subjects ``PREFIX0`` ...) to one recipient."""
    for index in range(count):
        spool.enqueue(
            [make_message(f"{prefix}{index}").replace(b"\n", b"\r\n")],
            sender="sender@example.test",
            recipients=[("rcpt@example.test", Route.RELAY)],
            account="default",
            config_file=None if config is None else str(config),
        )


class Collector:
    """Our own loopback listener, recording every accepted message."""

    def __init__(self) -> None:
        self.messages: list[ReceivedMessage] = []
        self._lock = threading.Lock()

    def __call__(self, message: ReceivedMessage) -> None:
        with self._lock:
            self.messages.append(message)

    def message_ids(self) -> list[str]:
        ids = []
        for message in self.messages:
            for line in message.content.split(b"\r\n"):
                if line.lower().startswith(b"message-id:"):
                    ids.append(line.split(b":", 1)[1].strip().decode())
                    break
        return ids


class _Dispatcher:
    def __init__(self) -> None:
        self.current: Collector | None = None

    def __call__(self, message: ReceivedMessage) -> None:
        if self.current is not None:
            self.current(message)


_DISPATCHER = _Dispatcher()
_SHARED: list[Listener] = []


@contextmanager
def listening() -> Iterator[tuple[Listener, Collector]]:
    """Our loopback listener with a fresh collector.

    One listener serves the whole session: stopping one waits for its accept
    thread (seconds), which would dominate these tests.
    """
    if not _SHARED:
        _SHARED.append(Listener(_DISPATCHER).start())
    collector = Collector()
    _DISPATCHER.current = collector
    try:
        yield _SHARED[0], collector
    finally:
        _DISPATCHER.current = None


def queue_files(config: Path) -> list[str]:
    entries = config.parent / "queue" / "entries"
    return sorted(p.name for p in entries.iterdir()) if entries.exists() else []


class CountingHandler:
    """An aiosmtpd handler: answers each end of data with the next of ``data_replies``
    (the last one repeats), advertises PIPELINING when told to, and counts sessions
    and the recipients of each accepted message."""

    def __init__(
        self, data_replies: Sequence[str] = ("250 2.0.0 accepted",), *, pipelining: bool = False
    ) -> None:
        self.data_replies = list(data_replies)
        self.pipelining = pipelining
        self.sessions = 0
        self.accepted: list[tuple[str, ...]] = []
        self.lock = threading.Lock()

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.lock:
            self.sessions += 1
        session.host_name = hostname
        if self.pipelining:
            return [responses[0], "250-PIPELINING", *responses[1:]]
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            # The last reply answers every message after it.
            answer = (
                self.data_replies.pop(0) if len(self.data_replies) > 1 else self.data_replies[0]
            )
            if answer.startswith("250"):
                self.accepted.append(tuple(envelope.rcpt_tos))
        return answer
