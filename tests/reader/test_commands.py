"""The command grammar and message lists, as a pure parser (no folder, no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailhop.reader.commands import (
    AddressSearch,
    Command,
    Number,
    ParsedCommand,
    Range,
    Special,
    State,
    StateFilter,
    SubjectSearch,
    parse_command,
)
from mailhop.reader.errors import CommandError


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("", ParsedCommand(command=Command.NEXT)),
        ("p", ParsedCommand(command=Command.PRINT)),
        ("type 1-3", ParsedCommand(command=Command.PRINT, selectors=(Range(first=1, last=3),))),
        ("3", ParsedCommand(command=Command.PRINT, selectors=(Number(value=3),))),
        ("d3", ParsedCommand(command=Command.DELETE, selectors=(Number(value=3),))),
        ("d *", ParsedCommand(command=Command.DELETE, selectors=(Special.ALL,))),
        ("f $ .", ParsedCommand(command=Command.FROM, selectors=(Special.LAST, Special.CURRENT))),
        ("h :n", ParsedCommand(command=Command.HEADERS, selectors=(State(state=StateFilter.NEW),))),
        (
            "d :u",
            ParsedCommand(command=Command.DELETE, selectors=(State(state=StateFilter.UNREAD),)),
        ),
        ("p /cron", ParsedCommand(command=Command.PRINT, selectors=(SubjectSearch(text="cron"),))),
        ("p alice", ParsedCommand(command=Command.PRINT, selectors=(AddressSearch(text="alice"),))),
        (
            "s 1 2 ~/saved",
            ParsedCommand(
                command=Command.SAVE,
                selectors=(Number(value=1), Number(value=2)),
                argument="~/saved",
            ),
        ),
        ("s saved", ParsedCommand(command=Command.SAVE, argument="saved")),
        ("s", ParsedCommand(command=Command.SAVE)),
        (
            "c 2 out",
            ParsedCommand(command=Command.COPY, selectors=(Number(value=2),), argument="out"),
        ),
        (
            "w . body.txt",
            ParsedCommand(command=Command.WRITE, selectors=(Special.CURRENT,), argument="body.txt"),
        ),
        ("R", ParsedCommand(command=Command.REPLY_SENDER)),
        ("r 2", ParsedCommand(command=Command.REPLY_ALL, selectors=(Number(value=2),))),
        ("Type", ParsedCommand(command=Command.PRINT_ALL_HEADERS)),
        ("m bob@example.test", ParsedCommand(command=Command.MAIL, argument="bob@example.test")),
        ("pre 2", ParsedCommand(command=Command.PRESERVE, selectors=(Number(value=2),))),
        ("hold", ParsedCommand(command=Command.PRESERVE)),
        ("mb", ParsedCommand(command=Command.MBOX)),
        ("top 1", ParsedCommand(command=Command.TOP, selectors=(Number(value=1),))),
        ("size", ParsedCommand(command=Command.SIZE)),
        ("fi +work", ParsedCommand(command=Command.FOLDER, argument="+work")),
        ("file", ParsedCommand(command=Command.FOLDER)),
        ("set hold toplines=3", ParsedCommand(command=Command.SET, argument="hold toplines=3")),
        ("unset hold", ParsedCommand(command=Command.UNSET, argument="hold")),
        ("!ls -l", ParsedCommand(command=Command.SHELL, argument="ls -l")),
        ("?", ParsedCommand(command=Command.HELP)),
        ("help", ParsedCommand(command=Command.HELP)),
        ("+", ParsedCommand(command=Command.NEXT)),
        ("-", ParsedCommand(command=Command.PREVIOUS)),
        ("z-", ParsedCommand(command=Command.SCROLL, argument="-")),
        ("dp", ParsedCommand(command=Command.DELETE_AND_PRINT)),
        ("q", ParsedCommand(command=Command.QUIT)),
        ("xit", ParsedCommand(command=Command.EXIT)),
        ("x", ParsedCommand(command=Command.EXIT)),
        ("=", ParsedCommand(command=Command.CURRENT)),
    ],
)
def test_command_lines(line: str, expected: ParsedCommand) -> None:
    assert parse_command(line) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("frobnicate", 'Unknown command: "frobnicate"'),
        ("p 5-2", "bad range 5-2"),
        ("p 0", "messages count from 1"),
        ("p :z", "unknown message state :z"),
        ("p /", "/ needs a text"),
        ("q now", "q takes no arguments"),
        ("p 1\r\nd *", "CR, LF or NUL"),
        ("s 1 a\0b", "CR, LF or NUL"),
        ("p " + "1 " * 3000, "longer than"),
    ],
)
def test_bad_lines_are_clear_errors(line: str, message: str) -> None:
    with pytest.raises(CommandError, match=message.replace("*", r"\*")):
        parse_command(line)


@given(st.text(max_size=200))
def test_any_line_parses_or_is_a_command_error(line: str) -> None:
    try:
        parsed = parse_command(line)
    except CommandError:
        return
    assert isinstance(parsed.command, Command)
