"""Account selection, command-line overrides, derived defaults, substitutions, checks."""

from __future__ import annotations

import pytest

from mailhop.config import (
    Account,
    AccountError,
    Auth,
    Environment,
    apply_settings,
    check_account,
    complete,
    expand_from_header,
    load,
    resolve,
    select_account,
)
from mailhop.errors import ConfigError, ExitCode, UsageError
from tests.config.conftest import WriteFile

ACCOUNTS = """\
account exact
host exact.example
from Alice@Example.com
account glob
host glob.example
from *@example.net
account plain
host plain.example
from bob@example.org
account default
host default.example
from fallback@example.com
"""


@pytest.fixture
def configured(environment: Environment, write: WriteFile) -> Environment:
    write("home/.msmtprc", ACCOUNTS)
    return environment


@pytest.mark.parametrize(
    ("envelope_from", "expected"),
    [
        ("alice@example.COM", "exact"),  # exact match ignores case
        ("carol@example.net", "glob"),
        ("carol+list@example.net", "glob"),  # glob before subaddress (msmtp 1.8.24+)
        ("bob+news@example.org", "plain"),  # subaddress
        ("bob+news@example.com", "default"),
        ("CAROL@EXAMPLE.NET", "default"),  # globs are case-sensitive, like fnmatch(3)
        ("nobody@nowhere", "default"),
    ],
)
def test_selection_by_envelope_from(
    envelope_from: str, expected: str, configured: Environment
) -> None:
    selection = select_account(
        load(environment=configured), envelope_from=envelope_from, environment=configured
    )
    assert selection.account.name == expected
    if expected == "default":
        assert selection.reasons == ("falling back to default account",)
    else:
        assert selection.reasons == (
            f"account chosen by envelope from address {envelope_from}: {expected}",
        )


def test_first_matching_account_wins(environment: Environment, write: WriteFile) -> None:
    write("home/.msmtprc", "account one\nfrom *@x.org\naccount two\nfrom a@x.org\n")
    selection = select_account(
        load(environment=environment), envelope_from="a@x.org", environment=environment
    )
    assert selection.account.name == "one"


def test_subaddress_rule_skips_accounts_whose_from_has_a_plus(
    environment: Environment, write: WriteFile
) -> None:
    write("home/.msmtprc", "account tagged\nfrom a+x@x.org\naccount default\nhost d\n")
    selection = select_account(
        load(environment=environment), envelope_from="a+y@x.org", environment=environment
    )
    assert selection.account.name == "default"


def test_account_by_name_and_missing_name(configured: Environment) -> None:
    configuration = load(environment=configured)
    assert select_account(configuration, account_name="glob").account.host == "glob.example"
    with pytest.raises(AccountError, match=r"account nope not found in .*\.msmtprc") as caught:
        select_account(configuration, account_name="nope", environment=configured)
    assert caught.value.exit_code == ExitCode.CONFIG


def test_no_configuration_at_all_says_what_to_do(environment: Environment) -> None:
    with pytest.raises(AccountError) as caught:
        resolve(environment=environment)
    message = str(caught.value)
    assert "account default not found: no configuration file available" in message
    assert "mailhop config check" in message
    assert "SMTPSERVER" in message


def test_environment_fallback(environment: Environment) -> None:
    variables = {**environment.variables, "SMTPSERVER": "relay.example", "EMAIL": "me@x.org"}
    fallback = environment._replace(variables=variables)
    resolution = resolve(environment=fallback)
    assert (resolution.account.host, resolution.account.from_address) == (
        "relay.example",
        "me@x.org",
    )
    assert resolution.account.port == 25
    assert resolution.messages[-1] == "using environment variables EMAIL and SMTPSERVER"
    # -a never falls back to the environment.
    with pytest.raises(AccountError):
        resolve(account_name="default", environment=fallback)
    # Sendmail mode needs EMAIL or -f for the fallback.
    only_server = environment._replace(
        variables={**environment.variables, "SMTPSERVER": "relay.example"}
    )
    with pytest.raises(AccountError):
        resolve(environment=only_server)
    assert resolve(environment=only_server, envelope_from="a@b.c").account.from_address == "a@b.c"


