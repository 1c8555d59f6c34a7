"""``mailhop demo``: the main job, end to end, on the embedded default.

Starts mailhop's own SMTP listener on a loopback port, writes a throw-away msmtprc
account for it (mode 0600), pipes a message into the real sendmail personality
(``python -m mailhop sendmail -v -t``, a separate process exactly as cron would start
it) and prints the dialogue and the message as the server received it. No
external server and no configuration of the user's are touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading

from mailhop.deliver.listener import Listener, ReceivedMessage
from mailhop.errors import ExitCode, MailhopError

SAMPLE = b"""\
To: you@example.test
Bcc: hidden@example.test
Subject: Hello from mailhop

This message went through the sendmail personality to an SMTP server on loopback.
The Bcc header is gone, From, Date and Message-ID were added by the account rules.
"""

# The sendmail child gets this long; the listener answers at once on loopback.
SENDMAIL_TIMEOUT_SECONDS = 60


def main(program: str, arguments: list[str]) -> int:
    if arguments:
        sys.stderr.write(f"usage: {program}\n")
        return ExitCode.USAGE
    received: list[ReceivedMessage] = []
    arrived = threading.Event()

    def deliver(message: ReceivedMessage) -> None:
        received.append(message)
        arrived.set()

    with (
        tempfile.TemporaryDirectory(prefix="mailhop-demo-") as directory,
        Listener(deliver) as listener,
    ):
        config = os.path.join(directory, "msmtprc")
        descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(
                "# a throw-away account for mailhop demo\n"
                "account demo\n"
                "host 127.0.0.1\n"
                f"port {listener.port}\n"
                "tls off\n"
                "from demo@localhost\n"
                "account default : demo\n"
            )
        sys.stdout.write(
            f"$ mailhop sendmail -v -t   (account 'demo', 127.0.0.1:{listener.port})\n"
        )
        sys.stdout.flush()
        result = subprocess.run(
            [sys.executable, "-m", "mailhop", "sendmail", "-v", "-t", "-C", config],
            input=SAMPLE,
            timeout=SENDMAIL_TIMEOUT_SECONDS,
            check=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        sys.stdout.write(result.stdout.decode("utf-8", "replace"))
        sys.stdout.write(f"exit status: {result.returncode}\n")
        if result.returncode != 0 or not arrived.wait(timeout=5):
            raise MailhopError("the demo message did not arrive", exit_code=ExitCode.SOFTWARE)
    message = received[0]
    sys.stdout.write(
        f"\nThe server received, from <{message.sender}> for "
        f"{', '.join(f'<{r}>' for r in message.recipients)}:\n\n"
    )
    sys.stdout.write(message.content.decode("utf-8", "replace").replace("\r\n", "\n"))
    return ExitCode.OK
