"""The modern image store (Docker 1.10 → 28.x): ``image/<driver>/``.

``repositories.json``, ``imagedb/{content,metadata}/sha256/``, ``layerdb/sha256/<chain>/``,
``layerdb/mounts/<cid>/`` and ``layerdb/tmp``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from sys import intern
from typing import Any

from forensics.evidence import DirHandle, Evidence, ReadFailure
from forensics.formats.ids import CACHE_ID, MOUNT_ID, chain_ids, is_digest, is_hex64
from forensics.formats.jsonfile import JsonDamage, decode_json, field
from forensics.model import Host, Image, Layer, Mount, Problem, share_run_config
from forensics.parallel import map_entries, submit
from forensics.progress import track
from forensics.stores.reading import as_str, bad_value, checked_id, plain_values, read_value
from forensics.stores.runconfig import run_config_of
from forensics.stores.tags import attach_tags, read_tag_store


def start_image_store(
    ev: Evidence,
    host: Host,
    store: str,
    *,
    images: bool = True,
    layers: bool = True,
    mounts: bool = True,
    probes: bool = True,
    sizes_only: bool = False,
    listed: Mapping[str, dict[str, str]] | None = None,
) -> Callable[[], None]:
    """Start reading ``store`` into ``host``; the function returned finishes it. Without
    ``images`` neither the tags nor the image configs are read, without ``layers`` not the
    layerdb entries, without ``mounts`` not the containers' mount records; without ``probes``
    no name is probed for the checks alone (a layer's tar-split); with ``sizes_only`` a layer's
    ``size`` alone is read (not its DiffID, cache id nor parent: a view that prints sizes).
    ``listed``: the listings that :func:`store_has_content` made of this store (name → entry
    type, by directory), so that no big directory is listed twice.

    The layers, the mount records and the images are all handed to the workers before any is
    taken in, so that the workers read on while this process takes in the results (and
    starts on the driver's directories in between)."""
    host.image_store = store
    if images:
        read_tag_store(ev, host, f"{store}/repositories.json", legacy=False)
    listed = listed or {}
    read_layers = (
        _start_layers(
            ev, host, f"{store}/layerdb", (TAR_SPLIT,) if probes else (), listed, sizes_only
        )
        if layers
        else iter(())
    )
    read_mounts = _start_mounts(ev, f"{store}/layerdb/mounts") if mounts else iter(())
    read_images = _start_images(ev, host, f"{store}/imagedb", listed) if images else iter(())

    def finish() -> None:
        for layer in read_layers:
            host.layers[layer.id] = layer
        for mount in read_mounts:
            host.mounts[mount.container_id] = mount
        for image in read_images:
            host.images[image.id] = share_image_ids(image, host.layers)
        if images:
            attach_tags(host)

    return finish


def share_image_ids(image: Image, layers: dict[str, Layer]) -> Image:
    """``image`` with its chain and DiffIDs made the same string objects as its layers' ids and
    DiffIDs (equal values read or computed apart: on a host of 20,000 layers and 6,000 images
    some 100,000 copies, ≈ 12 MB, freed as each image is taken in), its run configuration's
    strings interned."""
    chain, diff_ids = image.layers, image.diff_ids
    for n, chain_id in enumerate(chain):
        layer = layers.get(chain_id)
        if layer is None:
            continue
        chain[n] = layer.id
        if n < len(diff_ids) and diff_ids[n] == layer.diff_id:
            diff_ids[n] = layer.diff_id
    share_run_config(image.run_config)
    if image.os is not None and image.architecture is not None:
        image.os, image.architecture = intern(image.os), intern(image.architecture)
    return image


# -- imagedb ----------------------------------------------------------------------------------


def _start_images(
    ev: Evidence, host: Host, imagedb: str, listed: Mapping[str, dict[str, str]]
) -> Iterator[Image]:
    """Every image config in ``imagedb`` (stray entries recorded as leftovers), being read."""
    content = f"{imagedb}/content/sha256"
    with_metadata = ev.names(f"{imagedb}/metadata/sha256")
    types = listed.get(content)
    if types is None:
        types = listing(ev, content)
    if types is None:
        return iter(())
    items: list[tuple[str, str, bool]] = []
    for name in sorted(types):
        if is_hex64(name):
            items.append((name, types[name], name in with_metadata))
        else:
            host.add_leftover("imagedb-stray", f"{content}/{name}")
    read = submit(ev, partial(_read_images_in, imagedb), items)
    return track(read, "images", total=len(items))


def _read_images_in(
    imagedb: str, ev: Evidence, items: Sequence[tuple[str, str, bool]]
) -> list[Image]:
    """The images of ``items`` (name, entry type, whether it has a metadata directory)."""
    content = f"{imagedb}/content/sha256"
    try:
        d = ev.open_listed(content, {name: kind for name, kind, _ in items})
    except ReadFailure as failure:  # it was there when it was listed
        problem = Problem(content, failure.kind, failure.detail)
        return [_unread_image(content, name, problem) for name, _, _ in items]
    images = []
    with d:
        for name, _, has_metadata in items:
            image = _read_image(d, name, "sha256:" + name)
            if has_metadata:
                _read_image_metadata(ev, image, f"{imagedb}/metadata/sha256/{name}")
            images.append(image)
    return images


def _unread_image(content: str, name: str, problem: Problem) -> Image:
    image = Image(id="sha256:" + name, path=f"{content}/{name}")
    image.problems["config"] = problem
    return image


def _read_image(d: DirHandle, name: str, image_id: str) -> Image:
    rel = d.path_of(name)
    image = Image(id=image_id, path=rel)
    try:
        data = d.read_bytes(name)
    except ReadFailure as failure:
        image.problems["config"] = Problem(rel, failure.kind, failure.detail)
        return image
    image.computed_digest = "sha256:" + hashlib.sha256(data).hexdigest()
    try:
        config = decode_json(data)
    except JsonDamage as damage:
        image.problems["config"] = Problem(rel, damage.kind, damage.detail)
        return image
    if not isinstance(config, dict):
        image.problems["config"] = Problem(rel, "wrong-type", "the image config is not an object")
        return image
    image.config_ok = True
    _fill_image(image, config)
    return image


def _fill_image(image: Image, config: dict[str, Any]) -> None:
    image.created = as_str(field(config, "created"))
    image.os = as_str(field(config, "os"))
    image.architecture = as_str(field(config, "architecture"))
    image.run_config = run_config_of(field(config, "config", nullable=True))
    rootfs = field(config, "rootfs", nullable=True)
    diff_ids = field(rootfs, "diff_ids", nullable=True)
    if isinstance(diff_ids, list) and all(isinstance(d, str) and is_digest(d) for d in diff_ids):
        image.has_rootfs = True
        image.diff_ids = list(diff_ids)
        image.layers = chain_ids(image.diff_ids)
    elif isinstance(diff_ids, list):
        image.problems["rootfs"] = Problem(
            image.path, "bad-value", "rootfs.diff_ids holds a non-digest"
        )
    history = field(config, "history", nullable=True)
    if isinstance(history, list):
        image.history_layers = sum(
            1 for h in history if isinstance(h, dict) and not field(h, "empty_layer")
        )


#: the value files of an image's metadata directory (both optional)
METADATA_FILES = ("parent", "lastUpdated")


def _read_image_metadata(ev: Evidence, image: Image, meta: str) -> None:
    values = plain_values(ev.read_plain_dir(meta, METADATA_FILES), ())
    if values is not None:  # healthy metadata, read without listing its directory
        image.parent, image.last_updated = values.get("parent"), values.get("lastUpdated")
        return
    try:
        with ev.opendir(meta) as d:
            image.parent = read_value(d, "parent", image.problems, "parent", optional=True)
            image.last_updated = read_value(
                d, "lastUpdated", image.problems, "last-updated", optional=True
            )
    except ReadFailure as failure:
        image.problems["metadata"] = Problem(meta, failure.kind, failure.detail)


# -- layerdb ----------------------------------------------------------------------------------


def _start_layers(
    ev: Evidence,
    host: Host,
    layerdb: str,
    probes: tuple[str, ...],
    listed: Mapping[str, dict[str, str]],
    sizes_only: bool = False,
) -> Iterator[Layer]:
    """Every layer of ``layerdb`` (leftovers and stray entries recorded), being read, with
    ``probes`` probed in each entry."""
    for name in ev.listdir_or_empty(f"{layerdb}/tmp"):
        host.add_leftover("layerdb-tmp", f"{layerdb}/tmp/{name}")
    base = f"{layerdb}/sha256"
    entries = listed.get(base)
    if entries is None:
        entries = ev.scandir_types(base)
    layers: list[str] = []
    for name in sorted(entries):
        if name.endswith("-removing"):
            host.add_leftover("layer-removing", f"{base}/{name}")
        elif not is_hex64(name) or entries[name] != "dir":
            host.add_leftover("layerdb-stray", f"{base}/{name}")
        else:
            layers.append(name)
    reader = _read_size_in if sizes_only else partial(_read_layer_in, probes)
    read = map_entries(ev, partial(reader, base), layers)
    return track(read, "layers", total=len(layers))


def _read_layer_in(probes: tuple[str, ...], base: str, ev: Evidence, name: str) -> Layer:
    return _read_layer(ev, f"{base}/{name}", "sha256:" + name, probes)


def _read_size_in(base: str, ev: Evidence, name: str) -> Layer:
    """A layerdb entry's ``size`` alone, as :func:`_read_layer` reads it."""
    layer = Layer(id="sha256:" + name, path=f"{base}/{name}")
    values = plain_values(ev.read_plain_dir(layer.path, ("size",)), ("size",))
    if values is not None:
        _fill_layer(layer, None, None, values["size"], None)
        return layer
    try:
        with ev.opendir(layer.path) as d:
            if d.types:
                size = read_value(d, "size", layer.problems, "size")
                _fill_layer(layer, None, None, size, None)
    except ReadFailure as failure:
        layer.problems["dir"] = Problem(layer.path, failure.kind, failure.detail)
    return layer


#: the value files of a layerdb entry, and those every entry has
LAYER_FILES = ("diff", "cache-id", "size", "parent")
LAYER_REQUIRED = ("diff", "cache-id", "size")
TAR_SPLIT = "tar-split.json.gz"


def _read_layer(ev: Evidence, rel: str, chain: str, probes: tuple[str, ...]) -> Layer:
    layer = Layer(id=chain, path=rel)
    if _read_plain_layer(ev, layer, probes):
        return layer
    try:
        with ev.opendir(rel) as d:
            _read_layer_files(d, layer)
    except ReadFailure as failure:
        layer.problems["dir"] = Problem(rel, failure.kind, failure.detail)
    return layer


def _read_plain_layer(ev: Evidence, layer: Layer, probes: tuple[str, ...]) -> bool:
    """A healthy layerdb entry, read without listing it; False when anything is amiss (the
    entry is then read the careful way, which names the damage)."""
    found = ev.read_plain_dir(layer.path, LAYER_FILES, probe=probes)
    values = plain_values(found, LAYER_REQUIRED)
    if found is None or values is None:
        return False
    _fill_layer(layer, values["diff"], values["cache-id"], values["size"], values.get("parent"))
    layer.has_tar_split = found.kinds.get(TAR_SPLIT) == "file"
    return True


def _read_layer_files(d: DirHandle, layer: Layer) -> None:
    rel, problems = layer.path, layer.problems
    if not d.types:
        problems["dir"] = Problem(rel, "empty", "empty layer directory")
        return
    diff_id = read_value(d, "diff", problems, "diff")
    cache_id = read_value(d, "cache-id", problems, "cache-id")
    size = read_value(d, "size", problems, "size")
    parent = read_value(d, "parent", problems, "parent", optional=True)
    _fill_layer(layer, diff_id, cache_id, size, parent)
    layer.has_tar_split = d.types.get(TAR_SPLIT) == "file"


def _fill_layer(
    layer: Layer, diff_id: str | None, cache_id: str | None, size: str | None, parent: str | None
) -> None:
    """The values of a layerdb entry's files, checked for their form."""
    rel, problems = layer.path, layer.problems
    layer.diff_id = diff_id
    if diff_id is not None and not is_digest(diff_id):
        bad_value(problems, "diff", f"{rel}/diff", f"not a sha256 digest: {diff_id[:80]!r}")
    layer.cache_id = checked_id(cache_id, CACHE_ID, problems, "cache-id", f"{rel}/cache-id")
    if size is not None:
        if size.isdigit():
            layer.size = int(size)
        else:
            bad_value(problems, "size", f"{rel}/size", f"not a decimal size: {size[:80]!r}")
    layer.parent = parent
    if parent is not None and not is_digest(parent):
        bad_value(problems, "parent", f"{rel}/parent", f"not a ChainID: {parent[:80]!r}")


def _start_mounts(ev: Evidence, mounts: str) -> Iterator[Mount]:
    """Every record in ``mounts``, being read."""
    entries = ev.scandir_types(mounts)
    items = sorted(entries.items())
    return track(map_entries(ev, partial(_read_mount_in, mounts), items), "mounts")


def _read_mount_in(mounts: str, ev: Evidence, item: tuple[str, str]) -> Mount:
    name, kind = item
    rel = f"{mounts}/{name}"
    mount = Mount(container_id=name, path=rel)
    if kind != "dir":
        mount.problems["dir"] = Problem(rel, "not-directory", "not a directory")
    else:
        _read_mount(ev, mount, rel)
    return mount


#: the value files of a mount record, and the one every record has
MOUNT_FILES = ("mount-id", "init-id", "parent")
MOUNT_REQUIRED = ("mount-id",)


def _read_mount(ev: Evidence, mount: Mount, rel: str) -> None:
    values = plain_values(ev.read_plain_dir(rel, MOUNT_FILES), MOUNT_REQUIRED)
    if values is not None:  # a healthy record, read without listing its directory
        _fill_mount(mount, values["mount-id"], values.get("init-id"), values.get("parent"))
        return
    problems = mount.problems
    try:
        with ev.opendir(rel) as d:
            mount_id = read_value(d, "mount-id", problems, "mount-id")
            init_id = read_value(d, "init-id", problems, "init-id", optional=True)
            parent = read_value(d, "parent", problems, "parent", optional=True)
    except ReadFailure as failure:
        problems["dir"] = Problem(rel, failure.kind, failure.detail)
        return
    _fill_mount(mount, mount_id, init_id, parent)


def _fill_mount(
    mount: Mount, mount_id: str | None, init_id: str | None, parent: str | None
) -> None:
    """The values of a mount record's files; a mount-id or init-id that is no layer id (a
    torn or hostile one) is recorded as damage and kept out of the model: it names a
    directory."""
    rel, problems = mount.path, mount.problems
    mount.mount_id = checked_id(mount_id, MOUNT_ID, problems, "mount-id", f"{rel}/mount-id")
    mount.init_id = checked_id(init_id, MOUNT_ID, problems, "init-id", f"{rel}/init-id")
    mount.parent = parent


def store_has_content(
    ev: Evidence, store: str, keep: dict[str, dict[str, str]] | None = None
) -> int:
    """How many layers and images ``store`` holds (used to pick the store in use). The
    listings it makes are put in ``keep`` (when given and they were read whole), for
    :func:`start_image_store` to read the store from."""
    count = 0
    for rel in (f"{store}/layerdb/sha256", f"{store}/imagedb/content/sha256"):
        types = listing(ev, rel)
        if types is None:
            continue
        if keep is not None:
            keep[rel] = types
        count += sum(1 for n in types if is_hex64(n))
    return count


def listing(ev: Evidence, rel: str) -> dict[str, str] | None:
    """The entries of directory ``rel`` (name → entry type), None when it cannot be listed
    whole."""
    try:
        with ev.opendir(rel) as d:
            return d.types
    except ReadFailure:
        return None
