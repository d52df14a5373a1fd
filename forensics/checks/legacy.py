"""Rules on the legacy (1.8/1.9) graph store: graph/<id>/ files, ids and parents, tags, and the
container names of linkgraph.db."""

from __future__ import annotations

from collections.abc import Iterator

from forensics.checks.catalog import finding
from forensics.checks.common import short
from forensics.model import Host, Layer
from forensics.report import Finding


def check_graph(host: Host) -> Iterator[Finding]:
    if host.image_store != "graph":
        return
    for layer in host.layers.values():
        yield from _check_graph_entry(layer)
    yield from _check_parent_loops(host)
    yield from _check_linkgraph(host)


def _check_graph_entry(layer: Layer) -> Iterator[Finding]:
    ident = {"object_type": "layer", "object_id": layer.id}
    json_path = f"{layer.path}/json"
    if layer.config_id and layer.config_id != layer.id:
        yield finding(
            "graph.id-mismatch",
            json_path,
            f"the json says id {short(layer.config_id)}: the daemon ignores an image stored "
            "under another id",
            **ident,
        )
    strong = layer.layer_digest is not None and not layer.parent_from_file
    if strong and layer.computed_digest and layer.computed_digest.split(":", 1)[1] != layer.id:
        yield finding(
            "graph.digest-mismatch",
            json_path,
            f"a v2 pull names the directory by the json's sha256, which is now "
            f"{short(layer.computed_digest)}: the json was changed",
            **ident,
        )


def _check_parent_loops(host: Host) -> Iterator[Finding]:
    for layer in host.layers.values():
        seen: set[str] = set()
        current: str | None = layer.id
        while current and current in host.layers and current not in seen:
            seen.add(current)
            current = host.layers[current].parent
        if current == layer.id:
            yield finding(
                "graph.parent-loop",
                layer.path,
                f"its parent chain comes back to itself after {len(seen)} image(s)",
                object_type="layer",
                object_id=layer.id,
            )


def _check_linkgraph(host: Host) -> Iterator[Finding]:
    for entity, parent, name in host.link_edges:
        if entity == "0":
            continue
        kind = "name" if parent == "0" else f"link {name!r} of {short(parent)}"
        if entity not in host.containers:
            yield finding(
                "linkgraph.container-missing",
                "linkgraph.db",
                f"{kind} {name!r} points to container {short(entity)}, which does not exist",
                object_type="container-name",
                object_id=f"{parent}/{name}",
            )
