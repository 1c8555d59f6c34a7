"""``mailhop queue install-timer``: each kind of machine, with its paths in tmp_path.

The four branches are driven through ``Machine`` fields (who is root, whether systemd
or a user manager runs, where units, cron file, log and crontab go), not by patching
os. Unit files are checked by the real ``systemd-analyze verify``; the cron command is
run by /bin/sh exactly as cron would run it; the crontab branch uses the real
``crontab`` on the account ``nobody`` (as root), once through the function and once
through the real command line run as ``nobody``. The real cron daemon running an
installed entry is tests/integration/test_queue_timer_cron.py.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailhop.cli.queue_timer import (
    CRONTAB_BEGIN,
    CRONTAB_END,
    Machine,
    TimerKind,
    TimerRequest,
    cron_command,
    cron_file_text,
    install_timer,
    remove_timer,
    without_crontab_block,
)
from mailhop.errors import ExitCode, MailhopError, UsageError

# A test crontab account: root may edit anyone's crontab with -u; nobody has none
# on a normal machine, and the fixture puts back whatever it had.
CRONTAB_USER = "nobody"
CRONTAB_LOCK = "/run/lock/mailhop-crontab-nobody.lock"
SUBPROCESS_TIMEOUT_SECONDS = 60.0


def machine(tmp_path: Path, *, root: bool, systemd: bool, **fields: object) -> Machine:
    settings: dict[str, object] = {
        "is_root": root,
        "systemd_running": systemd,
        "user_manager_running": systemd,
        "system_unit_directory": str(tmp_path / "etc-systemd-system"),
        "user_unit_directory": str(tmp_path / "home" / ".config" / "systemd" / "user"),
        "cron_file": str(tmp_path / "cron.d-mailhop"),
        "system_log_file": str(tmp_path / "var-log" / "mailhop-queue.log"),
        "user_log_file": str(tmp_path / "home" / ".local" / "state" / "mailhop" / "queue.log"),
        **fields,
    }
    return Machine(**settings)  # type: ignore[arg-type]


def request(tmp_path: Path, **fields: object) -> TimerRequest:
    settings: dict[str, object] = {
        "queue_dir": str(tmp_path / "queue dir"),
        "config_file": str(tmp_path / "my config"),
        **fields,
    }
    return TimerRequest(**settings)  # type: ignore[arg-type]


def verify_units(directory: Path, *, user: bool, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    done = subprocess.run(
        [
            analyze,
            *(["--user"] if user else []),
            "verify",
            str(directory / "mailhop-queue.timer"),
            str(directory / "mailhop-queue.service"),
        ],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_SECONDS,
        # --user needs a runtime directory even to verify.
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "mailhop-queue" not in done.stderr, done.stderr


def test_kind_follows_user_and_service_manager(tmp_path: Path) -> None:
    expected = {
        (True, True): TimerKind.SYSTEM_UNITS,
        (True, False): TimerKind.CRON_FILE,
        (False, True): TimerKind.USER_UNITS,
        (False, False): TimerKind.USER_CRONTAB,
    }
    for (root, systemd), kind in expected.items():
        assert machine(tmp_path, root=root, systemd=systemd).kind is kind


def test_detect_looks_for_the_user_manager_in_the_runtime_directory(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    (runtime / "systemd").mkdir(parents=True)
    environ = {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(runtime)}
    assert not Machine.detect(environ).user_manager_running
    (runtime / "systemd" / "private").touch()
    detected = Machine.detect({**environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    assert detected.user_manager_running
    assert detected.user_unit_directory == str(tmp_path / "cfg" / "systemd" / "user")
    assert detected.user_log_file == str(tmp_path / ".local/state/mailhop/queue.log")


@pytest.mark.parametrize("root", [True, False], ids=["system", "user"])
def test_units_are_valid_idempotent_and_removed(
    tmp_path: Path, root: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    place = machine(tmp_path, root=root, systemd=True)
    # A queue directory with the characters systemd treats specially.
    wanted = request(tmp_path, queue_dir=str(tmp_path / 'q 100% "$HOME"'), interval_minutes=7)
    assert install_timer(wanted, place) == ExitCode.OK
    directory = Path(place.unit_directory)
    service = (directory / "mailhop-queue.service").read_text()
    timer = (directory / "mailhop-queue.timer").read_text()
    assert "OnUnitActiveSec=7min" in timer
    assert "WantedBy=timers.target" in timer
    assert f"ExecStart={sys.executable} -m mailhop queue --queue-dir " in service
    assert "100%%" in service and "$$HOME" in service
    assert '-C "' + str(tmp_path / "my config") + '" run' in service
    assert (directory / "mailhop-queue.service").stat().st_mode & 0o777 == 0o644
    said = capsys.readouterr().out
    systemctl = "systemctl" if root else "systemctl --user"
    assert f"{systemctl} enable --now mailhop-queue.timer" in said
    assert ("enable-linger" in said) is not root
    verify_units(directory, user=not root, tmp_path=tmp_path)
    before = sorted(path.name for path in directory.iterdir())
    assert install_timer(wanted, place) == ExitCode.OK
    assert sorted(path.name for path in directory.iterdir()) == before
    assert (directory / "mailhop-queue.service").read_text() == service
    # What `systemctl enable` would have added goes too.
    wants = directory / "timers.target.wants"
    wants.mkdir()
    (wants / "mailhop-queue.timer").symlink_to(directory / "mailhop-queue.timer")
    capsys.readouterr()
    assert remove_timer(place) == ExitCode.OK
    assert not (directory / "mailhop-queue.service").exists()
    assert not (directory / "mailhop-queue.timer").exists()
    assert not (wants / "mailhop-queue.timer").is_symlink()
    assert f"{systemctl} daemon-reload" in capsys.readouterr().out
    assert remove_timer(place) == ExitCode.OK
    assert "nothing to remove" in capsys.readouterr().out


def test_cron_file_for_root_without_systemd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    place = machine(tmp_path, root=True, systemd=False)
    assert install_timer(request(tmp_path), place) == ExitCode.OK
    text = Path(place.cron_file).read_text()
    log = place.system_log_file
    assert text.splitlines()[2:] == [
        "SHELL=/bin/sh",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        'MAILTO=""',
        f"*/5 * * * * root {sys.executable} -m mailhop queue --queue-dir "
        f"'{tmp_path}/queue dir' -C '{tmp_path}/my config' run >>{log} 2>&1",
    ]
    assert Path(place.cron_file).stat().st_mode & 0o777 == 0o644
    assert Path(log).parent.is_dir()
    assert f"wrote {place.cron_file}" in capsys.readouterr().out
    assert install_timer(request(tmp_path), place) == ExitCode.OK
    assert Path(place.cron_file).read_text() == text
    assert remove_timer(place) == ExitCode.OK
    assert not Path(place.cron_file).exists()


@pytest.mark.parametrize(("minutes", "fields"), [(1, "* * * * *"), (60, "0 * * * *")])
def test_cron_schedule_edges(tmp_path: Path, minutes: int, fields: str) -> None:
    line = cron_file_text(request(tmp_path, interval_minutes=minutes), "/l", "root")
    assert line.splitlines()[-1].startswith(f"{fields} root ")


@pytest.mark.parametrize("minutes", [0, 61, -5])
def test_interval_out_of_range_is_a_usage_error(tmp_path: Path, minutes: int) -> None:
    place = machine(tmp_path, root=True, systemd=False)
    with pytest.raises(UsageError):
        install_timer(request(tmp_path, interval_minutes=minutes), place)


def test_line_break_in_a_path_is_refused(tmp_path: Path) -> None:
    place = machine(tmp_path, root=True, systemd=False)
    with pytest.raises(UsageError):
        install_timer(request(tmp_path, queue_dir="/q\n* * * * * root rm -rf /"), place)
    assert not Path(place.cron_file).exists()


def test_the_cron_command_runs_under_sh(tmp_path: Path) -> None:
    """What cron hands to /bin/sh (after turning \\% back into %) runs the queue."""
    queue = tmp_path / "it's 100% queue"
    log = tmp_path / "logs dir" / "queue.log"
    log.parent.mkdir()
    line = cron_command(request(tmp_path, queue_dir=str(queue), config_file=None).argv(), str(log))
    assert "100\\%" in line
    done = subprocess.run(
        ["/bin/sh", "-c", line.replace("\\%", "%")],
        timeout=SUBPROCESS_TIMEOUT_SECONDS,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MAILHOP_QUEUE_NO_KICK": "1"},
        check=False,
    )
    assert done.returncode == 0, log.read_text()
    assert log.exists()


@pytest.mark.parametrize("root", [True, False], ids=["system", "user"])
def test_unwritable_place_exits_73(tmp_path: Path, root: bool) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("")
    place = machine(
        tmp_path,
        root=root,
        systemd=True,
        system_unit_directory=str(blocker / "system"),
        user_unit_directory=str(blocker / "user"),
    )
    with pytest.raises(MailhopError) as caught:
        install_timer(request(tmp_path), place)
    assert caught.value.exit_code == ExitCode.CANTCREAT
    assert "\n" not in str(caught.value)
    assert str(blocker) in str(caught.value)


def test_cron_file_unwritable_exits_73(tmp_path: Path) -> None:
    place = machine(tmp_path, root=True, systemd=False, cron_file=str(tmp_path / "no/such/dir/f"))
    with pytest.raises(MailhopError) as caught:
        install_timer(request(tmp_path), place)
    assert caught.value.exit_code == ExitCode.CANTCREAT


def test_no_crontab_program_exits_73(tmp_path: Path) -> None:
    place = machine(
        tmp_path, root=False, systemd=False, crontab_command=(str(tmp_path / "no-crontab"),)
    )
    with pytest.raises(MailhopError) as caught:
        install_timer(request(tmp_path), place)
    assert caught.value.exit_code == ExitCode.CANTCREAT
    assert "no " in str(caught.value) and "\n" not in str(caught.value)


def test_crontab_block_is_found_again() -> None:
    own = "MAILTO=me\n0 3 * * * backup\n"
    block = f"{CRONTAB_BEGIN}\n*/5 * * * * run\n{CRONTAB_END}\n"
    assert without_crontab_block(own + block + "@reboot x") == (own + "@reboot x\n", True)
    assert without_crontab_block(own) == (own, False)
    assert without_crontab_block("") == ("", False)
    with pytest.raises(MailhopError) as caught:
        without_crontab_block(own + f"{CRONTAB_BEGIN}\n*/5 * * * * run\n")
    assert caught.value.exit_code == ExitCode.DATAERR


@pytest.fixture
def nobody_crontab() -> Iterator[tuple[str, ...]]:
    """``crontab -u nobody``, with nobody's crontab as it was put back afterwards."""
    crontab = shutil.which("crontab")
    if crontab is None or os.geteuid() != 0:
        pytest.skip("needs root and the crontab program (scripts/lab.sh installs cron)")
    command = (crontab, "-u", CRONTAB_USER)
    with open(CRONTAB_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = subprocess.run(
            [*command, "-l"], capture_output=True, text=True, timeout=30, check=False
        )
        try:
            yield command
        finally:
            if before.returncode == 0:
                subprocess.run([*command, "-"], input=before.stdout, text=True, check=True)
            else:
                subprocess.run([*command, "-r"], capture_output=True, check=False)


def read_crontab(command: tuple[str, ...]) -> str:
    done = subprocess.run([*command, "-l"], capture_output=True, text=True, check=False)
    return done.stdout if done.returncode == 0 else ""


def test_user_crontab_keeps_lines_never_duplicates_and_removes_cleanly(
    tmp_path: Path, nobody_crontab: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    own = "# my jobs\nMAILTO=someone@example.test\n17 3 * * * /usr/bin/true\n"
    subprocess.run([*nobody_crontab, "-"], input=own, text=True, check=True)
    place = machine(tmp_path, root=False, systemd=False, crontab_command=nobody_crontab)
    assert install_timer(request(tmp_path), place) == ExitCode.OK
    assert "added the mailhop entry" in capsys.readouterr().out
    first = read_crontab(nobody_crontab)
    assert first.startswith(own)
    assert first.count(CRONTAB_BEGIN) == 1
    entry = first.splitlines()[-2]
    assert entry.startswith(f"*/5 * * * * env PATH=/usr/local/bin:/usr/bin:/bin {sys.executable}")
    assert entry.endswith(f">>{place.user_log_file} 2>&1")
    assert Path(place.user_log_file).parent.is_dir()
    assert install_timer(request(tmp_path, interval_minutes=10), place) == ExitCode.OK
    assert "replaced the mailhop entry" in capsys.readouterr().out
    second = read_crontab(nobody_crontab)
    assert second.count(CRONTAB_BEGIN) == 1 and second.count("*/10 * * * *") == 1
    assert remove_timer(place) == ExitCode.OK
    assert read_crontab(nobody_crontab) == own
    assert remove_timer(place) == ExitCode.OK
    assert "nothing to remove" in capsys.readouterr().out


@pytest.fixture
def nobody_home() -> Iterator[Path]:
    """A home directory nobody owns (pytest's tmp_path is root's alone)."""
    home = Path(tempfile.mkdtemp(prefix="mailhop-timer-home-"))
    try:
        shutil.chown(home, CRONTAB_USER)
        yield home
    finally:
        shutil.rmtree(home)


def test_cli_as_a_real_non_root_user_writes_their_crontab(
    nobody_home: Path, nobody_crontab: tuple[str, ...]
) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    home = nobody_home
    subprocess.run([*nobody_crontab, "-r"], capture_output=True, check=False)
    environment = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(home / "no-runtime"),  # no user manager
        "LC_ALL": "C.UTF-8",
    }
    as_nobody = [setpriv, "--reuid", CRONTAB_USER, "--regid", "nogroup", "--clear-groups"]
    mailhop = [*as_nobody, sys.executable, "-m", "mailhop", "queue", "install-timer"]
    for _ in range(2):
        done = subprocess.run(
            mailhop, capture_output=True, text=True, env=environment, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "mailhop entry in your crontab" in done.stdout
    installed = read_crontab(nobody_crontab)
    assert installed.count(CRONTAB_BEGIN) == 1
    # The user's own queue and log, under $XDG_STATE_HOME's default.
    assert f"--queue-dir {home}/.local/state/mailhop/queue run" in installed
    assert f">>{home}/.local/state/mailhop/queue.log" in installed
    done = subprocess.run(
        [*mailhop, "--remove"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert read_crontab(nobody_crontab) == ""
    # A user whose home cannot take the log directory gets 73 and one line.
    blocked = {**environment, "XDG_STATE_HOME": "/proc/none"}
    done = subprocess.run(
        mailhop, capture_output=True, text=True, env=blocked, timeout=60, check=False
    )
    assert done.returncode == ExitCode.CANTCREAT, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
