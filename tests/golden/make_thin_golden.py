#!/usr/bin/env python3
"""Write the golden outputs of the ``thin`` commands into ``tests/golden/thin/<group>.json``.

Run it deliberately, when an output is meant to change, and review the diff of the golden files
with that change; ``tests/test_thin_golden.py`` compares every later run against them.

    python tests/golden/make_thin_golden.py                 # every group
    python tests/golden/make_thin_golden.py cases samples   # some groups
    python tests/golden/make_thin_golden.py --list          # the groups and their subjects

It needs Debian's thin-provisioning-tools (``thin_restore`` writes the pools) and the two
devicemapper samples in ``samples/``. Run it from the repository with the package importable
(``PYTHONPATH=.`` or an editable install).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))

import thin_golden as tg  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="*", help="groups to write (default: all)")
    parser.add_argument("--list", action="store_true", help="list groups and subjects")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="thin-golden-") as tmp:
        root = Path(tmp)
        samples: dict[str, Path] = {}

        def sample_root(name: str) -> Path:
            if name not in samples:
                samples[name] = tg.unpack_sample(name, root / "samples" / name)
            return samples[name]

        groups = tg.groups(sample_root)
        if args.list:
            for group in groups:
                print(f"{group.name}: {len(group.recipes)} subjects")
                for name in group.recipes:
                    print(f"  {name}")
            return 0
        unknown = set(args.groups) - {g.name for g in groups}
        if unknown:
            parser.error(f"unknown groups: {', '.join(sorted(unknown))}")
        pools = tg.Pools(root / "pools")
        tg.GOLDEN.mkdir(parents=True, exist_ok=True)
        for group in groups:
            if args.groups and group.name not in args.groups:
                continue
            started = time.perf_counter()
            doc = {}
            for index, (name, recipe) in enumerate(group.recipes.items()):
                subject = recipe(pools, root / group.name / f"{index:03d}")
                doc[name] = json.loads(tg.canonical(tg.outputs_of(subject)))
            path = tg.golden_file(group.name)
            path.write_text(tg.canonical(doc) + "\n")
            took = time.perf_counter() - started
            print(f"{path.relative_to(TESTS.parent)}: {len(doc)} subjects ({took:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
