"""The Postfix/Dovecot test lab (scripts/lab.sh): its tests and the helpers in ``support``."""

from __future__ import annotations
