"""``mailhop queue install-timer [--remove]``: run the queue regularly.

What gets written depends on who asks and what runs the machine:

    root,     systemd is PID 1           /etc/systemd/system/mailhop-queue.{service,timer}
    root,     no systemd                 /etc/cron.d/mailhop
    non-root, a systemd user manager     ~/.config/systemd/user/mailhop-queue.{service,timer}
    non-root, no user manager            a marked block in the user's crontab (``crontab -``)

A non-root user can write neither /etc/systemd nor /etc/cron.d, and their queue is
under ``$XDG_STATE_HOME``, so they get their own units or crontab. Installing twice
writes the same thing once; ``--remove`` deletes what either way of that user wrote.
Cron mails a job's output to its owner, through sendmail, that is through mailhop,
whose queue the job runs: the cron command appends its output to a log file instead.
systemd units log to the journal.

Every path is a field of ``Machine`` so tests point them elsewhere; ``Machine.detect``
reads the real machine.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence

from mailhop.errors import ExitCode, MailhopError, UsageError
from mailhop.store.durable import write_atomically
from mailhop.store.errors import StoreError

UNIT_NAME = "mailhop-queue"
SYSTEM_UNIT_DIRECTORY = "/etc/systemd/system"
# sd_booted(3): this directory exists exactly when systemd is PID 1.
SYSTEMD_RUNNING_MARKER = "/run/systemd/system"
# ``systemctl --user`` talks to the user manager through this socket under
# $XDG_RUNTIME_DIR; without it there is no user manager to enable a timer in.
USER_MANAGER_SOCKET = os.path.join("systemd", "private")
CRON_FILE = "/etc/cron.d/mailhop"
SYSTEM_LOG_FILE = "/var/log/mailhop-queue.log"
# Cron's own PATH is /usr/bin:/bin; password commands (passwordeval: pass, gpg,
# secret-tool) often live elsewhere.
SYSTEM_CRON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
USER_CRON_PATH = "/usr/local/bin:/usr/bin:/bin"
# How often the queue runs unless ``--interval`` says otherwise; a temporary failure
# waits at most this long beyond its retry time.
DEFAULT_INTERVAL_MINUTES = 5
# Cron's minute field: ``*/N`` up to an hour; longer waits are not a queue runner.
MAX_INTERVAL_MINUTES = 60
# The lines that enclose our entry in a user's crontab: found again to replace it
# (never a second copy) or to remove it, leaving the user's own lines alone.
CRONTAB_BEGIN = "# BEGIN mailhop queue (written by `mailhop queue install-timer`)"
CRONTAB_END = "# END mailhop queue"
# A crontab command that outlives this is stuck (it reads a small file).
CRONTAB_TIMEOUT_SECONDS = 30.0
UNIT_FILE_MODE = 0o644
UNIT_DIRECTORY_MODE = 0o755
# crontab -l says this (Debian: "no crontab for USER") when the user has none.
NO_CRONTAB = re.compile(r"no crontab for", re.IGNORECASE)
# A newline in a path would end the cron line or the unit setting early.
FORBIDDEN_IN_PATHS = re.compile(r"[\r\n\x00]")


class TimerKind(enum.Enum):
    SYSTEM_UNITS = "systemd system timer"
    CRON_FILE = "cron.d entry"
    USER_UNITS = "systemd user timer"
    USER_CRONTAB = "crontab entry"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Machine:
    """Who installs, what runs the machine, and where each kind of entry goes."""

    is_root: bool
    systemd_running: bool
    user_manager_running: bool
    system_unit_directory: str = SYSTEM_UNIT_DIRECTORY
    user_unit_directory: str
    cron_file: str = CRON_FILE
    crontab_command: tuple[str, ...] = ("crontab",)
    system_log_file: str = SYSTEM_LOG_FILE
    user_log_file: str

    @classmethod
    def detect(cls, environ: Mapping[str, str] | None = None) -> Machine:
        environ = os.environ if environ is None else environ
        home = environ.get("HOME") or os.path.expanduser("~")
        config_home = environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        state_home = environ.get("XDG_STATE_HOME") or os.path.join(home, ".local", "state")
        runtime = environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
        return cls(
            is_root=os.geteuid() == 0,
            systemd_running=os.path.isdir(SYSTEMD_RUNNING_MARKER),
            user_manager_running=os.path.exists(os.path.join(runtime, USER_MANAGER_SOCKET)),
            user_unit_directory=os.path.join(config_home, "systemd", "user"),
            user_log_file=os.path.join(state_home, "mailhop", "queue.log"),
        )

    @property
    def kind(self) -> TimerKind:
        if self.is_root:
            return TimerKind.SYSTEM_UNITS if self.systemd_running else TimerKind.CRON_FILE
        return TimerKind.USER_UNITS if self.user_manager_running else TimerKind.USER_CRONTAB

    @property
    def unit_directory(self) -> str:
        return self.system_unit_directory if self.is_root else self.user_unit_directory

    @property
    def log_file(self) -> str:
        return self.system_log_file if self.is_root else self.user_log_file


@dataclasses.dataclass(frozen=True, kw_only=True)
class TimerRequest:
    """What the timer runs: ``mailhop queue --queue-dir DIR [-C FILE] run``."""

    queue_dir: str
    config_file: str | None = None
    interval_minutes: int = DEFAULT_INTERVAL_MINUTES
    log_file: str | None = None  # None: the machine's default for the user
    python: str = sys.executable

    def argv(self) -> list[str]:
        words = [self.python, "-m", "mailhop", "queue", "--queue-dir", self.queue_dir]
        if self.config_file:
            words += ["-C", os.path.abspath(self.config_file)]
        return [*words, "run"]


def install_timer(request: TimerRequest, machine: Machine | None = None) -> int:
    """Write the entry this machine and user call for; print what and how to enable it."""
    machine = Machine.detect() if machine is None else machine
    _check_request(request)
    kind = machine.kind
    log_file = request.log_file or machine.log_file
    try:
        if kind in (TimerKind.SYSTEM_UNITS, TimerKind.USER_UNITS):
            _write_units(machine, request)
        elif kind is TimerKind.CRON_FILE:
            _make_log_directory(log_file)
            _write_cron_file(machine, request, log_file)
        else:
            _make_log_directory(log_file)
            _install_crontab_block(machine, request, log_file)
    except OSError as error:
        raise _cannot_write(error) from error
    except StoreError as error:  # from write_atomically: any failure here is "cannot create"
        raise MailhopError(
            f"cannot write the queue timer: {error}", exit_code=ExitCode.CANTCREAT
        ) from error
    return ExitCode.OK


def remove_timer(machine: Machine | None = None) -> int:
    """Delete what ``install_timer`` may have written for this user, whichever kind."""
    machine = Machine.detect() if machine is None else machine
    removed: list[str] = []
    try:
        directory = machine.unit_directory
        for path in (
            os.path.join(directory, f"{UNIT_NAME}.service"),
            os.path.join(directory, f"{UNIT_NAME}.timer"),
            # What ``systemctl enable`` made: left behind it would name a missing unit.
            os.path.join(directory, "timers.target.wants", f"{UNIT_NAME}.timer"),
        ):
            if os.path.lexists(path):
                os.unlink(path)
                removed.append(path)
        if removed:
            systemctl = "systemctl" if machine.is_root else "systemctl --user"
            sys.stdout.write(
                "".join(f"removed {path}\n" for path in removed)
                + f"if the timer was running: {systemctl} stop {UNIT_NAME}.timer; "
                f"{systemctl} daemon-reload\n"
            )
        if machine.is_root:
            if os.path.exists(machine.cron_file):
                os.unlink(machine.cron_file)
                removed.append(machine.cron_file)
                sys.stdout.write(f"removed {machine.cron_file}\n")
        elif _remove_crontab_block(machine):
            removed.append("crontab")
    except OSError as error:
        raise _cannot_write(error) from error
    if not removed:
        sys.stdout.write("no mailhop queue timer installed: nothing to remove\n")
    return ExitCode.OK


def cron_schedule(interval_minutes: int) -> str:
    """The five time fields for ``every interval_minutes`` (crontab(5))."""
    if interval_minutes == 1:
        return "* * * * *"
    if interval_minutes == MAX_INTERVAL_MINUTES:
        return "0 * * * *"
    return f"*/{interval_minutes} * * * *"


def cron_command(argv: Sequence[str], log_file: str) -> str:
    """The command field: cron hands it to /bin/sh, and turns an unescaped % into a newline."""
    words = " ".join(shlex.quote(word) for word in argv)
    line = f"{words} >>{shlex.quote(log_file)} 2>&1"
    return line.replace("%", "\\%")


def systemd_quote(word: str) -> str:
    """One ExecStart= word (systemd.service(5) "Command lines", systemd.unit(5) specifiers)."""
    if re.fullmatch(r"[A-Za-z0-9_@+=:,./-]+", word) is None:
        word = '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    # % starts a specifier and $ a variable, even inside quotes.
    return word.replace("%", "%%").replace("$", "$$")


def service_unit(request: TimerRequest) -> str:
    command = " ".join(systemd_quote(word) for word in request.argv())
    return (
        "[Unit]\n"
        "Description=Deliver mailhop's queued mail\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={command}\n"
    )


def timer_unit(request: TimerRequest) -> str:
    minutes = request.interval_minutes
    return (
        "[Unit]\n"
        f"Description=Run mailhop's queue every {minutes} minute{'s' if minutes > 1 else ''}\n\n"
        "[Timer]\n"
        "OnBootSec=1min\n"
        f"OnUnitActiveSec={minutes}min\n\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )


def cron_file_text(request: TimerRequest, log_file: str, user: str) -> str:
    return (
        "# mailhop: deliver queued mail (written by `mailhop queue install-timer`,\n"
        "# removed by `mailhop queue install-timer --remove`).\n"
        "SHELL=/bin/sh\n"
        f"PATH={SYSTEM_CRON_PATH}\n"
        # Output goes to the log; this keeps cron from mailing anything left over,
        # which would go through the very queue this job runs.
        'MAILTO=""\n'
        f"{cron_schedule(request.interval_minutes)} {user} "
        f"{cron_command(request.argv(), log_file)}\n"
    )


def crontab_block(request: TimerRequest, log_file: str) -> str:
    # No MAILTO or PATH line: in a user's crontab they would also apply to the user's
    # own lines below ours. PATH goes into the command's environment instead.
    command = cron_command(["env", f"PATH={USER_CRON_PATH}", *request.argv()], log_file)
    return f"{CRONTAB_BEGIN}\n{cron_schedule(request.interval_minutes)} {command}\n{CRONTAB_END}\n"


def without_crontab_block(text: str) -> tuple[str, bool]:
    """``text`` without our marked block, and whether it had one."""
    lines = text.splitlines(keepends=True)
    kept: list[str] = []
    found = False
    inside = False
    for line in lines:
        stripped = line.rstrip("\n")
        if stripped == CRONTAB_BEGIN:
            inside = found = True
        elif inside and stripped == CRONTAB_END:
            inside = False
        elif not inside:
            kept.append(line)
    if inside:
        raise MailhopError(
            f"your crontab has {CRONTAB_BEGIN!r} without {CRONTAB_END!r}: "
            "fix it with crontab -e, then run this again",
            exit_code=ExitCode.DATAERR,
        )
    result = "".join(kept)
    if result and not result.endswith("\n"):
        result += "\n"
    return result, found


def _check_request(request: TimerRequest) -> None:
    if not 1 <= request.interval_minutes <= MAX_INTERVAL_MINUTES:
        raise UsageError(f"--interval must be 1 to {MAX_INTERVAL_MINUTES} minutes")
    for value in (request.queue_dir, request.config_file, request.log_file, request.python):
        if value and FORBIDDEN_IN_PATHS.search(value):
            raise UsageError(f"a line break or NUL in {value!r} cannot go into a timer entry")


def _cannot_write(error: OSError) -> MailhopError:
    where = f" {error.filename}" if error.filename else ""
    return MailhopError(
        f"cannot write the queue timer:{where}: {error.strerror or error}",
        exit_code=ExitCode.CANTCREAT,
    )


def _make_log_directory(log_file: str) -> None:
    os.makedirs(os.path.dirname(log_file) or ".", mode=0o700, exist_ok=True)


def _write_units(machine: Machine, request: TimerRequest) -> None:
    directory = machine.unit_directory
    os.makedirs(directory, mode=UNIT_DIRECTORY_MODE, exist_ok=True)
    service = os.path.join(directory, f"{UNIT_NAME}.service")
    timer = os.path.join(directory, f"{UNIT_NAME}.timer")
    write_atomically(service, [service_unit(request).encode()], mode=UNIT_FILE_MODE)
    write_atomically(timer, [timer_unit(request).encode()], mode=UNIT_FILE_MODE)
    systemctl = "systemctl" if machine.is_root else "systemctl --user"
    linger = (
        ""
        if machine.is_root
        else "to run it while you are logged out too: loginctl enable-linger\n"
    )
    sys.stdout.write(
        f"wrote {service} and {timer}\n"
        f"enable with: {systemctl} daemon-reload && {systemctl} enable --now {UNIT_NAME}.timer\n"
        + linger
    )


def _write_cron_file(machine: Machine, request: TimerRequest, log_file: str) -> None:
    text = cron_file_text(request, log_file, "root")
    write_atomically(machine.cron_file, [text.encode()], mode=UNIT_FILE_MODE)
    sys.stdout.write(
        f"wrote {machine.cron_file}: cron runs the queue every "
        f"{request.interval_minutes} min as root (output in {log_file}); nothing to enable\n"
    )


def _run_crontab(machine: Machine, arguments: Sequence[str], text: str | None) -> str | None:
    """Run crontab; its stdout, or None for "no crontab for USER" from ``-l``."""
    try:
        done = subprocess.run(
            [*machine.crontab_command, *arguments],
            input=text,
            capture_output=True,
            text=True,
            timeout=CRONTAB_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError as error:
        raise MailhopError(
            f"cannot write the queue timer: no {machine.crontab_command[0]} program "
            "(install cron, or run under a systemd user manager)",
            exit_code=ExitCode.CANTCREAT,
        ) from error
    except subprocess.TimeoutExpired as error:
        raise MailhopError(
            f"cannot write the queue timer: crontab {' '.join(arguments)} did not finish",
            exit_code=ExitCode.CANTCREAT,
        ) from error
    if done.returncode != 0:
        if arguments == ["-l"] and NO_CRONTAB.search(done.stderr):
            return None
        reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[0]
        raise MailhopError(
            f"cannot write the queue timer: crontab {' '.join(arguments)}: {reason}",
            exit_code=ExitCode.CANTCREAT,
        )
    return done.stdout


def _install_crontab_block(machine: Machine, request: TimerRequest, log_file: str) -> None:
    current = _run_crontab(machine, ["-l"], None) or ""
    kept, replaced = without_crontab_block(current)
    _run_crontab(machine, ["-"], kept + crontab_block(request, log_file))
    sys.stdout.write(
        f"{'replaced' if replaced else 'added'} the mailhop entry in your crontab "
        f"(crontab -l shows it): the queue runs every {request.interval_minutes} min, "
        f"output in {log_file}; nothing to enable\n"
    )


def _remove_crontab_block(machine: Machine) -> bool:
    if shutil.which(machine.crontab_command[0]) is None:
        return False  # no cron here, so nothing of ours in it
    current = _run_crontab(machine, ["-l"], None)
    if current is None:
        return False
    kept, found = without_crontab_block(current)
    if found:
        _run_crontab(machine, ["-"], kept)
        sys.stdout.write("removed the mailhop entry from your crontab\n")
    return found
