"""``inventory --images/--containers/--volumes``: each section read alone shows what the same
section of the whole inventory shows, and reads none of the files only the other sections
show (``docker ps -a`` pays for no image config nor layer) — on every sample, corpus tree,
reference tree and damaged copy of the golden cases."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from golden_cases import _prepare, cases

from forensics.api import inventory as inventory_api
from forensics.evidence import Evidence
from forensics.inventory import SECTION_KEYS, build_inventory, inventory_text
from forensics.stores.host import read_host, shown_sections

#: every choice of sections but all three (which is the whole inventory)
CHOICES = [
    frozenset(chosen)
    for size in (1, 2)
    for chosen in combinations(("images", "containers", "volumes"), size)
]
#: the keys every document has, whatever its sections
ALWAYS = {"root", "layout", "driver", "image_store", "notes"}
#: 2026-11-28T02:00:00Z: relative times in the text, as --now gives them
NOW = 1_795_831_200 * 10**9


def without_allocation(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` without the bytes the file system allocated to the pool files (``st_blocks``
    of a sparse file just unpacked moves while the file system settles its allocation)."""
    pool = doc.get("pool")
    if not pool:
        return doc
    files = {name: {**f, "allocated": None} for name, f in pool["files"].items()}
    return {**doc, "pool": {**pool, "files": files}}


@pytest.fixture(scope="module")
def case_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    scratch = tmp_path_factory.mktemp("sections")
    return {case.name: _prepare(case, scratch) for case in cases()}


def test_each_section_read_alone_is_that_section_of_the_whole(
    case_roots: dict[str, Path],
) -> None:
    compared = 0
    for name, root in case_roots.items():
        whole_host = inventory_api.inventory(str(root)).host
        whole = without_allocation(build_inventory(whole_host, NOW))
        for sections in [*CHOICES, frozenset()]:
            keys = ALWAYS | {key for s in sections or SECTION_KEYS for key in SECTION_KEYS[s]}
            host = inventory_api.inventory(str(root), sections=sections).host
            expected = {key: value for key, value in whole.items() if key in keys}
            found = without_allocation(build_inventory(host, NOW, sections))
            assert found == expected, (name, sorted(sections))
            tables = inventory_api.inventory(str(root), sections=sections, tables=True).host
            for now in (None, NOW):
                for all_images in (False, True):
                    assert inventory_text(
                        tables, now=now, sections=sections, all_images=all_images
                    ) == inventory_text(
                        whole_host, now=now, sections=sections, all_images=all_images
                    ), (name, sorted(sections), now, all_images)
            compared += 1
    assert compared == len(case_roots) * (len(CHOICES) + 1) > 100


def files_read(root: Path, sections: set[str], *, tables: bool = False) -> set[str]:
    ev = Evidence(root, record_reads=True)
    read_host(ev, scope=shown_sections(frozenset(sections), tables=tables))
    return set(ev.reads)


IMAGE_FILES = ("/imagedb/", "/layerdb/sha256/", "/repositories.json")


def test_the_containers_view_reads_no_image_layer_nor_volume(sample_master: Path) -> None:
    read = files_read(sample_master, {"containers"})
    assert not [p for p in read if any(part in p for part in IMAGE_FILES)]
    assert not [p for p in read if p.startswith(("overlay2/", "buildkit/", "volumes/"))]
    assert {p.rsplit("/", 1)[-1] for p in read} == {
        "config.v2.json",
        "hostconfig.json",
        "mount-id",
        "init-id",
        "parent",
    }
    everything = files_read(sample_master, {"images", "containers", "volumes"})
    assert read < everything


def test_the_text_tables_read_no_host_config_mount_record_nor_layer_but_its_size(
    sample_master: Path,
) -> None:
    read = files_read(sample_master, set(), tables=True)
    names = {p.rsplit("/", 1)[-1] for p in read if "/layerdb/" in p or p.startswith("containers/")}
    assert names == {"config.v2.json", "size"}
    assert read < files_read(sample_master, set())
    ps = files_read(sample_master, {"containers"}, tables=True)
    assert {p.rsplit("/", 1)[-1] for p in ps} == {"config.v2.json"}


def test_the_images_view_reads_no_container(sample_master: Path) -> None:
    read = files_read(sample_master, {"images"})
    assert not [p for p in read if p.startswith("containers/") or "/layerdb/mounts/" in p]
    assert any("/imagedb/content/" in p for p in read)
    assert any("/layerdb/sha256/" in p for p in read)  # the layers behind the sizes shown


def test_the_volumes_view_reads_no_file(sample_master: Path) -> None:
    assert files_read(sample_master, {"volumes"}) == set()


def test_the_containers_text_is_the_whole_texts_heading_and_table(sample_master: Path, cli) -> None:
    whole = cli("inventory", sample_master)
    ps = cli("inventory", sample_master, "--containers")
    assert whole.code == ps.code == 0
    heading, rest = whole.stdout.split("\nIMAGES (", 1)
    table = "\nCONTAINERS (" + rest.split("\nCONTAINERS (", 1)[1].split("\n\nVOLUMES (", 1)[0]
    assert ps.stdout == heading + table + "\n"


def test_the_json_of_sections_holds_their_keys_alone(sample_master: Path, cli) -> None:
    doc = cli("inventory", sample_master, "--format", "json", "--volumes", "--containers").json()
    assert set(doc) == {"root", "layout", "driver", "image_store", "containers", "volumes", "notes"}
    whole = cli("inventory", sample_master, "--format", "json").json()
    assert doc == {key: value for key, value in whole.items() if key in doc}
    assert json.dumps(doc["containers"]) == json.dumps(whole["containers"])


def test_one_container_and_a_section_is_a_usage_error(sample_master: Path, cli) -> None:
    result = cli("inventory", sample_master, "--container", "running", "--images")
    assert result.code == 16
    assert "--container" in result.stderr


@pytest.mark.parametrize("options", [(), ("--format", "json"), ("--containers",)])
def test_inventory_loads_neither_the_checks_nor_the_timeline(
    sample_master: Path, options: tuple[str, ...]
) -> None:
    """Listing prints times (forensics.formats.rfc3339), it never runs a check: the checks and
    the timeline's readers are a tenth of a second of imports it does not pay for."""
    from test_startup import loaded_by

    out, modules = loaded_by("inventory", str(sample_master), *options)
    assert "CONTAINERS (" in out or '"containers"' in out
    assert not {m for m in modules if m.startswith(("forensics.checks", "forensics.timeline"))}
