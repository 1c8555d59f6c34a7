"""The sendmail personality against the real Postfix of the lab (issue #3 acceptance).

Every test runs mailhop as a separate process, the way cron, mailx, mutt and git run
/usr/sbin/sendmail, and checks what really arrived by reading the mailbox back over
IMAPS. Postfix is configured as a faithful witness (no header repair), so a missing
Date or a leaked Bcc would show.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab.support import Lab, message_id_for, unique_token, wait_for_message, without_lab_trace

pytestmark = pytest.mark.lab

TIMEOUT = 120


def write_account(path: Path, lab: Lab, *, port: int, starttls: bool, **extra: str) -> Path:
    alice = lab.user("alice")
    lines = {
        "host": "127.0.0.1",
        "port": str(port),
        "tls": "on",
        "tls_starttls": "on" if starttls else "off",
        "tls_trust_file": str(lab.ca_file),
        "auth": "on",
        "user": alice.login,
        "password": alice.password,
        "from": alice.address,
        # These tests check msmtp's contract (exit code = result), so no queueing;
        # the queue's own acceptance tests are in tests/queue (issue #4).
        "queue": "off",
        "queue_dir": str(path.parent / "queue"),
        **extra,
    }
    path.write_text(
        "defaults\nlogfile " + str(path.parent / "mailhop.log") + "\n"
        "account lab\n"
        + "".join(f"{key} {value}\n" for key, value in lines.items())
        + "account default : lab\n",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def sendmail(
    arguments: list[str], message: bytes, *, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "mailhop", "sendmail", *arguments],
        input=message,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
        env=env,
    )


@pytest.fixture
def seed_config(tmp_path: Path, lab: Lab) -> Path:
    """The seed's account: implicit TLS on 465 with AUTH."""
    return write_account(tmp_path / "msmtprc", lab, port=lab.ports.submissions, starttls=False)


def headers_of(raw: bytes) -> bytes:
    return without_lab_trace(raw).split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"\n")


@pytest.mark.parametrize("auth", ["on", "login", "plain"])
def test_seed_account_over_465_delivers(tmp_path: Path, lab: Lab, auth: str) -> None:
    config = write_account(
        tmp_path / "rc", lab, port=lab.ports.submissions, starttls=False, auth=auth
    )
    token = unique_token()
    result = sendmail(
        ["-C", str(config), lab.user("bob").address],
        f"Subject: {token}\n\nhello over 465\n".encode(),
    )
    assert result.returncode == 0, result.stderr
    raw = wait_for_message(lab, lab.user("bob"), token)
    headers = headers_of(raw)
    assert b"From: alice@example.test" in headers
    assert b"Date: " in headers
    assert b"Message-ID: <" in headers
    log = (tmp_path / "mailhop.log").read_text()
    assert "tls=on auth=on user=alice@example.test" in log
    assert "smtpstatus=250" in log
    assert log.rstrip().endswith("exitcode=EX_OK")


def test_starttls_account_over_587_delivers(tmp_path: Path, lab: Lab) -> None:
    config = write_account(tmp_path / "rc", lab, port=lab.ports.submission, starttls=True)
    token = unique_token()
    result = sendmail(
        ["-v", "-C", str(config), lab.user("bob").address],
        f"Subject: {token}\n\nhello over 587\n".encode(),
    )
    assert result.returncode == 0, result.stderr
    wait_for_message(lab, lab.user("bob"), token)
    transcript = result.stderr.decode()
    assert transcript.index("--> STARTTLS") < transcript.index("--> AUTH")
    # The password never appears, in clear or base64, in the -v transcript.
    assert lab.user("alice").password not in transcript
    assert "<redacted>" in transcript


def test_dash_t_delivers_to_to_cc_and_bcc_without_the_bcc_header(
    seed_config: Path, lab: Lab
) -> None:
    token = unique_token()
    bob, carol, dave = lab.user("bob"), lab.user("carol"), lab.user("dave")
    message = (
        f"To: Bob <{bob.address}>\n"
        f"Cc: {carol.address}\n"
        f"bcc:\n  {dave.address}\n"
        f"Subject: {token}\n"
        f"Message-ID: {message_id_for(token)}\n"
        "\nthree copies, one secret\n"
    ).encode()
    result = sendmail(["-C", str(seed_config), "-t"], message)
    assert result.returncode == 0, result.stderr
    for user in (bob, carol, dave):
        headers = headers_of(wait_for_message(lab, user, token))
        assert b"bcc" not in headers.lower()
        assert dave.address.encode() not in headers


