"""The seed's mail/mailx commands against the lab's real Postfix, read back over IMAPS.

Each test runs ``mailhop mail`` (or ``mailx``) as its own process with a private HOME and
system rc directory, exactly as a script would run it, and checks what Dovecot holds.
"""

from __future__ import annotations

import email
import email.policy
import os
from email.message import EmailMessage
from pathlib import Path
from typing import cast

import pytest

from mailhop.errors import ExitCode
from tests.lab.support import Lab, unique_token, wait_for_message, without_lab_trace
from tests.mail.support import mail_environment, run_mail

pytestmark = pytest.mark.lab


def parsed(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    # IMAP serves CRLF lines; a 7bit or QP text part keeps them, base64 does not.
    return cast(str, part.get_content()).replace("\r\n", "\n")


def seed_options(lab: Lab, *, port: int | None = None) -> list[str]:
    """The seed's ``-S`` options, with the host pointed at the lab and its test CA."""
    alice = lab.user("alice")
    return [
        "-S", f"smtp=127.0.0.1:{port or lab.ports.submissions}",
        "-S", "smtp-auth=login",
        "-S", f"smtp-auth-user={alice.login}",
        "-S", f"smtp-auth-password={alice.password}",
        "-S", f"ssl-ca-file={lab.ca_file}",
        "-S", f"from={alice.address}",
    ]  # fmt: skip


def test_mailx_seed_command_over_465_with_auth_login(tmp_path: Path, lab: Lab) -> None:
    token = unique_token()
    environment = mail_environment(tmp_path)
    result = run_mail(
        ["-v", "-s", f"subject {token}", *seed_options(lab), lab.user("bob").address],
        b"hello from the seed\n",
        environment=environment,
        program="mailx",
    )
    assert result.returncode == 0, result.stderr
    message = parsed(wait_for_message(lab, lab.user("bob"), token))
    assert message["Subject"] == f"subject {token}"
    assert message["From"] == lab.user("alice").address
    assert message["To"] == lab.user("bob").address
    assert body_text(message) == "hello from the seed\n"
    for name in ("Date", "Message-ID", "MIME-Version", "User-Agent"):
        assert message[name], name
    transcript = result.stderr.decode()
    assert "--> AUTH LOGIN" in transcript
    assert "<redacted>" in transcript
    assert lab.user("alice").password not in transcript


def test_chinese_subject_utf8_body_and_comma_recipients(tmp_path: Path, lab: Lab) -> None:
    token = unique_token()
    bob, carol = lab.user("bob"), lab.user("carol")
    body = f"正文 {token}\nzweite Zeile: äöü\n".encode()
    # cat body.txt | mail -s "subject" root@localhost, admin@localhost
    result = run_mail(
        ["-s", f"邮件主题 {token}", *seed_options(lab), f"{bob.address},", carol.address],
        body,
        environment=mail_environment(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    for user in (bob, carol):
        message = parsed(wait_for_message(lab, user, token))
        assert message["Subject"] == f"邮件主题 {token}"
        assert {a.addr_spec for a in message["To"].addresses} == {bob.address, carol.address}
        assert body_text(message).encode() == body
    raw_headers = without_lab_trace(wait_for_message(lab, bob, token)).split(b"\r\n\r\n")[0]
    assert b"=?utf-8?" in raw_headers.lower()  # RFC 2047, not raw 8-bit


def test_attachments_arrive_byte_identical(tmp_path: Path, lab: Lab) -> None:
    token = unique_token()
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 40 + os.urandom(3000))
    text = tmp_path / "notes.txt"
    text.write_bytes("UTF-8 文本\r\nline two\nno final newline ∑".encode())
    spaced = tmp_path / "my report ä 报告.csv"
    spaced.write_bytes(b"a,b\n1,2\n")
    result = run_mail(
        [
            "-s",
            f"files {token}",
            "-a",
            str(binary),
            "-a",
            str(text),
            "-a",
            str(spaced),
            *seed_options(lab),
            lab.user("bob").address,
        ],
        b"see the attachments\n",
        environment=mail_environment(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    message = parsed(wait_for_message(lab, lab.user("bob"), token))
    assert body_text(message) == "see the attachments\n"
    received = {
        part.get_filename(): part.get_payload(decode=True) for part in message.iter_attachments()
    }
    assert received == {
        "blob.bin": binary.read_bytes(),
        "notes.txt": text.read_bytes(),
        "my report ä 报告.csv": spaced.read_bytes(),
    }
    types = {part.get_filename(): part.get_content_type() for part in message.iter_attachments()}
    assert types["notes.txt"] == "text/plain"
    assert types["my report ä 报告.csv"] == "text/csv"


def test_etc_mail_rc_with_debian_defaults_and_a_lone_dot(tmp_path: Path, lab: Lab) -> None:
    token = unique_token()
    environment = mail_environment(tmp_path)
    alice = lab.user("alice")
    rc = Path(environment["MAILHOP_SYSCONFDIR"]) / "mail.rc"
    rc.write_text(
        # Debian's shipped lines first: 'dot' must not cut a piped body.
        "set ask askcc append dot save crt\n"
        "ignore Received Message-Id Resent-Message-Id Status Mail-From Return-Path Via\n"
        f"set smtp=smtps://127.0.0.1:{lab.ports.submissions}\n"
        f"set smtp-auth=plain smtp-auth-user={alice.login}\n"
        f"set smtp-auth-password='{alice.password}'\n"
        f'set ssl-ca-file="{lab.ca_file}" from="Alice Example <{alice.address}>"\n',
        encoding="utf-8",
    )
    rc.chmod(0o600)
    body = f"first {token}\n.\nafter the dot\n".encode()
    result = run_mail(
        ["-s", "from mail.rc", lab.user("bob").address], body, environment=environment
    )
    assert result.returncode == 0, result.stderr
    message = parsed(wait_for_message(lab, lab.user("bob"), token))
    assert body_text(message).encode() == body
    assert message["From"].addresses[0].display_name == "Alice Example"


def test_home_mailrc_with_mta_url_and_account_block(tmp_path: Path, lab: Lab) -> None:
    token = unique_token()
    environment = mail_environment(tmp_path)
    alice = lab.user("alice")
    login = alice.login.replace("@", "%40")
    password = "".join(f"%{byte:02X}" for byte in alice.password.encode())  # all encoded
    rc = Path(environment["HOME"]) / ".mailrc"
    rc.write_text(
        "set from=nobody@example.org\n"
        "account lab {\n"
        f"  set mta=smtps://{login}:{password}@127.0.0.1:{lab.ports.submissions}\n"
        f"  set tls-ca-file={lab.ca_file} from={alice.address}\n"
        "}\n",
        encoding="utf-8",
    )
    rc.chmod(0o600)
    result = run_mail(
        ["-A", "lab", "-s", f"account {token}", lab.user("bob").address],
        b"via ~/.mailrc\n",
        environment=environment,
    )
    assert result.returncode == 0, result.stderr
    message = parsed(wait_for_message(lab, lab.user("bob"), token))
    assert message["From"] == alice.address


def test_starttls_on_587_when_asked(tmp_path: Path, lab: Lab) -> None:
    token = unique_token()
    result = run_mail(
        [
            "-v",
            "-s",
            f"starttls {token}",
            "-S",
            "smtp-use-starttls",
            *seed_options(lab, port=lab.ports.submission),
            "-c",
            lab.user("carol").address,
            "-b",
            lab.user("dave").address,
            lab.user("bob").address,
        ],
        b"over 587\n",
        environment=mail_environment(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    transcript = result.stderr.decode()
    assert transcript.index("--> STARTTLS") < transcript.index("--> AUTH")
    for name in ("bob", "carol", "dave"):
        message = parsed(wait_for_message(lab, lab.user(name), token))
        assert message["Cc"] == lab.user("carol").address
        assert "Bcc" not in message  # dave got it without being shown


def test_no_smtp_set_goes_through_the_sendmail_path(tmp_path: Path, lab: Lab) -> None:
    token = unique_token()
    environment = mail_environment(tmp_path)
    alice = lab.user("alice")
    msmtprc = Path(environment["HOME"]) / ".msmtprc"
    msmtprc.write_text(
        "account default\nhost 127.0.0.1\n"
        f"port {lab.ports.submissions}\ntls on\ntls_starttls off\n"
        f"tls_trust_file {lab.ca_file}\nauth on\nuser {alice.login}\n"
        f"password {alice.password}\nfrom {alice.address}\n",
        encoding="utf-8",
    )
    msmtprc.chmod(0o600)
    # echo "body" | mail -s "subject" ...
    result = run_mail(
        ["-s", f"sendmail path {token}", lab.user("bob").address],
        b"body\n",
        environment=environment,
    )
    assert result.returncode == 0, result.stderr
    message = parsed(wait_for_message(lab, lab.user("bob"), token))
    assert message["From"] == alice.address
    assert body_text(message) == "body\n"


def test_refused_recipient_is_a_permanent_failure(tmp_path: Path, lab: Lab) -> None:
    result = run_mail(
        ["-s", "x", *seed_options(lab), lab.permfail_recipient],
        b"x\n",
        environment=mail_environment(tmp_path),
    )
    assert result.returncode == ExitCode.DATAERR, result.stderr
