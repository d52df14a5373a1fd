"""Memory per object: what one more container directory costs verify and inventory.

A root with many empty container directories (no config in any) once cost about 4 KB (verify)
and 5 KB (inventory) of peak memory per directory, most of it in the JSON output built whole
and in the model's per-object dictionaries and lists. The bound here is about twice what one
costs now (bench/README.md, "Memory per object") and half what one cost before.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from peak import measure

#: empty container directories added to the sample
COUNT = 20_000
#: peak memory that one more empty container directory may add, in bytes
BYTES_PER_DIRECTORY = 2_500


def _peak(root: Path, verb: str) -> tuple[int, str, int]:
    """Exit code, stdout and peak RSS in bytes of ``verb ROOT --format json`` (tests/peak.py:
    measured from a launcher of its own, not inheriting pytest's peak)."""
    exe = shutil.which("docker-forensics")
    assert exe
    run = measure([exe, "--no-progress", verb, root, "--format", "json"])
    return run.code, run.stdout, run.peak_mib * 1024 * 1024


def _add_empty_containers(root: Path, count: int) -> set[str]:
    ids = {hashlib.sha256(b"empty %d" % n).hexdigest() for n in range(count)}
    for cid in ids:
        (root / "containers" / cid).mkdir()
    return ids


def test_an_empty_container_directory_costs_little(sample_root: Path) -> None:
    before = {verb: _peak(sample_root, verb)[2] for verb in ("verify", "inventory")}
    added = _add_empty_containers(sample_root, COUNT)

    code, out, verify_peak = _peak(sample_root, "verify")
    assert code == 4
    missing = [
        f["object_id"]
        for f in json.loads(out)["findings"]
        if f["check"] == "container.config-missing"
    ]
    assert sorted(missing) == sorted(added)  # one finding per such container, no more

    code, out, inventory_peak = _peak(sample_root, "inventory")
    assert code == 0
    listed = {c["id"] for c in json.loads(out)["containers"]}
    assert added <= listed

    per_directory = {
        "verify": (verify_peak - before["verify"]) / COUNT,
        "inventory": (inventory_peak - before["inventory"]) / COUNT,
    }
    assert all(cost < BYTES_PER_DIRECTORY for cost in per_directory.values()), per_directory
