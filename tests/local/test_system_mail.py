"""System-mail header fixes for the relay, and install-mta under a test root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailhop.cli.install_mta import BACKUP_SUFFIX, InstallError, install, mailhop_program, remove
from mailhop.message import HeaderBlock, HeaderField
from mailhop.message.system_mail import SystemMailSettings, fix_system_mail


def _headers(*lines: bytes) -> HeaderBlock:
    return HeaderBlock(HeaderField(line) for line in lines)


def _is_local(address: str) -> bool:
    return "@" not in address or address.endswith("@vm")


SETTINGS = SystemMailSettings(mail_domain="vm.example", account_address="alice@example.test")


def test_cron_from_becomes_the_account_keeping_the_name() -> None:
    fixed = fix_system_mail(
        _headers(
            b"From: root (Cron Daemon)\n",
            b"Sender: root@vm\n",
            b"To: root, bob@example.test\n",
            b"Cc: ops\n",
            b"Subject: Cron <root@vm> echo\n",
        ),
        SETTINGS,
        is_local=_is_local,
    )
    assert fixed.get("From") == '"Cron Daemon" <alice@example.test>' or fixed.get("From") == (
        "Cron Daemon <alice@example.test>"
    )
    assert fixed.get("Sender") == "alice@example.test"
    assert fixed.get("To") == "root@vm.example, bob@example.test"
    assert fixed.get("Cc") == "ops@vm.example"
    assert fixed.get("Subject") == "Cron <root@vm> echo"


def test_a_real_from_is_left_alone_and_each_fix_can_be_turned_off() -> None:
    original = _headers(b"From: Bob <bob@example.org>\n", b"To: root\n")
    assert fix_system_mail(original, SETTINGS, is_local=_is_local) == _headers(
        b"From: Bob <bob@example.org>\n", b"To: root@vm.example\n"
    )
    off = SystemMailSettings(
        mail_domain="vm.example",
        account_address="alice@example.test",
        rewrite_from=False,
        qualify_recipients=False,
    )
    cron = _headers(b"From: root (Cron Daemon)\n", b"To: root\n")
    assert fix_system_mail(cron, off, is_local=_is_local) == cron


def test_install_mta_refuses_a_real_mta_then_backs_up_and_restores(tmp_path: Path) -> None:
    root = str(tmp_path)
    sendmail = tmp_path / "usr/sbin/sendmail"
    sendmail.parent.mkdir(parents=True)
    sendmail.write_text("#!/bin/sh\n# the real MTA\n")
    with pytest.raises(InstallError, match="--force"):
        install(root, force=False)
    assert sendmail.read_text().endswith("the real MTA\n")
    install(root, force=True)
    for link in ("usr/sbin/sendmail", "usr/lib/sendmail", "usr/bin/mailq", "usr/bin/newaliases"):
        assert os.path.realpath(tmp_path / link) == os.path.realpath(mailhop_program())
    assert Path(f"{sendmail}{BACKUP_SUFFIX}").read_text().endswith("the real MTA\n")
    install(root, force=False)  # again: already ours, nothing to refuse
    remove(root)
    assert not sendmail.is_symlink()
    assert sendmail.read_text().endswith("the real MTA\n")
    assert not (tmp_path / "usr/bin/mailq").exists()
