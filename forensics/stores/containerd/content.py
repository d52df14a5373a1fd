"""The content store (``io.containerd.content.v1.content``) and the image documents in it.

- ``blobs/<algorithm>/<hex>``: content-addressed blobs shared by every namespace.
- ``ingest/<sha256 of the backend ref>/{ref, data, startedat, updatedat, total}``: unfinished
  writes (containerd ``content/local/store.go``); times are ``time.Time.MarshalText``, ``total``
  a decimal number.

Image documents (manifests, indexes, configs) are JSON blobs in OCI or Docker media types; they
are read through :class:`~forensics.evidence.Evidence` and decoded with
:func:`~forensics.formats.jsonfile.decode_json`, their damage told apart like any JSON file's.
"""

from __future__ import annotations

import re
from typing import Any

from forensics.containerd_model import (
    ContainerdStore,
    ContentFile,
    Descriptor,
    GoTime,
    ImageManifest,
    IngestDir,
    ResolvedImage,
    StoreProblem,
)
from forensics.drivers import CONTAINERD_BLOBS, CONTAINERD_INGEST, containerd_blob
from forensics.evidence import Evidence, ReadFailure
from forensics.formats.jsonfile import JsonDamage, decode_json
from forensics.stores.containerd.values import ValueDamage, decode_text_time

#: image documents are small; a "manifest" of more is damage
DOCUMENT_LIMIT = 4 * 1024 * 1024
HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}
MANIFEST_TYPES = {
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
}
CONFIG_TYPES = {
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
}
_HEX = re.compile(r"[0-9a-f]+")


def is_digest(digest: str) -> bool:
    """Whether ``digest`` is ``<algorithm>:<hex>`` of an algorithm the content store keeps, its
    hex of that algorithm's length: the only values that may name ``blobs/<algorithm>/<hex>``
    (a digest comes from meta.db and from image documents, both untrusted)."""
    algorithm, _, hexpart = digest.partition(":")
    return len(hexpart) == HEX_LENGTHS.get(algorithm, -1) and _HEX.fullmatch(hexpart) is not None


def blob_path(store: ContainerdStore, digest: str) -> str:
    return _join(store.root, containerd_blob(digest))


def _join(root: str, rel: str) -> str:
    return f"{root}/{rel}" if root else rel


def read_blobs(ev: Evidence, store: ContainerdStore) -> None:
    """Every file under ``blobs/<algorithm>/``, with its size (nothing is hashed here)."""
    base = _join(store.root, CONTAINERD_BLOBS)
    for algorithm in ev.listdir_or_empty(base):
        for name, kind in sorted(ev.scandir_types(f"{base}/{algorithm}").items()):
            path = f"{base}/{algorithm}/{name}"
            if kind != "file":
                store.problems.append(
                    StoreProblem(path, "not-regular", f"a {kind} where a blob file belongs")
                )
                continue
            st = ev.lstat(path)
            digest = f"{algorithm}:{name}"
            if len(name) != HEX_LENGTHS.get(algorithm, -1) or not _HEX.fullmatch(name):
                store.problems.append(StoreProblem(path, "bad-name", "not a digest's name"))
            store.blobs[digest] = ContentFile(digest, path, st.st_size if st else -1)


def read_ingests(ev: Evidence, store: ContainerdStore) -> None:
    base = _join(store.root, CONTAINERD_INGEST)
    for name, kind in sorted(ev.scandir_types(base).items()):
        path = f"{base}/{name}"
        ingest = IngestDir(name, path)
        store.ingests[name] = ingest
        if kind != "dir":
            store.problems.append(StoreProblem(path, "not-directory", f"a {kind} in ingest/"))
            continue
        files = ev.scandir_types(path)
        ingest.ref = _small_text(ev, f"{path}/ref", store) if "ref" in files else None
        total = _small_text(ev, f"{path}/total", store) if "total" in files else None
        if total is not None:
            ingest.total = int(total) if total.strip().isdigit() else None
        data = ev.lstat(f"{path}/data") if files.get("data") == "file" else None
        ingest.data_size = data.st_size if data else None
        ingest.started = (
            _text_time(ev, f"{path}/startedat", store) if "startedat" in files else None
        )
        ingest.updated = (
            _text_time(ev, f"{path}/updatedat", store) if "updatedat" in files else None
        )


