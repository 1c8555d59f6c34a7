"""The sendmail personality delivers local recipients itself, with and without config."""

from __future__ import annotations

import mailbox
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.lab.support import unique_token

REPOSITORY = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_SECONDS = 60.0


def _sendmail(
    arguments: list[str], data: bytes, *, home: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "MAILHOP_QUEUE_NO_KICK": "1",
        **(extra_env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "mailhop", "sendmail", *arguments],
        input=data,
        capture_output=True,
        env=environment,
        cwd=REPOSITORY,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )


def _tokens_in(path: Path) -> list[str]:
    box = mailbox.mbox(str(path), create=False)
    try:
        return [str(message["Subject"]) for message in box]
    finally:
        box.close()


def _config(tmp_path: Path, aliases: str, extra: str = "") -> Path:
    spool = tmp_path / "spool"
    spool.mkdir()
    alias_file = tmp_path / "aliases"
    alias_file.write_text(aliases)
    alias_file.chmod(0o644)
    config = tmp_path / "config"
    # queue_dir: what cannot be delivered now stays in the test's own queue.
    config.write_text(
        f"system_aliases {alias_file}\nmail_spool {spool}\nqueue_dir {tmp_path / 'queue'}\n{extra}"
    )
    config.chmod(0o600)
    return config


def test_root_follows_the_aliases_to_a_local_user(tmp_path: Path) -> None:
    config = _config(tmp_path, "root: news\npostmaster: root\n", "local_mailbox mbox\n")
    token = unique_token()
    message = f"Subject: {token}\n\nFrom the body\n".encode()
    result = _sendmail(["-C", str(config), "postmaster@localhost"], message, home=tmp_path)
    assert result.returncode == 0, result.stderr
    mbox = tmp_path / "spool" / "news"
    box = mailbox.mbox(str(mbox), create=False)
    (delivered,) = list(box)
    box.close()
    assert delivered["Subject"] == token
    assert delivered["Delivered-To"].startswith("news@")
    assert delivered["Return-Path"]
    assert "mailhop" in delivered["Received"]
    assert ">From the body" in str(delivered.get_payload())


def test_a_delivered_to_loop_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path, "", "local_mailbox mbox\n")
    first = _sendmail(["-C", str(config), "root"], b"Subject: a\n\nx\n", home=tmp_path)
    assert first.returncode == 0, first.stderr
    delivered = (tmp_path / "spool" / "root").read_bytes().split(b"\n", 1)[1]
    again = _sendmail(["-C", str(config), "root"], delivered, home=tmp_path)
    assert again.returncode == 65
    assert b"loop" in again.stderr


def test_unknown_local_user_is_exit_67(tmp_path: Path) -> None:
    config = _config(tmp_path, "")
    result = _sendmail(["-C", str(config), "no-such-user-xyz"], b"x\n", home=tmp_path)
    assert result.returncode == 67
    assert b"no such local user" in result.stderr


def test_remote_recipient_without_an_account_is_kept_in_the_queue(tmp_path: Path) -> None:
    # Exit 0 means durably queued (DESIGN.md §4); the warning says what to configure.
    config = _config(tmp_path, "")
    result = _sendmail(
        ["-C", str(config), "someone@example.net"], b"Subject: x\n\nhi\n", home=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert b"relay account" in result.stderr
    assert b"queued as" in result.stderr
    assert len(list((tmp_path / "queue").rglob("*.json"))) == 1


def test_without_the_queue_a_remote_recipient_without_an_account_is_exit_75(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, "", "queue off\n")
    result = _sendmail(
        ["-C", str(config), "someone@example.net"], b"Subject: x\n\nhi\n", home=tmp_path
    )
    assert result.returncode == 75
    assert b"relay account" in result.stderr


def test_a_pipe_recipient_from_the_command_line_is_not_a_command(tmp_path: Path) -> None:
    config = _config(tmp_path, "")
    marker = tmp_path / "pwned"
    result = _sendmail(
        ["-C", str(config), f'"|/bin/touch {marker}"@localhost'], b"x\n", home=tmp_path
    )
    assert result.returncode != 0
    assert not marker.exists()


def test_pipe_and_file_targets_from_a_trusted_aliases_file(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a trusted aliases file must be owned by root")
    archive = tmp_path / "archive"
    # The command runs as nobody: it can write only where anyone may.
    public = Path(tempfile.mkdtemp(prefix="mailhop-pipe-"))
    public.chmod(0o755)
    output = public / "piped"
    output.touch()
    output.chmod(0o666)
    private = tmp_path / "private"
    private.touch()
    config = _config(
        tmp_path,
        f'copy: {archive}, "|/usr/bin/tee -a {output}"\nfail: "|/bin/sh -c \'exit 75\'"\n',
    )
    token = unique_token()
    result = _sendmail(
        ["-C", str(config), "copy"], f"Subject: {token}\n\nx\n".encode(), home=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert _tokens_in(archive) == [token]
    assert token in output.read_text()
    failed = _sendmail(["-C", str(config), "fail"], b"x\n", home=tmp_path)
    # The command asked to retry (75): the message waits in the queue.
    assert failed.returncode == 0, failed.stderr
    assert b"queued as" in failed.stderr
    # Not as root: a file only root may write (tmp_path is 0700) stays out of reach.
    alias_file = tmp_path / "aliases"
    alias_file.write_text(alias_file.read_text().replace(str(output), str(private)))
    denied = _sendmail(["-C", str(config), "copy"], b"x\n", home=tmp_path)
    assert denied.returncode == 65
    assert b"Permission denied" in denied.stderr
    assert private.read_bytes() == b""
    shutil.rmtree(public)


def test_embedded_default_echo_hi_to_root(tmp_path: Path) -> None:
    """No configuration at all: ``echo hi | sendmail root`` lands in root's mailbox."""
    if os.geteuid() != 0 or not os.path.isdir("/var/mail"):
        pytest.skip("needs root and /var/mail to deliver to root's system mailbox")
    if os.path.isdir("/root/Maildir"):
        pytest.skip("root has a Maildir; the mbox case is what this test checks")
    aliases = Path("/etc/aliases")
    if aliases.exists() and "root:" in aliases.read_text():
        pytest.skip("/etc/aliases forwards root elsewhere on this machine")
    token = unique_token()
    result = _sendmail(["root"], f"{token}\n".encode(), home=tmp_path)
    assert result.returncode == 0, result.stderr
    box = mailbox.mbox("/var/mail/root", create=False)
    try:
        bodies = [str(message.get_payload()) for message in box]
    finally:
        box.close()
    # Other test runs on this machine deliver to root too: say what was there.
    assert any(token in body for body in bodies), (
        f"{token} not among {len(bodies)} messages in /var/mail/root; "
        f"stderr: {result.stderr!r}; last: {bodies[-1:]!r}"
    )
