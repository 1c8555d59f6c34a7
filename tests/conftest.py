"""Fixtures shared by every test area.

``lab`` (session scope): the running Postfix/Dovecot lab of scripts/lab.sh as a frozen
``tests.lab.support.Lab``. Tests that need it are marked ``@pytest.mark.lab``. Without a lab
(not root, not started) those tests are skipped with the reason; with ``CI=true`` a
missing lab fails them instead, so CI can never go green by skipping the integration tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.lab.support import Lab, LabUnavailable, load_lab, locate_lab_json, probe_lab

REPOSITORY = Path(__file__).resolve().parent.parent

_lab_state: dict[str, Lab | str] = {}


def _find_lab() -> Lab | str:
    """The lab, or the reason it is unavailable; probed once per session."""
    if "lab" not in _lab_state:
        try:
            found = load_lab(locate_lab_json(os.environ, REPOSITORY))
            probe_lab(found)
            _lab_state["lab"] = found
        except LabUnavailable as error:
            _lab_state["lab"] = str(error)
    return _lab_state["lab"]


def require_lab() -> Lab:
    """The lab, else skip the calling test (fail it when ``CI=true``)."""
    found = _find_lab()
    if isinstance(found, Lab):
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the lab is unavailable: {found}", pytrace=False)
    pytest.skip(f"lab unavailable: {found}")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("lab") is not None:
        require_lab()


@pytest.fixture(scope="session")
def lab() -> Lab:
    """The running lab (ports, CA, users, logs); see tests/lab/support.py and docs/lab.md."""
    return require_lab()
