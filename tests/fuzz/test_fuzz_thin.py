"""Fuzzing of the dm-thin pool metadata readers over a real pool written by thin_restore:
superblock blocks, btree nodes of every tree (damaged real ones, and drawn ones over drawn
children), both space maps (damaged roots, index, bitmaps and ref-count trees), and the whole
``thin check`` / ``dump`` / ``ls`` path over a damaged metadata file. Allowed outcomes: values and
findings. The targets are shared with the atheris runner."""

from __future__ import annotations

import thin_targets
from draw import HypothesisDraw
from hypothesis import given
from hypothesis import strategies as st


@given(st.data())
def test_superblock_blocks(data: st.DataObject) -> None:
    thin_targets.superblock(HypothesisDraw(data))


@given(st.data())
def test_btree_nodes_of_a_real_pool(data: st.DataObject) -> None:
    thin_targets.node(HypothesisDraw(data))


@given(st.data())
def test_drawn_btree_nodes(data: st.DataObject) -> None:
    thin_targets.random_node(HypothesisDraw(data))


@given(st.data())
def test_space_maps(data: st.DataObject) -> None:
    thin_targets.spacemap(HypothesisDraw(data))


@given(st.data())
def test_thin_check_on_a_damaged_file(data: st.DataObject) -> None:
    thin_targets.check_file(HypothesisDraw(data))
