"""The durable write primitive: whole or absent after any crash, private, honest errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhop.errors import ExitCode
from mailhop.store import StoreError, make_private_directory, write_atomically, write_new_file

CRASH_SCRIPT = """
import sys
from mailhop.store import write_atomically
write_atomically(sys.argv[1], [b"new " * 1000])
"""


def test_write_atomically_replaces_whole_file_with_private_mode(tmp_path: Path) -> None:
    target = tmp_path / "state"
    target.write_bytes(b"old")
    old_umask = os.umask(0)
    try:
        assert write_atomically(str(target), [b"a", b"bc"]) == 3
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"abc"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["state"]


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        ("durable.before-fsync", b"old"),
        ("durable.before-rename", b"old"),
        ("durable.after-rename", b"new " * 1000),
    ],
)
def test_kill_at_each_step_leaves_old_or_new_never_a_mix(
    tmp_path: Path, point: str, expected: bytes
) -> None:
    target = tmp_path / "state"
    target.write_bytes(b"old")
    result = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(target)],
        env={**os.environ, "MAILHOP_FAULT": point},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == -9  # really killed at the named point
    assert target.read_bytes() == expected


def test_write_new_file_refuses_an_existing_file_and_symlinks(tmp_path: Path) -> None:
    existing = tmp_path / "exists"
    existing.write_bytes(b"keep")
    with pytest.raises(StoreError, match="cannot create"):
        write_new_file(str(existing), [b"x"])
    assert existing.read_bytes() == b"keep"
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / "link").symlink_to(victim)
    with pytest.raises(StoreError):
        write_new_file(str(tmp_path / "link"), [b"x"])
    assert victim.read_bytes() == b"keep"


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs (root only), so "disk full" is the kernel's ENOSPC."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mountpoint)],
        check=True,
        timeout=30,
    )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True, timeout=30)


def test_full_disk_is_a_temporary_failure_and_leaves_nothing(tiny_filesystem: Path) -> None:
    target = tiny_filesystem / "state"
    target.write_bytes(b"old")
    with pytest.raises(StoreError) as caught:
        write_atomically(str(target), [b"x" * 4096] * 64)  # 256 KiB into 64 KiB
    assert caught.value.exit_code == ExitCode.TEMPFAIL
    assert "free some space" in str(caught.value)
    assert [p.name for p in tiny_filesystem.iterdir()] == ["state"]
    assert target.read_bytes() == b"old"
    write_atomically(str(target), [b"fits"])  # usable afterwards
    assert target.read_bytes() == b"fits"


def test_make_private_directory_ignores_umask(tmp_path: Path) -> None:
    old_umask = os.umask(0)
    try:
        make_private_directory(str(tmp_path / "a" / "b"))
    finally:
        os.umask(old_umask)
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o700


def test_permission_denied_maps_to_cantcreat(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(StoreError) as caught:
        write_atomically(str(locked / "x"), [b"x"])
    assert caught.value.exit_code == ExitCode.CANTCREAT
