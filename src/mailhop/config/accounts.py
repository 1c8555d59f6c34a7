"""From loaded files to the one account a run uses, the way msmtp decides it.

Steps (``resolve`` does them all, in msmtp's order):

1. ``select_account``: ``-a NAME``; else the first account whose ``from`` matches
   the envelope sender (exact case-insensitive, or glob, or ``user+tag`` against
   ``user``); else ``default``; else ``SMTPSERVER``/``EMAIL``; else exit 78.
2. ``apply_settings``: command-line options override the account through the same
   explicit-field mechanism as inheritance (``-f`` only if ``allow_from_override``).
3. ``complete``: derived defaults (port 25/465, trust file ``system``, proxy 1080),
   ``%H %C %M`` in ``domain``, ``%U %H %C %M`` in ``from`` (``%F`` waits for the
   mail: ``expand_from_header``).
4. ``check_account``: combinations msmtp refuses, when the account is used.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailhop._records import NamedTuple
from mailhop.config import msmtprc
from mailhop.config.environment import Environment
from mailhop.config.errors import AccountError
from mailhop.config.files import Configuration, load
from mailhop.config.model import (
    DEFAULT_PROXY_PORT,
    DEFAULT_SMTP_PORT,
    DEFAULT_SMTPS_PORT,
    SYSTEM_TRUST,
    Account,
    Protocol,
    override,
)
from mailhop.errors import ConfigError, UsageError

# Characters that make an account's ``from`` a glob pattern (fnmatch(3)).
GLOB_CHARACTERS = frozenset("?*[")
# Name given to the account made of SMTPSERVER/EMAIL or of --host options.
ENVIRONMENT_ACCOUNT = "environment"
COMMAND_LINE_ACCOUNT = "command line"


class Selection(NamedTuple):
    """The chosen account and why (lines ``--pretend`` prints)."""

    account: Account
    reasons: tuple[str, ...]


class Resolution(NamedTuple):
    """The account a run uses, ready to send with, and the story of how it was found."""

    account: Account
    messages: tuple[str, ...]  # file loading and selection lines, in msmtp's order


def from_matches(address: str, account_from: str) -> bool:
    """msmtp's match of an envelope sender against an account's ``from``."""
    if address.casefold() == account_from.casefold():
        return True
    if GLOB_CHARACTERS & set(account_from):
        import fnmatch  # noqa: PLC0415 - only for glob froms

        return fnmatch.fnmatchcase(address, account_from)
    return False


def find_account_by_envelope_from(accounts: Sequence[Account], address: str) -> Account | None:
    """The first account whose ``from`` matches ``address``.

    Per account: exact or glob first, then the subaddress rule (``user+tag@dom``
    matches ``user@dom`` when the account's ``from`` has no ``+``). This is the
    order of msmtp 1.8.24+; 1.8.23 tried the subaddress first, so a glob
    ``*@example.net`` did not match ``someone+tag@example.net``.
    """
    local, at, domain = address.partition("@")
    without_detail = None
    if "+" in local and at:
        without_detail = f"{local.partition('+')[0]}@{domain}"
    for account in accounts:
        account_from = account.from_address
        if account_from is None:
            continue
        if from_matches(address, account_from):
            return account
        if (
            without_detail is not None
            and "+" not in account_from
            and from_matches(without_detail, account_from)
        ):
            return account
    return None


def select_account(
    configuration: Configuration,
    *,
    account_name: str | None = None,
    envelope_from: str | None = None,
    sendmail_mode: bool = True,
    environment: Environment | None = None,
) -> Selection:
    """Choose the account as msmtp does (see the module docstring).

    Raises:
        AccountError: no such account and no environment fallback (exit 78).
    """
    environment = environment or Environment.from_process()
    reasons: list[str] = []
    fallback_allowed = False
    if account_name is None:
        if envelope_from is not None:
            found = find_account_by_envelope_from(configuration.accounts, envelope_from)
            if found is not None:
                reasons.append(f"account chosen by envelope from address {envelope_from}: "
                               f"{found.name}")  # fmt: skip
                return Selection(account=found, reasons=tuple(reasons))
        account_name = "default"
        reasons.append("falling back to default account")
        fallback_allowed = True
    found = configuration.find(account_name)
    if found is not None:
        return Selection(account=found, reasons=tuple(reasons))

    email = environment.variables.get("EMAIL")
    server = environment.variables.get("SMTPSERVER")
    if fallback_allowed and server and (not sendmail_mode or envelope_from or email):
        explicit = {"host"}
        values: dict[str, object] = {"host": server}
        if sendmail_mode and envelope_from is None and email:
            values["from_address"] = email
            explicit.add("from_address")
        account = Account(name=ENVIRONMENT_ACCOUNT, explicit=frozenset(explicit), **values)  # type: ignore[arg-type]
        reasons.append("using environment variables EMAIL and SMTPSERVER")
        return Selection(account=account, reasons=tuple(reasons))

    loaded = [f for f in (configuration.system_file, configuration.user_file) if f]
    if loaded:
        raise AccountError(f"account {account_name} not found in {' and '.join(loaded)}")
    raise AccountError(
        f"account {account_name} not found: no configuration file available; create "
        f"~/.config/mailhop/config (or ~/.msmtprc) with an account, check it with "
        f"'mailhop config check', or set SMTPSERVER and EMAIL"
    )


def apply_settings(
    account: Account,
    settings: Sequence[tuple[str, str]],
    *,
    environment: Environment | None = None,
) -> Account:
    """Override ``account`` with command-line settings such as ``("port", "587")``.

    Names are configuration commands; values follow the file's rules, except that
    an empty value of a command that is not a switch means "back to the default"
    (msmtp's ``--port=``). The overridden fields become explicit.

    Raises:
        UsageError: unknown setting or invalid value (exit 64, as msmtp).
    """
    environment = environment or Environment.from_process()
    values: dict[str, object] = {}
    for name, value in settings:
        entry = msmtprc.COMMANDS.get(name)
        if entry is None:
            raise UsageError(f"unknown setting --{name.replace('_', '-')}")
        if entry.field is None:
            continue
        if value == "" and not entry.switch:
            values[entry.field] = _default_of(entry.field)
            continue
        try:
            values[entry.field] = entry.convert(value, environment)
        except msmtprc.InvalidArgument as error:
            option = name.replace("_", "-")
            raise UsageError(f"invalid argument {value} for --{option}: {error}") from None
    source = account._replace(explicit=frozenset(values), **values)  # type: ignore[arg-type]
    return override(account, source)


def _default_of(field: str) -> object:
    return Account._field_defaults[field]


def complete(
    account: Account,
    *,
    sendmail_mode: bool = True,
    environment: Environment | None = None,
) -> Account:
    """Fill msmtp's derived defaults and expand ``%`` substitutions.

    Raises:
        ConfigError: ``%M`` is used but the mailname file is missing or empty.
    """
    environment = environment or Environment.from_process()
    changes: dict[str, object] = {}
    if account.port is None and account.protocol is Protocol.SMTP:
        # LMTP has no default port: check_account reports "port not set".
        implicit_tls = account.tls and not account.tls_starttls
        changes["port"] = DEFAULT_SMTPS_PORT if implicit_tls else DEFAULT_SMTP_PORT
    if account.tls_trust_file is None and "tls_trust_file" not in account.explicit:
        changes["tls_trust_file"] = SYSTEM_TRUST
    if account.proxy_host is not None and account.proxy_port is None:
        changes["proxy_port"] = DEFAULT_PROXY_PORT
    changes["domain"] = expand(account.domain, "HCM", environment=environment)
    if sendmail_mode and account.from_address is not None:
        changes["from_address"] = expand(account.from_address, "UHCM", environment=environment)
    if sendmail_mode and account.auto_from:
        user = environment.user_name()
        changes["from_address"] = f"{user}@{account.maildomain}" if account.maildomain else user
    return account._replace(**changes)  # type: ignore[arg-type]


def expand(
    template: str,
    letters: str,
    *,
    environment: Environment,
    from_header_address: str | None = None,
) -> str:
    """Replace ``%X`` for each X in ``letters`` (``U H C M F``) that occurs in ``template``.

    Raises:
        ConfigError: ``%M`` with a missing or empty mailname file.
    """
    result = template
    if "M" in letters and "%M" in result:
        result = result.replace("%M", _mailname(environment))
    if "U" in letters and "%U" in result:
        result = result.replace("%U", _sanitized(environment.user_name()))
    if "C" in letters and "%C" in result:
        result = result.replace("%C", _sanitized(environment.canonical_host_name()))
    if "H" in letters and "%H" in result:
        result = result.replace("%H", _sanitized(environment.host_name()))
    if "F" in letters and from_header_address is not None and "%F" in result:
        result = result.replace("%F", _sanitized(from_header_address))
    return result


def expand_from_header(
    account: Account, from_header_address: str, *, environment: Environment | None = None
) -> Account:
    """Replace ``%F`` in ``from`` with the address of the mail's From header (send time)."""
    if account.from_address is None or "%F" not in account.from_address:
        return account
    expanded = expand(
        account.from_address,
        "F",
        environment=environment or Environment.from_process(),
        from_header_address=from_header_address,
    )
    return account._replace(from_address=expanded)


def _sanitized(value: str) -> str:
    """No control characters from the environment reach an address or EHLO (§4.5)."""
    return "".join(character if character.isprintable() else "?" for character in value)


def _mailname(environment: Environment) -> str:
    path = environment.mailname_path
    try:
        with open(path, "rb") as file:
            first = file.readline(1024)
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror or error} (needed for %M)") from error
    text = first.rstrip(b"\n").rstrip(b"\r").decode("utf-8", "replace")
    if not text:
        raise ConfigError(f"{path}: empty; %M needs the mail name on its first line")
    return _sanitized(text)


def check_account(account: Account, *, sendmail_mode: bool = True) -> None:
    """Refuse settings that cannot work together (msmtp's ``check_account``).

    Call it on a completed account about to be used, not on every loaded account.

    Raises:
        AccountError: naming the account, its file and what is wrong.
    """
    problem = account_problem(account, sendmail_mode=sendmail_mode)
    if problem is not None:
        raise AccountError(f"{account.where}: {problem}")


def account_problem(account: Account, *, sendmail_mode: bool = True) -> str | None:
    """What ``check_account`` would refuse, or None."""
    if account.host is None and account.socket is None:
        return "host not set"
    if account.port is None:
        return "port not set"
    if sendmail_mode and account.from_address is None:
        return "envelope-from address is missing (set 'from' in the account)"
    if account.tls and account.host is None and account.tls_host_override is None:
        return "host not set (tls needs a host name or tls_host_override to verify)"
    if account.tls_key_file is not None and account.tls_cert_file is None:
        return "tls_key_file requires tls_cert_file"
    if account.tls_key_file is None and account.tls_cert_file is not None:
        return "tls_cert_file requires tls_key_file"
    if (
        account.tls
        and account.tls_trust_file is None
        and account.tls_fingerprint is None
        and account.tls_certcheck
    ):
        return (
            "tls requires either tls_trust_file (highly recommended) "
            "or tls_fingerprint or a disabled tls_certcheck"
        )
    if account.tls_crl_file is not None and account.tls_trust_file is None:
        return "tls_crl_file requires tls_trust_file"
    return None


def command_line_account(
    settings: Sequence[tuple[str, str]], *, environment: Environment | None = None
) -> Account:
    """The account of ``--host=H`` runs: command-line settings only, no files."""
    return apply_settings(Account(name=COMMAND_LINE_ACCOUNT), settings, environment=environment)


def resolve(
    *,
    config_file: str | None = None,
    account_name: str | None = None,
    envelope_from: str | None = None,
    settings: Sequence[tuple[str, str]] = (),
    sendmail_mode: bool = True,
    pretend: bool = False,
    environment: Environment | None = None,
) -> Resolution:
    """Everything between the command line and a usable account, in msmtp's order.

    ``settings`` are command-line overrides in configuration terms; a non-empty
    ``host`` among them skips all files (msmtp's ``--host``). ``envelope_from``
    (``-f``) selects the account and, if ``allow_from_override`` is on, becomes
    its ``from``. With ``pretend`` the check does not require ``from``.

    Raises:
        UsageError: ``--host`` with ``-a``, or a bad command-line setting (64).
        ConfigError: any file, selection, substitution or check problem (78).
    """
    environment = environment or Environment.from_process()
    host_given = any(name == "host" and value for name, value in settings)
    if host_given:
        if account_name is not None:
            raise UsageError("cannot use both --host and --account")
        account = command_line_account(settings, environment=environment)
        messages: tuple[str, ...] = ("using account specified on command line",)
    else:
        configuration = load(config_file, environment=environment)
        selection = select_account(
            configuration,
            account_name=account_name,
            envelope_from=envelope_from,
            sendmail_mode=sendmail_mode,
            environment=environment,
        )
        account = apply_settings(selection.account, settings, environment=environment)
        messages = configuration.messages + selection.reasons
    if envelope_from is not None and account.allow_from_override:
        account = account._replace(
            from_address=envelope_from,
            explicit=account.explicit | {"from_address"},
        )
    account = complete(account, sendmail_mode=sendmail_mode, environment=environment)
    check_account(account, sendmail_mode=sendmail_mode and not pretend)
    return Resolution(account=account, messages=messages)
