"""aliases(5) rules one by one, msmtp's format with default:, and msmtp's iterator bug."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailhop.deliver.aliases import (
    AliasError,
    AliasFormat,
    AliasTable,
    Destination,
    DestinationKind,
    expand,
    load_aliases,
    parse_aliases,
)

LOCAL_DOMAINS = frozenset({"localhost", "host.example"})


def _is_local(domain: str) -> bool:
    return domain.lower() in LOCAL_DOMAINS


def _system(text: str, *, trusted: bool = True) -> AliasTable:
    return parse_aliases(text, path="/etc/aliases", trusted=trusted)


def _expand(
    recipients: list[str], system: AliasTable | None, msmtp: AliasTable | None = None
) -> tuple[Destination, ...]:
    result = expand(recipients, system=system, msmtp=msmtp, is_local_domain=_is_local)
    return result.destinations


def _pairs(destinations: tuple[Destination, ...]) -> list[tuple[str, str]]:
    return [(d.kind.name, d.value) for d in destinations]


def test_comments_blank_lines_and_continuations() -> None:
    table = _system(
        "# comment\n"
        "\n"
        "   \n"
        "staff: alice,\n"
        "  bob,\n"
        "\tcarol@example.org # not a comment? it is part of the value\n"
        "  # an indented comment is a comment, not a continuation\n"
        "root: dave\n"
    )
    # "#" after a value is not a comment: the value is not an address and is reported.
    assert [p.line for p in table.problems] == [4]
    assert table.entries["staff"].line == 4
    assert [t.value for t in table.entries["staff"].targets] == ["alice", "bob"]
    assert "root" in table.entries


def test_a_hash_after_a_value_is_not_a_comment() -> None:
    table = _system("a: b # c\n")
    assert table.problems and table.problems[0].line == 1


def test_names_fold_to_lower_case_and_lookups_fold_too() -> None:
    table = _system("Postmaster: Root\nROOT: alice@example.org\n")
    assert set(table.entries) == {"postmaster", "root"}
    assert _pairs(_expand(["POSTMASTER"], table)) == [("ADDRESS", "alice@example.org")]


def test_quoted_names_and_quoted_values() -> None:
    table = _system(
        '"with space": "|/usr/bin/logger -t mail", "/var/log/mail dump", "a b"@example.org\n'
    )
    targets = table.entries["with space"].targets
    assert [(t.kind.name, t.value) for t in targets] == [
        ("COMMAND", "/usr/bin/logger -t mail"),
        ("FILE", "/var/log/mail dump"),
        ("ADDRESS", '"a b"@example.org'),
    ]


def test_recursion_and_an_alias_naming_itself_goes_to_the_user() -> None:
    table = _system("root: admins\nadmins: alice, root, bob@example.org\n")
    assert _pairs(_expand(["root"], table)) == [
        ("LOCAL_USER", "alice"),
        ("LOCAL_USER", "root"),
        ("ADDRESS", "bob@example.org"),
    ]
    self_table = _system("alice: alice, alice@example.org\n")
    assert _pairs(_expand(["alice"], self_table)) == [
        ("LOCAL_USER", "alice"),
        ("ADDRESS", "alice@example.org"),
    ]


def test_mutual_recursion_ends_at_a_user() -> None:
    table = _system("a: b\nb: a\n")
    assert _pairs(_expand(["a"], table)) == [("LOCAL_USER", "a")]


def test_too_deep_a_chain_is_an_error() -> None:
    text = "".join(f"n{i}: n{i + 1}\n" for i in range(40))
    with pytest.raises(AliasError, match="deeper") as raised:
        _expand(["n0"], _system(text))
    assert raised.value.exit_code == 78


def test_duplicates_are_suppressed() -> None:
    table = _system("team: alice, bob\nall: team, alice, ALICE@localhost\n")
    assert _pairs(_expand(["all", "bob", "bob@host.example"], table)) == [
        ("LOCAL_USER", "alice"),
        ("LOCAL_USER", "bob"),
    ]


def test_local_domains_are_aliased_and_remote_ones_are_not() -> None:
    table = _system("root: bob@example.test\n")
    assert _pairs(_expand(["root@host.example", "root@other.example"], table)) == [
        ("ADDRESS", "bob@example.test"),
        ("ADDRESS", "root@other.example"),
    ]


def test_owner_alias_becomes_the_sender_of_the_list() -> None:
    table = _system("list: alice, bob\nowner-list: carol\n")
    destinations = _expand(["list", "dave"], table)
    assert [(d.value, d.sender) for d in destinations] == [
        ("alice", "owner-list"),
        ("bob", "owner-list"),
        ("dave", None),
    ]


def test_plus_extension_falls_back_to_the_user_entry() -> None:
    table = _system("alice: alice@example.org\n")
    assert _pairs(_expand(["alice+lists"], table)) == [("ADDRESS", "alice@example.org")]
    (plain,) = _expand(["bob+x"], table)
    assert (plain.kind, plain.value, plain.extension) == (DestinationKind.LOCAL_USER, "bob", "x")


def test_include_files(tmp_path: Path) -> None:
    members = tmp_path / "members"
    members.write_text("# members\nalice\nbob@example.org, carol\n")
    table = _system(f"list: :include:{members}\n")
    assert _pairs(_expand(["list"], table)) == [
        ("LOCAL_USER", "alice"),
        ("ADDRESS", "bob@example.org"),
        ("LOCAL_USER", "carol"),
    ]


def test_files_and_commands_are_refused_inside_include_files(tmp_path: Path) -> None:
    members = tmp_path / "members"
    members.write_text("alice\n|/bin/touch /tmp/pwned\n")
    table = _system(f"list: :include:{members}\n")
    with pytest.raises(AliasError, match="refused"):
        _expand(["list"], table)


def test_files_and_commands_only_from_a_trusted_file() -> None:
    text = "log: /var/log/mail.archive\npipe: |/usr/bin/true\n"
    assert _pairs(_expand(["log", "pipe"], _system(text))) == [
        ("FILE", "/var/log/mail.archive"),
        ("COMMAND", "/usr/bin/true"),
    ]
    for name in ("log", "pipe"):
        with pytest.raises(AliasError, match="refused"):
            _expand([name], _system(text, trusted=False))


def test_trust_comes_from_owner_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "aliases"
    path.write_text("pipe: |/usr/bin/true\n")
    path.chmod(0o644)
    assert load_aliases(str(path)).trusted == (os.geteuid() == 0)
    path.chmod(0o664)
    assert not load_aliases(str(path)).trusted
    path.chmod(0o646)
    assert not load_aliases(str(path)).trusted
    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(AliasError):
        load_aliases(str(link))


def test_every_problem_is_reported_with_its_line() -> None:
    table = _system("good: alice\nno colon here\n: nobody\nempty:\ngood: bob\nbad: <a@b\n")
    assert [p.line for p in table.problems] == [2, 3, 4, 5, 6]
    assert "duplicate" in table.problems[3].reason


# ------------------------------------------------------------ msmtp's format


def _msmtp(text: str) -> AliasTable:
    return parse_aliases(text, path="~/.aliases", aliases_format=AliasFormat.MSMTP)


def test_msmtp_iterator_bug_is_not_reproduced() -> None:
    # msmtp.md §3.5: with these entries, "msmtp root nobody u@x" sent to
    # ops1, admin, nobody, u@x: "nobody" skipped the catch-all.
    msmtp = _msmtp(
        "root: admin@example.org, ops\nops: ops1@example.org\ndefault: catchall@example.org\n"
    )
    assert _pairs(_expand(["root", "nobody", "u@example.net"], None, msmtp)) == [
        ("ADDRESS", "admin@example.org"),
        ("ADDRESS", "ops1@example.org"),
        ("ADDRESS", "catchall@example.org"),
        ("ADDRESS", "u@example.net"),
    ]


def test_msmtp_names_are_exact_and_addresses_with_a_domain_are_not_looked_up() -> None:
    msmtp = _msmtp("# comment\nroot: me@example.org\n")
    assert _pairs(_expand(["Root", "root@example.net", "root"], None, msmtp)) == [
        ("LOCAL_USER", "root"),
        ("ADDRESS", "root@example.net"),
        ("ADDRESS", "me@example.org"),
    ]


def test_msmtp_aliases_apply_before_the_system_aliases() -> None:
    msmtp = _msmtp("cron: root\n")
    system = _system("root: alice\n")
    assert _pairs(_expand(["cron"], system, msmtp)) == [("LOCAL_USER", "alice")]


def test_msmtp_format_refuses_files_and_commands() -> None:
    msmtp = _msmtp("x: |/bin/sh\n")
    assert msmtp.problems
    assert "x" not in msmtp.entries
