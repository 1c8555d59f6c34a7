"""Tilde escapes while ``mail`` reads a message body at a terminal (POSIX mailx "Command
Escapes", bsd-mailx and s-nail "COMMAND ESCAPES").

Where they are active: bsd-mailx and s-nail recognise escapes only in interactive mode
(standard input is a terminal); s-nail also with ``-~``, which mailhop takes too. A
script piping a body into ``mail`` keeps every line as it is, so a body line that
starts with ``~`` is never a command there. The escape character is the first one of
the ``escape`` variable (default ``~``); s-nail disables escapes when it is empty.

Supported, at the start of a line:

    ~s SUBJECT     set the subject          ~t / ~c / ~b ADDRS   add To / Cc / Bcc
    ~r FILE        read FILE in (also ~<)   ~p                   print the message so far
    ~e / ~v        edit in $EDITOR/$VISUAL  ~q                   abort, body to dead.letter
    ~x             abort, discard           ~. (or end of file)  end and send
    ~~ TEXT        a line "~TEXT"           ~?                   this list

What the real tools do, and mailhop with them: ``~p`` prints "-------", "Message
contains:", the header fields, a blank line, the body, then "(continue)" (bsd-mailx);
``~q`` writes the body so far (no header, as bsd-mailx) to ``$DEAD`` or
``~/dead.letter``, replacing it, and reports "PATH LINES/BYTES" (as s-nail); ``~q``
and ``~x`` end without sending, with a non-zero exit status (s-nail exits 4,
bsd-mailx 0; mailhop keeps its contract that 0 means the mail went out, and
uses 1, since nothing failed that a sysexits code would name).

Shell escapes (``~!``, ``~|``) and message inclusion (``~m``, ``~f``) are not offered:
nothing from a line typed here reaches a shell (DESIGN.md §4.4). The editor is run
without a shell: ``$VISUAL``/``$EDITOR`` split with ``shlex``, the draft in a 0600 file
inside a private (0700) temporary directory. Addresses and the subject go through the
header-injection checks when they are typed, and a refused one is reported and dropped,
not the whole message.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from typing import BinaryIO, TextIO

from mailhop.errors import MailhopError

DEFAULT_ESCAPE = "~"
# bsd-mailx's defaults when $EDITOR / $VISUAL are not set.
DEFAULT_EDITOR = "/usr/bin/ex"
DEFAULT_VISUAL = "/usr/bin/vi"
DEAD_LETTER_NAME = "dead.letter"
# Not sent because the user said so: not 0 (which means "sent"), and no sysexits code
# fits a deliberate abort; s-nail also exits non-zero.
ABORTED_EXIT_STATUS = 1
# One typed line; a terminal line discipline stops far earlier (4095 on Linux).
MAX_LINE_BYTES = 64 * 1024

HELP = """\
-------------------- ~ESCAPES (mailhop) --------------------
~s subject     set the subject            ~t addresses   add To recipients
~c addresses   add Cc recipients          ~b addresses   add Bcc recipients
~r file        read a file in (also ~<)   ~p             print the message so far
~e             edit the message ($EDITOR) ~v             edit it with $VISUAL
~q             abort, keep dead.letter    ~x             abort, discard
~.             end the message and send   ~~text         a line that starts with ~
~?             this list
-------------------------------------------------------------
"""


class EscapeKind(enum.Enum):
    SUBJECT = "s"
    TO = "t"
    CC = "c"
    BCC = "b"
    READ_FILE = "r"
    PRINT = "p"
    EDIT = "e"
    VISUAL = "v"
    ABORT_SAVE = "q"
    ABORT_DISCARD = "x"
    END = "."
    HELP = "?"
    UNKNOWN = ""


# ``~<file`` is bsd-mailx's other spelling of ``~r``.
_KINDS = {kind.value: kind for kind in EscapeKind if kind.value} | {"<": EscapeKind.READ_FILE}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Escape:
    kind: EscapeKind
    argument: str  # the rest of the line, stripped
    letter: str  # as typed (for "unknown escape ~z")


def parse_escape(line: str, escape: str) -> Escape | str | None:
    """What a body line is: an ``Escape``, a literal line (``~~x`` -> "~x"), or None (text).

    ``line`` has no line end. An empty ``escape`` turns escapes off.
    """
    if not escape or not line.startswith(escape) or len(line) < len(escape) + 1:
        return None
    letter = line[len(escape)]
    if letter == escape:
        return line[len(escape) :]
    kind = _KINDS.get(letter, EscapeKind.UNKNOWN)
    return Escape(kind=kind, argument=line[len(escape) + 1 :].strip(), letter=letter)


class Aborted(Exception):
    """``~q`` or ``~x``: the message is not sent (the dead letter, if any, is written)."""


@dataclasses.dataclass(kw_only=True)
class Draft:
    """The message as composed so far; escapes change it."""

    subject: str | None
    to: list[str]
    cc: list[str]
    bcc: list[str]
    body: bytearray = dataclasses.field(default_factory=bytearray)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Terminal:
    """Where the escapes read and write, and what they may use of the process."""

    input: BinaryIO
    output: TextIO
    environ: Mapping[str, str]
    home: str
    escape: str = DEFAULT_ESCAPE
    dead_letter: str | None = None  # None: $DEAD, else HOME/dead.letter
    # Raises MailhopError for a value that cannot become a header (what, value).
    check_addresses: Callable[[str, str], object] = lambda _value, _what: None
    check_subject: Callable[[str], object] = lambda _value: None
    max_body_bytes: int = 10 * 1024 * 1024


def collect(draft: Draft, terminal: Terminal) -> Draft:
    """Read body lines from ``terminal`` until ``~.`` or end of file, obeying escapes.

    Raises:
        Aborted: ``~q`` (after writing the dead letter) or ``~x``.
        MailhopError: the body grew beyond ``max_body_bytes`` (65).
    """
    while True:
        raw = terminal.input.readline(MAX_LINE_BYTES)
        if not raw:
            return draft
        text = raw.decode("utf-8", "surrogateescape")
        line = text.rstrip("\r\n") if text.endswith("\n") else text
        parsed = parse_escape(line, terminal.escape)
        if parsed is None:
            _append(draft, raw, terminal)
        elif isinstance(parsed, str):
            _append(draft, (parsed + "\n").encode("utf-8", "surrogateescape"), terminal)
        elif parsed.kind is EscapeKind.END:
            return draft
        else:
            _obey(parsed, draft, terminal)


def _append(draft: Draft, data: bytes, terminal: Terminal) -> None:
    from mailhop.errors import ExitCode  # noqa: PLC0415

    if len(draft.body) + len(data) > terminal.max_body_bytes:
        raise MailhopError(
            f"the message body is larger than {terminal.max_body_bytes} bytes",
            exit_code=ExitCode.DATAERR,
        )
    draft.body += data


def _obey(escape: Escape, draft: Draft, terminal: Terminal) -> None:
    kind, argument, say = escape.kind, escape.argument, terminal.output.write
    try:
        if kind is EscapeKind.SUBJECT:
            terminal.check_subject(argument)
            draft.subject = argument
        elif kind in (EscapeKind.TO, EscapeKind.CC, EscapeKind.BCC):
            if argument:
                terminal.check_addresses(argument, f"~{kind.value}")
                {EscapeKind.TO: draft.to, EscapeKind.CC: draft.cc, EscapeKind.BCC: draft.bcc}[
                    kind
                ].append(argument)
        elif kind is EscapeKind.READ_FILE:
            _read_file(argument, draft, terminal)
        elif kind is EscapeKind.PRINT:
            say(_printed(draft))
        elif kind in (EscapeKind.EDIT, EscapeKind.VISUAL):
            _edit(draft, terminal, visual=kind is EscapeKind.VISUAL)
        elif kind is EscapeKind.ABORT_SAVE:
            _save_dead_letter(draft, terminal)
            raise Aborted
        elif kind is EscapeKind.ABORT_DISCARD:
            raise Aborted
        elif kind is EscapeKind.HELP:
            say(HELP.replace("~", terminal.escape))
        else:
            say(f"Unknown tilde escape: {terminal.escape}{escape.letter}\n")
    except MailhopError as error:
        # One refused escape costs that escape, not the message being written.
        say(f"{error}\n")
    terminal.output.flush()


def _printed(draft: Draft) -> str:
    fields = [
        ("To", draft.to),
        ("Subject", [draft.subject] if draft.subject else []),
        ("Cc", draft.cc),
        ("Bcc", draft.bcc),
    ]
    head = "".join(f"{name}: {', '.join(values)}\n" for name, values in fields if values)
    body = bytes(draft.body).decode("utf-8", "replace")
    if body and not body.endswith("\n"):
        body += "\n"
    return f"-------\nMessage contains:\n{head}\n{body}(continue)\n"


def _read_file(argument: str, draft: Draft, terminal: Terminal) -> None:
    from mailhop.errors import ExitCode  # noqa: PLC0415

    if not argument:
        terminal.output.write("~r: name the file to read\n")
        return
    path = os.path.expanduser(argument)
    try:
        with open(path, "rb") as file:
            data = file.read(terminal.max_body_bytes + 1)
    except OSError as error:
        raise MailhopError(
            f"{argument}: {error.strerror or error}", exit_code=ExitCode.NOINPUT
        ) from error
    if data and not data.endswith(b"\n"):
        data += b"\n"
    _append(draft, data, terminal)
    lines = data.count(b"\n")
    terminal.output.write(f'"{argument}" {lines}/{len(data)}\n')


def _edit(draft: Draft, terminal: Terminal, *, visual: bool) -> None:
    """Hand the body to the editor and take back what it saved (bsd-mailx's ~e/~v)."""
    from mailhop.errors import ExitCode  # noqa: PLC0415

    variable = "VISUAL" if visual else "EDITOR"
    command = terminal.environ.get(variable) or (DEFAULT_VISUAL if visual else DEFAULT_EDITOR)
    try:
        argv = shlex.split(command)
    except ValueError as error:
        raise MailhopError(f"${variable}: {error}", exit_code=ExitCode.CONFIG) from error
    if not argv:
        raise MailhopError(f"${variable} is empty", exit_code=ExitCode.CONFIG)
    # mkdtemp makes the directory 0700 and the file is created 0600 in it: nobody else
    # reads the draft or swaps the file under the editor.
    with tempfile.TemporaryDirectory(prefix="mailhop-draft-") as directory:
        path = os.path.join(directory, "message")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(bytes(draft.body))
        try:
            # The editor's argv comes from the user's own environment; no shell.
            finished = subprocess.run([*argv, path], check=False)
        except OSError as error:
            raise MailhopError(
                f"cannot run {argv[0]}: {error.strerror or error}", exit_code=ExitCode.UNAVAILABLE
            ) from error
        if finished.returncode != 0:
            terminal.output.write(
                f"{argv[0]} exited with status {finished.returncode}; message unchanged\n"
            )
        else:
            with open(path, "rb") as file:
                edited = file.read(terminal.max_body_bytes + 1)
            draft.body = bytearray()
            _append(draft, edited, terminal)
    terminal.output.write("(continue)\n")


def _save_dead_letter(draft: Draft, terminal: Terminal) -> None:
    from mailhop.store.durable import write_atomically  # noqa: PLC0415

    path = (
        terminal.dead_letter
        or terminal.environ.get("DEAD")
        or os.path.join(terminal.home, DEAD_LETTER_NAME)
    )
    body = bytes(draft.body)
    write_atomically(path, [body])  # 0600: an unsent letter is private
    lines = body.count(b"\n")
    terminal.output.write(f"{path} {lines}/{len(body)}\n")