def _small_text(ev: Evidence, path: str, store: ContainerdStore) -> str | None:
    try:
        return ev.read_text(path, 64 * 1024)
    except ReadFailure as exc:
        store.problems.append(StoreProblem(path, exc.kind, exc.detail))
        return None


def _text_time(ev: Evidence, path: str, store: ContainerdStore) -> GoTime | None:
    raw = _small_text(ev, path, store)
    if raw is None:
        return None
    try:
        return decode_text_time(raw.encode())
    except ValueDamage as exc:
        store.problems.append(StoreProblem(path, "bad-value", str(exc)))
        return None


# -- image documents ----------------------------------------------------------------------------


def read_document(
    ev: Evidence, store: ContainerdStore, digest: str, problems: list[StoreProblem]
) -> Any | None:
    """The JSON document of blob ``digest``; None with a problem when it is absent or bad, or
    when ``digest`` is not a digest (then nothing is opened)."""
    path = blob_path(store, digest)
    if not is_digest(digest):
        detail = f"not a digest (<algorithm>:<hex>): {digest[:80]!r}, never opened"
        problems.append(StoreProblem(path, "bad-digest", detail, digest))
        return None
    try:
        data = ev.read_bytes(path, DOCUMENT_LIMIT)
    except ReadFailure as exc:
        problems.append(StoreProblem(path, exc.kind, exc.detail, digest))
        return None
    try:
        return decode_json(data)
    except JsonDamage as exc:
        problems.append(StoreProblem(path, exc.kind, exc.detail, digest))
        return None


def descriptor(value: Any) -> Descriptor | None:
    """A descriptor from its JSON object; None when it has no digest."""
    if not isinstance(value, dict) or not isinstance(value.get("digest"), str):
        return None
    size = value.get("size")
    platform = value.get("platform")
    where = None
    if isinstance(platform, dict):
        parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
        where = "/".join(str(p) for p in parts if p)
    annotations = value.get("annotations")
    return Descriptor(
        value["digest"],
        str(value.get("mediaType", "")),
        size if isinstance(size, int) and not isinstance(size, bool) else None,
        where,
        {str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {},
    )


def resolve_image(ev: Evidence, store: ContainerdStore, target: Descriptor) -> ResolvedImage:
    """Follow ``target`` (an index or a manifest) through the content store."""
    out = ResolvedImage(target)
    if target.media_type in INDEX_TYPES:
        out.index = target
        doc = read_document(ev, store, target.digest, out.problems)
        entries = doc.get("manifests") if isinstance(doc, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            desc = descriptor(entry)
            if desc is not None:
                out.manifests.append(_manifest(ev, store, desc, out, must_exist=False))
    else:
        out.manifests.append(_manifest(ev, store, target, out, must_exist=True))
    return out


def _manifest(
    ev: Evidence, store: ContainerdStore, desc: Descriptor, out: ResolvedImage, must_exist: bool
) -> ImageManifest:
    m = ImageManifest(desc, present=desc.digest in store.blobs)
    if not m.present and not must_exist:
        return m  # a platform never fetched: every real pull leaves such entries
    doc = read_document(ev, store, desc.digest, out.problems)
    if not isinstance(doc, dict):
        return m
    m.config = descriptor(doc.get("config"))
    layers = doc.get("layers")
    m.layers = [d for d in map(descriptor, layers if isinstance(layers, list) else []) if d]
    if m.config is not None and m.config.digest in store.blobs:
        config = read_document(ev, store, m.config.digest, out.problems)
        if isinstance(config, dict):
            rootfs = config.get("rootfs")
            ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
            m.diff_ids = [d for d in ids if isinstance(d, str)] if isinstance(ids, list) else []
            m.config_read = isinstance(ids, list)
            m.created = config.get("created") if isinstance(config.get("created"), str) else None
            m.architecture = _str(config.get("architecture"))
            m.os = _str(config.get("os"))
    return m


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
