"""Write a planned host to disk, as dockerd 28.x with overlay2 would have left it.

Plain ``os`` calls (no pathlib) because a 20k-layer host is ~400k files and directories.
Layers and containers are written by a small process pool (fork) in interleaved slices; every
worker writes disjoint paths, so the result does not depend on the pool.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor

from containerdocs import RESOLV_CONF, RESOLV_HASH, config_v2, hostconfig, hosts_file, json_log
from hostmodel import Container, HostPlan, Image, Layer
from tarsplit import Entry

STORE = "image/overlay2"
SKELETON = [
    ("containers", 0o710),
    ("image", 0o700),
    (STORE, 0o700),
    (f"{STORE}/imagedb", 0o700),
    (f"{STORE}/imagedb/content", 0o700),
    (f"{STORE}/imagedb/content/sha256", 0o700),
    (f"{STORE}/imagedb/metadata", 0o700),
    (f"{STORE}/imagedb/metadata/sha256", 0o700),
    (f"{STORE}/layerdb", 0o700),
    (f"{STORE}/layerdb/sha256", 0o700),
    (f"{STORE}/layerdb/mounts", 0o700),
    (f"{STORE}/layerdb/tmp", 0o700),
    (f"{STORE}/distribution", 0o700),
    (f"{STORE}/distribution/diffid-by-digest", 0o700),
    (f"{STORE}/distribution/diffid-by-digest/sha256", 0o700),
    (f"{STORE}/distribution/v2metadata-by-diffid", 0o700),
    (f"{STORE}/distribution/v2metadata-by-diffid/sha256", 0o700),
    ("overlay2", 0o710),
    ("overlay2/l", 0o700),
    ("volumes", 0o701),
    ("network", 0o750),
    ("network/files", 0o750),
    ("plugins", 0o700),
    ("plugins/storage", 0o700),
    ("plugins/tmp", 0o700),
    ("runtimes", 0o700),
    ("swarm", 0o750),
    ("tmp", 0o700),
    ("trust", 0o700),
]
INIT_DIRS = ["dev", "dev/pts", "dev/shm", "proc", "sys", "etc"]
INIT_FILES = [".dockerenv", "etc/resolv.conf", "etc/hosts", "etc/hostname", "dev/console"]
WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


class Tree:
    """Creates files under one root; every path is relative to it."""

    def __init__(self, root: str) -> None:
        self.root = root

    def mkdir(self, rel: str, mode: int = 0o755) -> None:
        os.mkdir(f"{self.root}/{rel}", mode)

    def put(self, rel: str, data: bytes | str, mode: int = 0o644) -> None:
        fd = os.open(f"{self.root}/{rel}", WRITE_FLAGS, mode)
        try:
            os.write(fd, data.encode() if isinstance(data, str) else data)
        finally:
            os.close(fd)

    def symlink(self, rel: str, target: str) -> None:
        os.symlink(target, f"{self.root}/{rel}")

    def entries(self, base: str, entries: list[Entry]) -> None:
        for entry in entries:
            if entry.data is None:
                self.mkdir(f"{base}/{entry.name}")
            else:
                self.put(f"{base}/{entry.name}", entry.data)


# ---- layers ----------------------------------------------------------------------------------


def write_layer(tree: Tree, layer: Layer) -> None:
    meta = f"{STORE}/layerdb/sha256/{layer.chain_id[7:]}"
    tree.mkdir(meta)
    tree.put(f"{meta}/diff", layer.diff_id)
    tree.put(f"{meta}/size", str(layer.blob.size))
    tree.put(f"{meta}/cache-id", layer.cache_id)
    if layer.parent:
        tree.put(f"{meta}/parent", layer.parent.chain_id)
    tree.put(f"{meta}/tar-split.json.gz", layer.blob.tar_split_gz)
    base = f"overlay2/{layer.cache_id}"
    tree.mkdir(base, 0o710)
    tree.mkdir(f"{base}/diff")
    tree.entries(f"{base}/diff", layer.entries)
    tree.put(f"{base}/link", layer.link)
    if layer.parent:
        tree.put(f"{base}/lower", layer.parent.stack)
        tree.mkdir(f"{base}/work", 0o700)
    if layer.children:
        tree.put(f"{base}/committed", b"", 0o600)
    tree.symlink(f"overlay2/l/{layer.link}", f"../{layer.cache_id}/diff")


# ---- containers ------------------------------------------------------------------------------


def write_container_files(tree: Tree, c: Container, anonymous: set[str]) -> None:
    base = f"containers/{c.id}"
    tree.mkdir(base, 0o710)
    tree.put(f"{base}/config.v2.json", config_v2(c, anonymous), 0o600)
    tree.put(f"{base}/hostconfig.json", hostconfig(c, anonymous), 0o600)
    tree.mkdir(f"{base}/checkpoints", 0o700)
    if not c.started:
        return
    tree.put(f"{base}/hostname", f"{c.id[:12]}\n")
    tree.put(f"{base}/hosts", hosts_file(c))
    tree.put(f"{base}/resolv.conf", RESOLV_CONF)
    tree.put(f"{base}/resolv.conf.hash", RESOLV_HASH)
    tree.put(f"{base}/{c.id}-json.log", json_log(c), 0o640)
    tree.mkdir(f"{base}/mounts", 0o700)
    tree.mkdir(f"{base}/mounts/shm", 0o1777)


def write_container_layers(tree: Tree, c: Container) -> None:
    meta = f"{STORE}/layerdb/mounts/{c.id}"
    tree.mkdir(meta)
    tree.put(f"{meta}/init-id", f"{c.mount_id}-init")
    tree.put(f"{meta}/mount-id", c.mount_id)
    tree.put(f"{meta}/parent", c.image.top.chain_id)
    init = f"overlay2/{c.mount_id}-init"
    tree.mkdir(init, 0o710)
    tree.mkdir(f"{init}/diff")
    for name in INIT_DIRS:
        tree.mkdir(f"{init}/diff/{name}")
    for name in INIT_FILES:
        tree.put(f"{init}/diff/{name}", b"", 0o755 if name == ".dockerenv" else 0o644)
    tree.symlink(f"{init}/diff/etc/mtab", "/proc/mounts")
    tree.put(f"{init}/link", c.init_link)
    tree.put(f"{init}/lower", c.image.top.stack)
    tree.mkdir(f"{init}/work", 0o700)
    tree.put(f"{init}/committed", b"", 0o600)
    tree.symlink(f"overlay2/l/{c.init_link}", f"../{c.mount_id}-init/diff")
    rw = f"overlay2/{c.mount_id}"
    tree.mkdir(rw, 0o710)
    tree.mkdir(f"{rw}/diff")
    tree.entries(f"{rw}/diff", c.rw_entries)
    tree.put(f"{rw}/link", c.rw_link)
    tree.put(f"{rw}/lower", f"l/{c.init_link}:{c.image.top.stack}")
    tree.mkdir(f"{rw}/work", 0o700)
    if c.started:
        tree.mkdir(f"{rw}/work/work", 0o700)
    if c.state in ("running", "paused", "restarting"):
        tree.mkdir(f"{rw}/merged")
    tree.symlink(f"overlay2/l/{c.rw_link}", f"../{c.mount_id}/diff")


def write_container(tree: Tree, c: Container, anonymous: set[str]) -> None:
    write_container_files(tree, c, anonymous)
    write_container_layers(tree, c)


# ---- images, tags, volumes ---------------------------------------------------------------------


def write_image(tree: Tree, image: Image) -> None:
    tree.put(f"{STORE}/imagedb/content/sha256/{image.id}", image.config, 0o600)
    extras: list[tuple[str, bytes | str]] = []
    if image.parent:
        extras.append(("parent", f"sha256:{image.parent.id}"))
    if image.last_updated:
        extras.append(("lastUpdated", image.last_updated))
    if image.built_locally:
        extras.append(("builtLocally", b"\x01"))
    if not extras:
        return
    meta = f"{STORE}/imagedb/metadata/sha256/{image.id}"
    tree.mkdir(meta, 0o700)
    for name, data in extras:
        tree.put(f"{meta}/{name}", data, 0o600)


def repositories(images: Sequence[Image]) -> bytes:
    repos: dict[str, dict[str, str]] = {}
    for image in images:
        for ref in image.refs:
            name = ref.split("@")[0] if "@" in ref else ref.rsplit(":", 1)[0]
            repos.setdefault(name, {})[ref] = f"sha256:{image.id}"
    ordered = {name: dict(sorted(refs.items())) for name, refs in sorted(repos.items())}
    return json.dumps({"Repositories": ordered}, separators=(",", ":")).encode()


def write_distribution(tree: Tree, layers: Sequence[Layer]) -> None:
    by_diff: dict[str, list[dict[str, str]]] = {}
    for layer in layers:
        if layer.source_repo and layer.blob_digest:
            by_diff.setdefault(layer.diff_id, []).append(
                {"Digest": layer.blob_digest, "SourceRepository": layer.source_repo, "HMAC": ""}
            )
            blob = f"{STORE}/distribution/diffid-by-digest/sha256/{layer.blob_digest[7:]}"
            tree.put(blob, layer.diff_id)
    for diff_id, entries in by_diff.items():
        path = f"{STORE}/distribution/v2metadata-by-diffid/sha256/{diff_id[7:]}"
        tree.put(path, json.dumps(entries[-50:], separators=(",", ":")))


def write_volumes(tree: Tree, plan: HostPlan) -> None:
    for volume in plan.volumes.values():
        tree.mkdir(f"volumes/{volume.name}", 0o701)
        tree.mkdir(f"volumes/{volume.name}/_data")
        for name, data in volume.files:
            tree.put(f"volumes/{volume.name}/_data/{name}", data)


# ---- driver --------------------------------------------------------------------------------------

_PLAN: HostPlan | None = None
_ROOT = ""


def _layer_slice(start: int, step: int) -> int:
    assert _PLAN is not None
    tree = Tree(_ROOT)
    for layer in _PLAN.layers[start::step]:
        write_layer(tree, layer)
    return 0


def _container_slice(start: int, step: int) -> int:
    assert _PLAN is not None
    tree = Tree(_ROOT)
    anonymous = {v.name for v in _PLAN.volumes.values() if v.anonymous}
    for container in _PLAN.containers[start::step]:
        write_container(tree, container, anonymous)
    return 0


def _run_slices(work: Callable[[int, int], int], jobs: int) -> None:
    if jobs <= 1:
        work(0, 1)
        return
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        list(pool.map(work, range(jobs), [jobs] * jobs))


def write_host(plan: HostPlan, root: str, jobs: int | None = None) -> None:
    """Write ``plan`` under ``root`` (an existing empty directory)."""
    global _PLAN, _ROOT
    _PLAN, _ROOT = plan, root
    jobs = jobs if jobs is not None else min(4, os.cpu_count() or 1)
    tree = Tree(root)
    os.chmod(root, 0o710)
    for rel, mode in SKELETON:
        tree.mkdir(rel, mode)
    tree.put("engine-id", plan.engine_id, 0o600)
    _run_slices(_layer_slice, jobs)
    _run_slices(_container_slice, jobs)
    for image in plan.images:
        write_image(tree, image)
    tree.put(f"{STORE}/repositories.json", repositories(plan.images), 0o600)
    write_distribution(tree, plan.layers)
    write_volumes(tree, plan)