def test_cron_invocation(tmp_path: Path, lab: Lab, seed_config: Path) -> None:
    # Debian cron: sendmail -FCronDaemon -i -B8BITMIME -oem -oi -t, with its own headers
    # (From: root (Cron Daemon), To: the MAILTO address) and 8-bit output allowed.
    token = unique_token()
    message = (
        "From: root (Cron Daemon)\n"
        f"To: {lab.user('bob').address}\n"
        f"Subject: Cron <root@host> echo {token}\n"
        "Content-Type: text/plain; charset=UTF-8\n"
        "\ncron output: caf\u00e9 \u2713\n"
    ).encode()
    result = sendmail(
        ["-C", str(seed_config), "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "-oi", "-t"],
        message,
    )
    assert result.returncode == 0, result.stderr
    raw = without_lab_trace(wait_for_message(lab, lab.user("bob"), token))
    assert "caf\u00e9 \u2713".encode() in raw  # sent as 8BITMIME, byte-exact


def test_mailx_mutt_and_git_style_invocations(lab: Lab, seed_config: Path) -> None:
    bob, carol = lab.user("bob"), lab.user("carol")
    mailx_token, mutt_token = unique_token(), unique_token()
    mailx = sendmail(
        ["-C", str(seed_config), "-i", "-t", "-f", lab.user("alice").address],
        f"To: {bob.address}\nSubject: {mailx_token}\n\nfrom mailx\n.\nstill body\n".encode(),
    )
    assert mailx.returncode == 0, mailx.stderr
    # -i: the lone dot is content, not the end of the message.
    assert b"still body" in wait_for_message(lab, bob, mailx_token)
    mutt = sendmail(
        ["-C", str(seed_config), "-oem", "-oi", "--", bob.address, carol.address],
        f"Subject: {mutt_token}\n\nfrom mutt\n".encode(),
    )
    assert mutt.returncode == 0, mutt.stderr
    wait_for_message(lab, bob, mutt_token)
    wait_for_message(lab, carol, mutt_token)


def test_real_git_send_email(tmp_path: Path, lab: Lab) -> None:
    git = shutil.which("git")
    if git is None or not Path("/usr/lib/git-core/git-send-email").exists():
        pytest.skip("git send-email is not installed (apt-get install git-email)")
    home = tmp_path / "home"
    (home / ".config" / "mailhop").mkdir(parents=True)
    # mailhop finds its own config through XDG_CONFIG_HOME, as any user's would be.
    write_account(
        home / ".config" / "mailhop" / "config", lab, port=lab.ports.submissions, starttls=False
    )
    link = tmp_path / "bin" / "sendmail"
    link.parent.mkdir()
    link.write_text(f"#!{sys.executable}\nfrom mailhop.cli.main import run\nrun()\n")
    link.chmod(0o755)
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PATH": os.environ["PATH"],
        "GIT_AUTHOR_NAME": "Alice",
        "GIT_AUTHOR_EMAIL": lab.user("alice").address,
        "GIT_COMMITTER_NAME": "Alice",
        "GIT_COMMITTER_EMAIL": lab.user("alice").address,
    }
    repository = tmp_path / "repository"
    token = unique_token()
    repository.mkdir()

    def run_git(*arguments: str) -> None:
        subprocess.run(
            [git, *arguments], cwd=repository, env=env, check=True, capture_output=True,
            timeout=TIMEOUT,
        )  # fmt: skip

    run_git("init", "-q")
    (repository / "file").write_text("hello\n")
    run_git("add", "file")
    run_git("commit", "-q", "-m", f"patch {token}")
    run_git(
        "send-email", f"--smtp-server={link}", "--confirm=never", "--quiet",
        f"--to={lab.user('bob').address}", "-1",
    )  # fmt: skip
    raw = wait_for_message(lab, lab.user("bob"), token)
    assert f"[PATCH] patch {token}".encode() in raw


@pytest.mark.parametrize(
    ("recipient_name", "exit_code", "status"),
    [("permfail_recipient", 65, "550"), ("tempfail_recipient", 75, "451")],
)
def test_refused_recipients_give_honest_exit_codes(
    seed_config: Path, lab: Lab, recipient_name: str, exit_code: int, status: str
) -> None:
    token = unique_token()
    recipient = getattr(lab, recipient_name)
    result = sendmail(
        ["-C", str(seed_config), lab.user("bob").address, recipient],
        f"Subject: {token}\n\nall or nothing\n".encode(),
    )
    assert result.returncode == exit_code
    stderr = result.stderr.decode()
    assert stderr.startswith("sendmail: recipient address <")
    assert f"sendmail: {status}" in stderr
    log = (seed_config.parent / "mailhop.log").read_text()
    assert f"smtpstatus={status}" in log
    # All or nothing: bob got nothing either.
    with pytest.raises(AssertionError):
        wait_for_message(lab, lab.user("bob"), token, timeout=2)


def test_wrong_password_exits_77(tmp_path: Path, lab: Lab) -> None:
    config = write_account(
        tmp_path / "rc", lab, port=lab.ports.submissions, starttls=False, password="wrong"
    )
    result = sendmail(["-C", str(config), lab.user("bob").address], b"Subject: x\n\nx\n")
    assert result.returncode == 77
    assert b"authentication as alice@example.test failed" in result.stderr


def test_auth_without_tls_is_refused_before_any_password_is_sent(tmp_path: Path, lab: Lab) -> None:
    # Port 587 offers AUTH only after STARTTLS; with tls off mailhop must not try.
    config = write_account(
        tmp_path / "rc", lab, port=lab.ports.submission, starttls=True, tls="off"
    )
    result = sendmail(["-C", str(config), lab.user("bob").address], b"Subject: x\n\nx\n")
    assert result.returncode == 69
    assert b"set tls on" in result.stderr


def test_serverinfo_shows_auth_only_after_starttls(tmp_path: Path, lab: Lab) -> None:
    config = write_account(tmp_path / "rc", lab, port=lab.ports.submission, starttls=True)
    result = subprocess.run(
        [sys.executable, "-m", "mailhop", "serverinfo", "-C", str(config)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    before, _, after = result.stdout.partition("Capabilities after STARTTLS:")
    assert "Capabilities before STARTTLS:" in before
    assert "AUTH" not in before.split("Capabilities before STARTTLS:")[1]
    assert "AUTH:" in after and "PLAIN" in after
    assert "Issuer:\n        CN=mailhop lab test CA" in before
    assert "SHA256: " in before
