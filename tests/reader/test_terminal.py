"""The acceptance of issue #7, driven through a real pseudo-terminal (pexpect).

list, read, delete, save, reply, quit and exit on a real mbox; the mailbox contents
after ``quit`` and ``exit`` are compared with what the real bsd-mailx (Debian's
``mail``) leaves for the same commands on the same mailbox; mail delivered while the
reader is open survives ``quit``; a subject made of terminal escape sequences reaches
the terminal escaped.
"""

from __future__ import annotations

import email
import email.policy
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhop.store.mbox import append_to_mbox
from tests.deliver.deliver_support import write_msmtprc
from tests.deliver.scripted_server import ReferenceServer
from tests.reader.reader_support import (
    READER_TIMEOUT_SECONDS,
    message,
    reader_environment,
    run_reader,
    sample_mbox,
    spawn_reader,
    subjects,
)

pexpect = pytest.importorskip("pexpect")

PROMPT = "\\? "


def deliver_while_open(mailbox: Path, entry: bytes) -> None:
    """Deliver as local delivery does: ``store.mbox`` appends under fcntl + dotlock."""
    envelope, _, data = entry.partition(b"\n")
    append_to_mbox(str(mailbox), [data.removesuffix(b"\n")], sender=envelope.split()[1].decode())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    directory = tmp_path / "home"
    directory.mkdir()
    return directory


@pytest.fixture
def inbox(home: Path) -> Path:
    path = home / "inbox"
    path.write_bytes(sample_mbox())
    return path


def finish(child: object) -> int:
    child.expect(pexpect.EOF)  # type: ignore[attr-defined]
    child.close()  # type: ignore[attr-defined]
    return int(child.exitstatus)  # type: ignore[attr-defined]


def test_list_read_delete_save_quit_on_a_terminal(home: Path, inbox: Path) -> None:
    child = spawn_reader(home, inbox)
    child.expect("3 messages 3 new")
    child.expect("First message")
    child.expect("Third")
    child.expect(PROMPT)
    child.sendline("p 1")
    child.expect("hello one")
    child.expect(PROMPT)
    child.sendline("d 2")
    child.expect(PROMPT)
    child.sendline("s 3 saved")
    child.expect(r"\[New file\]")
    child.expect(PROMPT)
    child.sendline("h")
    child.expect(r"[ >]R +1 alice@example.test")
    child.expect(r"[ >]S +3 carol@example.test")
    child.expect(PROMPT)
    child.sendline("q")
    child.expect("Saved 1 message in")
    assert finish(child) == 0
    # POSIX quit in the system mailbox: read -> ~/mbox, deleted and saved -> gone.
    assert inbox.read_bytes() == b""
    assert subjects(home / "mbox") == ["First message"]
    assert subjects(home / "saved") == ["Third"]
    # The mboxrd quoting survived the move: the body line is quoted again on disk.
    assert b"\n>From the body\n" in (home / "mbox").read_bytes()


def test_exit_leaves_the_mailbox_byte_for_byte(home: Path, inbox: Path) -> None:
    before = inbox.read_bytes()
    child = spawn_reader(home, inbox)
    child.expect(PROMPT)
    child.sendline("p 1")
    child.expect("hello one")
    child.expect(PROMPT)
    child.sendline("d 2")
    child.expect(PROMPT)
    child.sendline("x")
    assert finish(child) == 0
    assert inbox.read_bytes() == before
    assert not (home / "mbox").exists()


def test_escape_sequences_in_a_subject_reach_the_terminal_escaped(home: Path, inbox: Path) -> None:
    child = spawn_reader(home, inbox)
    child.expect(PROMPT)
    summary = child.before
    child.sendline("p 2")
    child.expect("hello two")
    shown = child.before
    child.expect(PROMPT)
    child.sendline("x")
    assert finish(child) == 0
    for output in (summary, shown):
        assert b"^[]0;PWNED^G^[[2J" in output
        text = output.decode("utf-8")
        # No ESC, BEL or C1 control (U+0080-U+009F) reached the terminal.
        assert not [c for c in text if c in "\x1b\x07" or 0x80 <= ord(c) <= 0x9F]


def test_mail_delivered_while_the_reader_is_open_survives_quit(home: Path, inbox: Path) -> None:
    child = spawn_reader(home, inbox)
    child.expect(PROMPT)
    child.sendline("d 1-3")
    child.expect(PROMPT)
    # The reader is idle at its prompt: a delivery agent appends under the lock.
    deliver_while_open(inbox, message(4, "dave@example.test", "Arrived late", "late body"))
    child.sendline("q")
    assert finish(child) == 0
    assert subjects(inbox) == ["Arrived late"]
    assert b"Status:" not in inbox.read_bytes()  # unseen by the reader: still new


