"""The mail.rc grammar and the account built from its SMTP variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhop.config import Auth, Environment
from mailhop.config.errors import ConfigSyntaxError
from mailhop.config.mailrc import (
    MailSettings,
    load_settings,
    parse,
    smtp_account,
    smtp_server,
)
from mailhop.errors import ConfigError, UsageError


@pytest.fixture
def environment(tmp_path: Path) -> Environment:
    (tmp_path / "home").mkdir()
    (tmp_path / "etc").mkdir()
    return Environment(
        home=str(tmp_path / "home"),
        variables={"USER": "alice"},
        euid=__import__("os").geteuid(),
        sysconfdir=str(tmp_path / "etc"),
    )


def settings(**variables: str) -> MailSettings:
    return MailSettings(variables={k.replace("_", "-"): v for k, v in variables.items()}, files=())


def test_set_unset_quotes_continuations_and_comments() -> None:
    parsed = parse(
        b'# comment\nset ask dot crt=20 from="A B <a@x.test>" \\\n  noask\n'
        b"unset crt\nalias x y\nset subject='it''s'\n",
        "rc",
    )
    assert parsed.operations == (
        ("ask", ""), ("dot", ""), ("crt", "20"), ("from", "A B <a@x.test>"),
        ("ask", None), ("crt", None), ("subject", "its"),
    )  # fmt: skip
    assert not parsed.contains_secrets


def test_account_blocks_and_secret_detection() -> None:
    parsed = parse(b"account work {\n set smtp-auth-password=p\n}\n", "rc")
    assert parsed.accounts == {"work": (("smtp-auth-password", "p"),)}
    assert parsed.contains_secrets
    assert parse(b"set mta=smtps://u:p%40ss@h\n", "rc").contains_secrets
    assert not parse(b"set mta=smtps://u@h\n", "rc").contains_secrets


def test_passwords_never_show_in_a_repr() -> None:
    """Settings end up in tracebacks; a password must not (DESIGN.md §4.7)."""
    text = (
        b"set smtp-auth-password=hunter2-top mta=smtps://u:url-secret@h\n"
        b"account work {\n set password=block-secret\n}\n"
    )
    parsed = parse(text, "rc")
    shown = repr(parsed) + repr(settings(smtp_auth_password="hunter2-top"))
    for secret in ("hunter2-top", "url-secret", "block-secret"):
        assert secret not in shown
    assert "contains_secrets=True" in shown  # the rest stays visible


def test_unterminated_block_and_quote_name_the_line() -> None:
    with pytest.raises(ConfigSyntaxError, match="line 1"):
        parse(b"account a {\nset x\n", "rc")
    with pytest.raises(ConfigSyntaxError, match="line 2"):
        parse(b"set a\nset b='open\n", "rc")


def test_order_system_then_user_then_account_then_command_line(
    environment: Environment,
) -> None:
    etc, home = Path(environment.sysconfdir), Path(environment.home)
    (etc / "mail.rc").write_text("set from=system@x.test dot\n")
    (etc / "s-nail.rc").write_text("set hold\n")
    (home / ".mailrc").write_text("set from=user@x.test\naccount w {\n set from=w@x.test\n}\n")
    loaded = load_settings(environment)
    assert loaded.get("from") == "user@x.test"
    assert loaded.is_set("dot") and loaded.is_set("hold")
    assert load_settings(environment, account="w").get("from") == "w@x.test"
    frozen = load_settings(environment, account="w", command_line=[("from", "s@x.test")])
    assert frozen.get("from") == "s@x.test"
    assert not load_settings(environment, skip_system=True).is_set("dot")
    with pytest.raises(UsageError, match="-A nope"):
        load_settings(environment, account="nope")


def test_mailrc_variable_replaces_home_file(environment: Environment, tmp_path: Path) -> None:
    other = tmp_path / "other.rc"
    other.write_text("set from=other@x.test\n")
    changed = Environment(
        home=environment.home,
        variables={"MAILRC": str(other)},
        euid=environment.euid,
        sysconfdir=environment.sysconfdir,
    )
    assert load_settings(changed).get("from") == "other@x.test"


def test_system_file_with_a_password_readable_by_all_is_refused(
    environment: Environment,
) -> None:
    rc = Path(environment.sysconfdir) / "mail.rc"
    rc.write_text("set smtp-auth-password=p\n")
    rc.chmod(0o644)
    with pytest.raises(ConfigError, match="not readable by others"):
        load_settings(environment)
    rc.chmod(0o640)
    assert load_settings(environment).get("smtp-auth-password") == "p"


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"smtp": "mail.x.test"}, ("mail.x.test", 25, False, False)),
        ({"smtp": "mail.x.test:465"}, ("mail.x.test", 465, True, False)),
        ({"smtp": "smtps://mail.x.test"}, ("mail.x.test", 465, True, False)),
        ({"mta": "submission://mail.x.test"}, ("mail.x.test", 587, False, True)),
        ({"mta": "submissions://[::1]:2465"}, ("::1", 2465, True, False)),
        ({"mta": "smtp://127.0.0.1:2525", "smtp": "a.test:26"}, ("a.test", 26, False, False)),
    ],
)
def test_server_from_smtp_and_mta(
    variables: dict[str, str], expected: tuple[str, int, bool, bool]
) -> None:
    server = smtp_server(MailSettings(variables=variables, files=()))
    assert server is not None
    assert (server.host, server.port, server.implicit_tls, server.starttls) == expected


def test_program_mta_is_not_a_server() -> None:
    assert smtp_server(settings(mta="/usr/sbin/sendmail")) is None
    assert smtp_server(settings()) is None
    with pytest.raises(ConfigError, match="unknown scheme"):
        smtp_server(settings(mta="lmtp://x"))
    with pytest.raises(ConfigError, match="port"):
        smtp_server(settings(smtp="x.test:99999"))


def test_percent_encoded_credentials() -> None:
    server = smtp_server(settings(mta="smtps://me%40x.test:p%2Fa%25ss%3A@h.test"))
    assert server is not None
    assert (server.user, server.password) == ("me@x.test", "p/a%ss:")
    with pytest.raises(ConfigError, match="control character"):
        smtp_server(settings(mta="smtps://me%0D%0A@h.test"))


def test_account_from_legacy_variables(environment: Environment) -> None:
    chosen = settings(
        smtp="h.test:587", smtp_use_starttls="", smtp_auth="login", smtp_auth_user="u",
        smtp_auth_password="p", ssl_ca_file="/ca.pem", hostname="me.test",
    )  # fmt: skip
    server = smtp_server(chosen)
    assert server is not None
    account = smtp_account(chosen, server, envelope_from="a@x.test", environment=environment)
    assert (account.host, account.port, account.tls, account.tls_starttls) == (
        "h.test", 587, True, True,
    )  # fmt: skip
    assert (account.auth, account.user, account.password) == (Auth.LOGIN, "u", "p")
    assert account.tls_trust_file == "/ca.pem"
    assert account.tls_certcheck
    assert account.domain == "me.test"
    assert account.from_address == "a@x.test"
    assert not account.allow_plaintext_auth


def test_user_without_method_means_best_offered(environment: Environment) -> None:
    chosen = settings(mta="smtps://u@h.test")
    server = smtp_server(chosen)
    assert server is not None
    account = smtp_account(chosen, server, envelope_from="a@x.test", environment=environment)
    assert account.auth is Auth.CHOOSE
    assert account.tls and not account.tls_starttls and account.port == 465


@pytest.mark.parametrize("value", ["ask", "warn", "strict"])
def test_ssl_verify_never_weakens_except_ignore(environment: Environment, value: str) -> None:
    chosen = settings(smtp="smtps://h.test", ssl_verify=value)
    server = smtp_server(chosen)
    assert server is not None
    assert smtp_account(chosen, server, envelope_from="a@x", environment=environment).tls_certcheck
    chosen = settings(smtp="smtps://h.test", ssl_verify="ignore")
    assert not smtp_account(
        chosen, server, envelope_from="a@x", environment=environment
    ).tls_certcheck


def test_unknown_auth_method_is_a_config_error(environment: Environment) -> None:
    chosen = settings(smtp="h.test", smtp_auth="magic")
    server = smtp_server(chosen)
    assert server is not None
    with pytest.raises(ConfigError, match="smtp-auth=magic"):
        smtp_account(chosen, server, envelope_from="a@x", environment=environment)
