"""The command loop with commands on standard input: the commands a script would use."""

from __future__ import annotations

import email
import email.policy
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deliver.deliver_support import write_msmtprc
from tests.deliver.scripted_server import ReferenceServer
from tests.reader.reader_support import run_reader, sample_mbox, subjects


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.write_bytes(sample_mbox())
    return path


@pytest.fixture
def reference(tmp_path: Path) -> Iterator[ReferenceServer]:
    server = ReferenceServer()
    rc = write_msmtprc(tmp_path, server.port, "tls off", "tls_starttls off")
    shutil.copy(rc, tmp_path / ".msmtprc")
    (tmp_path / ".msmtprc").chmod(0o600)
    yield server
    server.stop()


def output_of(tmp_path: Path, inbox: Path, commands: str, *arguments: str) -> str:
    result = run_reader(tmp_path, inbox, commands, *arguments)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


def test_mail_command_composes_from_stdin_and_sends(
    tmp_path: Path, inbox: Path, reference: ReferenceServer
) -> None:
    output = output_of(tmp_path, inbox, "m bob@example.test\nHello Bob\nline two\n.\nx\n")
    assert "EOT" in output
    [envelope] = reference.envelopes
    assert envelope.recipients == ("bob@example.test",)
    sent = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert sent["Subject"] == "Hello Bob"
    assert sent.get_content() == "line two\r\n"  # as it travelled (CRLF)


def test_reply_keeps_the_thread_and_never_copies_control_characters(
    tmp_path: Path, inbox: Path, reference: ReferenceServer
) -> None:
    output_of(tmp_path, inbox, "R 2\nok\n.\nx\n")
    [envelope] = reference.envelopes
    sent = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert sent["In-Reply-To"] == "<msg2@example.test>"
    assert "\x1b" not in str(sent["Subject"])
    assert str(sent["Subject"]).startswith("Re: ")


def test_mail_refuses_an_option_looking_address(tmp_path: Path, inbox: Path) -> None:
    output = output_of(tmp_path, inbox, "m -X/tmp/x\nx\n")
    assert "an address cannot start with '-'" in output


def test_shell_escape_runs_what_the_user_typed(tmp_path: Path, inbox: Path) -> None:
    marker = tmp_path / "ran"
    output = output_of(tmp_path, inbox, f"!touch {marker} && echo done\nx\n")
    assert marker.exists()
    assert "done" in output


def test_help_set_unset_size_headers_and_current(tmp_path: Path, inbox: Path) -> None:
    output = output_of(
        tmp_path, inbox, "?\nset toplines=1 hold\nset\nunset hold\nsize 1\n=\nto 1\nx\n"
    )
    assert "save" in output and "quit" in output
    assert "toplines=1\nhold" in output or "hold\ntoplines=1" in output
    assert "1: " in output
    # top with toplines=1 shows one line.
    assert output.split("Message 1:\n")[1].startswith("Date: ")


def test_folder_switch_applies_quit_to_the_first_folder(tmp_path: Path, inbox: Path) -> None:
    other = tmp_path / "other"
    other.write_bytes(sample_mbox())
    output = output_of(tmp_path, inbox, f"d 1\nfolder {other}\nd 3\nfi\nq\n")
    assert f'"{other}": 3 messages' in output
    assert subjects(inbox)[0].startswith("=?UTF-8?Q?")  # message 1 removed at the switch
    assert len(subjects(inbox)) == 2
    assert len(subjects(other)) == 2


def test_bad_commands_do_not_end_the_session(tmp_path: Path, inbox: Path) -> None:
    output = output_of(tmp_path, inbox, "frob\np 9\nd 2\nu 2\nx\n")
    assert 'Unknown command: "frob"' in output
    assert "9: no such message (there are 3)" in output


def test_dash_u_reads_that_users_spool_mailbox(tmp_path: Path) -> None:
    spool = Path("/var/mail")
    if not spool.is_dir():
        pytest.skip("no /var/mail on this machine")
    user = f"mailhop-test-{uuid.uuid4().hex[:8]}"
    mailbox = spool / user
    try:
        mailbox.write_bytes(sample_mbox())
    except PermissionError:
        pytest.skip("/var/mail is not writable here")
    try:
        result = run_reader(tmp_path, tmp_path / "unused", "", "-H", "-u", user)
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) == 3
    finally:
        mailbox.unlink()
