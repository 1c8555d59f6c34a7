"""``mailhop configure`` against the lab's Postfix: flags, and an SRV record (acceptance).

configure runs as a separate process with HOME and XDG_CONFIG_HOME in a temporary
directory, writes the account with mode 0600, and sends a test message that is
read back over IMAPS.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab.support import Lab, wait_for_message
from tests.setup.dns_server import TYPE_SRV, DnsServer, running, srv_rdata

pytestmark = pytest.mark.lab

TIMEOUT = 120


def environment(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        # No system keyring in tests: auto must fall back to gpg or the 0600 file.
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "GNUPGHOME": str(home / ".gnupg-empty"),
    }


def mailhop(
    arguments: list[str], home: Path, *, stdin: bytes = b""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailhop", *arguments],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=environment(home),
        start_new_session=True,  # no controlling terminal: nothing may prompt
    )


def message_test_id(output: str) -> str:
    found = re.search(r"test id: (mailhop-test-[0-9a-f]+)", output)
    assert found, output
    return found.group(1)


def check_written(home: Path, secret: str) -> Path:
    config = home / ".config" / "mailhop" / "config"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    text = config.read_text(encoding="utf-8")
    assert secret not in text  # the password lives in its own 0600 file
    secrets = list((home / ".config" / "mailhop" / "secrets").iterdir())
    assert len(secrets) == 1 and stat.S_IMODE(secrets[0].stat().st_mode) == 0o600
    assert "account default : " in text
    return config


def test_configure_with_flags_writes_a_working_account(tmp_path: Path, lab: Lab) -> None:
    alice = lab.user("alice")
    result = mailhop(
        ["configure", alice.address, "--host", lab.host, "--tls-trust-file", str(lab.ca_file),
         "--password-stdin", "--no-dns", "--send-test", "--timeout", "20"],
        tmp_path,
        stdin=alice.password.encode() + b"\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    assert alice.password not in result.stdout + result.stderr
    # No port given: 465 with implicit TLS is tried first and works.
    assert f"probe {lab.host}:465 (implicit): yes" in result.stdout
    config = check_written(tmp_path, alice.password)
    assert "tls_starttls off" in config.read_text(encoding="utf-8")
    wait_for_message(lab, alice, message_test_id(result.stdout))

    # The written account works for the sendmail personality as well (another process).
    again = mailhop(["test", "--to", lab.user("bob").address], tmp_path)
    assert again.returncode == 0, again.stderr
    wait_for_message(lab, lab.user("bob"), message_test_id(again.stdout))


def test_configure_through_an_srv_record(tmp_path: Path, lab: Lab) -> None:
    carol = lab.user("carol")
    domain = carol.address.rpartition("@")[2]
    server = DnsServer(
        records={
            # Only STARTTLS submission is published: configure must use 587 STARTTLS.
            (f"_submission._tcp.{domain}", TYPE_SRV): [
                srv_rdata(0, 1, lab.ports.submission, lab.host)
            ],
        }
    )
    with running(server):
        result = mailhop(
            ["configure", carol.address, "--resolver", f"127.0.0.1:{server.port}",
             "--tls-trust-file", str(lab.ca_file), "--password-stdin", "--default",
             "--send-test", "--secret-store", "file"],
            tmp_path,
            stdin=carol.password.encode(),
        )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    assert "DNS SRV record" in result.stdout
    assert (f"_submissions._tcp.{domain}", TYPE_SRV) in server.questions
    config = check_written(tmp_path, carol.password)
    text = config.read_text(encoding="utf-8")
    assert f"port {lab.ports.submission}\n" in text and "tls_starttls on" in text
    wait_for_message(lab, carol, message_test_id(result.stdout))


def test_wrong_password_is_refused_before_anything_is_written(tmp_path: Path, lab: Lab) -> None:
    alice = lab.user("alice")
    result = mailhop(
        ["configure", alice.address, "--host", lab.host, "--port", str(lab.ports.submissions),
         "--tls-trust-file", str(lab.ca_file), "--password-stdin", "--no-dns"],
        tmp_path,
        stdin=b"not-the-password\n",
    )  # fmt: skip
    assert result.returncode == 77, result.stderr
    assert "authentication" in result.stderr
    assert not (tmp_path / ".config" / "mailhop" / "config").exists()


def test_no_terminal_and_no_password_flag_is_a_usage_error(tmp_path: Path, lab: Lab) -> None:
    result = mailhop(
        ["configure", lab.user("alice").address, "--host", lab.host, "--no-dns",
         "--tls-trust-file", str(lab.ca_file)],
        tmp_path,
    )  # fmt: skip
    assert result.returncode == 64, result.stderr
    assert "--password-stdin" in result.stderr
