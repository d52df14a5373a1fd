"""Every JSON output of every command, on every sample and damaged copy, byte for byte as
tests/golden/outputs.json.gz keeps it (remade by tests/golden/make_golden.py when an output is
meant to change)."""

from __future__ import annotations

import difflib
import gzip
import json
from pathlib import Path

from golden_cases import render_all

GOLDEN = Path(__file__).resolve().parent / "golden" / "outputs.json.gz"


def test_every_output_is_as_the_golden_file_keeps_it() -> None:
    expected: dict[str, str] = json.loads(gzip.decompress(GOLDEN.read_bytes()))
    actual = render_all()
    assert sorted(actual) == sorted(expected), "the cases or commands changed"
    changed = [key for key in sorted(expected) if actual[key] != expected[key]]
    if changed:
        key = changed[0]
        diff = difflib.unified_diff(
            expected[key].splitlines(), actual[key].splitlines(), "golden", "now", lineterm=""
        )
        raise AssertionError(
            f"{len(changed)} outputs changed: {changed[:10]}\nfirst, {key}:\n"
            + "\n".join(list(diff)[:60])
        )
