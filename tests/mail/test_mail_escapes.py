"""Tilde escapes while ``mail`` reads a body, driven through a real pseudo-terminal.

mailhop's ``mail`` and the real bsd-mailx (Debian's ``mail``) get the same keystrokes
with the same ``set sendmail=CAPTURE`` in ~/.mailrc; CAPTURE is a small program that
stores its argv and standard input, so the message each would send is compared where
the two should agree: recipients, subject, body. ``~q`` leaves the same dead.letter
as bsd-mailx. The editor escapes run a real editor program (a script) without a shell.
Off a terminal escapes are off unless ``-~`` (s-nail) asks for them; there, typed
values with a CR go through the header-injection checks.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.mail.support import MAIL_TIMEOUT_SECONDS, mail_environment
from tests.reader.reader_support import EXPECT_TIMEOUT_SECONDS

pexpect = pytest.importorskip("pexpect")

BSD_MAILX = "/usr/bin/bsd-mailx"
# The stand-in sendmail: argv and message, as JSON and bytes, into $CAPTURE(.json).
CAPTURE_PROGRAM = """\
import json, os, sys
data = sys.stdin.buffer.read()
with open(os.environ["CAPTURE"], "wb") as file:
    file.write(data)
with open(os.environ["CAPTURE"] + ".json", "w") as file:
    json.dump(sys.argv[1:], file)
"""
# An editor: checks that the draft is private, then appends a line to it.
EDITOR_PROGRAM = """\
import os, stat, sys
path = sys.argv[-1]
assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, oct(os.stat(path).st_mode)
assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
with open(path, "a") as file:
    file.write(sys.argv[1] + "\\n")
"""


@pytest.fixture
def setup(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose ~/.mailrc sends to the capture program; and HOME."""
    environment = mail_environment(tmp_path, TERM="dumb", LC_ALL="C.UTF-8")
    home = Path(environment["HOME"])
    capture = tmp_path / "capture.py"
    capture.write_text(CAPTURE_PROGRAM)
    capture.chmod(0o755)
    wrapper = tmp_path / "capture"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {capture} "$@"\n')
    wrapper.chmod(0o755)
    (home / ".mailrc").write_text(f"set sendmail={wrapper}\n")
    environment["CAPTURE"] = str(tmp_path / "captured")
    return environment, home


def spawn(program: list[str], environment: dict[str, str], *arguments: str) -> Any:
    return pexpect.spawn(
        program[0],
        [*program[1:], *arguments],
        env=environment,
        cwd=environment["HOME"],
        timeout=EXPECT_TIMEOUT_SECONDS,
        encoding="utf-8",
        dimensions=(24, 100),
    )


MAILHOP = [sys.executable, "-m", "mailhop", "mail"]


def type_lines(child: Any, lines: list[str]) -> None:
    for line in lines:
        child.sendline(line)


def finish(child: Any) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return int(child.exitstatus)


def captured(environment: dict[str, str]) -> tuple[list[str], email.message.EmailMessage]:
    path = Path(environment["CAPTURE"])
    argv = json.loads(Path(f"{path}.json").read_text())
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    return argv, message


def addresses(message: email.message.EmailMessage, name: str) -> set[str]:
    return {address for _name, address in email.utils.getaddresses(message.get_all(name, []))}


def envelope(argv: list[str], message: email.message.EmailMessage) -> set[str]:
    """Who gets it: the operands after ``--``, or with ``-t`` the To/Cc/Bcc headers."""
    if "-t" in argv:
        return addresses(message, "To") | addresses(message, "Cc") | addresses(message, "Bcc")
    return set(argv[argv.index("--") + 1 :])


def need_bsd_mailx() -> None:
    if shutil.which(BSD_MAILX) is None:
        pytest.skip("bsd-mailx is not installed (scripts/lab.sh installs it)")


SESSION = [
    "hello",
    "~t carol@example.test",
    "~c dave@example.test, eve@example.test",
    "~b erin@example.test",
    "~s new subject",
    "~~tilde line",
    "~r included.txt",
    "after",
]


