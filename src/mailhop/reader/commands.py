"""The command grammar of the mail reader: a pure parser, no I/O (POSIX mailx, mailx.md §2.4).

A command line is ``NAME [message list] [argument]``; a bare message list (``3``) means
``print``, an empty line means ``next``. Names may be abbreviated the way POSIX lists
them (``p``, ``d``, ``s`` ...); the table below holds every accepted spelling so no
prefix rule has to guess.

Message lists (POSIX "Message lists", mailx.md §2.4)::

    3   2-5   .   $   ^   *          numbers, ranges, current, last, first, all
    :n :u :r :o :d                   new, unread, read now, old (read earlier), deleted
    /text                            subject contains text (case-insensitive)
    word                             sender address contains word

The parser returns what was typed (``ParsedCommand`` with ``Selector`` values); the
session resolves selectors against the folder.
"""

from __future__ import annotations

import dataclasses
import enum

from mailhop.reader.errors import CommandError

# A command line longer than this is not typed by a person; refusing it keeps every
# later step (searching, echoing the error) bounded.
MAX_COMMAND_LINE_CHARACTERS = 4096


class Command(enum.Enum):
    PRINT = "print"
    PRINT_ALL_HEADERS = "Print"
    NEXT = "next"
    PREVIOUS = "-"
    HEADERS = "headers"
    SCROLL = "z"
    FROM = "from"
    DELETE = "delete"
    UNDELETE = "undelete"
    DELETE_AND_PRINT = "dp"
    SAVE = "save"
    COPY = "copy"
    WRITE = "write"
    REPLY_ALL = "reply"
    REPLY_SENDER = "Reply"
    MAIL = "mail"
    PRESERVE = "preserve"
    MBOX = "mbox"
    TOP = "top"
    SIZE = "size"
    FOLDER = "folder"
    SET = "set"
    UNSET = "unset"
    SHELL = "!"
    HELP = "help"
    QUIT = "quit"
    EXIT = "exit"
    CURRENT = "="
    ATTACHMENTS = "attachments"
    SAVE_ATTACHMENT = "saveattachment"


class Arguments(enum.Enum):
    """What follows the command name."""

    NONE = "none"
    MESSAGES = "messages"  # an optional message list
    MESSAGES_AND_FILE = "messages+file"  # optional list, then a file name (last word)
    TEXT = "text"  # the rest of the line, as typed


@dataclasses.dataclass(frozen=True, kw_only=True)
class CommandSpec:
    command: Command
    arguments: Arguments
    summary: str


_TABLE: tuple[tuple[tuple[str, ...], Command, Arguments, str], ...] = (
    (("p", "print", "t", "type"), Command.PRINT, Arguments.MESSAGES, "show messages"),
    (
        ("P", "Print", "T", "Type"),
        Command.PRINT_ALL_HEADERS,
        Arguments.MESSAGES,
        "show messages with all headers",
    ),
    (("n", "next", "+"), Command.NEXT, Arguments.MESSAGES, "show the next message"),
    (("-",), Command.PREVIOUS, Arguments.NONE, "show the previous message"),
    (("h", "headers"), Command.HEADERS, Arguments.MESSAGES, "header summary page"),
    (("z",), Command.SCROLL, Arguments.TEXT, "next (z) or previous (z-) summary page"),
    (("f", "from"), Command.FROM, Arguments.MESSAGES, "summary lines of messages"),
    (("d", "delete"), Command.DELETE, Arguments.MESSAGES, "delete messages"),
    (("u", "undelete"), Command.UNDELETE, Arguments.MESSAGES, "undelete messages"),
    (("dp", "dt"), Command.DELETE_AND_PRINT, Arguments.MESSAGES, "delete, then show the next"),
    (
        ("s", "save"),
        Command.SAVE,
        Arguments.MESSAGES_AND_FILE,
        "append messages to FILE (default ~/mbox)",
    ),
    (("c", "copy"), Command.COPY, Arguments.MESSAGES_AND_FILE, "like save, not marked saved"),
    (("w", "write"), Command.WRITE, Arguments.MESSAGES_AND_FILE, "append message bodies to FILE"),
    (
        ("r", "reply", "respond"),
        Command.REPLY_ALL,
        Arguments.MESSAGES,
        "reply to sender and all recipients",
    ),
    (
        ("R", "Reply", "Respond"),
        Command.REPLY_SENDER,
        Arguments.MESSAGES,
        "reply to the sender only",
    ),
    (("m", "mail"), Command.MAIL, Arguments.TEXT, "write a new message to ADDRESS..."),
    (
        ("pre", "preserve", "ho", "hold"),
        Command.PRESERVE,
        Arguments.MESSAGES,
        "keep messages in the mailbox",
    ),
    (("mb", "mbox"), Command.MBOX, Arguments.MESSAGES, "move messages to ~/mbox at quit"),
    (("to", "top"), Command.TOP, Arguments.MESSAGES, "first lines of messages (toplines)"),
    (("si", "size"), Command.SIZE, Arguments.MESSAGES, "sizes of messages"),
    (("fi", "file", "fold", "folder"), Command.FOLDER, Arguments.TEXT, "show or switch the folder"),
    (("se", "set"), Command.SET, Arguments.TEXT, "set NAME[=VALUE], or list variables"),
    (("uns", "unset"), Command.UNSET, Arguments.TEXT, "unset NAME"),
    (("!", "sh", "shell"), Command.SHELL, Arguments.TEXT, "run a shell command"),
    (("?", "help"), Command.HELP, Arguments.NONE, "this list"),
    (("q", "quit"), Command.QUIT, Arguments.NONE, "leave, applying deletions and moves"),
    (("x", "ex", "exit", "xit"), Command.EXIT, Arguments.NONE, "leave, changing nothing"),
    (("=",), Command.CURRENT, Arguments.NONE, "number of the current message"),
    (("att", "attachments"), Command.ATTACHMENTS, Arguments.MESSAGES, "list attachments"),
    (
        ("sa", "saveattachment"),
        Command.SAVE_ATTACHMENT,
        Arguments.TEXT,
        "saveattachment [MSG] N FILE: save attachment N",
    ),
)
_SPECS = tuple(
    (names, CommandSpec(command=command, arguments=arguments, summary=summary))
    for names, command, arguments, summary in _TABLE
)

