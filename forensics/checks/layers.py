"""Rules on layers: their own files, the ChainID formula, parents, driver data, reachability,
and the leftovers of interrupted layer operations."""

from __future__ import annotations

from collections.abc import Iterator

from forensics.checks.catalog import finding
from forensics.checks.common import problem_findings, short
from forensics.formats.ids import chain_id, is_digest
from forensics.model import Host, Layer
from forensics.report import Finding

LAYER_LABELS = {
    "diff": "diff file",
    "size": "size file",
    "cache-id": "cache-id file",
    "parent": "parent file",
    "config": "graph json",
    "layersize": "layersize file",
}

LEFTOVERS = {
    "layer-removing": ("layer.removing-leftover", "left by an interrupted layer delete"),
    "layerdb-tmp": ("layer.tmp-leftover", "left by an interrupted layer registration"),
    "layerdb-stray": ("layer.stray-entry", "not a layer directory (name is not 64 hex)"),
    "imagedb-stray": (
        "image.stray-entry",
        "not an image config (a temp file of an interrupted write?)",
    ),
    "graph-tmp": ("layer.graph-tmp-leftover", "left by an interrupted graph operation"),
    "graph-stray": ("layer.graph-stray", "not a graph image directory"),
    "graph-malformed": (
        "graph.id-malformed",
        "an image directory whose name is no graph id (64 hex digits): the daemon cannot load it",
    ),
    "containers-stray": ("container.stray-entry", "not a container directory"),
    "driver-stray": ("driver.stray-entry", "a file where the driver keeps layer directories"),
    "devicemapper-tmp": ("devicemapper.tmp-leftover", "left by an interrupted device record write"),
}


def check_layers(host: Host) -> Iterator[Finding]:
    for layer in host.layers.values():
        yield from _check_layer_files(host, layer)
    yield from _check_image_chains(host)
    yield from _check_unreferenced(host)


def check_leftovers(host: Host) -> Iterator[Finding]:
    for kind, paths in sorted(host.leftovers.items()):
        check, why = LEFTOVERS[kind]
        for path in paths:
            yield finding(check, path, why)


def _check_layer_files(host: Host, layer: Layer) -> Iterator[Finding]:
    ident = {"object_type": "layer", "object_id": layer.id}
    if "dir" in layer.problems:
        yield finding(
            "layer.empty-dir",
            layer.path,
            "empty layer directory: every pull of this layer fails with 'file exists'",
            **ident,
        )
        return
    if layer.problems:
        yield from problem_findings("layer", layer.problems, LAYER_LABELS, "layer", layer.id)
    if host.layout == "modern" and layer.diff_id and is_digest(layer.diff_id):
        parent_ok = layer.parent is None or is_digest(layer.parent)
        expected = chain_id(layer.parent, layer.diff_id)
        if parent_ok and expected != layer.id:
            yield finding(
                "layer.chain-id-mismatch",
                layer.path,
                f"ChainID of parent {short(layer.parent or '-')} and diff {short(layer.diff_id)} "
                f"is {short(expected)}, not the directory name",
                **ident,
            )
    if layer.parent and layer.parent not in host.layers and "parent" not in layer.problems:
        yield finding(
            "layer.parent-missing",
            layer.path,
            f"parent layer {short(layer.parent)} is not in the layer store",
            **ident,
        )
    if layer.cache_id and host.driver and layer.cache_id not in host.driver_dirs:
        yield finding(
            "layer.driver-dir-missing",
            layer.path + ("/cache-id" if host.layout == "modern" else ""),
            f"{host.driver} has no data for cache-id {short(layer.cache_id)}",
            **ident,
        )
    if host.layout == "modern" and not layer.has_tar_split:
        yield finding(
            "layer.tar-split-missing",
            layer.path,
            "no tar-split.json.gz: the layer cannot be saved, pushed or verified",
            **ident,
        )


def _check_image_chains(host: Host) -> Iterator[Finding]:
    """Each layer's parent must be the previous layer of every image that uses it."""
    if host.layout != "modern":
        return
    seen: set[str] = set()
    layers = host.layers
    for image in host.images.values():
        below: str | None = None  # the image's layer under ``chain``
        for chain in image.layers:
            expected, below = below, chain
            if chain in seen:  # images share their lower layers: most are seen already
                continue
            layer = layers.get(chain)
            if layer is None or "dir" in layer.problems:
                continue
            seen.add(chain)
            if layer.parent != expected and "parent" not in layer.problems:
                yield finding(
                    "layer.parent-mismatch",
                    layer.path,
                    f"parent is {short(layer.parent or 'none')} but image {short(image.id)} "
                    f"stacks it on {short(expected or 'none')}",
                    object_type="layer",
                    object_id=layer.id,
                )


def _check_unreferenced(host: Host) -> Iterator[Finding]:
    used = _reachable_layers(host)
    for layer in host.layers.values():
        if layer.id not in used and "dir" not in layer.problems:
            yield finding(
                "layer.unreferenced",
                layer.path,
                "no image and no container uses this layer",
                object_type="layer",
                object_id=layer.id,
            )


def _reachable_layers(host: Host) -> set[str]:
    roots: list[str] = [chain for image in host.images.values() for chain in image.layers]
    roots += [m.parent for m in host.mounts.values() if m.parent]
    if host.layout == "legacy":
        roots += [c.image_id for c in host.containers.values() if c.image_id]
    reachable: set[str] = set()
    for start in roots:
        current: str | None = start
        while current and current not in reachable and current in host.layers:
            reachable.add(current)
            current = host.layers[current].parent
    return reachable