def test_new_mail_is_noticed_at_the_next_prompt(home: Path, inbox: Path) -> None:
    child = spawn_reader(home, inbox)
    child.expect(PROMPT)
    deliver_while_open(inbox, message(4, "dave@example.test", "Arrived late", "late body"))
    child.sendline("=")
    child.expect("New mail has arrived: 1 message")
    child.expect("Arrived late")
    child.expect(PROMPT)
    child.sendline("p 4")
    child.expect("late body")
    child.expect(PROMPT)
    child.sendline("q")
    assert finish(child) == 0
    assert subjects(home / "mbox") == ["Arrived late"]
    assert subjects(inbox) == [
        "First message",
        "=?UTF-8?Q?=1B]0;PWNED=07=1B[2J?= second",
        "Third",
    ]


@pytest.fixture
def reference() -> Iterator[ReferenceServer]:
    server = ReferenceServer()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("command", "recipients"),
    [
        ("R 1", ("alice@example.test",)),
        ("r 1", ("alice@example.test", "tester@example.test")),
    ],
)
def test_reply_goes_through_the_sendmail_path(
    home: Path, inbox: Path, reference: ReferenceServer, command: str, recipients: tuple[str, ...]
) -> None:
    rc = write_msmtprc(home, reference.port, "tls off", "tls_starttls off")
    shutil.copy(rc, home / ".msmtprc")
    (home / ".msmtprc").chmod(0o600)
    child = spawn_reader(home, inbox)
    child.expect(PROMPT)
    child.sendline(command)
    child.expect("Subject: Re: First message")
    child.sendline("Thanks, got it.")
    child.sendline(".")
    child.expect("EOT")
    child.expect(PROMPT)
    child.sendline("x")
    assert finish(child) == 0
    [envelope] = reference.envelopes
    assert envelope.recipients == recipients
    sent = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert sent["Subject"] == "Re: First message"
    assert sent["In-Reply-To"] == "<msg1@example.test>"
    assert "Thanks, got it." in sent.get_content()


# -- the same commands, compared with the real bsd-mailx ------------------------------

SCRIPTS = {
    "read-delete-save-quit": "p 1\nd 2\ns 3 saved\nq\n",
    "read-then-exit": "p 1\nd 2\nx\n",
    "hold": "set hold\np 1\np 3\nq\n",
    "keepsave": "set keepsave\ns 1 saved\nq\n",
    "preserve": "p 1\npre 1\np 2\nq\n",
    "mbox-command": "mbox 3\nq\n",
    "nothing-read": "h\nq\n",
    "undelete": "d 1-3\nu 2\nq\n",
    "eof-quits": "p 2\n",
    "next-next": "n\nn\nq\n",
    "top-reads-from-does-not": "top 1\nf 2\nq\n",
    "bare-number-and-plus": "2\n+\nq\n",
    "delete-and-print": "dp 1\nq\n",
    "subject-search": "d /Third\nq\n",
    "address-search": "p carol\nq\n",
    "state-list": "p 1\nd :u\nq\n",
    "write-body": "w 2 body.txt\nq\n",
    "copy-reads-but-does-not-save": "c 1 saved\nq\n",
}


@pytest.mark.skipif(shutil.which("bsd-mailx") is None, reason="bsd-mailx is not installed")
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_mailbox_after_quit_matches_bsd_mailx(tmp_path: Path, name: str) -> None:
    results = {}
    for program in ("mailhop", "bsd-mailx"):
        home = tmp_path / program
        home.mkdir()
        inbox = home / "inbox"
        inbox.write_bytes(sample_mbox())
        if program == "mailhop":
            result = run_reader(home, inbox, SCRIPTS[name])
            assert result.returncode == 0, result.stderr
        else:
            subprocess.run(
                ["bsd-mailx", "-n"],
                input=SCRIPTS[name].encode(),
                env=reader_environment(home, inbox),
                cwd=home,
                capture_output=True,
                timeout=READER_TIMEOUT_SECONDS,
                check=False,
            )
        results[program] = {
            file: (home / file).read_bytes() if (home / file).exists() else None
            for file in ("inbox", "mbox", "saved", "body.txt")
        }
    assert results["mailhop"] == results["bsd-mailx"]


def test_commands_on_stdin_give_the_same_mailbox_as_the_terminal(tmp_path: Path) -> None:
    outcomes = []
    for mode in ("terminal", "stdin"):
        home = tmp_path / mode
        home.mkdir()
        inbox = home / "inbox"
        inbox.write_bytes(sample_mbox())
        commands = ["p 1", "d 2", "s 3 saved"]
        if mode == "stdin":
            assert run_reader(home, inbox, "\n".join([*commands, "q"]) + "\n").returncode == 0
        else:
            child = spawn_reader(home, inbox)
            for command in commands:
                child.expect(PROMPT)
                child.sendline(command)
            child.expect(PROMPT)
            child.sendline("q")
            assert finish(child) == 0
        outcomes.append([(home / f).read_bytes() for f in ("inbox", "mbox", "saved")])
    assert outcomes[0] == outcomes[1]
