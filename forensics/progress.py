"""Progress bars: tqdm on stderr, and only when stderr is a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
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
    from tqdm import tqdm  # only when a bar is drawn: it costs ~30 ms to import

    yield from tqdm(items, desc=desc, total=total, unit="", file=sys.stderr, leave=False)


class ByteBar:
    """A progress bar in bytes (tqdm on a terminal, nothing otherwise)."""

    def __init__(self, desc: str, total: int) -> None:
        show = _enabled and sys.stderr.isatty()
        self._bar: tqdm | None = None
        if not show:
            return
        from tqdm import tqdm

        self._bar = (
            tqdm(total=total, desc=desc, unit="B", unit_scale=True, file=sys.stderr, leave=False)
            if show
            else None
        )

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
