"""reader layer of mailhop (see DESIGN.md §2): reading mail with ``mail``, as POSIX mailx.

A use case at the same rank as ``deliver`` and ``fetch``::

    folder.py    open an mbox or Maildir, message states, POSIX quit write-back
    summary.py   header summary lines that fit the terminal
    commands.py  the command grammar and message lists (a pure parser)
    display.py   MIME-aware display; control characters are always shown escaped
    session.py   the command loop (terminal or commands on stdin)

The command line (``mailhop.cli.mail_read``) opens the folder and runs the session;
sending a reply goes back up through a callable the command line provides, so this
layer never imports ``cli``.
"""

from __future__ import annotations
