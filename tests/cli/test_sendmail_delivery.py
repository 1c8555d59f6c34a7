"""``mailhop sendmail`` as cron, mailx, mutt and git run it: a subprocess, an msmtprc.

These tests start the real command line (``python -m mailhop sendmail -C rc``) the
way callers do, against the scripted hostile server or aiosmtpd as the independent
reference, and check the bytes that reached the server, stderr and the log file,
not only the exit status.
"""

from __future__ import annotations

import base64
import email
import email.policy
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from mailhop.errors import ExitCode
from tests.deliver.deliver_support import (
    PASSWORD,
    SIMPLE_MESSAGE,
    run_sendmail,
    write_msmtprc,
)
from tests.deliver.scripted_server import (
    GREETING,
    Expect,
    ReferenceServer,
    ScriptedServer,
    Send,
    StartTLS,
    Step,
    accept_message,
    answer,
    ehlo,
    loopback_cert,
    reply,
    server_context,
    starttls_prelude,
)

USER = "joe"
PLAIN_PAYLOAD = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode())


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def tls_context(ca: trustme.CA) -> ssl.SSLContext:
    return server_context(loopback_cert(ca))


@pytest.fixture
def servers() -> Iterator[list[ScriptedServer | ReferenceServer]]:
    started: list[ScriptedServer | ReferenceServer] = []
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def reference(servers: list[ScriptedServer | ReferenceServer]) -> ReferenceServer:
    server = ReferenceServer()
    servers.append(server)
    return server


def scripted(
    servers: list[ScriptedServer | ReferenceServer],
    script: list[Step],
    tls_context: ssl.SSLContext | None = None,
) -> ScriptedServer:
    server = ScriptedServer(script, tls_context=tls_context)
    servers.append(server)
    return server


def stderr_of(result: object) -> str:
    return getattr(result, "stderr", b"").decode("utf-8", "replace")


# --- invariant 3 through the real command line -------------------------------------


def test_starttls_stripped_exits_69_with_only_ehlo_on_the_wire(
    servers: list[ScriptedServer | ReferenceServer], tmp_path: Path, ca_file: Path
) -> None:
    server = scripted(servers, [*GREETING, *ehlo("AUTH PLAIN LOGIN", "PIPELINING")])
    config = write_msmtprc(
        tmp_path, server.port, "auth on", f"user {USER}", f"password {PASSWORD}", ca_file=ca_file
    )
    result = run_sendmail(config, "-t")
    assert result.returncode == ExitCode.UNAVAILABLE, stderr_of(result)
    assert "STARTTLS" in stderr_of(result)
    capture = server.wait()
    assert set(capture.verbs()) <= {b"EHLO", b"QUIT"}
    assert PASSWORD.encode() not in capture.received


def test_starttls_injection_exits_76_and_never_authenticates(
    servers: list[ScriptedServer | ReferenceServer],
    tmp_path: Path,
    ca_file: Path,
    tls_context: ssl.SSLContext,
) -> None:
    server = scripted(
        servers,
        [
            *GREETING,
            *ehlo("STARTTLS"),
            Expect(b"STARTTLS"),
            Send(b"220 Ready\r\n250-evil\r\n250 AUTH PLAIN\r\n"),
            StartTLS(),
            *ehlo(),
        ],
        tls_context,
    )
    config = write_msmtprc(
        tmp_path, server.port, "auth on", f"user {USER}", f"password {PASSWORD}", ca_file=ca_file
    )
    result = run_sendmail(config, "-t")
    assert result.returncode == ExitCode.PROTOCOL, stderr_of(result)
    capture = server.wait()
    assert capture.verbs() == [b"EHLO", b"STARTTLS"]
    assert not capture.tls_established


# --- AUTH ----------------------------------------------------------------------------


def test_plaintext_auth_is_refused_locally_and_names_the_setting(
    servers: list[ScriptedServer | ReferenceServer], tmp_path: Path
) -> None:
    server = scripted(servers, [*GREETING, *ehlo("AUTH PLAIN LOGIN")])
    config = write_msmtprc(
        tmp_path, server.port, "tls off", "auth on", f"user {USER}", f"password {PASSWORD}"
    )
    result = run_sendmail(config, "-t")
    assert result.returncode == ExitCode.UNAVAILABLE, stderr_of(result)
    assert "allow_plaintext_auth" in stderr_of(result)
    capture = server.wait()
    assert not capture.sent_any(b"AUTH", b"MAIL")
    for secret in (PASSWORD.encode(), PLAIN_PAYLOAD, base64.b64encode(PASSWORD.encode())):
        assert secret not in capture.received


