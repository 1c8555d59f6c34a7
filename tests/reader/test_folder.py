"""Folders: mboxrd and Maildir reading, POSIX quit rules, the locked atomic write-back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailhop.cli.mail_read import parse_read_arguments
from mailhop.errors import ExitCode, UsageError
from mailhop.reader.errors import ReaderError
from mailhop.reader.folder import (
    Folder,
    FolderFormat,
    Mark,
    QuitRules,
    Status,
    mbox_entry,
    split_mbox,
)
from tests.reader.reader_support import (
    READER_TIMEOUT_SECONDS,
    message,
    reader_environment,
    run_reader,
    sample_mbox,
    subjects,
)

LINE = st.sampled_from(
    ["From evil@x Mon Jan  1 00:00:00 2024", ">From x", ">>From y", "plain", "", "From", " From "]
)


@given(st.lists(st.lists(LINE, max_size=6), min_size=1, max_size=4))
def test_mboxrd_round_trip(bodies: list[list[str]]) -> None:
    datas = [("Subject: m\n\n" + "".join(line + "\n" for line in body)).encode() for body in bodies]
    content = b"".join(mbox_entry(b"From a@x Mon Jan  1 00:00:00 2024", d) for d in datas)
    assert [m.data for m in split_mbox(content)] == datas


def test_states_from_status_headers(tmp_path: Path) -> None:
    path = tmp_path / "box"
    path.write_bytes(
        message(1, "a@x", "new", "b")
        + message(2, "b@x", "old", "b", status="O")
        + message(3, "c@x", "read", "b", status="RO")
    )
    folder = Folder.open(str(path))
    assert [m.status for m in folder.messages] == [Status.NEW, Status.UNREAD, Status.READ]


def _folder_with(tmp_path: Path, marks: list[Mark]) -> Folder:
    path = tmp_path / "box"
    path.write_bytes(b"".join(message(i + 1, "a@x", f"m{i + 1}", "b") for i in range(len(marks))))
    folder = Folder.open(str(path))
    folder.marks = list(marks)
    return folder


@pytest.mark.parametrize(
    ("marks", "system", "hold", "keepsave", "expected"),
    [
        (Mark.NONE, True, False, False, "keep"),
        (Mark.READ_NOW, True, False, False, "mbox"),
        (Mark.READ_NOW, True, True, False, "keep"),
        (Mark.READ_NOW, False, False, False, "keep"),
        (Mark.SAVED, True, False, False, "remove"),
        (Mark.SAVED, True, False, True, "mbox"),
        (Mark.SAVED, True, True, True, "keep"),
        (Mark.SAVED, False, False, False, "keep"),
        (Mark.DELETED | Mark.READ_NOW, False, True, True, "remove"),
        (Mark.PRESERVED | Mark.READ_NOW, True, False, False, "keep"),
        (Mark.TO_MBOX, False, False, False, "mbox"),
    ],
)
def test_quit_rules(  # noqa: PLR0917 - pytest passes parameters positionally
    tmp_path: Path, marks: Mark, system: bool, hold: bool, keepsave: bool, expected: str
) -> None:
    folder = _folder_with(tmp_path, [marks])
    rules = QuitRules(system_mailbox=system, hold=hold, keepsave=keepsave, mbox_path="")
    assert folder.fate(0, rules) == expected


def test_a_mailbox_rewritten_by_another_program_is_left_alone(tmp_path: Path) -> None:
    folder = _folder_with(tmp_path, [Mark.DELETED, Mark.NONE])
    path = Path(folder.path)
    replaced = message(1, "other@x", "someone else's rewrite", "b")
    path.write_bytes(replaced)
    with pytest.raises(ReaderError, match="changed by another program") as raised:
        folder.write_back(QuitRules(system_mailbox=False))
    assert raised.value.exit_code == ExitCode.TEMPFAIL
    assert path.read_bytes() == replaced


def test_crash_between_mbox_and_inbox_duplicates_never_loses(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    inbox = home / "inbox"
    inbox.write_bytes(sample_mbox())
    before = inbox.read_bytes()
    environment = reader_environment(home, inbox)
    environment["MAILHOP_FAULT"] = "durable.after-rename"  # after ~/mbox is in place
    result = subprocess.run(
        [sys.executable, "-m", "mailhop", "mail", "-n"],
        input=b"p 1\nq\n",
        env=environment,
        cwd=home,
        capture_output=True,
        timeout=READER_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode != 0  # killed at the crash point
    assert subjects(home / "mbox") == ["First message"]
    assert inbox.read_bytes() == before  # still there: a duplicate, not a loss
    # The next session works: the stale lock of the dead reader is broken.
    assert run_reader(home, inbox, "x\n").returncode == 0


# -- -H, -e and the empty mailbox ---------------------------------------------------


def test_summary_and_test_modes_never_modify_the_mailbox(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.write_bytes(sample_mbox())
    os.utime(inbox, (1_000_000_000, 1_000_000_000))
    before = inbox.read_bytes()
    summary = run_reader(tmp_path, inbox, "", "-H")
    assert summary.returncode == 0
    lines = summary.stdout.decode().splitlines()
    assert len(lines) == 3
    assert "First message" in lines[0]
    assert "^[]0;PWNED^G" in lines[1]
    assert b"\x1b" not in summary.stdout
    assert run_reader(tmp_path, inbox, "", "-e").returncode == 0
    assert run_reader(tmp_path, inbox, "", "-e").stdout == b""
    assert inbox.read_bytes() == before
    assert inbox.stat().st_mtime == 1_000_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inbox"]


def test_no_mail(tmp_path: Path) -> None:
    missing = tmp_path / "none"
    result = run_reader(tmp_path, missing, "")
    assert result.returncode == 1
    assert result.stderr == b"No mail for tester\n"
    assert run_reader(tmp_path, missing, "", "-e").returncode == 1
    assert not missing.exists()


def test_dash_f_reads_a_named_file_and_keeps_read_mail_there(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.write_bytes(sample_mbox())
    result = run_reader(tmp_path, tmp_path / "inbox", "p 1\nd 2\nq\n", "-f", str(folder))
    assert result.returncode == 0, result.stderr
    # Not the system mailbox: read mail stays, only the deleted one goes.
    assert subjects(folder) == ["First message", "Third"]
    assert not (tmp_path / "mbox").exists()


def test_dash_f_without_a_file_reads_the_secondary_mailbox(tmp_path: Path) -> None:
    (tmp_path / "mbox").write_bytes(sample_mbox())
    result = run_reader(tmp_path, tmp_path / "inbox", "", "-f", "-H")
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 3


@pytest.mark.parametrize(
    ("arguments", "message_text"),
    [
        (("bob",), "to read a file give -f FILE"),
        (("-f", "a", "b"), "-f takes one mailbox file"),
        (("-u", "../etc"), "not a user name"),
        (("-f", "-u", "root"), "either -f FILE or -u USER"),
    ],
)
def test_usage_errors(arguments: tuple[str, ...], message_text: str) -> None:
    with pytest.raises(UsageError, match=message_text):
        parse_read_arguments(list(arguments))


# -- Maildir ------------------------------------------------------------------------


def _file(entry: bytes) -> bytes:
    """An mbox entry as a Maildir file: no From line, no separating empty line."""
    return entry.partition(b"\n")[2].removesuffix(b"\n")


def _maildir(root: Path) -> Path:
    for part in ("tmp", "new", "cur"):
        (root / part).mkdir(parents=True)
    (root / "new" / "1000.A.host").write_bytes(_file(message(1, "a@x", "fresh", "one")))
    (root / "cur" / "0900.B.host:2,").write_bytes(_file(message(2, "b@x", "seen before", "two")))
    (root / "cur" / "0800.C.host:2,S").write_bytes(
        _file(message(3, "c@x", "already read", "three"))
    )
    os.utime(root / "cur" / "0800.C.host:2,S", (800, 800))
    os.utime(root / "cur" / "0900.B.host:2,", (900, 900))
    return root


def test_maildir_states_and_quit(tmp_path: Path) -> None:
    maildir = _maildir(tmp_path / "Maildir")
    folder = Folder.open(str(maildir))
    assert folder.format is FolderFormat.MAILDIR
    assert [(m.key, m.status) for m in folder.messages] == [
        ("0800.C.host:2,S", Status.READ),
        ("0900.B.host:2,", Status.UNREAD),
        ("1000.A.host", Status.NEW),
    ]
    result = run_reader(tmp_path, maildir, "p 3\nd 1\nq\n")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(maildir / "new")) == []
    # System mailbox: the message read now went to ~/mbox; the unread one stays unseen.
    assert sorted(os.listdir(maildir / "cur")) == ["0900.B.host:2,"]
    assert subjects(tmp_path / "mbox") == ["fresh"]


def test_maildir_folder_keeps_read_mail_marked_seen(tmp_path: Path) -> None:
    maildir = _maildir(tmp_path / "Maildir")
    result = run_reader(tmp_path, tmp_path / "inbox", "p 3\nq\n", "-f", str(maildir))
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(maildir / "cur")) == [
        "0800.C.host:2,S",
        "0900.B.host:2,",
        "1000.A.host:2,S",
    ]


def test_save_into_a_maildir(tmp_path: Path) -> None:
    maildir = _maildir(tmp_path / "Maildir")
    inbox = tmp_path / "inbox"
    inbox.write_bytes(sample_mbox())
    result = run_reader(tmp_path, inbox, f"s 3 {maildir}\nx\n")
    assert result.returncode == 0, result.stderr
    saved = [p for p in (maildir / "cur").iterdir() if p.name.endswith(".mailhop:2,S")]
    assert len(saved) == 1
    assert b"Subject: Third" in saved[0].read_bytes()


@pytest.mark.parametrize("columns", [40, 60, 132])
def test_summary_lines_fit_the_terminal(tmp_path: Path, columns: int) -> None:
    inbox = tmp_path / "inbox"
    inbox.write_bytes(
        sample_mbox() + message(4, "a-very-long-sender-name@example.test", "word " * 40, "b")
    )
    result = run_reader(tmp_path, inbox, "", "-H", COLUMNS=str(columns))
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 4
    assert all(len(line) < columns for line in lines)
    assert "a-very-long-sender-~" in lines[3]


def test_dash_capital_n_skips_the_summary(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.write_bytes(sample_mbox())
    output = run_reader(tmp_path, inbox, "x\n", "-N").stdout.decode()
    assert output.splitlines() == [f'"{inbox}": 3 messages 3 new']


def test_new_maildir_mail_is_noticed(tmp_path: Path) -> None:
    maildir = _maildir(tmp_path / "Maildir")
    folder = Folder.open(str(maildir))
    assert folder.check_new_mail() == 0
    (maildir / "new" / "1100.D.host").write_bytes(_file(message(4, "d@x", "later", "four")))
    assert folder.check_new_mail() == 1
    assert folder.messages[-1].key == "1100.D.host"
    assert len(folder.marks) == 4


def test_quit_as_root_keeps_the_owner_and_mode_of_a_users_mailbox(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can read another user's mailbox")
    inbox = tmp_path / "inbox"
    inbox.write_bytes(sample_mbox())
    os.chown(inbox, 65534, 65534)
    inbox.chmod(0o660)
    result = run_reader(tmp_path, inbox, "d 1\nq\n")
    assert result.returncode == 0, result.stderr
    status = inbox.stat()
    assert (status.st_uid, status.st_gid, status.st_mode & 0o777) == (65534, 65534, 0o660)
    assert len(subjects(inbox)) == 2


# -- concurrency: deliveries while the reader rewrites (security.md F2) --------------

CONCURRENT_DELIVERIES = 30
# The deliveries and rewrites below take about a second; a minute means something hangs.
CONCURRENCY_DEADLINE_SECONDS = 60.0


def test_deliveries_while_the_reader_rewrites_lose_nothing(tmp_path: Path) -> None:
    from tests.local.mbox_worker import message_bytes

    path = tmp_path / "mbox"
    path.write_bytes(message(1, "seed@x", "seed", "seed body"))
    environment = {key: value for key, value in os.environ.items() if key != "MAILHOP_FAULT"}
    tokens = [f"token{index:02d}" for index in range(CONCURRENT_DELIVERIES)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.local.mbox_worker", str(path), token, "40"],
            cwd=Path(__file__).resolve().parents[2],
            env=environment,
        )
        for token in tokens
    ]
    rewrites = 0
    deadline = time.monotonic() + CONCURRENCY_DEADLINE_SECONDS
    try:
        while any(worker.poll() is None for worker in workers) and time.monotonic() < deadline:
            folder = Folder.open(str(path))
            # Read everything (a Status change on every new message) and quit: the
            # whole file is rewritten each time, while deliveries keep appending.
            folder.marks = [Mark.READ_NOW for _ in folder.marks]
            folder.write_back(QuitRules(system_mailbox=False))
            rewrites += 1
    finally:
        codes = [worker.wait(timeout=CONCURRENCY_DEADLINE_SECONDS) for worker in workers]
    assert codes == [0] * CONCURRENT_DELIVERIES
    assert rewrites > 1  # the reader really raced the deliveries
    messages = split_mbox(path.read_bytes())
    found = sorted(
        line.split(b": ", 1)[1].decode()
        for stored in messages
        for line in stored.data.split(b"\n")
        if line.startswith(b"X-Token: ")
    )
    assert found == sorted(tokens)
    by_token = {
        stored.data.split(b"X-Token: ", 1)[1].split(b"\n", 1)[0].decode(): stored.data
        for stored in messages
        if b"X-Token: " in stored.data
    }
    for token in tokens:
        body = by_token[token].split(b"\n\n", 1)[1]
        assert body == message_bytes(token, 40).split(b"\n\n", 1)[1]  # whole, unquoted
