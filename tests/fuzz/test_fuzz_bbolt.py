"""Fuzzing of the bbolt decoder: any bytes, the sample's real databases with random bytes written
over them, and random pages behind valid meta pages (so the walk itself is exercised, not only
the meta check). The only outcomes allowed are entries or :class:`BoltDamage`. The targets are
shared with the atheris runner."""

from __future__ import annotations

import targets
from draw import HypothesisDraw
from hypothesis import given
from hypothesis import strategies as st


@given(st.data())
def test_any_bytes(data: st.DataObject) -> None:
    targets.bolt_bytes(HypothesisDraw(data))


@given(st.data())
def test_real_db_mutations(data: st.DataObject) -> None:
    targets.bolt_mutations(HypothesisDraw(data))


@given(st.data())
def test_random_pages_behind_valid_metas(data: st.DataObject) -> None:
    targets.bolt_pages(HypothesisDraw(data))
