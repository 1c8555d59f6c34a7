"""mailhop fetch against the lab's real Dovecot, on all four ports, into Maildir and mbox.

The messages are put into erin's mailbox with imaplib's APPEND (an independent
client), so what arrives locally is compared with what the test itself wrote: the
same bytes with CRLF turned into LF (the local mailbox convention), and for mbox
after undoing mboxrd quoting.
"""

from __future__ import annotations

import imaplib
import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.support import Lab, LabUser, unique_token

pytestmark = pytest.mark.lab

MESSAGE_COUNT = 200
# A few messages of a few megabytes check streaming without slowing the suite.
LARGE_MESSAGE_BYTES = 3 * 1024 * 1024
PORT_MODES = {"pop3": "110 STLS", "pop3s": "995", "imap": "143 STARTTLS", "imaps": "993"}


def make_message(index: int, token: str) -> bytes:
    rng = random.Random(index)
    lines = [
        b"From: Alice <alice@example.test>",
        b"To: erin@example.org",
        f"Subject: fetch {index} {token}".encode(),
        f"Message-ID: <{index}.{token}@mailhop.test>".encode(),
        b"",
        b"From the start, a line mboxrd must quote",
        b">From already quoted",
        b".",
        b"..two dots",
        b".leading dot",
    ]
    if index % 50 == 7:
        line = b"x" * 76
        lines += [line] * (LARGE_MESSAGE_BYTES // 78)
    lines += [
        bytes(rng.choice(b"abc .>From") for _ in range(rng.randrange(1, 80)))
        for _ in range(rng.randrange(1, 20))
    ]
    lines.append(b"end")
    return b"\r\n".join(lines) + b"\r\n"


def imap(lab: Lab, user: LabUser) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(lab.tls_server_name, lab.ports.imaps, ssl_context=lab.tls_context())
    client.login(user.login, user.password)
    return client


def empty_inbox(lab: Lab, user: LabUser) -> None:
    client = imap(lab, user)
    try:
        _status, data = client.select("INBOX")
        if int(data[0] or 0):
            client.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
            client.expunge()
    finally:
        client.logout()


def append(lab: Lab, user: LabUser, messages: list[bytes]) -> None:
    client = imap(lab, user)
    for message in messages:
        status, _ = client.append("INBOX", None, None, message)
        assert status == "OK"
    client.logout()


def inbox_count(lab: Lab, user: LabUser) -> int:
    client = imap(lab, user)
    _status, data = client.select("INBOX", readonly=True)
    client.logout()
    return int(data[0] or 0)


@pytest.fixture(scope="module")
def erin(lab: Lab) -> LabUser:
    return lab.user("erin")


@pytest.fixture(scope="module")
def originals(lab: Lab, erin: LabUser) -> Iterator[list[bytes]]:
    token = unique_token("fetch")
    messages = [make_message(index, token) for index in range(MESSAGE_COUNT)]
    empty_inbox(lab, erin)
    append(lab, erin, messages)
    yield messages
    empty_inbox(lab, erin)


def write_config(
    tmp_path: Path,
    lab: Lab,
    user: LabUser,
    port_name: str,
    delivery: str,
    *,
    keep: bool = True,
    host: str | None = None,
) -> Path:
    protocol = "pop3" if port_name.startswith("pop3") else "imap"
    config = tmp_path / "config"
    config.write_text(
        f"account lab\nprotocol {protocol}\nhost {host or lab.host}\n"
        f"port {getattr(lab.ports, port_name)}\n"
        f"tls_trust_file {lab.ca_file}\ntls_host_override {lab.tls_server_name}\n"
        f"user {user.login}\npassword {user.password}\n"
        f"keep {'on' if keep else 'off'}\ndelivery {delivery}\n"
    )
    config.chmod(0o600)
    return config


def run_fetch(
    config: Path, state: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mailhop",
            "fetch",
            "-C",
            str(config),
            "--state-dir",
            str(state),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def lf(message: bytes) -> bytes:
    return message.replace(b"\r\n", b"\n")


def maildir_messages(path: Path) -> list[bytes]:
    return [file.read_bytes() for file in sorted((path / "new").iterdir())]


def mbox_messages(path: Path) -> list[bytes]:
    """Split an mboxrd file and undo its quoting (independently of mailhop's writer)."""
    data = path.read_bytes()
    parts = re.split(rb"(?m)^From [^\n]*\n", data)[1:]
    out = []
    for part in parts:
        assert part.endswith(b"\n\n")
        body = part[:-1]
        out.append(re.sub(rb"(?m)^>(>*From )", rb"\1", body))
    return out


def received_message_keys(messages: list[bytes]) -> list[bytes]:
    keys = []
    for message in messages:
        match = re.search(rb"Message-ID: <([^>]+)>", message)
        assert match is not None
        keys.append(match.group(1))
    return keys


@pytest.mark.parametrize("destination", ["maildir", "mbox"])
@pytest.mark.parametrize("port_name", list(PORT_MODES))
def test_every_port_delivers_byte_identical_and_only_once(  # noqa: PLR0917 - fixtures
    tmp_path: Path,
    lab: Lab,
    erin: LabUser,
    originals: list[bytes],
    port_name: str,
    destination: str,
) -> None:
    target = tmp_path / ("Maildir" if destination == "maildir" else "mbox")
    if destination == "mbox":
        target.touch(mode=0o600)
    config = write_config(tmp_path, lab, erin, port_name, f"{destination}:{target}")
    state = tmp_path / "state"
    first = run_fetch(config, state)
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    got = maildir_messages(target) if destination == "maildir" else mbox_messages(target)
    expected = {lf(message) for message in originals}
    assert len(got) == MESSAGE_COUNT
    assert set(got) == expected
    second = run_fetch(config, state)
    assert second.returncode == 0, second.stderr
    assert second.stdout == ""  # nothing fetched: nothing to say under cron
    again = maildir_messages(target) if destination == "maildir" else mbox_messages(target)
    assert len(again) == MESSAGE_COUNT


def test_dry_run_lists_and_fetches_nothing(
    tmp_path: Path, lab: Lab, erin: LabUser, originals: list[bytes]
) -> None:
    config = write_config(tmp_path, lab, erin, "imaps", f"maildir:{tmp_path / 'md'}")
    result = run_fetch(config, tmp_path / "state", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"would fetch INBOX: {MESSAGE_COUNT}" in result.stdout
    assert not (tmp_path / "md").exists()


@pytest.mark.parametrize("port_name", ["pop3", "imaps"])
def test_new_mail_next_time_and_delete_only_after_durable(
    tmp_path: Path, lab: Lab, erin: LabUser, originals: list[bytes], port_name: str
) -> None:
    """Runs after the keep tests (module order): it empties the server."""
    token = unique_token("later")
    md = tmp_path / "md"
    config = write_config(tmp_path, lab, erin, port_name, f"maildir:{md}", keep=False)
    state = tmp_path / "state"
    present = inbox_count(lab, erin)
    first = run_fetch(config, state)
    assert first.returncode == 0, first.stderr
    assert len(maildir_messages(md)) == present
    assert inbox_count(lab, erin) == 0
    append(lab, erin, [make_message(1000, token)])
    second = run_fetch(config, state)
    assert second.returncode == 0, second.stderr
    assert len(maildir_messages(md)) == present + 1
    assert inbox_count(lab, erin) == 0
    append(lab, erin, originals)  # restore for the next parameter


@pytest.mark.parametrize("port_name", ["pop3s", "imaps"])
@pytest.mark.parametrize(
    "fault",
    [
        "fetch.delivered",
        "fetch.recorded",
        "maildir.after-link",
        "durable.before-rename",
        "fetch.before-quit",
        "fetch.after-store",
    ],
)
def test_kill_9_during_delete_loses_nothing_duplicates_at_most_one(  # noqa: PLR0917 - fixtures
    tmp_path: Path, lab: Lab, erin: LabUser, originals: list[bytes], port_name: str, fault: str
) -> None:
    empty_inbox(lab, erin)
    batch = originals[:8]
    append(lab, erin, batch)
    md = tmp_path / "md"
    config = write_config(tmp_path, lab, erin, port_name, f"maildir:{md}", keep=False)
    state = tmp_path / "state"
    crashed = run_fetch(config, state, env={**os.environ, "MAILHOP_FAULT": fault})
    assert crashed.returncode in (0, -9)
    finished = run_fetch(config, state)
    assert finished.returncode == 0, finished.stderr
    keys = received_message_keys(maildir_messages(md))
    assert set(keys) == set(received_message_keys(batch))  # nothing lost
    assert len(keys) - len(set(keys)) <= 1  # at most one duplicate
    assert inbox_count(lab, erin) == 0
    empty_inbox(lab, erin)
    append(lab, erin, originals)


def test_plaintext_login_refused_before_tls_on_strict_host(
    tmp_path: Path, lab: Lab, erin: LabUser
) -> None:
    """tls off with auth plain: the core refuses to send the password in clear.

    (With ``auth on`` a challenge-response mechanism such as SCRAM may be used
    without TLS, as for SMTP: it never reveals the password.)
    """
    config = write_config(
        tmp_path, lab, erin, "imap", f"maildir:{tmp_path / 'md'}", host=lab.dovecot_strict_host
    )
    config.write_text(config.read_text() + "tls off\nauth plain\n")
    result = run_fetch(config, tmp_path / "state")
    assert result.returncode == 76, result.stderr
    assert "in clear without TLS" in result.stderr
    assert erin.password not in result.stderr
