"""``mailhop configure you@example.com``: from an address to a working account.

Steps, each reported as it happens:

1. find the server: ``--host``/``--port``/``--tls-mode``, else the provider table,
   DNS SRV (RFC 6186/8314) and MX recognition (``mailhop.config.autoconfig``);
2. probe it (``mailhop.deliver.probe``): implicit TLS on 465 first, then STARTTLS
   on 587, reading the certificate and the capabilities; nothing is sent;
3. ask for the secret on the terminal (no echo), or read it from
   ``--password-file``/``--password-stdin``; log in once to check it;
4. store it: the system keyring when one works (found again by the keyring password
   source, nothing in the file), else ``gpg`` to a file read back by
   ``passwordeval``, else a 0600 file read back by ``passwordeval cat FILE``;
5. write the account in the msmtprc grammar to mailhop's own user file
   (``$XDG_CONFIG_HOME/mailhop/config``, mode 0600, written atomically), optionally
   as the default account, and parse the file again to prove it;
6. optionally send a test message (``--send-test``, ``--test-to ADDR``).

The password never reaches argv, the configuration file (unless the user chose the
0600-file store, and then only its own file) or any output.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from mailhop.errors import ConfigError, ExitCode, MailhopError, UsageError

if TYPE_CHECKING:
    import argparse

    from mailhop.config import Account, Environment, TlsMode
    from mailhop.config.autoconfig import Discovery
    from mailhop.config.providers import Provider

# Characters that must never reach a configuration line: a line break would start a
# new command (DESIGN.md §4 invariant 5 for files we write).
FORBIDDEN_CHARACTERS = frozenset("\r\n\0")
# A secret read from a file or stdin is one line; anything longer is not a password.
MAX_SECRET_BYTES = 4096
# gpg may wait for the user's agent; it must not hang configure forever.
GPG_TIMEOUT_SECONDS = 60.0
SECRET_STORES = ("auto", "keyring", "gpg", "file")

Say = Callable[[str], None]


def _parser(program: str) -> argparse.ArgumentParser:
    import argparse  # noqa: PLC0415 - this command only

    parser = argparse.ArgumentParser(
        prog=program,
        description="Find the right settings for ADDRESS, check them against the server, "
        "store the secret safely and write the account.",
    )
    parser.add_argument("address", help="your email address")
    parser.add_argument("--account", help="account name (default: the address)")
    parser.add_argument("--host", help="submission server (skips discovery)")
    parser.add_argument("--port", type=int, help="submission port (465 or 587 usually)")
    parser.add_argument("--tls-mode", choices=("implicit", "starttls"), help="TLS mode")
    parser.add_argument("--tls-trust-file", help="CA bundle to trust instead of the system's")
    parser.add_argument("--user", help="login name (default: the address)")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--password-file", help="read the secret from the first line of FILE")
    secret.add_argument(
        "--password-stdin", action="store_true", help="read the secret from standard input"
    )
    parser.add_argument(
        "--secret-store", choices=SECRET_STORES, default="auto", help="where the secret goes"
    )
    parser.add_argument("--no-probe", action="store_true", help="do not contact the server")
    parser.add_argument("--yes", action="store_true", help="do not ask; replace the account")
    parser.add_argument("--default", action="store_true", help="make it the default account")
    parser.add_argument("--config", help="file to write (default: mailhop's user file)")
    parser.add_argument("--resolver", help="DNS server HOST[:PORT] (default: resolv.conf)")
    parser.add_argument("--no-dns", action="store_true", help="do not ask DNS")
    parser.add_argument("--timeout", type=int, default=10, help="seconds per network step")
    parser.add_argument("--send-test", action="store_true", help="send a test message")
    parser.add_argument("--test-to", help="send the test message to this address")
    return parser


def main(program: str, arguments: list[str]) -> int:
    parser = _parser(program)
    try:
        options = parser.parse_args(arguments)
    except SystemExit as exit_:
        # argparse prints its own message; keep sysexits: --help is 0, errors 64.
        return ExitCode.OK if exit_.code == 0 else ExitCode.USAGE
    from mailhop.config import Environment  # noqa: PLC0415

    return configure(options, environment=Environment.from_process(), say=_say)


def _say(line: str) -> None:
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def _check_value(what: str, value: str | None) -> None:
    if value is not None and (FORBIDDEN_CHARACTERS & set(value) or value != value.strip()):
        raise UsageError(f"{what} {value!r} contains a line break, NUL or surrounding blanks")


def configure(options: argparse.Namespace, *, environment: Environment, say: Say) -> int:
    """Run the whole configure flow (see the module docstring); return the exit code."""
    from mailhop.config import Account, Auth, TlsMode  # noqa: PLC0415
    from mailhop.config.autoconfig import Discovery, Resolver, Source, discover  # noqa: PLC0415
    from mailhop.message import parse_envelope_sender  # noqa: PLC0415

    for what in ("address", "account", "host", "user", "tls_trust_file", "config", "test_to"):
        _check_value(what.replace("_", "-"), getattr(options, what))
    address = parse_envelope_sender(options.address).addr_spec
    if "@" not in address:
        raise UsageError(f"'{options.address}' is not an email address (user@domain)")
    domain = address.rpartition("@")[2].lower()
    name = options.account or address
    if ":" in name or "," in name or " " in name:
        raise UsageError(f"account name {name!r} must not contain ':', ',' or blanks")
    tls_mode = {"implicit": TlsMode.IMPLICIT, "starttls": TlsMode.STARTTLS, None: None}[
        options.tls_mode
    ]
    if options.tls_trust_file and not os.access(options.tls_trust_file, os.R_OK):
        raise ConfigError(
            f"--tls-trust-file {options.tls_trust_file}: cannot read it",
            exit_code=ExitCode.NOINPUT,
        )

    # 1. Where is the server?
    candidates: list[Discovery]
    if options.host:
        candidates = [
            Discovery(host=options.host, port=port, tls_mode=mode, source=Source.COMMAND_LINE)
            for port, mode in _command_line_candidates(options.port, tls_mode)
        ]
    else:
        resolver = None
        if not options.no_dns:
            resolver = (
                Resolver.parse(options.resolver) if options.resolver else Resolver.from_system()
            )
        candidates = discover(domain, resolver=resolver)
        if options.port or tls_mode:
            candidates = [
                dataclasses.replace(
                    found,
                    port=options.port or found.port,
                    tls_mode=tls_mode or found.tls_mode,
                )
                for found in candidates
            ]
    provider = candidates[0].provider
    first = candidates[0]
    say(f"settings for {address}: {first.source.value}")
    if provider is not None:
        say(f"provider: {provider.name} ({', '.join(provider.sources[:1])})")
        say(f"  secret: {provider.secret.value}: {provider.notes}")

    base = Account(
        name=name,
        tls=True,
        tls_trust_file=options.tls_trust_file,
        timeout=options.timeout,
        from_address=address,
    )
    # 2. Probe.
    chosen = first
    if options.no_probe:
        say(f"not probing; using {first.host}:{first.port} ({first.tls_mode.value})")
    else:
        chosen = _probe(base, candidates, say)

    oauth = (
        provider is not None and provider.oauth is not None and (provider.secret.value == "oauth2")
    )
    user = options.user or address
    account = base._replace(
        host=chosen.host,
        port=chosen.port,
        tls_starttls=chosen.tls_mode is TlsMode.STARTTLS,
        user=user,
    )
    # 3. The secret.
    lines_for_secret: list[str] = []
    if oauth:
        assert provider is not None and provider.oauth is not None  # noqa: S101 - oauth implies
        say(
            f"  {provider.name} takes OAuth2, not passwords: after this, run "
            f"'mailhop oauth login {name}' (needs oauth_client_id in the account)"
        )
        lines_for_secret = [
            f"auth {provider.oauth.mechanism}",
            f"oauth_token_endpoint {provider.oauth.token_endpoint}",
            f"oauth_scope {provider.oauth.scope}",
        ]
        if provider.oauth.device_endpoint:
            lines_for_secret.append(f"oauth_device_endpoint {provider.oauth.device_endpoint}")
        lines_for_secret.append(f"oauth_authorize_endpoint {provider.oauth.authorize_endpoint}")
    else:
        secret = _read_secret(options, account, environment)
        if not options.no_probe:
            _check_login(account._replace(auth=Auth.CHOOSE, password=secret), say)
        lines_for_secret = ["auth on", *_store_secret(options, account, secret, environment, say)]

    # 4. Write the account.
    from mailhop.config.files import user_config_path  # noqa: PLC0415

    path = options.config or os.path.join(environment.xdg_config_home, "mailhop", "config")
    block = _account_block(name, account, options.tls_trust_file, lines_for_secret, provider, first)
    make_default = _write_account(path, name, block, options, say)
    if options.config is None and user_config_path(environment) != path:
        say(f"note: {user_config_path(environment)} is read before {path}; move the account there")
    msmtprc = os.path.join(environment.home, ".msmtprc")
    if options.config is None and os.path.exists(msmtprc):
        say(
            f"note: {path} now takes the place of {msmtprc} for mailhop; copy accounts you "
            "still need into it"
        )
    from mailhop.config import resolve  # noqa: PLC0415

    written = resolve(config_file=path, account_name=name, environment=environment).account
    say(f"wrote account {name} to {path} (mode 0600)" + (", default" if make_default else ""))

    # 5. Test message.
    if (options.send_test or options.test_to) and not oauth:
        from mailhop.cli.test_message import send_test_message  # noqa: PLC0415

        send_test_message(written, to=options.test_to, say=say)
    return ExitCode.OK


def _command_line_candidates(port: int | None, mode: TlsMode | None) -> list[tuple[int, TlsMode]]:
    from mailhop.config import TlsMode  # noqa: PLC0415
    from mailhop.deliver.probe import SUBMISSION_CANDIDATES  # noqa: PLC0415

    if port is None and mode is None:
        return list(SUBMISSION_CANDIDATES)
    if port is None:
        return [(465 if mode is TlsMode.IMPLICIT else 587, mode)]  # type: ignore[list-item]
    if mode is None:
        # RFC 8314 §3.3: 465 is implicit TLS; anything else we try as STARTTLS first.
        return (
            [(port, TlsMode.IMPLICIT)]
            if port == 465
            else [
                (port, TlsMode.STARTTLS),
                (port, TlsMode.IMPLICIT),
            ]
        )
    return [(port, mode)]


def _probe(base: Account, candidates: list[Discovery], say: Say) -> Discovery:
    from mailhop.config import TlsMode  # noqa: PLC0415
    from mailhop.config.autoconfig import Source  # noqa: PLC0415
    from mailhop.deliver.probe import SUBMISSION_CANDIDATES, probe_account  # noqa: PLC0415

    attempts: list[Discovery] = []
    for found in candidates:
        attempts.append(found)
        if found.source in (Source.PROVIDER, Source.MX):
            # The table gives one setup; the other standard one is the fallback.
            attempts += [
                dataclasses.replace(found, port=port, tls_mode=mode)
                for port, mode in SUBMISSION_CANDIDATES
                if (port, mode) != (found.port, found.tls_mode)
            ]
    errors: list[str] = []
    for attempt in attempts:
        label = f"{attempt.host}:{attempt.port} ({attempt.tls_mode.value})"
        try:
            result = probe_account(base, attempt.host, attempt.port, attempt.tls_mode)
        except MailhopError as error:
            say(f"probe {label}: no ({error})")
            errors.append(f"{label}: {error}")
            continue
        certificate = result.certificate
        expiry = f", valid until {certificate.not_after}" if certificate else ""
        auth = " ".join(sorted(result.capabilities.auth)) or "none offered"
        say(
            f"probe {label}: yes; certificate {certificate.subject if certificate else '-'}{expiry}"
        )
        say(f"  AUTH methods: {auth}")
        if attempt.tls_mode is TlsMode.OFF:
            continue
        return attempt
    raise MailhopError(
        "no submission server answered with working TLS; give the server with --host "
        "(and --port, --tls-mode), or --no-probe to write the account anyway",
        details=tuple(errors),
        exit_code=ExitCode.UNAVAILABLE,
    )


def _read_secret(options: argparse.Namespace, account: Account, environment: Environment) -> str:
    from mailhop.config.password import prompt_password  # noqa: PLC0415

    if options.password_file:
        try:
            with open(options.password_file, "rb") as file:
                raw = file.read(MAX_SECRET_BYTES + 1)
        except OSError as error:
            raise ConfigError(
                f"--password-file {options.password_file}: {error.strerror or error}",
                exit_code=ExitCode.NOINPUT,
            ) from None
        secret = _first_line(raw)
    elif options.password_stdin:
        secret = _first_line(sys.stdin.buffer.read(MAX_SECRET_BYTES + 1))
    else:
        typed = prompt_password(account.host or "", account.user or "", environment=environment)
        if typed is None:
            raise UsageError(
                "no terminal to ask for the password: give --password-file FILE or --password-stdin"
            )
        secret = typed
    if not secret:
        raise UsageError("the password is empty")
    if FORBIDDEN_CHARACTERS & set(secret):
        raise UsageError("the password contains a NUL or line break")
    return secret


def _first_line(raw: bytes) -> str:
    if len(raw) > MAX_SECRET_BYTES:
        raise UsageError(f"the password input is longer than {MAX_SECRET_BYTES} bytes")
    line = raw.split(b"\n", 1)[0].removesuffix(b"\r")
    return line.decode("utf-8", "surrogateescape")


def _check_login(account: Account, say: Say) -> None:
    from mailhop.deliver.smtp import SmtpSession  # noqa: PLC0415

    with SmtpSession(account) as session:
        session.open(authenticate=True)
        say(f"login as {session.authenticated_as}: accepted")


def _store_secret(
    options: argparse.Namespace,
    account: Account,
    secret: str,
    environment: Environment,
    say: Say,
) -> list[str]:
    """Store ``secret``; return the account lines that find it again."""
    store = options.secret_store
    if store in ("auto", "keyring") and _keyring_store(account, secret):
        say("secret stored in the system keyring (service smtp://HOST, your user name)")
        return []
    if store == "keyring":
        raise ConfigError("no usable system keyring; choose --secret-store gpg or file")
    directory = os.path.join(environment.xdg_config_home, "mailhop", "secrets")
    base = os.path.join(directory, _file_name(account.name))
    if store in ("auto", "gpg"):
        lines = _gpg_store(base + ".gpg", secret, directory)
        if lines is not None:
            say(f"secret encrypted with gpg to {base}.gpg (passwordeval decrypts it)")
            return lines
        if store == "gpg":
            raise ConfigError(
                "gpg has no secret key to encrypt to; create one or use --secret-store file"
            )
    from mailhop.store.durable import make_private_directory, write_atomically  # noqa: PLC0415

    make_private_directory(directory)
    write_atomically(base, [secret.encode("utf-8", "surrogateescape") + b"\n"], mode=0o600)
    say(
        f"secret written to {base} (mode 0600; no keyring or gpg key was available); "
        "anyone who can read your files as you can read it"
    )
    return [f"passwordeval cat {base}"]


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "@._-" else "_" for c in name)


def _keyring_store(account: Account, secret: str) -> bool:
    try:
        import keyring  # noqa: PLC0415 - optional
        import keyring.errors  # noqa: PLC0415
    except ImportError:
        return False
    backend = keyring.get_keyring()
    if getattr(backend, "priority", 0) <= 0:  # the "fail" and "null" backends
        return False
    from mailhop.config.password import KEYRING_SERVICE_FORMAT  # noqa: PLC0415

    try:
        keyring.set_password(
            KEYRING_SERVICE_FORMAT.format(host=account.host), account.user or "", secret
        )
    except keyring.errors.KeyringError:
        return False
    return True


def _gpg_store(path: str, secret: str, directory: str) -> list[str] | None:
    import shutil  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    gpg = shutil.which("gpg")
    if gpg is None:
        return None
    try:
        keys = subprocess.run(
            [gpg, "--batch", "--list-secret-keys", "--with-colons"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=GPG_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if keys.returncode != 0 or b"\nsec:" not in b"\n" + keys.stdout:
        return None
    from mailhop.store.durable import make_private_directory  # noqa: PLC0415

    make_private_directory(directory)
    try:
        encrypted = subprocess.run(
            [gpg, "--batch", "--yes", "--quiet", "--encrypt", "--default-recipient-self",
             "--output", path],
            input=secret.encode("utf-8", "surrogateescape"),
            capture_output=True,
            timeout=GPG_TIMEOUT_SECONDS,
            check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if encrypted.returncode != 0:
        return None
    os.chmod(path, 0o600)
    return [f"passwordeval gpg --quiet --batch --decrypt {path}"]


def _account_block(  # noqa: PLR0917 - one private caller
    name: str,
    account: Account,
    trust_file: str | None,
    secret_lines: list[str],
    provider: Provider | None,
    found: Discovery,
) -> list[str]:
    import datetime  # noqa: PLC0415

    today = datetime.date.today().isoformat()
    origin = provider.name if provider is not None else found.source.value
    lines = [
        f"# written by mailhop configure on {today} ({origin})",
        f"account {name}",
        f"host {account.host}",
        f"port {account.port}",
        "tls on",
        f"tls_starttls {'on' if account.tls_starttls else 'off'}",
    ]
    if trust_file:
        lines.append(f"tls_trust_file {os.path.abspath(trust_file)}")
    lines += [*secret_lines, f"user {account.user}", f"from {account.from_address}"]
    for line in lines:
        _check_value("configuration line", line)
    return lines


def _write_account(
    path: str, name: str, block: list[str], options: argparse.Namespace, say: Say
) -> bool:
    """Add (or with --yes replace) the account in ``path``; return whether it is default."""
    from mailhop.store.durable import make_private_directory, write_atomically  # noqa: PLC0415

    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as file:
            existing = file.read().splitlines()
    except FileNotFoundError:
        existing = []
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror or error}") from None
    names = [_account_name(line) for line in existing]
    if name in names:
        if not options.yes:
            raise ConfigError(
                f"{path} already has an account {name}; rerun with --yes to replace it"
            )
        existing = _without_account(existing, name)
    has_default = "default" in [_account_name(line) for line in existing]
    make_default = options.default or not has_default
    if options.default and has_default:
        existing = _without_account(existing, "default")
    while existing and not existing[-1].strip():
        existing.pop()
    # ``account default : X`` must come after X: msmtp's parents must already exist.
    default_block = [f"account default : {name}"] if make_default else []
    content = [*existing, *([""] if existing else []), *block, *default_block]
    make_private_directory(os.path.dirname(os.path.abspath(path)))
    write_atomically(path, ["\n".join(content).encode("utf-8", "surrogateescape") + b"\n"])
    os.chmod(path, 0o600)  # an existing file keeps no wider mode than this
    say(f"account {name} {'replaced' if name in names else 'added'} in {path}")
    return make_default


def _account_name(line: str) -> str | None:
    words = line.split(None, 1)
    if len(words) == 2 and words[0] == "account":
        return words[1].split(":", 1)[0].strip()
    return None


def _without_account(lines: list[str], name: str) -> list[str]:
    """``lines`` minus the block of account ``name`` (up to the next account/defaults)."""
    kept: list[str] = []
    skipping = False
    for line in lines:
        word = line.split(None, 1)[0] if line.split() else ""
        if word in ("account", "defaults"):
            skipping = _account_name(line) == name
            if skipping and kept and kept[-1].startswith("# written by mailhop configure"):
                kept.pop()
        if not skipping:
            kept.append(line)
    return kept
