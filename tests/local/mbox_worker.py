"""A separate process that delivers one message to an mbox (concurrency and crash tests).

``python -m tests.local.mbox_worker MBOX TOKEN [LINES]`` appends a message whose
subject and body carry TOKEN; a crash test sets ``MAILHOP_FAULT`` to a crash point.
"""

from __future__ import annotations

import sys

from mailhop.store.mbox import append_to_mbox

# Lines of body per message by default: enough that a write is more than one chunk.
DEFAULT_BODY_LINES = 200


def message_bytes(token: str, lines: int = DEFAULT_BODY_LINES) -> bytes:
    """A message tagged with ``token``; its body has ``From `` lines to quote."""
    body = "".join(f"From line {index} of {token}\n" for index in range(lines))
    return f"Subject: {token}\nX-Token: {token}\n\n{body}end of {token}\n".encode()


def main() -> int:
    path, token = sys.argv[1], sys.argv[2]
    lines = int(sys.argv[3]) if len(sys.argv) > 3 else DEFAULT_BODY_LINES
    data = message_bytes(token, lines)
    # Several chunks, so crash points between chunks fall in the middle of the message.
    pieces = [data[index : index + 1000] for index in range(0, len(data), 1000)]
    append_to_mbox(path, pieces, sender="sender@example.test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
