"""Issue #5 item 5 with the queue of issue #4: mail that cannot be routed now is kept.

No relay account yet: ``sendmail`` to a remote address keeps the message in the queue
(exit 0, with a warning that says to configure an account) instead of failing; once an
account exists, ``mailhop queue run`` routes it again and relays it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from mailhop.deliver.listener import Listener, ReceivedMessage


def mailhop(
    tmp_path: Path, *arguments: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "mailhop", *arguments],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
        env={
            **os.environ,
            "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path / ".config"),
            "MAILHOP_QUEUE_NO_KICK": "1",
        },
    )


def test_remote_mail_without_an_account_waits_in_the_queue(tmp_path: Path) -> None:
    queue = tmp_path / "queue"
    config = tmp_path / "rc"
    config.write_text(f"account default\nqueue_dir {queue}\nmail_spool {tmp_path}\n")
    config.chmod(0o600)
    sent = mailhop(
        tmp_path, "sendmail", "-C", str(config), "far@example.test",
        stdin=b"Subject: kept\n\nwaiting for an account\n",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert b"configure" in sent.stderr
    assert b"queued as" in sent.stderr
    listing = mailhop(tmp_path, "queue", "list", "-C", str(config), "--queue-dir", str(queue))
    assert b"far@example.test" in listing.stdout

    received: list[ReceivedMessage] = []
    arrived = threading.Event()

    def deliver(message: ReceivedMessage) -> None:
        received.append(message)
        arrived.set()

    with Listener(deliver) as listener:
        config.write_text(
            f"account default\nqueue_dir {queue}\nmail_spool {tmp_path}\n"
            f"host 127.0.0.1\nport {listener.port}\ntls off\nfrom me@example.test\n"
        )
        for _ in range(2):  # the first run routes again, which queues the relay part
            ran = mailhop(
                tmp_path, "queue", "run", "--force", "-C", str(config), "--queue-dir", str(queue)
            )
            assert ran.returncode == 0, ran.stderr
        assert arrived.wait(timeout=30)
    assert received[0].recipients == ("far@example.test",)
    assert b"waiting for an account" in received[0].content
    empty = mailhop(tmp_path, "queue", "list", "-C", str(config), "--queue-dir", str(queue))
    assert b"far@example.test" not in empty.stdout
