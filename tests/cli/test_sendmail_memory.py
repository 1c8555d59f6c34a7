"""A huge message streams through ``mailhop sendmail`` in flat memory.

cron and backup scripts mail whole logs and archives; a client that holds the
message in memory dies (or takes the machine down) with them. The child's peak
resident set (``VmHWM`` in ``/proc/PID/status``, read while the child waits for
the final 250) must stay under ``MAX_PEAK_RSS_BYTES`` for ``MESSAGE_BYTES`` of
input. The server is a tiny discarding sink: the loopback listener keeps content
in memory, which would measure the wrong process's problem.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

# 200 MB runs in about 3 s here; the peak does not depend on the size, only the time.
MESSAGE_BYTES = 200 * 1024 * 1024
MAX_PEAK_RSS_BYTES = 64 * 1024 * 1024
LINE = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?-+=/\n"
BLOCK = LINE * (1024 * 1024 // len(LINE))
SINK_TIMEOUT_SECONDS = 60.0


class DiscardingSink:
    """Speak just enough SMTP to take one message and throw its content away."""

    def __init__(self) -> None:
        self.child_pid: int | None = None
        self.peak_rss_at_end_of_data: int | None = None
        self.content_bytes = 0
        self.accepted = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        port: int = self._listener.getsockname()[1]
        return port

    def stop(self) -> None:
        self._listener.close()
        self._thread.join(SINK_TIMEOUT_SECONDS)

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            connection, _ = self._listener.accept()
            with connection:
                connection.settimeout(SINK_TIMEOUT_SECONDS)
                self._session(connection)

    def _session(self, connection: socket.socket) -> None:
        connection.sendall(b"220 sink ESMTP\r\n")
        pending = b""
        while True:
            data = connection.recv(65536)
            if not data:
                return
            pending += data
            while b"\r\n" in pending:
                line, pending = pending.split(b"\r\n", 1)
                verb = line[:4].upper()
                if verb == b"EHLO":
                    connection.sendall(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    connection.sendall(b"354 go ahead\r\n")
                    pending = self._discard_content(connection, pending)
                    self.peak_rss_at_end_of_data = _peak_rss(self.child_pid)
                    self.accepted = True
                    connection.sendall(b"250 2.0.0 discarded\r\n")
                elif verb == b"QUIT":
                    connection.sendall(b"221 bye\r\n")
                    return
                else:
                    connection.sendall(b"250 ok\r\n")

    def _discard_content(self, connection: socket.socket, pending: bytes) -> bytes:
        tail = b"\r\n" + pending  # DATA's own CRLF counts as the start of a line
        while True:
            end = tail.find(b"\r\n.\r\n")
            if end >= 0:
                self.content_bytes += end
                return tail[end + 5 :]
            self.content_bytes += max(len(tail) - 4, 0)
            tail = tail[-4:]
            data = connection.recv(1 << 20)
            if not data:
                raise OSError("the client closed during DATA")
            tail += data


def _peak_rss(pid: int | None) -> int | None:
    if pid is None:
        return None
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            return int(match.group(1)) * 1024
    return None


def _feed(stdin: object, total: int) -> None:
    assert hasattr(stdin, "write") and hasattr(stdin, "close")
    with contextlib.suppress(BrokenPipeError):
        stdin.write(b"From: backup@example.test\nTo: root@example.test\nSubject: big\n\n")
        sent = 0
        while sent < total:
            stdin.write(BLOCK)
            sent += len(BLOCK)
    with contextlib.suppress(BrokenPipeError):
        stdin.close()


def test_a_huge_message_streams_in_flat_memory(tmp_path: Path) -> None:
    sink = DiscardingSink()
    config = tmp_path / "msmtprc"
    config.write_text(
        f"account default\nhost 127.0.0.1\nport {sink.port}\ntls off\ntimeout 60\n"
        "from backup@example.test\n"
    )
    config.chmod(0o600)
    environment = {**os.environ, "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    started = time.monotonic()
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "mailhop", "sendmail", "-C", str(config), "-i", "-t"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=environment,
        )
    sink.child_pid = child.pid
    feeder = threading.Thread(target=_feed, args=(child.stdin, MESSAGE_BYTES), daemon=True)
    feeder.start()
    try:
        _pid, status = os.waitpid(child.pid, 0)
    finally:
        feeder.join(SINK_TIMEOUT_SECONDS)
        sink.stop()
    elapsed = time.monotonic() - started
    errors = stderr_path.read_text(errors="replace")
    child.returncode = os.waitstatus_to_exitcode(status)
    assert child.returncode == 0, errors
    assert sink.accepted
    assert sink.content_bytes >= MESSAGE_BYTES
    peak = sink.peak_rss_at_end_of_data
    assert peak is not None, "could not read the child's VmHWM"
    assert peak < MAX_PEAK_RSS_BYTES, f"peak RSS {peak / 2**20:.1f} MiB"
    # Not ru_maxrss from wait4: Linux carries the forking parent's (pytest's) peak
    # over into the child's, so it measures the test runner, not mailhop.
    assert elapsed < 60, elapsed
