"""Every ``thin`` command's output, byte for byte as when the golden files were written.

The subjects (pools, damaged copies, the two devicemapper samples) and the commands are those
of ``thin_golden``; the expected outputs are in ``tests/golden/thin/``, written by
``tests/golden/make_thin_golden.py``. A difference is either a regression or a deliberate
change: then re-run the generator and review the golden files' diff with the change.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest
import thin_golden as tg

GROUPS = {g.name: g for g in tg.groups(lambda name: Path(name))}
SUBJECTS = [
    (group, name)
    for group in GROUPS
    if tg.golden_file(group).exists()
    for name in json.loads(tg.golden_file(group).read_text())
]


def test_every_subject_has_golden_outputs() -> None:
    """The golden files hold exactly the subjects that thin_golden makes: a subject added or
    renamed needs the generator run."""
    for name, group in GROUPS.items():
        assert tg.golden_file(name).exists(), f"run tests/golden/make_thin_golden.py {name}"
        golden = json.loads(tg.golden_file(name).read_text())
        assert sorted(golden) == sorted(group.recipes), name


@pytest.fixture(scope="module")
def pools(tmp_path_factory: pytest.TempPathFactory) -> tg.Pools:
    return tg.Pools(tmp_path_factory.mktemp("golden-pools"))


@pytest.fixture(scope="module")
def golden() -> dict[str, dict]:
    return {
        g: json.loads(tg.golden_file(g).read_text()) for g in GROUPS if tg.golden_file(g).exists()
    }


@pytest.mark.parametrize(("group", "name"), SUBJECTS, ids=[f"{g}: {n}" for g, n in SUBJECTS])
def test_outputs_are_unchanged(
    group: str,
    name: str,
    pools: tg.Pools,
    golden: dict[str, dict],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    def sample_root(sample: str) -> Path:
        fixture = "dm_master" if sample.startswith("legacy") else "modern_dm_master"
        return request.getfixturevalue(fixture)

    recipe = tg.groups(sample_root)[list(GROUPS).index(group)].recipes[name]
    subject = recipe(pools, tmp_path / "work")
    got = json.loads(tg.canonical(tg.outputs_of(subject)))
    want = golden[group][name]
    if got != want:
        first = next(k for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k))
        diff = difflib.unified_diff(
            tg.canonical(want.get(first)).splitlines(),
            tg.canonical(got.get(first)).splitlines(),
            "golden",
            "now",
            lineterm="",
        )
        pytest.fail(f"{name}: {first!r} changed:\n" + "\n".join(list(diff)[:60]))
