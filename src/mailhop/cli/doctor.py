"""``mailhop doctor [-C FILE] [-a ACCOUNT] [--json]``: is mail from this machine going out?

One line per check, each with a verdict and, when something is wrong, the fix::

    config     files parse; a user file is not readable by others
    account    the account resolves and passes msmtp's checks
    port       the port matches the TLS mode (465 is implicit TLS, RFC 8314 §3.3)
    dns        the host name resolves
    tcp        the port accepts a connection
    tls        the certificate is trusted, and not expiring within EXPIRY_WARNING_DAYS
    auth       the server accepts the login (nothing is sent; QUIT after AUTH)
    sendmail   /usr/sbin/sendmail is mailhop (cron and mailx call that path)
    aliases    mail for root and the cron user goes somewhere a person reads
    queue      no stuck, held or quarantined entries
    log        the account's log shows no recent failures

A check that cannot run because an earlier one failed says "skip" and why. The
exit status is 0 when nothing failed, else the sysexits code of the first failure
(77 for a refused login, 69 for an untrusted certificate, ...).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import os
import stat
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from mailhop.errors import ExitCode, MailhopError, UsageError

if TYPE_CHECKING:
    from mailhop.config import Account

# A certificate that expires sooner than this gets a warning: time to renew, or to
# ask the provider, before mail stops (Let's Encrypt renews at 30 days left).
EXPIRY_WARNING_DAYS = 14
# How much of the end of a log file is read for recent failures.
MAX_LOG_TAIL_BYTES = 64 * 1024
# Log lines looked at (the most recent ones).
LOG_RECENT_LINES = 50
# A queue entry waiting longer than this is "stuck" (a day of retries failed).
STUCK_AFTER_SECONDS = 24 * 3600
# Entries the queue check reads at most (a doctor run must stay quick).
MAX_QUEUE_ENTRIES_CHECKED = 10_000
DEFAULT_NETWORK_TIMEOUT_SECONDS = 15
SENDMAIL_PATH = "/usr/sbin/sendmail"
SYSTEM_ALIASES = "/etc/aliases"


class Verdict(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Check:
    """The outcome of one check."""

    name: str
    verdict: Verdict
    message: str
    fix: str | None = None
    exit_code: ExitCode = ExitCode.OK


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    config_file: str | None = None
    account_name: str | None = None
    timeout: int = DEFAULT_NETWORK_TIMEOUT_SECONDS
    sendmail_path: str = SENDMAIL_PATH
    aliases_path: str = SYSTEM_ALIASES
    queue_dir: str | None = None
    as_json: bool = False


def main(program: str, arguments: list[str]) -> int:
    options = _parse(program, arguments)
    if options is None:
        sys.stdout.write(__doc__.split("\n\n")[0] + "\n" if __doc__ else "")
        return ExitCode.OK
    checks = run_checks(options)
    if options.as_json:
        import json  # noqa: PLC0415

        sys.stdout.write(
            json.dumps(
                [
                    {
                        **dataclasses.asdict(check),
                        "verdict": check.verdict.value,
                        "exit_code": int(check.exit_code),
                    }
                    for check in checks
                ],
                indent=2,
            )
            + "\n"
        )
    else:
        for check in checks:
            fix = f" -- fix: {check.fix}" if check.fix else ""
            sys.stdout.write(f"[{check.verdict.value:>4}] {check.name}: {check.message}{fix}\n")
        failed = [check for check in checks if check.verdict is Verdict.FAIL]
        sys.stdout.write(
            "all checks passed: mail from this machine should go out\n"
            if not failed
            else f"{len(failed)} problem(s) found\n"
        )
    for check in checks:
        if check.verdict is Verdict.FAIL:
            return check.exit_code or ExitCode.SOFTWARE
    return ExitCode.OK


def _parse(program: str, arguments: list[str]) -> Options | None:
    values: dict[str, object] = {}
    names = {
        "-C": "config_file", "--file": "config_file", "-a": "account_name",
        "--account": "account_name", "--timeout": "timeout",
        "--sendmail-path": "sendmail_path", "--aliases-path": "aliases_path",
        "--queue-dir": "queue_dir",
    }  # fmt: skip
    words = iter(arguments)
    for word in words:
        if word in ("-h", "--help"):
            return None
        if word == "--json":
            values["as_json"] = True
            continue
        key, _, inline = word.partition("=")
        if key not in names:
            raise UsageError(
                f"unknown option '{word}'; usage: {program} [-C FILE] [-a ACCOUNT] [--json]"
            )
        value = inline if inline else next(words, None)
        if value is None:
            raise UsageError(f"{key} needs a value")
        values[names[key]] = int(value) if names[key] == "timeout" else value
    return Options(**values)  # type: ignore[arg-type]


Step = Callable[[], Check]


def run_checks(options: Options) -> list[Check]:
    """Every check, in order; later network checks are skipped after an earlier failure."""
    checks: list[Check] = [_config_check(options)]
    account: Account | None = None
    if checks[0].verdict is not Verdict.FAIL:
        account_check, account = _account_check(options)
        checks.append(account_check)
    else:
        checks.append(_skip("account", "the configuration does not load"))
    if account is not None:
        checks += _network_checks(account, options)
    else:
        checks += [
            _skip(name, "no usable account") for name in ("port", "dns", "tcp", "tls", "auth")
        ]
    checks.append(_sendmail_check(options.sendmail_path))
    checks.append(_aliases_check(options.aliases_path))
    checks.append(_queue_check(options.queue_dir))
    checks.append(_log_check(account))
    return checks


def _skip(name: str, why: str) -> Check:
    return Check(name=name, verdict=Verdict.SKIP, message=f"not checked: {why}")


def _fail(name: str, error: MailhopError, fix: str) -> Check:
    detail = "; ".join(error.details[:2])
    message = str(error) + (f" ({detail})" if detail else "")
    return Check(
        name=name, verdict=Verdict.FAIL, message=message, fix=fix, exit_code=error.exit_code
    )


def _config_check(options: Options) -> Check:
    from mailhop.config import load  # noqa: PLC0415
    from mailhop.config.errors import InsecureConfigError  # noqa: PLC0415

    try:
        configuration = load(options.config_file)
    except InsecureConfigError as error:
        return _fail("config", error, "make the file private to you (the command above)")
    except MailhopError as error:
        return _fail(
            "config", error, "correct the line named above; 'mailhop config check' shows it"
        )
    files = [f for f in (configuration.user_file, configuration.system_file) if f]
    if not files:
        return Check(
            name="config", verdict=Verdict.FAIL, message="no configuration file found",
            fix="run: mailhop configure you@example.com", exit_code=ExitCode.CONFIG,
        )  # fmt: skip
    user_file = configuration.user_file
    if user_file is not None:
        mode = stat.S_IMODE(os.stat(user_file).st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            # It may hold no password (passwordeval), but it says where secrets are.
            return Check(
                name="config", verdict=Verdict.WARN,
                message=f"{user_file} is readable by others (mode {mode:03o})",
                fix=f"chmod 600 {user_file}",
            )  # fmt: skip
    return Check(name="config", verdict=Verdict.OK, message=f"{', '.join(files)} parse")


def _account_check(options: Options) -> tuple[Check, Account | None]:
    from mailhop.config import resolve  # noqa: PLC0415

    try:
        account = resolve(
            config_file=options.config_file, account_name=options.account_name
        ).account
    except MailhopError as error:
        return _fail(
            "account", error, "add the setting named above, or run mailhop configure"
        ), None
    if options.timeout:
        account = account._replace(timeout=options.timeout)
    where = account.socket or f"{account.host}:{account.port}"
    return (
        Check(
            name="account",
            verdict=Verdict.OK,
            message=f"{account.name} ({where}, tls {account.tls_mode.value}, "
            f"auth {account.auth.value}, from {account.from_address})",
        ),
        account,
    )


def _network_checks(account: Account, options: Options) -> list[Check]:
    from mailhop.config import TlsMode  # noqa: PLC0415

    names = ("dns", "tcp", "tls", "auth")
    if account.socket:
        return [_skip(name, "the account uses a Unix socket") for name in ("port", *names)]
    checks: list[Check] = []
    mode = account.tls_mode
    if account.port == 465 and mode is not TlsMode.IMPLICIT:
        checks.append(
            Check(
                name="port",
                verdict=Verdict.FAIL,
                message="port 465 speaks TLS from the first byte (RFC 8314 §3.3), but the "
                f"account uses {'STARTTLS' if mode is TlsMode.STARTTLS else 'no TLS'}",
                fix="set 'tls on' and 'tls_starttls off' (or port 587 for STARTTLS)",
                exit_code=ExitCode.CONFIG,
            )
        )
        return checks + [_skip(name, "fix the port/TLS mode first") for name in names]
    if account.port == 587 and mode is TlsMode.IMPLICIT:
        checks.append(
            Check(
                name="port",
                verdict=Verdict.FAIL,
                message="port 587 starts in plain text and upgrades with STARTTLS "
                "(RFC 6409), but the account expects TLS from the first byte",
                fix="set 'tls_starttls on' (or port 465 for implicit TLS)",
                exit_code=ExitCode.CONFIG,
            )
        )
        return checks + [_skip(name, "fix the port/TLS mode first") for name in names]
    if mode is TlsMode.OFF:
        checks.append(
            Check(
                name="port",
                verdict=Verdict.WARN,
                message=f"port {account.port} without TLS: the password and mail cross "
                "the network in clear",
                fix="use port 465 with 'tls on' and 'tls_starttls off'",
            )
        )
    else:
        checks.append(
            Check(name="port", verdict=Verdict.OK, message=f"{account.port} with {mode.value} TLS")
        )
    checks += _connection_checks(account)
    return checks


def _connection_checks(account: Account) -> list[Check]:
    from mailhop.deliver.smtp import SmtpSession  # noqa: PLC0415
    from mailhop.net.errors import (  # noqa: PLC0415
        ConnectError,
        HostNotFoundError,
        NameResolutionError,
        TLSError,
    )
    from mailhop.net.transport import resolve_host  # noqa: PLC0415

    host, port = account.host or "", account.port or 25
    try:
        addresses = resolve_host(host, port)
    except (HostNotFoundError, NameResolutionError) as error:
        return [
            _fail("dns", error, f"check the host name '{host}', or this machine's DNS"),
            *[_skip(name, "the host name does not resolve") for name in ("tcp", "tls", "auth")],
        ]
    checks = [
        Check(name="dns", verdict=Verdict.OK, message=f"{host} has {len(addresses)} address(es)")
    ]
    session = SmtpSession(account)
    try:
        try:
            session.open(authenticate=False)
        except ConnectError as error:
            return [
                *checks,
                _fail("tcp", error, "check the port: submission is 465 (implicit TLS) or 587 "
                      "(STARTTLS); a firewall may block it; run mailhop configure to probe"),
                *[_skip(name, "no connection") for name in ("tls", "auth")],
            ]  # fmt: skip
        except TLSError as error:
            checks.append(
                Check(name="tcp", verdict=Verdict.OK, message=f"connected to {host}:{port}")
            )
            return [
                *checks,
                _fail("tls", error, "the server's certificate is not trusted: renew it on the "
                      "server, or set tls_trust_file to the CA that signed it"),
                _skip("auth", "TLS failed"),
            ]  # fmt: skip
        except MailhopError as error:
            checks.append(
                Check(name="tcp", verdict=Verdict.OK, message=f"connected to {host}:{port}")
            )
            return [
                *checks,
                _fail("tls", error, "the server does not speak what the account expects on "
                      "this port: check port, tls and tls_starttls (mailhop configure probes)"),
                _skip("auth", "the connection failed"),
            ]  # fmt: skip
        checks.append(Check(name="tcp", verdict=Verdict.OK, message=f"connected to {host}:{port}"))
        checks.append(_tls_verdict(session))
    finally:
        session.close()
    checks.append(_auth_check(account))
    return checks


def _tls_verdict(session: object) -> Check:
    from mailhop.deliver.smtp import SmtpSession  # noqa: PLC0415

    assert isinstance(session, SmtpSession)  # noqa: S101 - typing aid
    if not session.account.tls:
        return _skip("tls", "the account does not use TLS")
    certificate = session.transport.info.describe_certificate()
    if certificate is None or certificate.not_after is None:
        return Check(name="tls", verdict=Verdict.OK, message="TLS active")
    now = datetime.datetime.now(tz=datetime.UTC)
    not_after = certificate.not_after
    if not_after.tzinfo is None:
        not_after = not_after.replace(tzinfo=datetime.UTC)
    days = (not_after - now).days
    message = (
        f"{certificate.tls_version or 'TLS'}, certificate {certificate.subject} "
        f"trusted, expires {not_after:%Y-%m-%d} ({days} days)"
    )
    if days < EXPIRY_WARNING_DAYS:
        return Check(
            name="tls", verdict=Verdict.WARN, message=message,
            fix="the certificate expires soon: renew it (or tell the provider)",
        )  # fmt: skip
    return Check(name="tls", verdict=Verdict.OK, message=message)


def _auth_check(account: Account) -> Check:
    from mailhop.config import Auth  # noqa: PLC0415
    from mailhop.deliver.errors import AuthenticationRefusedError  # noqa: PLC0415
    from mailhop.deliver.smtp import SmtpSession  # noqa: PLC0415

    if account.auth is Auth.NONE:
        return _skip("auth", "the account does not log in (auth off)")
    try:
        with SmtpSession(account) as session:
            session.open(authenticate=True)
            user = session.authenticated_as
    except AuthenticationRefusedError as error:
        return _fail(
            "auth", error, f"the server refused the password for {account.user}: store the "
            "right one (mailhop configure ... --yes), or an app password if the provider needs one",
        )  # fmt: skip
    except MailhopError as error:
        return _fail("auth", error, "see the message; 'mailhop sendmail -v' shows the dialogue")
    return Check(name="auth", verdict=Verdict.OK, message=f"logged in as {user} (nothing sent)")


def _sendmail_check(path: str) -> Check:
    if not os.path.lexists(path):
        return Check(
            name="sendmail", verdict=Verdict.FAIL,
            message=f"{path} does not exist: cron, mailx and scripts cannot send mail",
            fix=f"ln -s \"$(command -v mailhop)\" {path}  (as root; or install a package "
            "that provides it)",
            exit_code=ExitCode.UNAVAILABLE,
        )  # fmt: skip
    real = os.path.realpath(path)
    if _is_mailhop(real):
        return Check(name="sendmail", verdict=Verdict.OK, message=f"{path} is mailhop ({real})")
    return Check(
        name="sendmail", verdict=Verdict.WARN,
        message=f"{path} is not mailhop ({real}): cron's mail goes through another MTA",
        fix=f"if mailhop should send system mail: ln -sf \"$(command -v mailhop)\" {path}",
    )  # fmt: skip


def _is_mailhop(path: str) -> bool:
    if os.path.basename(path).startswith("mailhop"):
        return True
    try:
        with open(path, "rb") as file:
            head = file.read(4096)
    except OSError:
        return False
    # A console-script wrapper: a small text file that imports mailhop's entry point.
    return head.startswith(b"#!") and b"mailhop" in head


def _aliases_check(path: str) -> Check:
    try:
        from mailhop.deliver import aliases  # noqa: PLC0415
    except ImportError:
        return _skip("aliases", "needs local delivery and aliases")
    if not os.path.exists(path):
        return Check(
            name="aliases", verdict=Verdict.WARN,
            message=f"{path} does not exist: mail for root stays on this machine",
            fix=f"create {path} with 'root: you@example.com'",
        )  # fmt: skip
    try:
        table = aliases.load_aliases(path)
        names = ["root"]
        cron_user = os.environ.get("USER") or os.environ.get("LOGNAME")
        if cron_user and cron_user != "root":
            names.append(cron_user)
        expansion = aliases.expand(names, system=table, is_local_domain=lambda _domain: False)
    except MailhopError as error:
        return _fail("aliases", error, f"correct {path}, then run newaliases")
    local_only = [
        d.original for d in expansion.destinations
        if d.kind is aliases.DestinationKind.LOCAL_USER and d.value == "root"
    ]  # fmt: skip
    described = ", ".join(f"{d.original} -> {d.value}" for d in expansion.destinations)
    if local_only:
        return Check(
            name="aliases", verdict=Verdict.WARN,
            message=f"{described}: mail for root stays in a local mailbox nobody may read",
            fix=f"add 'root: you@example.com' to {path}",
        )  # fmt: skip
    return Check(name="aliases", verdict=Verdict.OK, message=described)


def _queue_check(queue_dir: str | None) -> Check:
    import time  # noqa: PLC0415

    from mailhop.queue import spool  # noqa: PLC0415
    from mailhop.queue.location import default_queue_directory  # noqa: PLC0415

    root = queue_dir or default_queue_directory()
    if not os.path.isdir(root):
        return Check(name="queue", verdict=Verdict.OK, message=f"empty ({root} does not exist)")
    queue = spool.Spool(root)
    try:
        ids = queue.ids()[:MAX_QUEUE_ENTRIES_CHECKED]
        quarantined = queue.quarantined()
        now = time.time()
        stuck, held = [], []
        for entry_id in ids:
            entry = queue.load(entry_id)
            if entry.held:
                held.append(entry)
            elif now - entry.queued_at > STUCK_AFTER_SECONDS:
                stuck.append(entry)
    except (MailhopError, OSError) as error:
        return Check(
            name="queue", verdict=Verdict.WARN, message=f"cannot read {root}: {error}",
            fix="run mailhop doctor as the user who owns the queue",
        )  # fmt: skip
    problems = []
    if stuck:
        oldest = max(stuck, key=lambda e: now - e.queued_at)
        problems.append(
            f"{len(stuck)} stuck for over {STUCK_AFTER_SECONDS // 3600} h "
            f"(e.g. {oldest.id}: {oldest.last_error or 'no attempt yet'})"
        )
    if held:
        problems.append(f"{len(held)} held")
    if quarantined:
        problems.append(f"{len(quarantined)} quarantined")
    if problems:
        return Check(
            name="queue", verdict=Verdict.FAIL, message=f"{root}: {'; '.join(problems)}",
            fix="fix the account (see above), then run: mailhop queue run; "
            "mailhop queue list shows each entry's last error",
            exit_code=ExitCode.TEMPFAIL,
        )  # fmt: skip
    return Check(
        name="queue", verdict=Verdict.OK, message=f"{len(ids)} entr(ies) waiting in {root}"
    )


def _log_check(account: Account | None) -> Check:
    if account is None or not account.logfile or account.logfile == "-":
        return _skip("log", "the account has no logfile")
    try:
        with open(account.logfile, "rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - MAX_LOG_TAIL_BYTES))
            tail = file.read().decode("utf-8", "replace").splitlines()[-LOG_RECENT_LINES:]
    except FileNotFoundError:
        return Check(name="log", verdict=Verdict.OK, message=f"{account.logfile}: nothing sent yet")
    except OSError as error:
        return Check(
            name="log", verdict=Verdict.WARN, message=f"{account.logfile}: {error.strerror}"
        )
    failures = [line for line in tail if "exitcode=" in line and "exitcode=EX_OK" not in line]
    if failures:
        return Check(
            name="log", verdict=Verdict.WARN,
            message=f"{len(failures)} of the last {len(tail)} sends failed; last: "
            f"{failures[-1][-160:]}",
            fix="see the errormsg= of those lines",
        )  # fmt: skip
    return Check(name="log", verdict=Verdict.OK, message=f"last {len(tail)} sends ok")
