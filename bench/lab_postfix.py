"""The lab's Postfix as a bench's server: a real MTA that queues and delivers.

``smtp-sink`` accepts and discards, so against it a bench measures the clients'
CPU alone. Users deliver to a real server, which writes each message to its queue
(fsync), hands it to a delivery agent and stores it in a mailbox (fsync): work
that shares this machine's cores with the client, as it would not on a real link
but as the issue's "on the same server" asks. The lab (``scripts/lab.sh up``) has a
user of its own for this, ``flushbench``: nothing else writes to or reads its Maildir.

Between two measured commands the bench waits until Postfix has delivered every
message of the first into the Maildir, and checks the count: a message lost or
delivered twice fails the bench instead of making a tool look fast.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))

from tests.lab.support import Lab, LabUnavailable, load_lab, locate_lab_json  # noqa: E402

BENCH_USER = "flushbench"
# Postfix delivers a thousand 1 KB messages into a Maildir in a few seconds here; a
# minute means it stopped.
DELIVERY_TIMEOUT_SECONDS = 60.0
DELIVERY_POLL_SECONDS = 0.05
# Maildir's folders of delivered messages (new/ until a reader has seen them).
DELIVERED_FOLDERS = ("new", "cur")


class DeliveryMismatch(Exception):
    """The Maildir does not hold exactly the messages sent: the run is not valid."""


class PostfixMailbox:
    """Where a bench sends (the lab's port 25, one lab user) and what arrived."""

    def __init__(self, lab: Lab) -> None:
        user = lab.user(BENCH_USER)
        self.host = lab.host
        self.port = lab.ports.smtp
        self.address = user.address
        self.maildir = user.maildir

    def delivered(self) -> int:
        return sum(len(os.listdir(self.maildir / folder)) for folder in DELIVERED_FOLDERS)

    def empty(self) -> None:
        """Remove every delivered message (only root may: the Maildir is the lab's)."""
        for folder in DELIVERED_FOLDERS:
            for name in os.listdir(self.maildir / folder):
                (self.maildir / folder / name).unlink()

    def settle(self, sent: int) -> None:
        """After a measured command: wait for its ``sent`` messages, then clear them."""
        self.wait_for(sent)
        self.empty()

    def wait_for(self, expected: int) -> None:
        """Wait until exactly ``expected`` messages are in the Maildir.

        Raises:
            DeliveryMismatch: more arrived, or fewer within the timeout.
        """
        deadline = time.monotonic() + DELIVERY_TIMEOUT_SECONDS
        while (count := self.delivered()) < expected:
            if time.monotonic() > deadline:
                raise DeliveryMismatch(
                    f"{count} of {expected} messages reached {self.maildir}"
                    f" in {DELIVERY_TIMEOUT_SECONDS:.0f} s"
                )
            time.sleep(DELIVERY_POLL_SECONDS)
        if count > expected:
            raise DeliveryMismatch(f"{count} messages reached {self.maildir}, {expected} sent")


def lab_mailbox() -> PostfixMailbox | str:
    """The bench's mailbox in the running lab, or why there is none."""
    if os.geteuid() != 0:
        return "needs root (the bench empties the lab's Maildir between runs)"
    try:
        return PostfixMailbox(load_lab(locate_lab_json(os.environ, REPOSITORY)))
    except (LabUnavailable, KeyError, OSError) as error:
        return f"{error}; run `sudo scripts/lab.sh up` first"
