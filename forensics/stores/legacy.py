"""The legacy image store of Docker 1.8/1.9: ``graph/<id>/``, ``repositories-<driver>`` and the
container names in ``linkgraph.db``.

In this era an image *is* a layer: ``graph/<id>/json`` holds the v1 image JSON, and the driver
directory of the layer is named by the same graph id.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from typing import Any

from forensics.evidence import DirHandle, Evidence, ReadFailure
from forensics.formats.ids import is_hex64
from forensics.formats.jsonfile import JsonDamage, decode_json, field
from forensics.model import Host, Image, Layer, Problem
from forensics.progress import track
from forensics.stores.reading import as_dict, as_str, bad_value, read_json_object, read_value
from forensics.stores.runconfig import run_config_of
from forensics.stores.tags import attach_tags, read_tag_store

#: graph checksum files: a registry blob digest, or a TarSum of the 1.3–1.5 era
CHECKSUM = re.compile(r"(sha256:|tarsum(\.v1|\.dev)?\+sha256:)[0-9a-f]{64}")
LINKGRAPH = "linkgraph.db"
LINKGRAPH_LIMIT = 256 * 1024 * 1024
#: its write-ahead log in WAL mode (SQLite's default autocheckpoint keeps it near 4 MiB)
LINKGRAPH_WAL = LINKGRAPH + "-wal"
LINKGRAPH_WAL_LIMIT = 64 * 1024 * 1024


def read_graph(ev: Evidence, host: Host) -> None:
    host.image_store = "graph"
    entries = ev.scandir_types("graph")
    for name in track(sorted(entries), "graph"):
        rel = f"graph/{name}"
        if name == "_tmp":
            for leftover in ev.listdir_or_empty(rel):
                host.add_leftover("graph-tmp", f"{rel}/{leftover}")
        elif entries[name] == "dir" and not is_hex64(name) and ev.exists(f"{rel}/json"):
            host.add_leftover("graph-malformed", rel)
        elif not is_hex64(name) or entries[name] != "dir":
            host.add_leftover("graph-stray", rel)
        else:
            layer, image = _read_graph_entry(ev, rel, name)
            host.layers[name] = layer
            host.images[name] = image
    for image in host.images.values():
        image.layers = _ancestry(host, image.id)


def _read_graph_entry(ev: Evidence, rel: str, gid: str) -> tuple[Layer, Image]:
    layer = Layer(id=gid, path=rel, cache_id=gid)
    image = Image(id=gid, path=f"{rel}/json", problems=layer.problems)
    try:
        with ev.opendir(rel) as d:
            _read_graph_files(d, layer, image)
    except ReadFailure as failure:
        layer.problems["config"] = Problem(rel, failure.kind, failure.detail)
    return layer, image


def _read_graph_files(d: DirHandle, layer: Layer, image: Image) -> None:
    problems = layer.problems
    doc = _read_v1_json(d, layer)
    if doc is not None:
        image.config_ok = True
        image.created = layer.created = as_str(field(doc, "created"))
        image.os = as_str(field(doc, "os"))
        image.architecture = as_str(field(doc, "architecture"))
        image.run_config = run_config_of(field(doc, "config", nullable=True))
        layer.parent = _parent_of(d, doc, layer)
        image.parent = layer.parent
    size = read_value(d, "layersize", problems, "layersize", optional=True)
    if size is not None:
        if size.lstrip("-").isdigit():
            layer.size = int(size)
        else:
            bad_value(problems, "layersize", d.path_of("layersize"), f"not a size: {size[:80]!r}")
    layer.checksum = read_value(d, "checksum", problems, "checksum", optional=True)
    if layer.checksum is not None and not CHECKSUM.fullmatch(layer.checksum):
        bad_value(
            problems, "checksum", d.path_of("checksum"), f"not a digest: {layer.checksum[:80]!r}"
        )
    layer.has_tar_split = d.types.get("tar-data.json.gz") == "file"
    layer.has_v1_compatibility = d.types.get("v1Compatibility") == "file"
    layer.migration = sorted(n for n in d.types if n.startswith(".migration-"))
    layer.migration_diff_id = read_value(
        d, ".migration-diffid", problems, "migration-diffid", optional=True
    )


def _read_v1_json(d: DirHandle, layer: Layer) -> dict[str, Any] | None:
    """The v1 image JSON; its sha256 is kept (1.8.3+ v2 pulls name the directory by it)."""
    try:
        data = d.read_bytes("json")
    except ReadFailure as failure:
        layer.problems["config"] = Problem(failure.path, failure.kind, failure.detail)
        return None
    layer.computed_digest = "sha256:" + hashlib.sha256(data).hexdigest()
    try:
        doc = decode_json(data, one_value=True)  # graph.loadImage: a json.Decoder
    except JsonDamage as damage:
        layer.problems["config"] = Problem(d.path_of("json"), damage.kind, damage.detail)
        return None
    if not isinstance(doc, dict):
        layer.problems["config"] = Problem(d.path_of("json"), "wrong-type", "not a JSON object")
        return None
    layer.config_id = as_str(field(doc, "id"))
    layer.layer_digest = as_str(field(doc, "layer_id"))
    return doc


def _parent_of(d: DirHandle, doc: dict[str, Any], layer: Layer) -> str | None:
    """The parent graph id: a ``parent`` file wins over ``json.parent``, then ``parent_id``."""
    from_file = read_value(d, "parent", layer.problems, "parent", optional=True)
    if from_file:
        layer.parent_from_file = True
        return from_file
    parent = as_str(field(doc, "parent"))
    if parent:
        return parent
    parent_id = as_str(field(doc, "parent_id"))
    if parent_id and parent_id.startswith("sha256:"):
        return parent_id.split(":", 1)[1]
    return None


def _ancestry(host: Host, gid: str) -> list[str]:
    """The graph ids from the base layer up to ``gid`` (stops at a missing parent or a loop)."""
    chain: list[str] = []
    seen: set[str] = set()
    current: str | None = gid
    while current and current not in seen and current in host.layers:
        seen.add(current)
        chain.append(current)
        current = host.layers[current].parent
    chain.reverse()
    return chain


def read_repositories(ev: Evidence, host: Host, driver: str | None) -> None:
    """``repositories-<driver>``: ``{"Repositories":{name:{tag or digest: graph id}}}``."""
    read_tag_store(ev, host, f"repositories-{driver}", legacy=True)
    attach_tags(host)


def _linkgraph_edges(data: bytes) -> list[tuple[str, str, str]]:
    """The edges of a linkgraph.db given as bytes, queried from an in-memory copy: the evidence
    file is never opened by SQLite, so no journal or -wal/-shm file can appear."""
    if not data.startswith(b"SQLite format 3\0"):
        raise sqlite3.DatabaseError("not an SQLite database (no SQLite header)")
    db = sqlite3.connect(":memory:")
    db.text_factory = _text  # names that are not UTF-8 are kept, not an exception
    try:
        db.deserialize(data)
        rows = db.execute("SELECT entity_id, parent_id, name FROM edge").fetchall()
    except UnicodeDecodeError as exc:  # a damaged schema: column names that are not UTF-8
        raise sqlite3.DatabaseError(f"damaged schema: {exc.reason}") from None
    finally:
        db.close()
    return [(str(e), str(p), str(n)) for e, p, n in rows if p is not None]


def linkgraph_with_wal(ev: Evidence, data: bytes, problems: dict[str, Problem]) -> bytes:
    """The database as SQLite shows it: ``data`` with the committed frames of ``linkgraph.db-wal``
    (when there is one) applied; an unreadable log is recorded under ``linkgraph``."""
    from forensics.formats.sqlite_wal import apply_wal  # construct: only for legacy roots

    wal = b""
    if ev.exists(LINKGRAPH_WAL):
        try:
            wal = ev.read_bytes(LINKGRAPH_WAL, LINKGRAPH_WAL_LIMIT)
        except ReadFailure as failure:
            problems["linkgraph"] = Problem(
                LINKGRAPH_WAL,
                failure.kind,
                f"{failure.detail}: the names are read without the log, and may be stale",
            )
    return apply_wal(data, wal).data


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def read_linkgraph(ev: Evidence, host: Host) -> None:
    """Container names and links from ``linkgraph.db``, read through the evidence reader (so it
    is hashed like every other file). Names are the edges under the root entity ``0``. A
    database in WAL mode is read with the transactions of its ``-wal`` applied in memory
    (:mod:`forensics.formats.sqlite_wal`): SQLite never opens a file in ROOT."""
    if not ev.exists(LINKGRAPH):
        return
    try:
        data = ev.read_bytes(LINKGRAPH, LINKGRAPH_LIMIT)
    except ReadFailure as failure:
        host.problems["linkgraph"] = Problem(LINKGRAPH, failure.kind, failure.detail)
        return
    data = linkgraph_with_wal(ev, data, host.problems)
    try:
        host.link_edges = _linkgraph_edges(data)
    except (sqlite3.Error, MemoryError) as exc:  # sqlite3 says MemoryError for some bad input
        host.problems["linkgraph"] = Problem(LINKGRAPH, "invalid", f"unreadable SQLite: {exc}")
        return
    for entity, parent, name in host.link_edges:
        container = host.containers.get(entity)
        if parent == "0" and container is not None:
            container.name = name


MIGRATION_MAP = ".migration-v1-images.json"


def read_migration_map(ev: Evidence, host: Host) -> None:
    """``.migration-v1-images.json``: which graph id became which 1.10+ image id."""
    doc = read_json_object(ev, MIGRATION_MAP, host.problems, "migration-map", optional=True)
    for gid, image_id in as_dict(doc).items():
        if isinstance(image_id, str):
            host.migrated_images[gid] = image_id