SPELLINGS: dict[str, CommandSpec] = {name: spec for names, spec in _SPECS for name in names}
HELP_LINES: tuple[tuple[str, str], ...] = tuple(
    ("/".join(names), spec.summary) for names, spec in _SPECS
)


class StateFilter(enum.Enum):
    NEW = ":n"
    UNREAD = ":u"
    READ = ":r"
    OLD = ":o"
    DELETED = ":d"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Number:
    value: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class Range:
    first: int
    last: int


class Special(enum.Enum):
    CURRENT = "."
    FIRST = "^"
    LAST = "$"
    ALL = "*"


@dataclasses.dataclass(frozen=True, kw_only=True)
class State:
    state: StateFilter


@dataclasses.dataclass(frozen=True, kw_only=True)
class SubjectSearch:
    text: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class AddressSearch:
    text: str


Selector = Number | Range | Special | State | SubjectSearch | AddressSearch


@dataclasses.dataclass(frozen=True, kw_only=True)
class ParsedCommand:
    """One command line: the command, its message list (empty: the default), its text."""

    command: Command
    selectors: tuple[Selector, ...] = ()
    argument: str = ""  # the file name (MESSAGES_AND_FILE) or the rest (TEXT)


def parse_command(line: str) -> ParsedCommand:
    """Parse one command line typed at the prompt.

    Raises:
        CommandError: unknown command, bad message list, or a control character.
    """
    if len(line) > MAX_COMMAND_LINE_CHARACTERS:
        raise CommandError(f"command line longer than {MAX_COMMAND_LINE_CHARACTERS} characters")
    if any(character in line for character in "\r\n\0"):
        raise CommandError("a command line cannot hold CR, LF or NUL")
    text = line.strip()
    if not text:
        return ParsedCommand(command=Command.NEXT)
    if text.startswith("!"):
        return ParsedCommand(command=Command.SHELL, argument=text[1:].strip())
    name, rest = _split_name(text)
    spec = SPELLINGS.get(name)
    if spec is None:
        if is_number(name[0]) or name[0] in ".$^*:/":
            # A bare message list: print those messages (POSIX).
            return ParsedCommand(command=Command.PRINT, selectors=parse_message_list(text))
        raise CommandError(f'Unknown command: "{name}"; type ? for the list')
    if spec.arguments is Arguments.NONE:
        if rest:
            raise CommandError(f"{name} takes no arguments")
        return ParsedCommand(command=spec.command)
    if spec.arguments is Arguments.TEXT:
        return ParsedCommand(command=spec.command, argument=rest)
    if spec.arguments is Arguments.MESSAGES:
        return ParsedCommand(command=spec.command, selectors=parse_message_list(rest))
    words = rest.split()
    if not words:
        return ParsedCommand(command=spec.command)
    # POSIX: the last word is the file; everything before it is the message list.
    file_name = words[-1]
    return ParsedCommand(
        command=spec.command,
        selectors=parse_message_list(" ".join(words[:-1])),
        argument=file_name,
    )


def _split_name(text: str) -> tuple[str, str]:
    """``"d3"`` -> ``("d", "3")``; ``"save 2 f"`` -> ``("save", "2 f")``; ``"+"`` alone."""
    if text[0] in "+-=?":
        return text[0], text[1:].strip()
    index = 0
    while index < len(text) and text[index].isalpha():
        index += 1
    if index == 0:
        word, _, rest = text.partition(" ")
        return word, rest.strip()
    return text[:index], text[index:].strip()


def parse_message_list(text: str) -> tuple[Selector, ...]:
    """Parse a message list (see the module docstring); empty text gives ``()``.

    Raises:
        CommandError: a word that is not a message specification.
    """
    selectors: list[Selector] = []
    for word in text.split():
        selectors.append(_selector(word))
    return tuple(selectors)


def _selector(word: str) -> Selector:
    if is_number(word):
        return Number(value=_message_number(word))
    first, dash, last = word.partition("-")
    if dash and is_number(first) and is_number(last):
        low, high = _message_number(first), _message_number(last)
        if high < low:
            raise CommandError(f"bad range {word}: {high} is before {low}")
        return Range(first=low, last=high)
    for special in Special:
        if word == special.value:
            return special
    for state in StateFilter:
        if word == state.value:
            return State(state=state)
    if word.startswith(":"):
        raise CommandError(f"unknown message state {word}; use :n :u :r :o or :d")
    if word.startswith("/"):
        if len(word) == 1:
            raise CommandError("/ needs a text to search the subjects for")
        return SubjectSearch(text=word[1:])
    return AddressSearch(text=word)


def is_number(word: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts "²", which int() refuses."""
    return word.isascii() and word.isdigit()


def _message_number(word: str) -> int:
    number = int(word)
    if number < 1:
        raise CommandError(f"there is no message {number}; messages count from 1")
    return number