def test_plaintext_auth_works_when_allowed(
    servers: list[ScriptedServer | ReferenceServer], tmp_path: Path
) -> None:
    server = scripted(
        servers,
        [*GREETING, *ehlo("AUTH PLAIN LOGIN"), *answer(b"AUTH PLAIN", 235, "ok"),
         *accept_message()],
    )  # fmt: skip
    config = write_msmtprc(
        tmp_path,
        server.port,
        "tls off",
        "auth on",
        f"user {USER}",
        f"password {PASSWORD}",
        "allow_plaintext_auth on",
    )
    result = run_sendmail(config, "-t")
    assert result.returncode == ExitCode.OK, stderr_of(result)
    assert server.wait().commands(b"AUTH") == [b"AUTH PLAIN " + PLAIN_PAYLOAD]


def test_verbose_transcript_redacts_credentials(
    servers: list[ScriptedServer | ReferenceServer],
    tmp_path: Path,
    ca_file: Path,
    tls_context: ssl.SSLContext,
) -> None:
    server = scripted(
        servers,
        [
            *starttls_prelude(after=["AUTH PLAIN LOGIN", "PIPELINING"]),
            *answer(b"AUTH PLAIN", 235, "2.7.0 ok"),
            *accept_message(),
        ],
        tls_context,
    )
    config = write_msmtprc(
        tmp_path, server.port, "auth on", f"user {USER}", f"password {PASSWORD}", ca_file=ca_file
    )
    result = run_sendmail(config, "-v", "-t")
    assert result.returncode == ExitCode.OK, stderr_of(result)
    transcript = result.stderr
    assert b"--> AUTH PLAIN <redacted>" in transcript
    for secret in (PASSWORD.encode(), PLAIN_PAYLOAD, base64.b64encode(PASSWORD.encode())):
        assert secret not in transcript
        assert secret not in result.stdout
    assert PLAIN_PAYLOAD in server.wait().after_tls  # it did cross, inside TLS


@pytest.mark.parametrize("reply_line", [b"535 5.7.8 bad credentials\r\n"])
def test_auth_refused_exits_77(
    servers: list[ScriptedServer | ReferenceServer],
    tmp_path: Path,
    ca_file: Path,
    tls_context: ssl.SSLContext,
    reply_line: bytes,
) -> None:
    server = scripted(
        servers,
        [*starttls_prelude(after=["AUTH PLAIN"]), Expect(b"AUTH"), Send(reply_line)],
        tls_context,
    )
    config = write_msmtprc(
        tmp_path, server.port, "auth on", f"user {USER}", f"password {PASSWORD}", ca_file=ca_file
    )
    result = run_sendmail(config, "-t")
    assert result.returncode == ExitCode.NOPERM, stderr_of(result)
    assert "535" in stderr_of(result)
    assert PASSWORD not in stderr_of(result)


def test_failing_passwordeval_exits_78_and_sends_nothing(
    servers: list[ScriptedServer | ReferenceServer],
    tmp_path: Path,
    ca_file: Path,
    tls_context: ssl.SSLContext,
) -> None:
    server = scripted(
        servers,
        [*starttls_prelude(after=["AUTH PLAIN"]), *answer(b"AUTH", 235, "ok")],
        tls_context,
    )
    config = write_msmtprc(
        tmp_path,
        server.port,
        "auth on",
        f"user {USER}",
        f"passwordeval echo {PASSWORD}; exit 1",
        ca_file=ca_file,
    )
    result = run_sendmail(config, "-t")
    assert result.returncode == ExitCode.CONFIG, stderr_of(result)
    assert PASSWORD not in stderr_of(result)
    if server.connections:
        capture = server.wait()
        assert not capture.sent_any(b"AUTH", b"MAIL")
        assert PASSWORD.encode() not in capture.received


# --- envelope and headers ------------------------------------------------------------

FOLDED_HEADERS = (
    b"From: Sender <sender@example.test>\r\n"
    b"TO: Alice <alice@example.test>,\r\n"
    b"  bob@example.test\r\n"
    b"cc: carol@example.test\r\n"
    b"bCC: dave@example.test,\r\n"
    b"\teve@example.test\r\n"
    b"Subject: folded\r\n"
    b"\r\n"
    b"Body.\r\n"
)


