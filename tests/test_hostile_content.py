"""No content of any metadata file makes the tool crash: every file kind of the real sample gets
wrong types, garbage and damage, and the whole pipeline (read, check, inventory, export) runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from sample_paths import STORE, SamplePaths

from forensics.checks import run_checks
from forensics.evidence import Evidence
from forensics.export import RunInfo, export_sqlite
from forensics.inventory import build_inventory, inventory_text
from forensics.report import findings_jsonl, findings_text
from forensics.stores import read_host

#: contents that are damage in every file kind (the others may be valid for some kinds)
DAMAGED = 8
CONTENTS = [
    b"",
    b"\0" * 64,
    b"[]",
    b'"text"',
    b"null",
    b"-12",
    b"\xff\xfe\xfd",
    b"{" * 5000,
    b'{"State": "x", "Config": [], "MountPoints": 5, "Name": 7, "ID": null, "Image": {}}',
    b'{"State": {"Running": "yes", "StartedAt": 5}, "Config": {"Image": 3}, '
    b'"MountPoints": {"a": []}}',
    b'{"Repositories": []}',
    b'{"Repositories": {"a": "b", "c": {"t": 5, "u": "sha256:' + b"0" * 64 + b'"}}}',
    b'{"rootfs": {"diff_ids": "x"}, "history": 3, "created": 5}',
    b'{"rootfs": {"diff_ids": [1, null, "sha256:zz"]}, "history": [1, {"empty_layer": 1}]}',
    b"sha256:" + b"a" * 64 + b"\n" + b"b" * 10_000,
    b"../../../../etc/passwd",
    b"l/../../x:l/" + b"A" * 26 + b":",
    os.urandom(300),
]


def _files(s: SamplePaths) -> list[str]:
    chain = s.chain("sample/app:1.0")
    cid = s.container_id("exited")
    layer = s.layer_dir(chain[2])
    cache = s.cache_id(chain[2])
    mounts = f"{STORE}/layerdb/mounts/{cid}"
    return [
        f"containers/{cid}/config.v2.json",
        f"containers/{cid}/hostconfig.json",
        f"{STORE}/repositories.json",
        s.image_config("sample/app:1.0"),
        f"{layer}/diff",
        f"{layer}/size",
        f"{layer}/cache-id",
        f"{layer}/parent",
        f"{mounts}/mount-id",
        f"{mounts}/init-id",
        f"{mounts}/parent",
        f"overlay2/{cache}/link",
        f"overlay2/{cache}/lower",
    ]


def _run_everything(root: Path, out: Path) -> list[Any]:
    ev = Evidence(root, record_reads=True)
    host = read_host(ev)
    findings = run_checks(host)
    build_inventory(host)
    inventory_text(host)
    findings_text(findings)
    findings_jsonl(findings)
    run = RunInfo(
        "docker-forensics", "test", "verify", [], str(root), "h", "u", "s", reads=ev.reads
    )
    export_sqlite(out, host, findings, run)
    return findings


@pytest.mark.parametrize("index", range(13))
def test_every_content_in_every_file(
    sample_root: Path, truth: dict[str, Any], tmp_path: Path, index: int
) -> None:
    s = SamplePaths(sample_root, truth)
    rel = _files(s)[index]
    for n, content in enumerate(CONTENTS):
        s.path(rel).write_bytes(content)
        findings = _run_everything(sample_root, tmp_path / f"{n}.db")
        if n < DAMAGED:
            where = rel.rsplit("/", 1)[0]
            assert any(f.path.startswith(where) for f in findings), (rel, content[:40])
