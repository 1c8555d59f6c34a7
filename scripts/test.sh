#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: the README's second command and
# what .ci/run calls.
#
#  1. a virtual environment in .venv with mailhop and its test dependencies;
#  2. as root with apt: the real Postfix and Dovecot (plus msmtp, s-nail, cron ... that
#     the integration tests drive), configured on 127.0.0.1 only and started by
#     scripts/lab.sh; without root the lab tests are skipped with a visible reason;
#  3. ruff, mypy --strict, and pytest with a coverage report.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    scripts/lab.sh up
    export MAILHOP_LAB="$PWD/.lab"
else
    echo "test.sh: not root or no apt-get: the Postfix/Dovecot lab tests will be skipped" >&2
fi

echo "== ruff"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
echo "== mypy --strict"
.venv/bin/mypy
echo "== pytest"
rm -f .coverage .coverage.*
.venv/bin/python -bb -m pytest --cov --cov-report=term "$@"
