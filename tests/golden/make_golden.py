#!/usr/bin/env python3
"""Write tests/golden/outputs.json.gz: the JSON outputs of every command on every sample and
damaged copy (tests/golden_cases.py), which tests/test_golden.py holds the code to.

Run it deliberately, when an output is meant to change, and say why in the commit:
    python3 tests/golden/make_golden.py
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from golden_cases import render_all  # noqa: E402

GOLDEN = HERE / "outputs.json.gz"


def main() -> int:
    outputs = render_all()
    data = json.dumps(outputs, indent=0, sort_keys=True, ensure_ascii=False).encode()
    GOLDEN.write_bytes(gzip.compress(data, mtime=0))
    print(f"{GOLDEN}: {len(outputs)} outputs, {GOLDEN.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
