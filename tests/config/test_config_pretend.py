"""``--pretend`` output, compared line by line with the real msmtp 1.8.23 where installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mailhop.config import Account, Auth, Environment, get_password, render_pretend, resolve
from tests.config.conftest import SEED, WriteFile

MSMTP = shutil.which("msmtp")
# Lines mailhop prints that msmtp 1.8.23 does not (later msmtp versions or mailhop's own).
MAILHOP_ONLY = ("from_full_name = ", "set_msgid_header = ", "set_to_header = ",
                "allow_plaintext_auth = ")  # fmt: skip
# msmtp 1.8.23 lines replaced by later versions (undisclosed_recipients -> set_to_header).
MSMTP_1_8_23_ONLY = ("undisclosed_recipients = ",)

RICH = (
    """\
defaults
timeout 30
domain client.example.org
account rich
host smtp.example.com
port 587
tls on
tls_trust_file /etc/ssl/certs/ca-certificates.crt
tls_fingerprint """
    + ":".join(["00", "11", "aa", "bb"] * 8)
    + """
tls_certcheck off
tls_priorities NORMAL
tls_host_override mx.example.com
tls_min_dh_prime_bits 2048
auth scram-sha-256
user alice
passwordeval echo never-run-here
source_ip 192.0.2.7
proxy_host 127.0.0.1
from alice@example.com
set_from_header on
set_date_header off
keepbcc on
dsn_notify failure,delay
dsn_return headers
logfile -
logfile_time_format %Y
syslog LOG_MAIL
aliases /etc/aliases
account lmtp
protocol lmtp
port 24
socket /run/lmtp
timeout 1
auth
tls_starttls off
from *@lmtp.example
account default : rich
"""
)


def mailhop_pretend(
    environment: Environment, rc: Path, *, arguments: dict[str, str], read_recipients: bool
) -> list[str]:
    resolution = resolve(
        config_file=rc.name,
        account_name=arguments.get("-a"),
        envelope_from=arguments.get("-f"),
        pretend=True,
        environment=environment,
    )
    account = resolution.account
    # msmtp evaluates passwordeval before printing when auth is on.
    found = account.auth is not Auth.NONE and account.passwordeval is not None
    if found:
        assert get_password(account, environment=environment, interactive=False)
    text = render_pretend(
        account,
        messages=resolution.messages,
        read_recipients=read_recipients,
        password_found=found,
    )
    return text.splitlines()


def msmtp_pretend(home: Path, rc: Path, *options: str) -> list[str]:
    assert MSMTP is not None
    completed = subprocess.run(
        [MSMTP, "--pretend", "-C", rc.name, *options],
        cwd=rc.parent,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return completed.stdout.splitlines()


def comparable(lines: list[str], drop: tuple[str, ...]) -> list[str]:
    # The system file line names a different SYSCONFDIR (ours is in tmp_path).
    return [
        line
        for line in lines
        if not line.startswith(drop) and not line.startswith("ignoring system configuration")
    ]


@pytest.mark.skipif(MSMTP is None, reason="msmtp is not installed (apt-get install -y msmtp)")
@pytest.mark.parametrize(
    ("config", "options"),
    [
        (SEED, ()),
        (SEED, ("-a", "account2")),
        (SEED, ("-f", "someone@example.org")),
        (RICH, ()),
        (RICH, ("-t",)),
        (RICH, ("-a", "lmtp")),
        (RICH, ("-f", "bob@lmtp.example")),
        (RICH, ("-a", "rich", "-f", "other@example.net")),
    ],
)
def test_pretend_matches_msmtp_1_8_23(
    config: str,
    options: tuple[str, ...],
    environment: Environment,
    write: WriteFile,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = Path(environment.home)
    rc = write("work/rc", config, 0o600)
    monkeypatch.chdir(rc.parent)
    pairs = dict(zip(options[::2], options[1::2], strict=False))
    ours = mailhop_pretend(environment, rc, arguments=pairs, read_recipients="-t" in options)
    theirs = msmtp_pretend(home, rc, *options)
    assert comparable(ours, MAILHOP_ONLY) == comparable(theirs, MSMTP_1_8_23_ONLY)


def test_pretend_lines_for_the_seed(environment: Environment, write: WriteFile) -> None:
    rc = write("home/.msmtprc", SEED, 0o600)
    resolution = resolve(pretend=True, environment=environment)
    lines = render_pretend(resolution.account, messages=resolution.messages).splitlines()
    assert lines[:4] == [
        f"ignoring system configuration file {environment.sysconfdir}/msmtprc: "
        "No such file or directory",
        f"loaded user configuration file {rc}",
        "falling back to default account",
        f"using account default from {rc}",
    ]
    assert "password = *" in lines
    assert "plain-text-password" not in "\n".join(lines)
    assert "timeout = off" in lines
    assert "auth = choose" in lines
    assert "tls_trust_file = system" in lines
    assert lines[-1] == "reading recipients from the command line"


def test_pretend_value_spellings() -> None:
    account = Account(name="x", port=25, timeout=1, tls_fingerprint=bytes(range(32)))
    lines = render_pretend(account, sendmail_mode=False, read_envelope_from=True).splitlines()
    assert "timeout = 1 second" in lines
    assert "auth = none" in lines
    assert "password = (not set)" in lines
    assert f"tls_fingerprint = {':'.join(f'{n:02X}' for n in range(32))}" in lines
    assert not any(line.startswith("from = ") for line in lines)  # sendmail lines only
    sendmail = render_pretend(account, read_envelope_from=True).splitlines()
    assert "from = (read from mail)" in sendmail
