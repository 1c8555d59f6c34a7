"""Which files are read, the secrets check, the merge, and the acceptance seed config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailhop.config import Environment, InsecureConfigError, load, resolve
from mailhop.config.files import system_config_path, user_config_path
from mailhop.errors import ConfigError, ExitCode
from tests.config.conftest import SEED, WriteFile


def test_seed_as_msmtprc_600_resolves_default_and_account2(
    environment: Environment, write: WriteFile
) -> None:
    write("home/.msmtprc", SEED, 0o600)
    chosen = resolve(environment=environment)
    assert chosen.account.name == "default"
    assert chosen.account.host == "smtp.example.com"
    assert chosen.account.port == 465
    assert chosen.account.tls and not chosen.account.tls_starttls
    assert chosen.account.logfile == os.path.join(environment.home, ".msmtp.log")
    assert "falling back to default account" in chosen.messages
    configuration = load(environment=environment)
    account1 = configuration.find("account1")
    assert account1 is not None
    account1_resolved = resolve(account_name="account1", environment=environment).account
    assert chosen.account._replace(name="account1", line=5) == account1_resolved
    second = resolve(account_name="account2", environment=environment)
    assert (second.account.name, second.account.line) == ("account2", 12)


def test_seed_as_msmtprc_644_is_refused_with_the_chmod_to_run(
    environment: Environment, write: WriteFile
) -> None:
    path = write("home/.msmtprc", SEED, 0o644)
    with pytest.raises(InsecureConfigError) as caught:
        resolve(environment=environment)
    assert int(caught.value.exit_code) == 78
    assert f"chmod 600 {path}" in str(caught.value)
    assert "plain-text-password" not in str(caught.value)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o700, 0o660])
def test_any_permission_beyond_user_read_write_is_refused(
    mode: int, environment: Environment, write: WriteFile
) -> None:
    write("home/.msmtprc", "account a\npassword x\n", mode)
    with pytest.raises(InsecureConfigError, match="chmod 600"):
        load(environment=environment)


def test_a_file_owned_by_someone_else_is_refused(
    environment: Environment, write: WriteFile
) -> None:
    write("home/.msmtprc", "account a\npassword x\n", 0o600)
    stranger = environment._replace(euid=environment.euid + 4242)
    with pytest.raises(InsecureConfigError, match="must be owned by you"):
        load(environment=stranger)


def test_files_without_a_password_line_are_not_checked(
    environment: Environment, write: WriteFile
) -> None:
    write("home/.msmtprc", "account a\npasswordeval pass x\neval echo password y\n", 0o644)
    assert load(environment=environment).user_file is not None


def test_the_system_file_is_never_checked(environment: Environment, write: WriteFile) -> None:
    write("etc/msmtprc", "account sys\nhost h\npassword x\n", 0o644)
    assert load(environment=environment).find("sys") is not None


def test_the_minus_c_file_is_checked(environment: Environment, write: WriteFile) -> None:
    path = write("elsewhere/rc", "account a\npassword x\n", 0o644)
    with pytest.raises(InsecureConfigError, match=f"chmod 600 {path}"):
        load(str(path), environment=environment)


def test_missing_minus_c_file_is_an_error(environment: Environment, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file or directory") as caught:
        load(str(tmp_path / "nope"), environment=environment)
    assert caught.value.exit_code == ExitCode.IOERR  # as msmtp: EX_IOERR


def test_missing_files_are_reported_not_fatal(environment: Environment) -> None:
    configuration = load(environment=environment)
    assert configuration.accounts == ()
    assert configuration.messages == (
        f"ignoring system configuration file {environment.sysconfdir}/msmtprc: "
        "No such file or directory",
        f"ignoring user configuration file {environment.home}/.msmtprc: No such file or directory",
    )


def test_user_file_lookup_order(
    environment: Environment, write: WriteFile, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = environment.home
    assert user_config_path(environment) == f"{home}/.msmtprc"
    write("home/.config/msmtp/config", "host xdg\n")
    assert user_config_path(environment) == f"{home}/.config/msmtp/config"
    write("home/.msmtprc", "host dot\n")
    assert user_config_path(environment) == f"{home}/.msmtprc"
    write("home/.config/mailhop/config", "host own\n")
    assert user_config_path(environment) == f"{home}/.config/mailhop/config"
    assert load(environment=environment).accounts[0].host == "own"


def test_xdg_config_home_is_honoured(environment: Environment, write: WriteFile) -> None:
    path = write("xdg/msmtp/config", "host xdg\n")
    variables = {**environment.variables, "XDG_CONFIG_HOME": str(path.parent.parent)}
    xdg = environment._replace(variables=variables)
    assert user_config_path(xdg) == str(path)


def test_system_file_lookup_prefers_mailhop(environment: Environment, write: WriteFile) -> None:
    assert system_config_path(environment) == f"{environment.sysconfdir}/msmtprc"
    write("etc/msmtprc", "host msmtp\n")
    write("etc/mailhop/config", "host own\n")
    assert system_config_path(environment) == f"{environment.sysconfdir}/mailhop/config"
    assert load(environment=environment).accounts[0].host == "own"


def test_merge_user_accounts_first_then_new_system_accounts(
    environment: Environment, write: WriteFile
) -> None:
    write("etc/msmtprc", "account shared\nhost sys\naccount sysonly\nhost sys\n")
    write("home/.msmtprc", "account mine\nhost user\naccount shared\nhost user\n")
    configuration = load(environment=environment)
    assert [(a.name, a.host) for a in configuration.accounts] == [
        ("mine", "user"),
        ("shared", "user"),
        ("sysonly", "sys"),
    ]
    assert configuration.messages[0].startswith("loaded system configuration file")
    assert configuration.messages[1].startswith("loaded user configuration file")


def test_minus_c_replaces_the_user_file_but_not_the_system_file(
    environment: Environment, write: WriteFile
) -> None:
    write("etc/msmtprc", "account sysonly\nhost sys\n")
    write("home/.msmtprc", "account ignored\nhost user\n")
    path = write("other/rc", "account chosen\nhost c\n")
    names = [a.name for a in load(str(path), environment=environment).accounts]
    assert names == ["chosen", "sysonly"]


def test_an_invalid_system_file_is_fatal(environment: Environment, write: WriteFile) -> None:
    write("etc/msmtprc", "account a\nport x\n")
    with pytest.raises(ConfigError, match=r"etc/msmtprc: line 2: invalid argument x"):
        load(environment=environment)


def test_a_directory_is_not_a_configuration_file(environment: Environment, tmp_path: Path) -> None:
    (tmp_path / "home" / ".msmtprc").mkdir()
    assert "Is a directory" in load(environment=environment).messages[1]


def test_a_pipe_is_accepted_for_minus_c(environment: Environment) -> None:
    # msmtp users run `msmtp -C <(gpg -d rc.gpg)`: a pipe owned by the user.
    read_end, write_end = os.pipe()
    os.write(write_end, b"account a\nhost h\npassword x\n")
    os.close(write_end)
    try:
        configuration = load(f"/proc/self/fd/{read_end}", environment=environment)
    finally:
        os.close(read_end)
    assert configuration.accounts[0].password == "x"
