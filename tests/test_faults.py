"""Crash points: armed by ``$MAILHOP_FAULT`` in the environment a process starts with."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

# Arm a point, then pass it and another one, then say we survived.
_PROGRAM = (
    "from mailhop.faults import crash_point\n"
    "crash_point('test.other')\n"
    "crash_point('test.armed')\n"
    "print('survived')\n"
)


def _run(**environment: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "MAILHOP_FAULT"}
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-c", _PROGRAM],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,  # the exit status is what the tests look at
    )


def test_the_named_point_kills_the_process_as_kill_9_does() -> None:
    result = _run(MAILHOP_FAULT="test.armed")
    assert result.returncode == -signal.SIGKILL
    assert "survived" not in result.stdout


@pytest.mark.parametrize("environment", [{}, {"MAILHOP_FAULT": "test.elsewhere"}])
def test_other_points_and_an_unset_variable_do_nothing(environment: dict[str, str]) -> None:
    result = _run(**environment)
    assert result.returncode == 0
    assert result.stdout == "survived\n"
