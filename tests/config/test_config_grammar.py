"""The msmtprc grammar: every command, values, inheritance, eval, and each syntax error."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from mailhop.config import (
    Account,
    Auth,
    CommandFailedError,
    ConfigSyntaxError,
    DsnReturn,
    Environment,
    HeaderPolicy,
    Protocol,
    QueueMode,
    ToHeader,
    msmtprc,
)
from mailhop.errors import ExitCode

SHA256 = ":".join(["AB"] * 32)


def parse(text: str, environment: Environment, path: str = "rc") -> msmtprc.ParsedFile:
    return msmtprc.parse(text.encode("utf-8"), path, environment)


def only_account(text: str, environment: Environment) -> Account:
    parsed = parse("account a\n" + text, environment)
    (account,) = parsed.accounts
    return account


# (command, argument, field, expected value). Every row of COMMANDS appears at least once.
CASES: list[tuple[str, str, str | None, object]] = [
    ("host", "smtp.example.com", "host", "smtp.example.com"),
    ("port", "587", "port", 587),
    ("port", "65535", "port", 65535),
    ("source_ip", "192.0.2.1", "source_ip", "192.0.2.1"),
    ("source_ip", "", "source_ip", None),
    ("proxy_host", "127.0.0.1", "proxy_host", "127.0.0.1"),
    ("proxy_port", "9050", "proxy_port", 9050),
    ("proxy_port", "", "proxy_port", None),
    ("socket", "/run/smtp.sock", "socket", "/run/smtp.sock"),
    ("timeout", "30", "timeout", 30),
    ("timeout", "off", "timeout", None),
    ("connect_timeout", "10", "timeout", 10),
    ("protocol", "lmtp", "protocol", Protocol.LMTP),
    ("protocol", "smtp", "protocol", Protocol.SMTP),
    ("domain", "client.example.com", "domain", "client.example.com"),
    ("auth", "", "auth", Auth.CHOOSE),
    ("auth", "on", "auth", Auth.CHOOSE),
    ("auth", "off", "auth", Auth.NONE),
    ("auth", "scram-sha-256", "auth", Auth.SCRAM_SHA_256),
    ("auth", "xoauth2", "auth", Auth.XOAUTH2),
    ("user", "alice", "user", "alice"),
    ("user", "", "user", None),
    ("password", "s3cret", "password", "s3cret"),
    ("passwordeval", "pass show mail", "passwordeval", "pass show mail"),
    ("ntlmdomain", "CORP", "ntlmdomain", "CORP"),
    ("allow_plaintext_auth", "on", "allow_plaintext_auth", True),
    ("allow_plaintext_auth", "", "allow_plaintext_auth", True),
    ("tls", "", "tls", True),
    ("tls", "off", "tls", False),
    ("tls_starttls", "off", "tls_starttls", False),
    ("tls_nostarttls", "", "tls_starttls", False),
    ("tls_trust_file", "~/ca.pem", "tls_trust_file", "HOME/ca.pem"),
    ("tls_trust_file", "system", "tls_trust_file", "system"),
    ("tls_trust_file", "", "tls_trust_file", None),
    ("tls_crl_file", "/etc/crl.pem", "tls_crl_file", "/etc/crl.pem"),
    ("tls_fingerprint", SHA256, "tls_fingerprint", bytes([0xAB] * 32)),
    ("tls_fingerprint", ":".join(["0f"] * 20), "tls_fingerprint", bytes([0x0F] * 20)),
    ("tls_fingerprint", " ".join(["01"] * 16), "tls_fingerprint", bytes([1] * 16)),
    ("tls_key_file", "~/key.pem", "tls_key_file", "HOME/key.pem"),
    ("tls_cert_file", "/c.pem", "tls_cert_file", "/c.pem"),
    ("tls_certcheck", "off", "tls_certcheck", False),
    ("tls_nocertcheck", "", "tls_certcheck", False),
    ("tls_min_dh_prime_bits", "2048", "tls_min_dh_prime_bits", 2048),
    ("tls_priorities", "NORMAL:-VERS-TLS1.0", "tls_priorities", "NORMAL:-VERS-TLS1.0"),
    ("tls_host_override", "mx.example.com", "tls_host_override", "mx.example.com"),
    ("tls_force_sslv3", "on", None, None),
    ("from", "me@example.com", "from_address", "me@example.com"),
    ("from", "*@example.com", "from_address", "*@example.com"),
    ("from_full_name", "Ada Lovelace", "from_full_name", "Ada Lovelace"),
    ("allow_from_override", "off", "allow_from_override", False),
    ("auto_from", "on", "auto_from", True),
    ("maildomain", "example.com", "maildomain", "example.com"),
    ("set_from_header", "on", "set_from_header", HeaderPolicy.ON),
    ("set_from_header", "off", "set_from_header", HeaderPolicy.OFF),
    ("set_from_header", "", "set_from_header", HeaderPolicy.AUTO),
    ("set_date_header", "off", "set_date_header", HeaderPolicy.OFF),
    ("set_msgid_header", "off", "set_msgid_header", HeaderPolicy.OFF),
    ("add_missing_from_header", "off", "set_from_header", HeaderPolicy.OFF),
    ("add_missing_date_header", "on", "set_date_header", HeaderPolicy.AUTO),
    ("set_to_header", "on", "set_to_header", ToHeader.ON),
    ("set_to_header", "undisclosed_recipients", "set_to_header", ToHeader.UNDISCLOSED_RECIPIENTS),
    ("undisclosed_recipients", "", "set_to_header", ToHeader.UNDISCLOSED_RECIPIENTS),
    ("remove_bcc_headers", "off", "remove_bcc_headers", False),
    ("keepbcc", "on", "remove_bcc_headers", False),
    ("keepbcc", "off", "remove_bcc_headers", True),
    ("dsn_notify", "failure,delay", "dsn_notify", "FAILURE,DELAY"),
    ("dsn_notify", "never", "dsn_notify", "NEVER"),
    ("dsn_notify", "off", "dsn_notify", None),
    ("dsn_return", "headers", "dsn_return", DsnReturn.HEADERS),
    ("dsn_return", "full", "dsn_return", DsnReturn.FULL),
    ("logfile", "~/.msmtp.log", "logfile", "HOME/.msmtp.log"),
    ("logfile", "-", "logfile", "-"),
    ("logfile_time_format", "%Y-%m-%d", "logfile_time_format", "%Y-%m-%d"),
    ("syslog", "", "syslog", "LOG_USER"),
    ("syslog", "LOG_MAIL", "syslog", "LOG_MAIL"),
    ("syslog", "off", "syslog", None),
    ("aliases", "~/aliases", "aliases", "HOME/aliases"),
    ("queue", "always", "queue", QueueMode.ALWAYS),
    ("queue_dir", "~/q", "queue_dir", "HOME/q"),
    ("queue_retry_min", "30s", "queue_retry_min", 30),
    ("queue_retry_max", "4h", "queue_retry_max", 4 * 3600),
    ("queue_lifetime", "5d", "queue_lifetime", 5 * 86400),
    ("queue_delay_warning", "4h", "queue_delay_warning", 4 * 3600),
    ("queue_delay_warning", "off", "queue_delay_warning", 0),
    (
        "oauth_token_endpoint",
        "https://t.test/token",
        "oauth_token_endpoint",
        "https://t.test/token",
    ),
    ("oauth_device_endpoint", "https://t.test/dev", "oauth_device_endpoint", "https://t.test/dev"),
    (
        "oauth_authorize_endpoint",
        "https://t.test/a",
        "oauth_authorize_endpoint",
        "https://t.test/a",
    ),
    ("oauth_client_id", "client-1", "oauth_client_id", "client-1"),
    ("oauth_client_secret", "s3cret", "oauth_client_secret", "s3cret"),
    ("oauth_scope", "https://mail.google.com/", "oauth_scope", "https://mail.google.com/"),
    ("folders", "INBOX, Lists/x", "folders", ("INBOX", "Lists/x")),
    ("keep", "off", "keep", False),
    ("delivery", "maildir:~/Maildir", "delivery", "maildir:~/Maildir"),
    ("local_domains", "a.example, b.example c", "local_domains", ("a.example", "b.example", "c")),
    ("system_aliases", "~/aliases", "system_aliases", "HOME/aliases"),
    ("mail_spool", "/srv/mail", "mail_spool", "/srv/mail"),
    ("local_mailbox", "maildir", "local_mailbox", "maildir"),
    ("rewrite_from", "off", "rewrite_from", False),
    ("qualify_recipients", "off", "qualify_recipients", False),
]


def test_every_command_of_the_table_is_covered() -> None:
    assert {case[0] for case in CASES} == set(msmtprc.COMMANDS)


@pytest.mark.parametrize(("command", "argument", "field", "expected"), CASES)
def test_each_command_sets_its_field(
    command: str, argument: str, field: str | None, expected: object, environment: Environment
) -> None:
    account = only_account(f"{command} {argument}\n", environment)
    if field is None:
        assert account == Account(name="a", file="rc", line=1)
        return
    if isinstance(expected, str):
        expected = expected.replace("HOME", environment.home)
    assert getattr(account, field) == expected
    assert account.explicit == {field}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("port 0", "invalid argument 0 for command port"),
        ("queue_delay_warning soon", "expected a duration such as 4h or 1d, or off"),
        ("port 65536", "invalid argument 65536 for command port"),
        ("port smtp", "invalid argument smtp for command port"),
        ("port", "command port needs an argument"),
        ("host", "command host needs an argument"),
        ("tls On", "invalid argument On for command tls: expected on or off"),
        ("tls yes", "invalid argument yes for command tls"),
        ("auth cram", "invalid argument cram for command auth"),
        ("auth PLAIN", "invalid argument PLAIN for command auth"),
        ("timeout 0", "invalid argument 0 for command timeout"),
        ("timeout -5", "invalid argument -5 for command timeout"),
        ("timeout", "command timeout needs an argument"),
        ("protocol esmtp", "invalid argument esmtp for command protocol"),
        ("dsn_notify failure,sometimes", "invalid argument failure,sometimes"),
        ("dsn_notify failure,failure", "invalid argument failure,failure"),
        ("dsn_notify", "command dsn_notify needs an argument"),
        ("dsn_return body", "invalid argument body for command dsn_return"),
        ("syslog LOG_DAEMON", "invalid argument LOG_DAEMON for command syslog"),
        ("tls_fingerprint AB:CD", "invalid argument AB:CD for command tls_fingerprint"),
        ("tls_fingerprint " + SHA256.replace("AB", "GG"), "for command tls_fingerprint"),
        ("set_date_header on", "invalid argument on for command set_date_header"),
        ("set_to_header maybe", "invalid argument maybe for command set_to_header"),
        ("proxy_port 70000", "invalid argument 70000 for command proxy_port"),
        ("tls_min_dh_prime_bits x", "invalid argument x for command tls_min_dh_prime_bits"),
        ("tls_nocertcheck on", "command tls_nocertcheck does not take an argument"),
        ("tls_nostarttls off", "command tls_nostarttls does not take an argument"),
        ("remove_bcc_headers maybe", "invalid argument maybe for command remove_bcc_headers"),
        ("allow_plaintext_auth yes", "for command allow_plaintext_auth"),
        ("hots smtp.example.com", "unknown command hots"),
        ("Host smtp.example.com", "unknown command Host"),
    ],
)
def test_invalid_lines_name_file_line_and_problem(
    line: str, reason: str, environment: Environment
) -> None:
    with pytest.raises(ConfigSyntaxError) as caught:
        parse(f"# comment\naccount a\n{line}\n", environment, path="/cfg/rc")
    assert str(caught.value).startswith("/cfg/rc: line 3: ")
    assert reason in str(caught.value)
    assert int(caught.value.exit_code) == 78
    assert (caught.value.file, caught.value.line) == ("/cfg/rc", 3)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("defaults x\n", "line 1: command defaults does not take an argument"),
        ("account\n", "line 1: missing account name"),
        ("account a,b\n", "line 1: an account name must not contain colons or commas"),
        ("account a\naccount a\n", "line 2: account a was already defined"),
        ("account a : b\n", "line 1: account b not (yet) defined"),
        ("account a\naccount b : a,\n", "line 2: missing account name"),
        ("account a\naccount b : \n", "line 2: missing account name"),
        ("account b : a\naccount a\n", "line 1: account a not (yet) defined"),
        ("eval\n", "line 1: command eval needs an argument"),
    ],
)
def test_account_and_grammar_errors(text: str, reason: str, environment: Environment) -> None:
    with pytest.raises(ConfigSyntaxError, match=re.escape(reason)):
        parse(text, environment)


def test_blank_lines_comments_quotes_and_crlf(environment: Environment) -> None:
    text = (
        "# a comment\r\n"
        "   \t# indented comment\r\n"
        "\r\n"
        "account a\r\n"
        '  host   "smtp.example.com"  \r\n'
        'from_full_name "Ada "the" Lovelace"\r\n'
        'user ""\r\n'
        'domain "\r\n'
        "tls_priorities NORMAL # not a comment\r\n"
        "\tport\t587\t\r\n"
    )
    (account,) = parse(text, environment).accounts
    assert account.host == "smtp.example.com"
    assert account.from_full_name == 'Ada "the" Lovelace'  # no escapes, outer quotes only
    assert account.user is None
    assert account.domain == '"'  # a lone quote is not a quoted string
    assert account.tls_priorities == "NORMAL # not a comment"
    assert account.port == 587
    assert account.line == 4


def test_on_off_values_are_case_sensitive_and_empty_means_on(environment: Environment) -> None:
    account = only_account("tls\ntls_starttls\ntls_certcheck\nremove_bcc_headers\n", environment)
    assert (account.tls, account.tls_starttls, account.tls_certcheck) == (True, True, True)
    with pytest.raises(ConfigSyntaxError, match="invalid argument OFF for command tls"):
        only_account("tls OFF\n", environment)


def test_line_length_limit_is_msmtps(environment: Environment) -> None:
    longest = "host " + "h" * (msmtprc.MAX_LINE_BYTES - 6)  # 499 bytes + newline: accepted
    assert only_account(longest + "\n", environment).host == "h" * 494
    with pytest.raises(ConfigSyntaxError, match="line 2: line longer than 500 characters"):
        only_account(longest + "h\n", environment)


def test_bad_bytes_are_syntax_errors(environment: Environment) -> None:
    with pytest.raises(ConfigSyntaxError, match="line 2: line is not valid UTF-8"):
        msmtprc.parse(b"account a\nhost \xff\n", "rc", environment)
    with pytest.raises(ConfigSyntaxError, match="line 1: line contains a NUL byte"):
        msmtprc.parse(b"host a\0b\n", "rc", environment)


def test_last_line_without_newline(environment: Environment) -> None:
    assert only_account("host example.net", environment).host == "example.net"


def test_commands_before_any_account_make_the_default_account(environment: Environment) -> None:
    parsed = parse("# x\nhost mail.example.com\nport 2525\naccount other\n", environment)
    assert [a.name for a in parsed.accounts] == ["default", "other"]
    default = parsed.accounts[0]
    assert (default.host, default.port, default.line) == ("mail.example.com", 2525, 2)
    assert parsed.accounts[1].host is None


def test_defaults_apply_only_to_later_accounts_and_are_not_explicit(
    environment: Environment,
) -> None:
    text = "account early\ndefaults\ntls on\nport 587\naccount late\nhost h\n"
    early, late = parse(text, environment).accounts
    assert (early.tls, early.port) == (False, None)
    assert (late.tls, late.port) == (True, 587)
    assert late.explicit == {"host"}


def test_defaults_may_appear_more_than_once(environment: Environment) -> None:
    text = "defaults\nport 587\naccount a\ndefaults\nport 2525\naccount b\n"
    a, b = parse(text, environment).accounts
    assert (a.port, b.port) == (587, 2525)


def test_inheritance_copies_only_what_the_parent_set_explicitly(
    environment: Environment,
) -> None:
    text = (
        "defaults\n"
        "port 587\n"
        "account base\n"
        "host base.example.com\n"
        "tls on\n"
        "account other\n"
        "host other.example.com\n"
        "user bob\n"
        "defaults\n"
        "port 2525\n"
        "account child : base, other\n"
        "from child@example.com\n"
    )
    accounts = {a.name: a for a in parse(text, environment).accounts}
    child = accounts["child"]
    assert child.host == "other.example.com"  # later parent wins for what it set
    assert child.tls is True  # from base
    assert child.user == "bob"
    assert child.port == 2525  # the defaults of the moment; base's 587 came from defaults
    assert child.explicit == {"host", "tls", "user", "from_address"}


def test_account_default_colon_x(environment: Environment) -> None:
    text = "account one\nhost one.example\nport 465\naccount default : one\n"
    one, default = parse(text, environment).accounts
    assert default.name == "default"
    assert default._replace(name="one", line=1) == one


def test_eval_replaces_the_line(environment: Environment) -> None:
    parsed = parse("account a\neval echo host eval.example.com\neval echo '  # c'\n", environment)
    assert parsed.accounts[0].host == "eval.example.com"


def test_eval_password_does_not_mark_the_file_as_secret(environment: Environment) -> None:
    assert not parse("account a\neval echo password x\n", environment).contains_secrets
    assert parse("account a\npassword x\n", environment).contains_secrets
    assert not parse("account a\npassword\n", environment).contains_secrets
    assert parse("defaults\npassword x\n", environment).contains_secrets


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("echo host x; exit 3", "command failed (exit status 3)"),
        ("true", "printed nothing"),
        ("kill -9 $$", "killed by signal 9"),
    ],
)
def test_eval_failures_are_config_errors(
    command: str, reason: str, environment: Environment
) -> None:
    with pytest.raises(CommandFailedError, match=re.escape(reason)) as caught:
        parse(f"account a\neval {command}\n", environment)
    assert "rc: line 2: eval" in str(caught.value)
    assert caught.value.exit_code == ExitCode.CONFIG


def test_eval_timeout(environment: Environment) -> None:
    with pytest.raises(CommandFailedError, match="timed out"):
        msmtprc.parse(b"account a\neval sleep 5\n", "rc", environment, eval_timeout=0.2)


def test_eval_cannot_chain_another_eval(environment: Environment) -> None:
    with pytest.raises(ConfigSyntaxError, match="must not be another eval"):
        parse("account a\neval echo eval echo host x\n", environment)


def test_eval_errors_never_show_the_output(environment: Environment) -> None:
    with pytest.raises(CommandFailedError) as caught:
        parse("account a\neval echo password topsecret; exit 1\n", environment)
    assert "topsecret" not in str(caught.value)


def test_tilde_expansion_uses_the_environment_home(
    environment: Environment, tmp_path: Path
) -> None:
    account = only_account("logfile ~/log\naliases /etc/aliases\n", environment)
    assert account.logfile == os.path.join(environment.home, "log")
    assert account.aliases == "/etc/aliases"


def test_an_account_shows_no_secret_in_its_repr() -> None:
    # Tracebacks and debug output print accounts; the secrets must not be in them.
    account = Account(name="work", password="hunter2", oauth_client_secret="s3cret", user="me")
    text = repr(account)
    assert "hunter2" not in text
    assert "s3cret" not in text
    assert "user='me'" in text
    assert text.startswith("Account(name='work', ")