def test_escapes_make_the_same_message_as_bsd_mailx(
    setup: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    need_bsd_mailx()
    environment, home = setup
    (home / "included.txt").write_text("included one\nincluded two\n")
    results = {}
    for name, program in (("mailhop", MAILHOP), ("bsd-mailx", [BSD_MAILX])):
        child = spawn(program, environment, "-s", "first subject", "bob@example.test")
        type_lines(child, SESSION)
        child.sendline("~p")
        child.expect("Message contains:")
        child.expect("Subject: new subject")
        child.expect("~tilde line")
        child.expect(r"\(continue\)")
        child.sendline("~.")
        assert finish(child) == 0, name
        results[name] = captured(environment)
        Path(environment["CAPTURE"]).unlink()
    ours_argv, ours = results["mailhop"]
    theirs_argv, theirs = results["bsd-mailx"]
    everyone = {f"{who}@example.test" for who in ("bob", "carol", "dave", "eve", "erin")}
    assert envelope(ours_argv, ours) == envelope(theirs_argv, theirs) == everyone
    for name in ("To", "Cc"):
        assert addresses(ours, name) == addresses(theirs, name), name
    assert "Bcc" not in ours  # never shown to the recipients
    assert ours["Subject"] == theirs["Subject"] == "new subject"
    body = "hello\n~tilde line\nincluded one\nincluded two\nafter\n"
    assert ours.get_content() == theirs.get_content() == body


@pytest.mark.parametrize("escape", ["~q", "~x"])
def test_abort_keeps_dead_letter_like_bsd_mailx_or_discards(
    setup: tuple[dict[str, str], Path], escape: str
) -> None:
    need_bsd_mailx()
    environment, home = setup
    dead = home / "dead.letter"
    letters = {}
    for name, program in (("mailhop", MAILHOP), ("bsd-mailx", [BSD_MAILX])):
        dead.unlink(missing_ok=True)
        child = spawn(program, environment, "-s", "subject", "bob@example.test")
        type_lines(child, ["first line", "~~second", escape])
        status = finish(child)
        assert not Path(environment["CAPTURE"]).exists(), f"{name} sent an aborted message"
        letters[name] = dead.read_bytes() if dead.exists() else None
        if name == "mailhop":
            # Not sent: not 0 (mailhop's 0 means the mail went out; s-nail says 4).
            assert status == 1
            if escape == "~q":
                assert dead.stat().st_mode & 0o777 == 0o600
    assert letters["mailhop"] == letters["bsd-mailx"]
    if escape == "~q":
        assert letters["mailhop"] == b"first line\n~second\n"
    else:
        assert letters["mailhop"] is None


@pytest.mark.parametrize(("letter", "variable"), [("e", "EDITOR"), ("v", "VISUAL")])
def test_editor_runs_without_a_shell_on_a_private_file(
    setup: tuple[dict[str, str], Path], tmp_path: Path, letter: str, variable: str
) -> None:
    environment, _home = setup
    editor = tmp_path / "my editor.py"
    editor.write_text(EDITOR_PROGRAM)
    # Quoted as a shell user would; split with shlex, never given to a shell (a shell
    # would expand the $HOME below).
    environment[variable] = f"{sys.executable} '{editor}' 'edited by $HOME'"
    child = spawn(MAILHOP, environment, "-s", "edit", "bob@example.test")
    type_lines(child, ["before", f"~{letter}"])
    child.expect(r"\(continue\)")
    type_lines(child, ["typed after", "~."])
    assert finish(child) == 0
    _argv, message = captured(environment)
    assert message.get_content() == "before\nedited by $HOME\ntyped after\n"


def test_help_unknown_escape_and_refused_address_on_a_terminal(
    setup: tuple[dict[str, str], Path],
) -> None:
    environment, _home = setup
    child = spawn(MAILHOP, environment, "-s", "s", "bob@example.test")
    child.sendline("~?")
    child.expect("~x +abort, discard")
    child.sendline("~z")
    child.expect("Unknown tilde escape: ~z")
    child.sendline("~t |/bin/evil")
    child.expect("refusing the pipe command recipient")
    child.sendline("~r /nonexistent/file")
    child.expect("No such file")
    type_lines(child, ["body", "~."])
    assert finish(child) == 0
    argv, message = captured(environment)
    assert argv[argv.index("--") + 1 :] == ["bob@example.test"]
    assert message.get_content() == "body\n"


def run_piped(
    environment: dict[str, str], body: bytes, *arguments: str
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*MAILHOP, *arguments],
        input=body,
        capture_output=True,
        timeout=MAIL_TIMEOUT_SECONDS,
        env=environment,
        check=False,
    )


def test_off_a_terminal_tilde_lines_are_text(setup: tuple[dict[str, str], Path]) -> None:
    environment, _home = setup
    body = b"line\n~s not a subject\n~.\n~q\nend\n"
    done = run_piped(environment, body, "-s", "kept", "bob@example.test")
    assert done.returncode == 0, done.stderr
    _argv, message = captured(environment)
    assert message["Subject"] == "kept"
    assert message.get_content().encode() == body


def test_dash_tilde_enables_escapes_and_typed_values_are_checked(
    setup: tuple[dict[str, str], Path],
) -> None:
    environment, _home = setup
    body = (
        b"one\n"
        b"~s evil\rBcc: mallory@example.test\n"  # a CR: header injection, refused
        b"~t carol@example.test\rX-Injected: 1\n"
        b"~t dave@example.test\n"
        b"~s fine\n"
        b"two\n"
        b"~.\n"
        b"not part of the message\n"
    )
    done = run_piped(environment, body, "-~", "-s", "orig", "bob@example.test")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(b"contains the control character '\\r'") == 2, done.stdout
    argv, message = captured(environment)
    assert argv[argv.index("--") + 1 :] == ["bob@example.test", "dave@example.test"]
    assert message["Subject"] == "fine"
    assert "X-Injected" not in message and "mallory" not in str(message)
    assert message.get_content() == "one\ntwo\n"


def test_escape_variable_changes_the_character(setup: tuple[dict[str, str], Path]) -> None:
    environment, _home = setup
    body = b"~s literal\n!s chosen\n!!bang\n!.\n"
    done = run_piped(environment, body, "-~", "-S", "escape=!", "-s", "x", "bob@example.test")
    assert done.returncode == 0, done.stderr
    _argv, message = captured(environment)
    assert message["Subject"] == "chosen"
    assert message.get_content() == "~s literal\n!bang\n"
