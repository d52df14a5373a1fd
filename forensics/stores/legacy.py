"""The legacy image store of Docker 1.8/1.9: ``graph/<id>/``, ``repositories-<driver>`` and the
container names in ``linkgraph.db``.

In this era an image *is* a layer: ``graph/<id>/json`` holds the v1 image JSON, and the driver
directory of the layer is named by the same graph id.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from forensics.evidence import Evidence, ReadFailure
from forensics.formats.ids import is_hex64
from forensics.model import Host, Image, Layer, Problem
from forensics.progress import track
from forensics.stores.reading import as_dict, as_str, bad_value, read_json_object, read_value

LINKGRAPH = "linkgraph.db"
LINKGRAPH_LIMIT = 256 * 1024 * 1024


def read_graph(ev: Evidence, host: Host) -> None:
    host.image_store = "graph"
    for name in track(ev.listdir_or_empty("graph"), "graph"):
        rel = f"graph/{name}"
        if name == "_tmp":
            for leftover in ev.listdir_or_empty(rel):
                host.add_leftover("graph-tmp", f"{rel}/{leftover}")
        elif not is_hex64(name) or not ev.is_dir(rel):
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
    doc = read_json_object(ev, f"{rel}/json", layer.problems, "config")
    if doc is not None:
        image.config_ok = True
        image.created = layer.created = as_str(doc.get("created"))
        image.os = as_str(doc.get("os"))
        image.architecture = as_str(doc.get("architecture"))
        layer.parent = _parent_of(ev, rel, doc, layer.problems)
        image.parent = layer.parent
    size = read_value(ev, f"{rel}/layersize", layer.problems, "layersize", optional=True)
    if size is not None:
        if size.lstrip("-").isdigit():
            layer.size = int(size)
        else:
            bad_value(layer.problems, "layersize", f"{rel}/layersize", f"not a size: {size[:80]!r}")
    layer.has_tar_split = ev.is_file(f"{rel}/tar-data.json.gz")
    return layer, image


def _parent_of(
    ev: Evidence, rel: str, doc: dict[str, Any], problems: dict[str, Problem]
) -> str | None:
    """The parent graph id: a ``parent`` file wins over ``json.parent``, then ``parent_id``."""
    from_file = read_value(ev, f"{rel}/parent", problems, "parent", optional=True)
    if from_file:
        return from_file
    parent = as_str(doc.get("parent"))
    if parent:
        return parent
    parent_id = as_str(doc.get("parent_id"))
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
    rel = f"repositories-{driver}"
    host.references_path = rel
    doc = read_json_object(ev, rel, host.problems, "repositories", optional=True)
    if doc is None:
        return
    repos = doc.get("Repositories")
    if not isinstance(repos, dict):
        bad_value(host.problems, "repositories", rel, 'no "Repositories" object')
        return
    for name, refs in sorted(repos.items()):
        for ref, target in sorted(as_dict(refs).items()):
            if isinstance(target, str):
                joiner = "@" if ref.startswith("sha256:") else ":"
                host.references[f"{name}{joiner}{ref}"] = target
    for ref, target in host.references.items():
        image = host.images.get(target)
        if image is not None:
            (image.digests if "@" in ref else image.tags).append(ref)


def _linkgraph_names(data: bytes) -> list[tuple[object, object]]:
    """Top-level names in a linkgraph.db given as bytes, queried from an in-memory copy: the
    evidence file is never opened by SQLite, so no journal or -wal/-shm file can appear."""
    db = sqlite3.connect(":memory:")
    try:
        db.deserialize(data)
        return db.execute("SELECT entity_id, name FROM edge WHERE parent_id = '0'").fetchall()
    finally:
        db.close()


def read_linkgraph_names(ev: Evidence, host: Host) -> None:
    """Container names from ``linkgraph.db``, read through the evidence reader (so it is hashed
    like every other file) and queried in memory."""
    if not ev.is_file(LINKGRAPH):
        return
    try:
        data = ev.read_bytes(LINKGRAPH, LINKGRAPH_LIMIT)
    except ReadFailure as failure:
        host.problems["linkgraph"] = Problem(LINKGRAPH, failure.kind, failure.detail)
        return
    try:
        rows = _linkgraph_names(data)
    except sqlite3.Error as exc:
        host.problems["linkgraph"] = Problem(LINKGRAPH, "invalid", f"unreadable SQLite: {exc}")
        return
    for entity, name in rows:
        container = host.containers.get(str(entity))
        if container is not None and isinstance(name, str):
            container.name = name