def test_dash_t_sends_to_all_and_strips_bcc(reference: ReferenceServer, tmp_path: Path) -> None:
    config = write_msmtprc(tmp_path, reference.port, "tls off")
    result = run_sendmail(config, "-t", message=FOLDED_HEADERS)
    assert result.returncode == ExitCode.OK, stderr_of(result)
    [envelope] = reference.envelopes
    assert sorted(envelope.recipients) == [
        "alice@example.test",
        "bob@example.test",
        "carol@example.test",
        "dave@example.test",
        "eve@example.test",
    ]
    parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert b"eve@example.test" not in envelope.content
    assert b"dave@example.test" not in envelope.content
    assert parsed["Cc"] == "carol@example.test"


def test_dash_t_with_resent_headers_strips_resent_bcc(
    reference: ReferenceServer, tmp_path: Path
) -> None:
    message = (
        b"Resent-From: forwarder@example.test\r\n"
        b"Resent-To: new@example.test\r\n"
        b"Resent-Bcc: secret@example.test\r\n"
        b"From: original@example.test\r\n"
        b"To: old@example.test\r\n"
        b"Subject: resent\r\n"
        b"\r\n"
        b"Body.\r\n"
    )
    config = write_msmtprc(tmp_path, reference.port, "tls off")
    result = run_sendmail(config, "-t", message=message)
    assert result.returncode == ExitCode.OK, stderr_of(result)
    [envelope] = reference.envelopes
    assert sorted(envelope.recipients) == ["new@example.test", "secret@example.test"]
    assert b"secret@example.test" not in envelope.content
    assert b"resent-bcc" not in envelope.content.lower()


@pytest.mark.parametrize(
    "arguments",
    [
        ["victim@example.test\r\nRCPT TO:<evil@example.test>"],
        ["victim@example.test\nDATA"],
        ["victim@example.test\r"],
        ["--", "-oQ/tmp"],
        ["--", "-X/tmp/pwn.log"],
        ["-f", "a@example.test>\r\nRSET", "b@example.test"],
    ],
    ids=["crlf-rcpt", "lf", "cr", "dash-oQ", "dash-X", "crlf-sender"],
)
def test_unsafe_arguments_exit_before_connecting(
    servers: list[ScriptedServer | ReferenceServer], tmp_path: Path, arguments: list[str]
) -> None:
    server = scripted(servers, [*GREETING, *ehlo(), *accept_message()])
    config = write_msmtprc(tmp_path, server.port, "tls off")
    result = run_sendmail(config, *arguments)
    assert result.returncode in (ExitCode.USAGE, ExitCode.DATAERR), stderr_of(result)
    if arguments[0] != "-f":
        assert result.returncode == ExitCode.USAGE
    assert server.connections == 0
    assert not Path("/tmp/pwn.log").exists() or "X/tmp/pwn" not in arguments[-1]


