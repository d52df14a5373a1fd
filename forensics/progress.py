"""Progress bars: tqdm on stderr, and only when stderr is a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")

_enabled = True


def set_enabled(enabled: bool) -> None:
    """Turn progress bars off (``--no-progress``); they are never shown off a terminal."""
    global _enabled
    _enabled = enabled


def track(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    show = _enabled and sys.stderr.isatty()
    if not show:
        yield from items
        return
    yield from tqdm(items, desc=desc, total=total, unit="", file=sys.stderr, leave=False)
