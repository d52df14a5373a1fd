"""containerd's metadata database (``io.containerd.metadata.v1.bolt/meta.db``) into the model.

The layout (containerd ``metadata/buckets.go``, schema ``v1``)::

    v1/version : varint                            the database version (3 in 1.6 and 1.7)
    v1/<namespace>/
        labels/<key> : value
        images/<name>/{createdat, updatedat, target/{digest, mediatype, size}, labels/}
        containers/<id>/{createdat, updatedat, spec, image, snapshotter, snapshotKey,
                         sandboxid, runtime/{name, options}, extensions/<name>, labels/}
        snapshots/<snapshotter>/<key>/{name, parent, children/<key>, createdat, updatedat,
                                        labels/}
        content/blob/<digest>/{createdat, updatedat, size, labels/}
        content/ingests/<ref>/{ref, expireat, expected}
        leases/<id>/{createdat, labels/, snapshots/<snapshotter>/<key>, content/<digest>,
                     ingests/<ref>}
        sandboxes/<id>/{createdat, updatedat, labels/, …}                       (1.7 and later)

Times are ``time.Time.MarshalBinary`` bytes, sizes ``binary.PutVarint``; ``spec`` and runtime
``options`` are protobuf ``Any`` messages (a type URL and the value). A value that cannot be
decoded is a problem of its object, which keeps the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from forensics.containerd_model import (
    CtrBlob,
    CtrContainer,
    CtrImage,
    CtrIngest,
    CtrLease,
    CtrNamespace,
    CtrSandbox,
    CtrSnapshot,
    Descriptor,
    GoTime,
    StoreProblem,
)
from forensics.stores.containerd.boltread import Bucket
from forensics.stores.containerd.values import (
    ValueDamage,
    decode_binary_time,
    decode_uvarint,
    decode_varint,
)

SCHEMA = b"v1"
DB_VERSION_KEY = b"version"

T = TypeVar("T")


class _Reader:
    """Decodes one namespace; problems name ``path`` (meta.db) and the object concerned."""

    def __init__(self, path: str, ns: str, problems: list[StoreProblem]) -> None:
        self.path, self.ns, self.problems = path, ns, problems

    def problem(self, where: str, kind: str, detail: str) -> None:
        self.problems.append(StoreProblem(self.path, kind, detail, f"{self.ns}/{where}"))

    def time(self, bucket: Bucket, key: bytes, where: str) -> GoTime | None:
        raw = bucket.values.get(key)
        if raw is None:
            return None
        try:
            return decode_binary_time(raw)
        except ValueDamage as exc:
            self.problem(where, "bad-value", f"{key.decode()}: {exc}")
            return None

    def size(self, bucket: Bucket, key: bytes, where: str) -> int | None:
        raw = bucket.values.get(key)
        if raw is None:
            return None
        try:
            return decode_varint(raw)
        except ValueDamage as exc:
            self.problem(where, "bad-value", f"{key.decode()}: {exc}")
            return None

    def incomplete(self, bucket: Bucket, where: str) -> None:
        if not bucket.complete:
            self.problem(where, "incomplete", "part of its record could not be read")


def text(raw: bytes | None) -> str:
    return raw.decode("utf-8", "surrogateescape") if raw else ""


def labels(bucket: Bucket) -> dict[str, str]:
    found = bucket.bucket(b"labels")
    if found is None:
        return {}
    return {text(k): text(v) for k, v in found.values.items()}


def decode_namespaces(
    root: Bucket, path: str, problems: list[StoreProblem]
) -> tuple[dict[str, CtrNamespace], int | None]:
    """Every namespace under ``v1`` and the database version."""
    v1 = root.bucket(SCHEMA)
    if v1 is None:
        if root.complete:
            problems.append(StoreProblem(path, "no-schema", "no v1 bucket: not containerd's"))
        return {}, None
    version = None
    raw = v1.values.get(DB_VERSION_KEY)
    if raw is not None:
        try:
            version = decode_varint(raw)
        except ValueDamage as exc:
            problems.append(StoreProblem(path, "bad-value", f"version: {exc}", "v1"))
    if not v1.complete:
        problems.append(StoreProblem(path, "incomplete", "namespaces could not all be read", "v1"))
    out = {}
    for name, bucket in sorted(v1.buckets.items()):
        ns = text(name)
        out[ns] = decode_namespace(ns, bucket, _Reader(path, ns, problems))
    return out, version


def decode_namespace(name: str, bucket: Bucket, r: _Reader) -> CtrNamespace:
    ns = CtrNamespace(name, labels(bucket))
    for kind in (b"images", b"containers", b"snapshots", b"content", b"leases", b"sandboxes"):
        part = bucket.bucket(kind)
        if part is not None:
            r.incomplete(part, kind.decode())
    ns.images = _each(bucket.bucket(b"images"), r, "images", _image)
    ns.containers = _each(bucket.bucket(b"containers"), r, "containers", _container)
    ns.snapshots = _snapshots(bucket.bucket(b"snapshots"), r)
    content = bucket.bucket(b"content")
    if content is not None:
        ns.content = _each(content.bucket(b"blob"), r, "content/blob", _blob)
        ns.ingests = _each(content.bucket(b"ingests"), r, "content/ingests", _ingest)
    ns.leases = _each(bucket.bucket(b"leases"), r, "leases", _lease)
    ns.sandboxes = _each(bucket.bucket(b"sandboxes"), r, "sandboxes", _sandbox)
    return ns


def _each(
    bucket: Bucket | None, r: _Reader, where: str, decode: Callable[[str, Bucket, _Reader, str], T]
) -> dict[str, T]:
    if bucket is None:
        return {}
    out = {}
    for key, child in sorted(bucket.buckets.items()):
        name = text(key)
        here = f"{where}/{name}"
        r.incomplete(child, here)
        out[name] = decode(name, child, r, here)
    return out


def _image(name: str, b: Bucket, r: _Reader, where: str) -> CtrImage:
    target = b.bucket(b"target") or Bucket()
    digest = text(target.values.get(b"digest"))
    if not digest:
        r.problem(where, "no-target", "the image record has no target digest")
    desc = Descriptor(digest, text(target.values.get(b"mediatype")), r.size(target, b"size", where))
    created, updated = r.time(b, b"createdat", where), r.time(b, b"updatedat", where)
    return CtrImage(name, desc, labels(b), created, updated)


def _container(name: str, b: Bucket, r: _Reader, where: str) -> CtrContainer:
    c = CtrContainer(name, labels=labels(b))
    c.image = text(b.values.get(b"image"))
    c.snapshotter = text(b.values.get(b"snapshotter"))
    c.snapshot_key = text(b.values.get(b"snapshotKey"))
    c.sandbox = text(b.values.get(b"sandboxid"))
    runtime = b.bucket(b"runtime") or Bucket()
    c.runtime = text(runtime.values.get(b"name"))
    c.runtime_options_type, _ = any_message(runtime.values.get(b"options", b""), r, where)
    c.spec_type, c.spec = any_message(b.values.get(b"spec", b""), r, where)
    exts = b.bucket(b"extensions") or runtime.bucket(b"extensions")
    c.extensions = sorted(text(k) for k in exts.values) if exts else []
    c.created, c.updated = r.time(b, b"createdat", where), r.time(b, b"updatedat", where)
    return c


def any_message(raw: bytes, r: _Reader, where: str) -> tuple[str, bytes]:
    """The type URL and value of a protobuf ``Any`` (fields 1 and 2, length-delimited)."""
    type_url, value = "", b""
    i = 0
    try:
        while i < len(raw):
            key, i = _pb_varint(raw, i)
            if key & 7 != 2:
                raise ValueDamage("any", f"field {key >> 3} is not length-delimited")
            size, i = _pb_varint(raw, i)
            if i + size > len(raw):
                raise ValueDamage("any", "a field runs past the end of the value")
            if key >> 3 == 1:
                type_url = raw[i : i + size].decode("utf-8", "replace")
            elif key >> 3 == 2:
                value = raw[i : i + size]
            i += size
    except ValueDamage as exc:
        r.problem(where, "bad-value", f"protobuf Any: {exc}")
    return type_url, value


def _pb_varint(raw: bytes, i: int) -> tuple[int, int]:
    value = decode_uvarint(raw[i : i + 10])
    n = 1
    while value >> (7 * n):
        n += 1
    return value, i + n


def _snapshots(bucket: Bucket | None, r: _Reader) -> dict[tuple[str, str], CtrSnapshot]:
    out: dict[tuple[str, str], CtrSnapshot] = {}
    if bucket is None:
        return out
    for sn_name, sn_bucket in sorted(bucket.buckets.items()):
        snapshotter = text(sn_name)
        r.incomplete(sn_bucket, f"snapshots/{snapshotter}")
        for key, b in sorted(sn_bucket.buckets.items()):
            k = text(key)
            where = f"snapshots/{snapshotter}/{k}"
            r.incomplete(b, where)
            children = b.bucket(b"children")
            out[(snapshotter, k)] = CtrSnapshot(
                snapshotter,
                k,
                text(b.values.get(b"name")),
                text(b.values.get(b"parent")),
                sorted(text(c) for c in children.values) if children else [],
                labels(b),
                r.time(b, b"createdat", where),
                r.time(b, b"updatedat", where),
            )
    return out


def _blob(name: str, b: Bucket, r: _Reader, where: str) -> CtrBlob:
    created, updated = r.time(b, b"createdat", where), r.time(b, b"updatedat", where)
    return CtrBlob(name, r.size(b, b"size", where), labels(b), created, updated)


def _ingest(name: str, b: Bucket, r: _Reader, where: str) -> CtrIngest:
    return CtrIngest(
        name,
        text(b.values.get(b"ref")),
        r.time(b, b"expireat", where),
        text(b.values.get(b"expected")),
    )


def _lease(name: str, b: Bucket, r: _Reader, where: str) -> CtrLease:
    lease = CtrLease(name, labels(b), r.time(b, b"createdat", where))
    content = b.bucket(b"content")
    lease.content = sorted(text(k) for k in content.values) if content else []
    snapshots = b.bucket(b"snapshots")
    if snapshots is not None:
        for sn, keys in sorted(snapshots.buckets.items()):
            lease.snapshots[text(sn)] = sorted(text(k) for k in keys.values)
    ingests = b.bucket(b"ingests")
    lease.ingests = sorted(text(k) for k in ingests.values) if ingests else []
    return lease


def _sandbox(name: str, b: Bucket, r: _Reader, where: str) -> CtrSandbox:
    created, updated = r.time(b, b"createdat", where), r.time(b, b"updatedat", where)
    return CtrSandbox(name, labels(b), created, updated)