def test_command_line_settings_override_through_the_explicit_mechanism(
    configured: Environment,
) -> None:
    resolution = resolve(
        settings=[("port", "2525"), ("tls", ""), ("tls_starttls", "off"), ("auth", "plain")],
        environment=configured,
    )
    account = resolution.account
    assert (account.port, account.tls, account.tls_starttls) == (2525, True, False)
    assert account.auth is Auth.PLAIN
    assert {"port", "tls", "tls_starttls", "auth"} <= account.explicit


def test_empty_command_line_value_returns_to_the_default(configured: Environment) -> None:
    account = load(environment=configured).find("default")
    assert account is not None
    changed = apply_settings(account, [("port", "587")], environment=configured)
    assert changed.port == 587
    back = apply_settings(changed, [("port", ""), ("from", "")], environment=configured)
    assert back.port is None
    assert back.from_address is None
    assert complete(back, environment=configured).port == 25


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (("port", "0"), "invalid argument 0 for --port"),
        (("tls", "yes"), "invalid argument yes for --tls"),
        (("bogus", "1"), "unknown setting --bogus"),
    ],
)
def test_bad_command_line_settings_are_usage_errors(
    setting: tuple[str, str], message: str, configured: Environment
) -> None:
    with pytest.raises(UsageError, match=message):
        resolve(settings=[setting], environment=configured)


def test_envelope_from_overrides_from_unless_forbidden(
    environment: Environment, write: WriteFile
) -> None:
    write(
        "home/.msmtprc",
        "account default\nhost h\nfrom me@x.org\n"
        "account locked\nhost h\nfrom me@y.org\nallow_from_override off\n",
    )
    assert resolve(envelope_from="o@z.org", environment=environment).account.from_address == (
        "o@z.org"
    )
    locked = resolve(account_name="locked", envelope_from="o@z.org", environment=environment)
    assert locked.account.from_address == "me@y.org"


def test_host_option_uses_the_command_line_only(environment: Environment) -> None:
    resolution = resolve(
        settings=[("host", "cli.example"), ("from", "a@b.c")], environment=environment
    )
    assert resolution.account.host == "cli.example"
    assert resolution.messages == ("using account specified on command line",)
    with pytest.raises(UsageError):
        resolve(account_name="x", settings=[("host", "h")], environment=environment)


@pytest.mark.parametrize(
    ("settings", "port"),
    [
        ({}, 25),
        ({"tls": True}, 25),
        ({"tls": True, "tls_starttls": False}, 465),
        ({"tls_starttls": False}, 25),
        ({"port": 587, "tls": True, "tls_starttls": False}, 587),
    ],
)
def test_derived_port(settings: dict[str, object], port: int, environment: Environment) -> None:
    account = Account(name="a", host="h", **settings)  # type: ignore[arg-type]
    assert complete(account, environment=environment).port == port


def test_derived_trust_file_and_proxy_port(environment: Environment) -> None:
    completed = complete(Account(name="a", proxy_host="p"), environment=environment)
    assert completed.tls_trust_file == "system"
    assert completed.proxy_port == 1080
    # An explicit empty tls_trust_file means "trust no CA": it stays unset.
    explicit = Account(name="a", explicit=frozenset({"tls_trust_file"}))
    assert complete(explicit, environment=environment).tls_trust_file is None


