"""inventory reads what it shows and nothing more: not the driver's own directories and links
nor BuildKit's databases (only verify checks them), and for one container's view not the
layers behind the image sizes it does not print. Its output stays that of a whole read
(tests/test_golden.py holds every output byte for byte)."""

from __future__ import annotations

from pathlib import Path

from forensics.api import inventory as inventory_api
from forensics.evidence import Evidence
from forensics.inventory import build_inventory
from forensics.stores.host import CONTAINERS, EVERYTHING, SHOWN, Scope, read_host


def files_read(root: Path, scope: Scope) -> set[str]:
    ev = Evidence(root, record_reads=True)
    read_host(ev, scope=scope)
    return set(ev.reads)


def test_inventory_reads_no_driver_directory_nor_buildkit(sample_master: Path) -> None:
    everything, shown = files_read(sample_master, EVERYTHING), files_read(sample_master, SHOWN)
    skipped = everything - shown
    assert shown < everything
    assert any(path.startswith("overlay2/") for path in skipped)
    assert not any(path.startswith(("overlay2/", "buildkit/")) for path in shown)
    assert any("/layerdb/sha256/" in path for path in shown)  # the layers it shows


def test_a_container_view_reads_no_layer(sample_master: Path) -> None:
    read = files_read(sample_master, CONTAINERS)
    assert not any("/layerdb/sha256/" in path for path in read)
    assert any(path.endswith("/config.v2.json") for path in read)
    assert any("/layerdb/mounts/" in path for path in read)


def test_what_is_shown_is_what_a_whole_read_shows(sample_master: Path) -> None:
    whole = read_host(Evidence(sample_master))
    found = inventory_api.inventory(str(sample_master))
    assert found.host.driver_dirs == {} and whole.driver_dirs
    assert build_inventory(found.host) == build_inventory(whole)
