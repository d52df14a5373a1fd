"""The current time, written as the project writes every time it stores: ISO 8601 in UTC with
nine digits of fraction and a ``Z`` (``2026-11-28T01:14:45.123456789Z``), the form
:func:`forensics.timeline.utc` gives Docker's own times, so that all of them sort as text.

Kept apart from the CLI helpers so that the library (the SQLite export) can use it without
loading click.
"""

from __future__ import annotations

import time


def now_iso() -> str:
    """Now, in UTC, to the nanosecond the clock gives."""
    ns = time.time_ns()
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"
