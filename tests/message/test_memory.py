"""The streaming path keeps memory flat: a 128 MiB body through read and output.

The child process reads the message from a pipe, prepares it for a server and drains
every chunk; it reports its peak RSS. That is ``VmHWM`` of /proc/self/status, not
``getrusage().ru_maxrss``: Linux carries ``ru_maxrss`` across execve, and with
subprocess' vfork it starts at the *parent's* peak (a large pytest under coverage).
A body held in memory even once would add 128 MiB to the peak.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BODY_MIB = 128
PEAK_RSS_LIMIT_KIB = 40 * 1024  # interpreter + imports are ~15 MiB; a copy is 128

CHILD = """
import sys
from mailhop.message import ServerCapabilities, TransferForm, prepare_transfer, read_message

with read_message(sys.stdin.buffer, ignore_dots=False, spool_directory=sys.argv[1]) as message:
    server = ServerCapabilities(eight_bit_mime=True)
    with prepare_transfer(message, server) as transfer:
        assert transfer.form is TransferForm.AS_READ, transfer
        total = sum(len(chunk) for chunk in transfer.chunks())
    scan = message.scan
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(total, scan.size, scan.longest_line, transfer.size, peak)
"""


def test_streaming_path_memory_is_flat(tmp_path: Path) -> None:
    line = b"0123456789 abcdefghijklmnopqrstuvwxyz \xc3\xa9 ..line of a large cron report..\n"
    block = line * (65536 // len(line))
    head = b"Subject: big\nTo: root\n\n"
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        # pytest-cov would trace the child too, which costs memory the code does not
        env={k: v for k, v in os.environ.items() if not k.startswith("COV_CORE_")},
    ) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.write(head)
        written = 0
        while written < BODY_MIB << 20:
            child.stdin.write(block)
            written += len(block)
        child.stdin.close()
        output = child.stdout.read().decode().split()
        child.wait(timeout=120)
    assert child.returncode == 0
    total, size, longest, wire_size, peak_kib = map(int, output)
    assert size == written
    assert total == len(head) + written
    assert longest == len(line) - 1
    assert wire_size == total + head.count(b"\n") + written // len(line)  # LF -> CRLF
    assert peak_kib < PEAK_RSS_LIMIT_KIB, f"peak RSS {peak_kib} KiB"
