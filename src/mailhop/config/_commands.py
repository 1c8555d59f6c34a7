"""Running the user's own commands: ``eval`` lines and ``passwordeval``.

These commands come from the user's configuration file, never from a message, so
running them is deliberate (DESIGN.md §4.4). Each run has a timeout, standard
input closed (for the sendmail personality stdin carries the mail), standard
error passed through (so ``gpg`` can talk to the user), and its exit status
checked: unlike msmtp, a failing command's output is never used.

``subprocess`` is imported inside the functions: most sendmail runs never need it.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailhop.config.errors import CommandFailedError

# ``eval`` lines run each time the file is read; they are meant to be quick
# (``eval echo host $(hostname -d)``). A stuck one must not hang cron forever.
DEFAULT_EVAL_TIMEOUT_SECONDS = 30.0
# ``passwordeval`` may wait for a human at a pinentry or a hardware token.
DEFAULT_PASSWORDEVAL_TIMEOUT_SECONDS = 120.0
# The shell that runs commands which need shell syntax (as msmtp's popen does).
SHELL = "/bin/sh"
# Characters that make a command need a shell: pipes, lists, redirections,
# expansions, globs, quoting escapes, comments, ``~``. Without any of them a
# ``shlex.split`` argv means exactly what ``sh -c`` would run.
SHELL_SYNTAX = frozenset("|&;<>()$`\\*?[]{}~#!\n\r")


def needs_shell(command: str) -> bool:
    """True unless ``command`` is a plain argv (``gpg -q --decrypt /path/file``)."""
    if any(character in SHELL_SYNTAX for character in command):
        return True
    import shlex  # noqa: PLC0415 - lazy: only for passwordeval

    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes: let the shell report it
        return True
    # ``NAME=value cmd`` is an environment assignment only a shell understands.
    return not words or "=" in words[0]


def first_line(
    command: str,
    *,
    use_shell: bool,
    timeout: float,
    what: str,
) -> str:
    """Run ``command`` and return the first line of its standard output.

    ``what`` names the command in errors ("passwordeval of account x"); the
    command's output is never part of an error.

    Raises:
        CommandFailedError: cannot run, timed out, non-zero exit, or no output.
    """
    import subprocess  # noqa: PLC0415 - lazy: most runs never eval anything

    argv: Sequence[str]
    if use_shell:
        argv = [SHELL, "-c", command]
    else:
        import shlex  # noqa: PLC0415

        argv = shlex.split(command)
    try:
        completed = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        # from None: the exception carries the partial output, which may be a secret.
        raise CommandFailedError(f"{what}: timed out after {timeout:g} seconds") from None
    except OSError as error:
        raise CommandFailedError(
            f"{what}: cannot run {argv[0]}: {error.strerror or error}"
        ) from None
    if completed.returncode != 0:
        status = (
            f"killed by signal {-completed.returncode}"
            if completed.returncode < 0
            else f"exit status {completed.returncode}"
        )
        raise CommandFailedError(f"{what}: command failed ({status}); its output was not used")
    output = completed.stdout
    if not output:
        raise CommandFailedError(f"{what}: the command printed nothing")
    line, _newline, _rest = output.partition(b"\n")
    if line.endswith(b"\r"):
        line = line[:-1]
    return line.decode("utf-8", "surrogateescape")
