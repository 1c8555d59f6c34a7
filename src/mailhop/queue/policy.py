"""Retry policy: when to try an entry again, and which failure means what.

Backoff is exponential from ``queue_retry_min`` to ``queue_retry_max`` with jitter,
so many entries deferred by one outage do not all come back in the same second
(nullmailer's global pause and msmtpq's "no retry at all" are the two failures this
avoids). After ``queue_lifetime`` the remaining recipients fail and are bounced
(RFC 5321 §4.5.4.1: give up after "at least 4-5 days").

Failure classes, decided from the exit code every mailhop error carries:

* 75 TEMPFAIL (4xx, connection refused or dropped, timeout, DNS trouble): retry.
* 65 DATAERR (5xx for the message or a recipient), and a message the server
  cannot take at all (SMTPUTF8 missing): permanent, bounce.
* anything else (78 configuration, 77 authentication refused, 69 TLS or capability
  the account requires, 76 protocol): the mail is kept and retried, and the problem
  is reported loudly; a broken configuration must never bounce the user's mail.
"""

from __future__ import annotations

import enum

from mailhop.errors import ExitCode, MailhopError

TYPE_CHECKING = False  # not typing's: an empty queue run never imports typing (CONVENTIONS)
if TYPE_CHECKING:
    import random

# Jitter spreads the retries of one outage over +-20 % of the delay.
JITTER_FRACTION = 0.2
# Doubling stops growing the exponent here; 2**30 seconds is beyond any sane maximum.
MAX_BACKOFF_EXPONENT = 30


class FailureKind(enum.Enum):
    TEMPORARY = "temporary"  # retry with backoff
    PERMANENT = "permanent"  # bounce
    LOCAL_PROBLEM = "local-problem"  # configuration, credentials, TLS: keep and report


def classify(error: MailhopError) -> FailureKind:
    """What a failed attempt means for the entry (see the module doc)."""
    from mailhop.message.errors import ServerCapabilityError  # noqa: PLC0415

    if error.exit_code == ExitCode.TEMPFAIL:
        return FailureKind.TEMPORARY
    if error.exit_code == ExitCode.DATAERR or isinstance(error, ServerCapabilityError):
        return FailureKind.PERMANENT
    return FailureKind.LOCAL_PROBLEM


def retry_delay(
    attempts: int, *, minimum: int, maximum: int, rng: random.Random | None = None
) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt (1 is the first)."""
    exponent = min(max(attempts - 1, 0), MAX_BACKOFF_EXPONENT)
    base = min(float(maximum), float(minimum) * float(1 << exponent))
    # Imported here: a run that defers nothing never needs it, and importing random
    # (math, bisect, _sha512, a seed from os.urandom) is 1-2 ms of every runner's start.
    import random  # noqa: PLC0415

    spread: float = (rng or random).uniform(-JITTER_FRACTION, JITTER_FRACTION)
    return max(1.0, base * (1.0 + spread))
