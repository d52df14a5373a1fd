"""Where a fuzz target's input comes from: one small interface, two drivers.

Every target in :mod:`targets` builds its structured input (entries, pages, mutations of a real
file) through a :class:`Draw`, so that hypothesis (CI's short seeded run) and atheris (the long
coverage-guided runs) exercise the same code on inputs built the same way:

- :class:`HypothesisDraw` draws each value from hypothesis (``st.data()``), which shrinks a failing
  input to a small one;
- :class:`ProviderDraw` takes each value from atheris' ``FuzzedDataProvider``, so that libFuzzer's
  mutations of the raw input become mutations of the structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Draw(Protocol):
    def bytes(self, max_size: int, min_size: int = 0) -> bytes:
        """Between ``min_size`` and ``max_size`` bytes."""

    def rest(self, max_size: int) -> bytes:
        """The rest of the input (at most ``max_size`` bytes): the last draw of a bytes target,
        so that the raw fuzz input *is* the bytes decoded."""

    def integer(self, lo: int, hi: int) -> int:
        """An integer in ``lo..hi`` inclusive (any size)."""

    def boolean(self) -> bool: ...

    def choice(self, options: Sequence[T]) -> T: ...

    def text(self, max_size: int) -> str: ...

    def number(self) -> float:
        """A finite float."""


def mostly(draw: Draw, value: int, lo: int, hi: int) -> int:
    """``value`` seven times in eight, else anything in ``lo..hi``: mostly well formed, with any
    field liable to be anything."""
    return value if draw.integer(0, 7) else draw.integer(lo, hi)


class HypothesisDraw:
    """Values drawn from hypothesis' ``st.data()`` object."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self._data = data
        self._st = st

    def bytes(self, max_size: int, min_size: int = 0) -> bytes:
        value: bytes = self._data.draw(self._st.binary(min_size=min_size, max_size=max_size))
        return value

    def rest(self, max_size: int) -> bytes:
        return self.bytes(max_size)

    def integer(self, lo: int, hi: int) -> int:
        value: int = self._data.draw(self._st.integers(lo, hi))
        return value

    def boolean(self) -> bool:
        value: bool = self._data.draw(self._st.booleans())
        return value

    def choice(self, options: Sequence[T]) -> T:
        value: T = self._data.draw(self._st.sampled_from(options))
        return value

    def text(self, max_size: int) -> str:
        value: str = self._data.draw(self._st.text(max_size=max_size))
        return value

    def number(self) -> float:
        value: float = self._data.draw(self._st.floats(allow_nan=False, allow_infinity=False))
        return value


class ProviderDraw:
    """Values taken from an atheris ``FuzzedDataProvider``; once the input is used up, every draw
    gives its smallest value (libFuzzer grows the input when that matters)."""

    def __init__(self, provider: Any) -> None:
        self._fdp = provider

    def bytes(self, max_size: int, min_size: int = 0) -> bytes:
        n = self._fdp.ConsumeIntInRange(min_size, max_size)
        value: bytes = self._fdp.ConsumeBytes(n)
        return value.ljust(min_size, b"\0")

    def rest(self, max_size: int) -> bytes:
        value: bytes = self._fdp.ConsumeBytes(min(max_size, self._fdp.remaining_bytes()))
        return value

    def integer(self, lo: int, hi: int) -> int:
        value: int = self._fdp.ConsumeIntInRange(lo, hi)
        return value

    def boolean(self) -> bool:
        value: bool = self._fdp.ConsumeBool()
        return value

    def choice(self, options: Sequence[T]) -> T:
        return options[self._fdp.ConsumeIntInRange(0, len(options) - 1)]

    def text(self, max_size: int) -> str:
        value: str = self._fdp.ConsumeUnicodeNoSurrogates(self._fdp.ConsumeIntInRange(0, max_size))
        return value

    def number(self) -> float:
        value: float = self._fdp.ConsumeRegularFloat()
        return value