def test_nul_in_a_recipient_argument_exits_64(
    servers: list[ScriptedServer | ReferenceServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # exec cannot pass a NUL in argv, but a library caller can: run main() in-process.
    from mailhop.cli.main import main

    server = scripted(servers, [*GREETING, *ehlo(), *accept_message()])
    config = write_msmtprc(tmp_path, server.port, "tls off")
    monkeypatch.setattr("sys.stdin", _BytesStdin(SIMPLE_MESSAGE))
    code = main(["sendmail", "-C", str(config), "victim@example.test\0evil"])
    assert code == ExitCode.USAGE, capsys.readouterr().err
    assert server.connections == 0


class _BytesStdin:
    def __init__(self, data: bytes) -> None:
        import io

        self.buffer = io.BytesIO(data)


CRON_MESSAGE = (
    b"From: root (Cron Daemon)\n"
    b"To: root@example.test\n"
    b"Subject: Cron <root@host> run-parts /etc/cron.daily\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: text/plain; charset=UTF-8\n"
    b"Content-Transfer-Encoding: 8bit\n"
    b"X-Cron-Env: <SHELL=/bin/sh>\n"
    b"\n"
    b"/etc/cron.daily/logrotate:\n"
    b".\n"
    b"error: r\xc3\xa9pertoire\n"
)


@pytest.mark.parametrize(
    "case",
    [
        (
            "cron",
            ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "-oi", "-t"],
            CRON_MESSAGE,
            "sender@example.test",
            ["root@example.test"],
        ),
        (
            "mailx",
            ["-i", "-t", "-f", "me@example.test"],
            b"To: you@example.test\nSubject: from mailx\n\nhello\n.\nstill here\n",
            "me@example.test",
            ["you@example.test"],
        ),
        (
            "mutt",
            ["-oem", "-oi", "--", "a@example.test", "b@example.test"],
            b"From: me@example.test\nTo: a@example.test\nCc: b@example.test\n"
            b"Subject: mutt\n\nbody\n",
            "sender@example.test",
            ["a@example.test", "b@example.test"],
        ),
        (
            "git send-email",
            ["-i", "maintainer@example.test"],
            b"From: dev@example.test\nTo: maintainer@example.test\n"
            b"Subject: [PATCH] fix\n\n---\n file | 1 +\n",
            "sender@example.test",
            ["maintainer@example.test"],
        ),
    ],
    ids=["cron", "mailx", "mutt", "git-send-email"],
)
def test_real_callers_against_aiosmtpd(
    reference: ReferenceServer,
    tmp_path: Path,
    case: tuple[str, list[str], bytes, str, list[str]],
) -> None:
    caller, arguments, message, sender, recipients = case
    config = write_msmtprc(tmp_path, reference.port, "tls off")
    result = run_sendmail(config, *arguments, message=message)
    assert result.returncode == ExitCode.OK, stderr_of(result)
    [envelope] = reference.envelopes
    assert envelope.sender == sender
    assert sorted(envelope.recipients) == sorted(recipients)
    # The body arrived whole: -i/-oi keep a lone "." line as content.
    body = envelope.content.split(b"\r\n\r\n", 1)[1]
    expected_body = message.split(b"\n\n", 1)[1].replace(b"\n", b"\r\n")
    if caller == "cron":
        # 8-bit content: aiosmtpd offers 8BITMIME, so it travels as it is.
        assert "BODY=8BITMIME" in envelope.mail_options
    assert body == expected_body
    parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert parsed["Message-ID"] is not None and parsed["Date"] is not None
    wire = reference.wire()
    assert b"\r\n.\r\n" in wire


def test_cron_full_name_goes_into_an_added_from_header(
    reference: ReferenceServer, tmp_path: Path
) -> None:
    config = write_msmtprc(tmp_path, reference.port, "tls off")
    message = b"To: root@example.test\nSubject: no from\n\nbody\n"
    result = run_sendmail(config, "-FCronDaemon", "-i", "-t", message=message)
    assert result.returncode == ExitCode.OK, stderr_of(result)
    parsed = email.message_from_bytes(reference.envelopes[0].content, policy=email.policy.default)
    assert parsed["From"] == "CronDaemon <sender@example.test>"


def test_null_sender(reference: ReferenceServer, tmp_path: Path) -> None:
    config = write_msmtprc(tmp_path, reference.port, "tls off")
    result = run_sendmail(config, "-f", "<>", "rcpt@example.test")
    assert result.returncode == ExitCode.OK, stderr_of(result)
    [mail] = [line for line in reference.wire().split(b"\r\n") if line.startswith(b"MAIL")]
    assert mail.split(b" ")[:2] == [b"MAIL", b"FROM:<>"]
    assert reference.envelopes[0].sender == "<>"  # aiosmtpd's spelling of the null path


def test_read_envelope_from(reference: ReferenceServer, tmp_path: Path) -> None:
    config = write_msmtprc(tmp_path, reference.port, "tls off")
    message = b"From: Author <author@example.test>\nTo: rcpt@example.test\n\nbody\n"
    result = run_sendmail(config, "--read-envelope-from", "-t", message=message)
    assert result.returncode == ExitCode.OK, stderr_of(result)
    assert b"MAIL FROM:<author@example.test>" in reference.wire()


def test_read_envelope_from_without_from_header_is_a_usage_error(
    reference: ReferenceServer, tmp_path: Path
) -> None:
    config = write_msmtprc(tmp_path, reference.port, "tls off")
    result = run_sendmail(
        config, "--read-envelope-from", "-t", message=b"To: rcpt@example.test\n\nbody\n"
    )
    assert result.returncode == ExitCode.USAGE, stderr_of(result)
    assert reference.envelopes == []


def test_dsn_options_from_the_command_line(
    servers: list[ScriptedServer | ReferenceServer], tmp_path: Path
) -> None:
    server = scripted(
        servers, [*GREETING, *ehlo("PIPELINING", "DSN"), *accept_message(recipients=2)]
    )
    config = write_msmtprc(tmp_path, server.port, "tls off")
    result = run_sendmail(
        config, "-N", "failure,delay", "-R", "hdrs", "a@example.test", "b@example.test"
    )
    assert result.returncode == ExitCode.OK, stderr_of(result)
    capture = server.wait()
    assert capture.commands(b"MAIL")[0].endswith(b" RET=HDRS")
    rcpts = capture.commands(b"RCPT")
    assert len(rcpts) == 2
    assert all(line.endswith(b" NOTIFY=FAILURE,DELAY") for line in rcpts)


# --- exit codes and the log ----------------------------------------------------------


def test_log_line_after_success(reference: ReferenceServer, tmp_path: Path) -> None:
    log = tmp_path / "mailhop.log"
    config = write_msmtprc(
        tmp_path, reference.port, "tls off", f"logfile {log}", "logfile_time_format none"
    )
    result = run_sendmail(config, "a@example.test", "b@example.test")
    assert result.returncode == ExitCode.OK, stderr_of(result)
    [line] = log.read_text().splitlines()
    assert line.startswith(
        "host=127.0.0.1 tls=off auth=off from=sender@example.test "
        "recipients=a@example.test,b@example.test mailsize="
    )
    assert " smtpstatus=250 smtpmsg='250 2.0.0 Ok: queued' " in line
    assert line.endswith(" exitcode=EX_OK")


def test_log_line_and_exit_code_after_a_refused_recipient(
    servers: list[ScriptedServer | ReferenceServer], tmp_path: Path
) -> None:
    server = scripted(
        servers,
        [
            *GREETING,
            *ehlo("PIPELINING"),
            *answer(b"MAIL", 250, "ok"),
            *answer(b"RCPT", 250, "ok"),
            *answer(b"RCPT", 550, "5.1.1 no such user"),
            *answer(b"DATA", 354, "go ahead"),
        ],
    )
    log = tmp_path / "mailhop.log"
    config = write_msmtprc(
        tmp_path, server.port, "tls off", f"logfile {log}", "logfile_time_format none"
    )
    result = run_sendmail(config, "good@example.test", "bad@example.test")
    assert result.returncode == ExitCode.DATAERR, stderr_of(result)
    assert "550 5.1.1 no such user" in stderr_of(result)
    [line] = log.read_text().splitlines()
    assert "recipients=good@example.test,bad@example.test " in line
    assert " smtpstatus=550 smtpmsg='550 5.1.1 no such user' " in line
    assert "errormsg='recipient address <bad@example.test> not accepted" in line
    assert line.endswith(" exitcode=EX_DATAERR")
    assert server.wait().data_blocks == []


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ([Send(reply(421, "4.3.2 try later"))], ExitCode.TEMPFAIL),
        ([Send(reply(554, "5.3.2 go away"))], ExitCode.UNAVAILABLE),
        ([*GREETING, *ehlo(), *answer(b"MAIL", 451, "4.3.0 later")], ExitCode.TEMPFAIL),
        ([*GREETING, *ehlo(), *answer(b"MAIL", 550, "5.7.1 no")], ExitCode.DATAERR),
    ],
    ids=["greeting-421", "greeting-554", "mail-451", "mail-550"],
)
def test_exit_codes_of_the_process(
    servers: list[ScriptedServer | ReferenceServer],
    tmp_path: Path,
    script: list[Step],
    expected: ExitCode,
) -> None:
    server = scripted(servers, script)
    # msmtp's contract (queue off): the exit code tells the result; the default
    # (queue fallback) would keep a 4xx message and exit 0 (issue #4).
    config = write_msmtprc(tmp_path, server.port, "tls off", "queue off")
    result = run_sendmail(config, "rcpt@example.test")
    assert result.returncode == expected, stderr_of(result)
    assert "could not send mail" in stderr_of(result)


@pytest.mark.parametrize("spelling", [["-R", "hdrs"], ["--dsn-return=hdrs"], ["-R", "full"]])
def test_dsn_return_spellings_of_the_command_line(tmp_path: Path, spelling: list[str]) -> None:
    # msmtp takes sendmail's "hdrs" on the command line (msmtp.md §2.2), where the
    # configuration file says "headers".
    config = write_msmtprc(tmp_path, 25, "tls off")
    result = run_sendmail(config, "--pretend", *spelling)
    assert result.returncode == ExitCode.OK, stderr_of(result)
    expected = "HDRS" if "hdrs" in spelling[-1] else "FULL"
    assert f"dsn_return = {expected}" in result.stdout.decode()