def test_lmtp_has_no_default_port(environment: Environment) -> None:
    from mailhop.config import Protocol

    account = complete(Account(name="a", host="h", protocol=Protocol.LMTP), environment=environment)
    with pytest.raises(AccountError, match="port not set"):
        check_account(account, sendmail_mode=False)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"host": None}, "host not set"),
        ({"from_address": None}, "envelope-from address is missing"),
        ({"tls_key_file": "/k"}, "tls_key_file requires tls_cert_file"),
        ({"tls_cert_file": "/c"}, "tls_cert_file requires tls_key_file"),
        ({"tls": True, "tls_trust_file": None}, "tls requires either tls_trust_file"),
        ({"tls_crl_file": "/crl", "tls_trust_file": None}, "tls_crl_file requires tls_trust_file"),
        ({"host": None, "socket": "/s", "tls": True}, "host not set"),
    ],
)
def test_check_account_refuses(settings: dict[str, object], problem: str) -> None:
    good = Account(
        name="acc",
        file="/rc",
        host="h",
        port=25,
        from_address="a@b.c",
        tls_trust_file="system",
    )
    check_account(good)
    bad = good._replace(**settings)  # type: ignore[arg-type]
    with pytest.raises(AccountError, match=problem) as caught:
        check_account(bad)
    assert str(caught.value).startswith("account acc from /rc: ")


def test_check_accepts_fingerprint_or_no_certcheck_instead_of_a_trust_file() -> None:
    base = Account(name="a", host="h", port=465, from_address="a@b.c", tls=True)
    check_account(base._replace(tls_fingerprint=b"\x01" * 32))
    check_account(base._replace(tls_certcheck=False))
    check_account(base._replace(from_address=None, tls_trust_file="system"), sendmail_mode=False)


def test_check_is_done_on_use_not_on_load(environment: Environment, write: WriteFile) -> None:
    write("home/.msmtprc", "account broken\ntls_key_file /k\naccount default\nhost h\n")
    assert len(load(environment=environment).accounts) == 2
    resolve(pretend=True, environment=environment)  # pretend does not need from
    with pytest.raises(AccountError, match="envelope-from address is missing"):
        resolve(environment=environment)
    with pytest.raises(AccountError, match="host not set"):
        resolve(account_name="broken", pretend=True, environment=environment)


def test_substitutions_in_from_and_domain(environment: Environment, write: WriteFile) -> None:
    mailname = write("etc/mailname", "mail.example.org\nsecond line\n")
    write(
        "home/.msmtprc",
        "account default\nhost h\nfrom %U@%M\ndomain %H.%M-%U\n"
        "account f\nhost h\nfrom %F\naccount hc\nhost h\nfrom x@%C\n",
    )
    account = resolve(environment=environment).account
    assert account.from_address == "tester@mail.example.org"
    assert account.domain == "box.example.org.mail.example.org-%U"  # no %U in domain
    assert mailname.exists()
    with_user = environment._replace(
        variables={**environment.variables, "USER": "u1", "LOGNAME": "l1"}
    )
    assert resolve(environment=with_user).account.from_address == "u1@mail.example.org"
    f_account = resolve(account_name="f", environment=environment).account
    assert f_account.from_address == "%F"  # known only when the mail is read
    expanded = expand_from_header(f_account, "writer@example.com", environment=environment)
    assert expanded.from_address == "writer@example.com"
    assert "%C" not in (resolve(account_name="hc", environment=environment).account.from_address
                        or "%C")  # fmt: skip


def test_missing_mailname_is_an_error(environment: Environment, write: WriteFile) -> None:
    write("home/.msmtprc", "account default\nhost h\nfrom me@%M\n")
    with pytest.raises(ConfigError, match="mailname") as caught:
        resolve(environment=environment)
    assert caught.value.exit_code == ExitCode.CONFIG
    write("etc/mailname", "\n")
    with pytest.raises(ConfigError, match="empty"):
        resolve(environment=environment)


def test_auto_from_builds_user_at_maildomain(environment: Environment, write: WriteFile) -> None:
    write("home/.msmtprc", "account default\nhost h\nauto_from on\nmaildomain x.org\n")
    assert resolve(environment=environment).account.from_address == "tester@x.org"
