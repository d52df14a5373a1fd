"""Times as Docker writes them (RFC 3339, Go's ``time.Time`` in JSON), told in UTC.

Kept apart from :mod:`forensics.timeline` (which re-exports :func:`utc`) so that a view that
only prints times (``inventory``, :mod:`forensics.psview`) does not load the timeline's
readers and the checks they bring.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def utc(text: Any) -> str | None:
    """A time as Docker writes it (RFC 3339, any offset), in UTC with its fraction kept; None
    for Docker's zero time, for what is no time, and for what UTC cannot hold."""
    if not isinstance(text, str):
        return None
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        return None
    date, clock, fraction, zone = match.groups()
    utc_zone = zone in ("Z", "z")
    try:
        moment = datetime.fromisoformat(f"{date}T{clock}{'+00:00' if utc_zone else zone}")
        if not utc_zone:
            moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    if moment.year <= 1:  # 0001-01-01T00:00:00Z: never happened
        return None
    seconds = f"{date}T{clock}" if utc_zone else moment.strftime("%Y-%m-%dT%H:%M:%S")
    digits = ((fraction or ".")[1:] + "000000000")[:9]  # nine digits always: sorts as text
    return f"{seconds}.{digits}Z"
