"""``mailhop install-mta [--remove] [--force] [--root DIR]``: mailhop as the system sendmail.

Debian programs call ``/usr/sbin/sendmail`` (``/usr/lib/sendmail`` for old scripts),
``mailq`` and ``newaliases``; every MTA must provide them (Debian Policy §11.6). This
links each to the mailhop program, which picks its personality from the name. A file
that is not already ours belongs to a real MTA (Postfix, Exim...): it is replaced only
with ``--force``, renamed to ``NAME.mailhop-orig`` beside it (same filesystem, so the
rename is atomic), and recorded in a manifest that ``--remove`` uses to put it back.
Machines that manage these names with ``update-alternatives`` (an ``mta`` or
``sendmail`` alternative exists) get an alternative instead of overwritten files.
``--root`` installs under another directory (tests, images being built).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from mailhop.errors import ExitCode, MailhopError, UsageError

# The names Debian's MTAs provide, and where.
LINKS = ("/usr/sbin/sendmail", "/usr/lib/sendmail", "/usr/bin/mailq", "/usr/bin/newaliases")
MANIFEST = "/var/lib/mailhop/install-mta.json"
BACKUP_SUFFIX = ".mailhop-orig"
ALTERNATIVES_DIRECTORY = "/etc/alternatives"
ALTERNATIVE_NAMES = ("mta", "sendmail")
# update-alternatives priority: below a distribution MTA's usual 30, above nothing.
ALTERNATIVE_PRIORITY = "25"
# A manifest is a few hundred bytes; refuse to read anything absurd.
MAX_MANIFEST_BYTES = 1 << 16

USAGE = """\
usage: mailhop install-mta [--force] [--root DIR]
       mailhop install-mta --remove [--root DIR]

Links /usr/sbin/sendmail, /usr/lib/sendmail, mailq and newaliases to mailhop.
A real MTA's files are replaced only with --force, and are kept beside as
NAME.mailhop-orig; --remove puts them back.
"""


class InstallError(MailhopError):
    exit_code = ExitCode.CANTCREAT


def mailhop_program() -> str:
    """The ``mailhop`` console script of this installation."""
    candidate = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "mailhop")
    if not os.path.exists(candidate):
        raise InstallError(f"cannot find the mailhop program next to {sys.executable}")
    return candidate


def _is_ours(path: str, program: str) -> bool:
    return os.path.islink(path) and os.path.realpath(path) == os.path.realpath(program)


def _uses_alternatives(root: str) -> bool:
    return not root and any(
        os.path.lexists(os.path.join(ALTERNATIVES_DIRECTORY, name)) for name in ALTERNATIVE_NAMES
    )


def _read_manifest(path: str) -> list[dict[str, str]]:
    try:
        with open(path, "rb") as file:
            data = json.loads(file.read(MAX_MANIFEST_BYTES))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:
        raise InstallError(f"cannot read {path}: {error}") from error
    return [dict(entry) for entry in data.get("replaced", [])]


def _write_manifest(path: str, replaced: list[dict[str, str]]) -> None:
    from mailhop.store import make_private_directory, write_atomically  # noqa: PLC0415

    make_private_directory(os.path.dirname(path), 0o755)
    text = json.dumps({"replaced": replaced}, indent=1) + "\n"
    write_atomically(path, [text.encode()], mode=0o644)


def install(root: str, *, force: bool) -> list[str]:
    """Link every name to mailhop; return what was done (one line each)."""
    program = mailhop_program()
    if _uses_alternatives(root):
        subprocess.run(
            ["update-alternatives", "--install", "/usr/sbin/sendmail", "mta", program,
             ALTERNATIVE_PRIORITY],
            check=True,
        )  # fmt: skip
        return [f"/usr/sbin/sendmail: update-alternatives mta -> {program}"]
    targets = [root + link for link in LINKS]
    foreign = [t for t in targets if os.path.lexists(t) and not _is_ours(t, program)]
    if foreign and not force:
        raise InstallError(
            f"{foreign[0]} belongs to another mail system; use --force to replace it "
            f"(it is kept as {foreign[0]}{BACKUP_SUFFIX} and restored by --remove)",
            exit_code=ExitCode.CANTCREAT,
        )
    manifest = root + MANIFEST
    replaced = _read_manifest(manifest)
    done: list[str] = []
    for target in targets:
        if _is_ours(target, program):
            done.append(f"{target}: already mailhop")
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target):
            backup = target + BACKUP_SUFFIX
            if os.path.lexists(backup):
                raise InstallError(f"{backup} exists already; move it away first")
            os.rename(target, backup)
            replaced.append({"path": target, "backup": backup})
            _write_manifest(manifest, replaced)  # before the link: --remove must know
            done.append(f"{target}: linked to mailhop (the old one is {backup})")
        else:
            done.append(f"{target}: linked to mailhop")
        os.symlink(program, target)
    if not os.path.exists(manifest):
        _write_manifest(manifest, replaced)
    return done


def remove(root: str) -> list[str]:
    """Remove mailhop's links and put back what they replaced."""
    program = mailhop_program()
    if _uses_alternatives(root):
        subprocess.run(["update-alternatives", "--remove", "mta", program], check=True)
        return ["update-alternatives: mailhop removed from mta"]
    manifest = root + MANIFEST
    replaced = {entry["path"]: entry["backup"] for entry in _read_manifest(manifest)}
    done: list[str] = []
    for target in (root + link for link in LINKS):
        if _is_ours(target, program):
            os.unlink(target)
            done.append(f"{target}: mailhop link removed")
        backup = replaced.get(target)
        if backup and os.path.lexists(backup) and not os.path.lexists(target):
            os.rename(backup, target)
            done.append(f"{target}: restored")
    if os.path.exists(manifest):
        os.unlink(manifest)
    return done


def main(program: str, arguments: list[str]) -> int:
    del program
    force = remove_mode = False
    root = ""
    rest = list(arguments)
    while rest:
        argument = rest.pop(0)
        if argument in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return ExitCode.OK
        if argument == "--force":
            force = True
        elif argument == "--remove":
            remove_mode = True
        elif argument == "--root" and rest:
            root = os.path.abspath(rest.pop(0))
        else:
            raise UsageError(f"unknown argument {argument!r}; see mailhop install-mta --help")
    try:
        lines = remove(root) if remove_mode else install(root, force=force)
    except OSError as error:
        raise InstallError(f"{error.filename or ''}: {error.strerror}") from error
    except subprocess.CalledProcessError as error:
        raise InstallError(f"update-alternatives failed with status {error.returncode}") from error
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return ExitCode.OK
