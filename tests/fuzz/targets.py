"""The fuzz targets: one function per parser input, shared by both drivers.

Each target takes a :class:`~draw.Draw`, builds one structured input from it (any bytes, a JSON
document of any shape, a real file with bytes or fields changed) and runs the parser on it. The
only outcomes allowed are a value or the parser's own damage report; any other exception
propagates: hypothesis reports it as a failing example, atheris as a crash.

The hypothesis harnesses (``test_fuzz_*.py``, short and seeded in CI) and the atheris runner
(``atheris_run.py``, the long runs) call these same functions; :data:`TARGETS` names them all.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import shutil
import sqlite3
import struct
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from draw import Draw, mostly
from sample_paths import BOLT_DBS, BOLT_PAGE

REPO = Path(__file__).resolve().parents[2]
LAYOUT_EXAMPLES = REPO.parent / "shared/reference/layout_examples"
SAMPLE = REPO / "samples/modern-overlay2.tar.gz"

#: values that sit on the edges of the fields they are written into
EDGES = (0, 1, 2, 3, 126, 127, 128, 252, 255, 256, 4095, 4096, 16320, 16321, 0xFFFF, 0x10000,
         (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, (1 << 63) - 1, 1 << 63,
         (1 << 64) - 1)  # fmt: skip


# -- building blocks ------------------------------------------------------------------------------


def field_value(draw: Draw, width: int, original: int = 0) -> int:
    """A value for a ``width``-byte field: an edge value, the original nudged, or anything."""
    top = (1 << (8 * width)) - 1
    how = draw.integer(0, 2)
    if how == 0:
        return draw.choice(EDGES) & top
    if how == 1:
        return (original + draw.integer(-3, 3)) & top
    return draw.integer(0, top)


def mutate_bytes(draw: Draw, data: bytes, max_edits: int = 8) -> bytes:
    """``data`` with bytes overwritten, whole little-endian fields written, bytes inserted or
    removed, and maybe cut short: the damage of a bad disk, a bad copy or a hostile hand."""
    out = bytearray(data)
    for _ in range(draw.integer(1, max_edits)):
        if not out:
            out += draw.bytes(16)
            continue
        at = draw.integer(0, len(out) - 1)
        how = draw.integer(0, 4)
        if how == 0:
            out[at] = draw.integer(0, 255)
        elif how == 1:
            width = draw.choice((2, 4, 8))
            old = int.from_bytes(out[at : at + width].ljust(width, b"\0"), "little")
            value = field_value(draw, width, old).to_bytes(width, "little")
            out[at : at + width] = value[: len(out) - at]
        elif how == 2:
            out[at:at] = draw.bytes(8, 1)
        elif how == 3:
            del out[at : at + draw.integer(1, 64)]
        else:
            out[at:] = b"\0" * draw.integer(0, 64)  # cut short, maybe NUL-filled to its size
    return bytes(out)


def tiled(pattern: bytes, size: int) -> bytes:
    """``pattern`` repeated to ``size`` bytes: block-sized inputs without drawing each byte."""
    return (pattern * (size // max(1, len(pattern)) + 1))[:size] if pattern else bytes(size)


def json_value(draw: Draw, depth: int = 0) -> Any:
    """A JSON value of any shape, at most three levels deep."""
    kind = draw.integer(0, 6 if depth < 3 else 4)
    if kind == 0:
        return None
    if kind == 1:
        return draw.boolean()
    if kind == 2:
        return draw.choice((draw.integer(-(1 << 70), 1 << 70), draw.integer(-3, 3)))
    if kind == 3:
        return draw.number()
    if kind == 4:
        return draw.text(20)
    if kind == 5:
        return [json_value(draw, depth + 1) for _ in range(draw.integer(0, 3))]
    return {json_key(draw): json_value(draw, depth + 1) for _ in range(draw.integer(0, 4))}


#: the keys Docker's JSON files use, so that shaped documents reach the readers' branches
KEYS = ("State", "Config", "Image", "Name", "ID", "MountPoints", "Path", "Args", "Driver",
        "rootfs", "diff_ids", "history", "Running", "Paused", "Restarting", "Dead",
        "RemovalInProgress", "StartedAt", "FinishedAt", "ExitCode", "Pid", "Created", "device_id",
        "size", "transaction_id", "initialized", "deleted", "Repositories", "created", "os",
        "architecture", "parent", "parent_id", "id", "layer_id", "empty_layer", "Destination",
        "Type", "Source", "next_device_id", "BaseDeviceUUID", "BaseDeviceFilesystem",
        "open_transaction_id", "device_hash", "RestartCount", "Env", "Cmd", "Labels", "Memory",
        "PortBindings", "RestartPolicy", "HostPort", "Binds", "CapAdd", "ConsoleSize")  # fmt: skip


def json_key(draw: Draw) -> str:
    return draw.choice(KEYS) if draw.integer(0, 3) else draw.text(12)


def shaped(draw: Draw, depth: int = 0) -> dict[str, Any]:
    """A JSON object with Docker's keys, whose values are of any shape (objects shaped too)."""
    out: dict[str, Any] = {}
    for _ in range(draw.integer(0, 6)):
        key = draw.choice(KEYS)
        out[key] = shaped(draw, depth + 1) if depth < 1 and draw.boolean() else json_value(draw)
    return out


class Bytes:
    """A Source over bytes in memory: what the readers see of one file."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read_bytes(self, name: str, limit: int = 1 << 26) -> bytes:
        return self.data

    def path_of(self, name: str) -> str:
        return name

    def exists(self, name: str) -> bool:
        return True


@functools.cache
def scratch_dir() -> Path:
    """A private directory for targets that must go through a real file. It is removed at exit,
    but libFuzzer ends the process without Python's exit handlers: the directories of processes
    that are gone are removed here, when the next one starts."""
    base = Path("/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir())
    for old in base.glob("df-fuzz-*-*"):
        pid = old.name.split("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    path = Path(tempfile.mkdtemp(prefix=f"df-fuzz-{os.getpid()}-", dir=base))
    import atexit

    atexit.register(shutil.rmtree, path, True)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- JSON and the small value files ---------------------------------------------------------------

JSON_DAMAGE = {"empty", "nul-filled", "truncated", "invalid", "not-utf8"}


def json_any_bytes(draw: Draw) -> None:
    from forensics.formats.jsonfile import JsonDamage, decode_json

    try:
        decode_json(draw.rest(400))
    except JsonDamage as damage:
        assert damage.kind in JSON_DAMAGE and str(damage)


#: spellings of a key that Go's decoder takes for the same struct field
_FOLDS = {"k": ("k", "K", "\u212a"), "s": ("s", "S", "\u017f")}
#: bytes that are never part of valid UTF-8 next to ASCII: each is one U+FFFD in a string
_NOT_UTF8 = bytes(range(0x80, 0xC0)) + bytes(range(0xF8, 0x100))


def _respelled(draw: Draw, key: str) -> str:
    """``key`` with letters in another case, k and s maybe as the non-ASCII runes that fold
    to them."""
    out = []
    for ch in key:
        low = ch.lower()
        if low in _FOLDS and ch.isascii():
            out.append(draw.choice(_FOLDS[low]))
        elif ch.isascii() and ch.isalpha() and draw.boolean():
            out.append(ch.swapcase())
        else:
            out.append(ch)
    return "".join(out)


def go_json(draw: Draw) -> None:
    """A document of Docker's keys, respelled as Go's decoder still matches them, with bytes
    that are not UTF-8 in one string and something after it: Go's reading holds (every field
    found by :func:`field`, U+FFFD per bad byte, the decoder stopping after the value), and a
    NaN or a BOM is refused."""
    from forensics.formats.jsonfile import JsonDamage, decode_json, field

    marker = "\u0001"  # written as an escape, then replaced by the bad bytes
    # one key per field: "id" and "ID" are one field to Go (the last wins; tested elsewhere)
    keys = {k.lower(): k for k in (draw.choice(KEYS) for _ in range(draw.integer(1, 6)))}.values()
    original = {key: draw.text(8).replace(marker, "") for key in keys}
    spelled = {_respelled(draw, k): v for k, v in original.items()}
    target = draw.choice(sorted(spelled))
    spelled[target] = spelled[target] + marker
    text = json.dumps(spelled, ensure_ascii=draw.boolean())
    bad = bytes(draw.choice(_NOT_UTF8) for _ in range(draw.integer(1, 4)))
    data = text.encode().replace(b"\\u0001", bad, 1)
    doc = decode_json(data)
    for key, value in original.items():
        found = field(doc, key)
        want = value + "\ufffd" * len(bad) if _respelled_key(spelled, key) == target else value
        assert found == want, (key, found, want)
    tail = draw.choice((b"", b" ", b"\x00" * 3, b"x", b'{"a":1}', draw.bytes(8)))
    assert decode_json(data + tail, one_value=True) == doc
    how = draw.integer(0, 2)
    broken = (
        data.replace(b"{", b'{"NaN":NaN,', 1) if how == 0
        else b"\xef\xbb\xbf" + data if how == 1
        else data + b"]"
    )  # fmt: skip
    for one_value in (False, True) if how < 2 else (False,):
        try:
            decode_json(broken, one_value=one_value)
        except JsonDamage as damage:
            assert damage.kind == "invalid", damage
        else:
            raise AssertionError(f"Go refuses {broken[:60]!r}")


def _respelled_key(spelled: dict[str, str], key: str) -> str:
    from forensics.formats.jsonfile import fold_key

    (match,) = [k for k in spelled if fold_key(k) == key.lower()]
    return match


def value_readers(draw: Draw) -> None:
    from forensics.model import Problem
    from forensics.stores.reading import read_json_object, read_value

    data = draw.rest(200)
    problems: dict[str, Problem] = {}
    read_value(Bytes(data), "f", problems, "v")
    read_json_object(Bytes(data), "f", problems, "o")
    assert set(problems) <= {"v", "o"}


def json_shapes(draw: Draw, kind: str | None = None) -> None:
    """The functions that take a decoded document apart, on documents of any shape."""
    from forensics.model import Container, Device, Image
    from forensics.stores.containers import _fill_from_config, state_of
    from forensics.stores.devicemapper import _fill_device
    from forensics.stores.imagestore import _fill_image

    kind = kind or draw.choice(("container", "image", "device"))
    doc = shaped(draw) if draw.integer(0, 3) else json_value(draw)
    if not isinstance(doc, dict):
        return
    if kind == "container":
        container = Container(id="c", path="c")
        _fill_from_config(container, doc)
        assert container.state in {"running", "paused", "restarting", "removing", "dead",
                                   "created", "exited", "unknown"}  # fmt: skip
        state_of(doc)
    elif kind == "image":
        _fill_image(Image(id="i", path="i"), doc)
    else:
        _fill_device(Device(hash="h", path="h"), doc)


def go_types(draw: Draw) -> None:
    """The Go type judgement of a container's config and host config, on documents of any
    shape: it never fails, and it names a place exactly when the document does not fit."""
    from forensics.formats.gotypes import _fits, first_type_error
    from forensics.stores.container_types import CONTAINER, HOST_CONFIG

    schema = draw.choice((CONTAINER, HOST_CONFIG))
    doc = shaped(draw) if draw.integer(0, 3) else json_value(draw)
    refused = first_type_error(doc, schema)
    assert (refused is None) == _fits(schema)(doc)
    if refused is not None:
        assert str(refused) and refused.where


@dataclass(frozen=True)
class JsonKind:
    """One kind of JSON file Docker writes: a real example (for mutations), where it goes in a
    root, and the store function that reads it."""

    name: str
    example: str
    rel: str
    read: Callable[[Any, Any], None]


def _read_container(ev: Any, host: Any) -> None:
    from forensics.stores.containers import read_container

    legacy = (Path(ev.root) / "containers/c/config.json").exists()
    container = read_container(ev, "containers/c", "c", legacy_era=legacy)
    assert set(container.problems) <= {"config", "hostconfig"}


def _read_image_config(ev: Any, host: Any) -> None:
    from forensics.stores.imagestore import _read_image

    with ev.opendir("image/overlay2/imagedb/content/sha256") as d:
        image = _read_image(d, "a" * 64, "sha256:" + "a" * 64)
    assert set(image.problems) <= {"config", "rootfs"}


def _read_v1_json(ev: Any, host: Any) -> None:
    from forensics.stores.legacy import _read_graph_entry

    layer, _ = _read_graph_entry(ev, "graph/" + "b" * 64, "b" * 64)
    assert set(layer.problems) <= {"config"}


def _read_devicemapper_records(ev: Any, host: Any) -> None:
    from forensics.drivers import DEVICEMAPPER_POOL
    from forensics.model import DeviceSet
    from forensics.stores.devicemapper import _read_records

    host.deviceset = DeviceSet()
    with ev.opendir(DEVICEMAPPER_POOL.records) as d:
        _read_records(d, host, DEVICEMAPPER_POOL)


def _read_tags(legacy: bool) -> Callable[[Any, Any], None]:
    def read(ev: Any, host: Any) -> None:
        from forensics.stores.tags import attach_tags, read_tag_store

        rel = "repositories-aufs" if legacy else "image/overlay2/repositories.json"
        read_tag_store(ev, host, rel, legacy=legacy)
        attach_tags(host)
        assert all(isinstance(v, str) for v in host.references.values())

    return read


def _read_migration_map(ev: Any, host: Any) -> None:
    from forensics.stores.legacy import read_migration_map

    read_migration_map(ev, host)
    assert all(isinstance(v, str) for v in host.migrated_images.values())


_CONTAINER = "modern_28.x_overlay2/containers/*/config.v2.json"
JSON_KINDS = (
    JsonKind("container config", _CONTAINER, "containers/c/config.v2.json", _read_container),
    JsonKind("hostconfig", "modern_28.x_overlay2/containers/*/hostconfig.json",
             "containers/c/hostconfig.json", _read_container),
    JsonKind("legacy container config", "legacy_1.9.1_aufs/containers/*/config.json",
             "containers/c/config.json", _read_container),
    JsonKind("image config", "modern_28.x_overlay2/image/overlay2/imagedb/content/sha256/*",
             "image/overlay2/imagedb/content/sha256/" + "a" * 64, _read_image_config),
    JsonKind("v1 image json", "legacy_1.9.1_aufs/graph/*/json", f"graph/{'b' * 64}/json",
             _read_v1_json),
    JsonKind("device record", "legacy_1.9.1_devicemapper_metadata/devicemapper/metadata/base",
             "devicemapper/metadata/" + "c" * 64, _read_devicemapper_records),
    JsonKind("deviceset-metadata",
             "legacy_1.9.1_devicemapper_metadata/devicemapper/metadata/deviceset-metadata",
             "devicemapper/metadata/deviceset-metadata", _read_devicemapper_records),
    JsonKind("transaction-metadata",
             "legacy_1.9.1_devicemapper_metadata/devicemapper/metadata/transaction-metadata",
             "devicemapper/metadata/transaction-metadata", _read_devicemapper_records),
    JsonKind("repositories.json", "modern_28.x_overlay2/image/overlay2/repositories.json",
             "image/overlay2/repositories.json", _read_tags(legacy=False)),
    JsonKind("legacy tag store", "legacy_1.9.1_aufs/repositories-aufs", "repositories-aufs",
             _read_tags(legacy=True)),
    JsonKind("migration map", "", ".migration-v1-images.json", _read_migration_map),
)  # fmt: skip
KIND_NAMES = tuple(k.name for k in JSON_KINDS)


@functools.cache
def json_example(kind: JsonKind) -> bytes:
    """The real file of ``kind`` (the migration map, of which no real one is kept, is made of
    the real graph ids and image ids of the migrated example)."""
    if not kind.example:
        return json.dumps({"b" * 64: "sha256:" + "d" * 64, "e" * 64: "sha256:" + "f" * 64}).encode()
    return sorted(LAYOUT_EXAMPLES.glob(kind.example))[0].read_bytes()


def json_file_bytes(draw: Draw, kind: JsonKind) -> bytes:
    how = draw.integer(0, 2)
    if how == 0:
        return json.dumps(shaped(draw)).encode()
    if how == 1:
        return mutate_bytes(draw, json_example(kind))
    return draw.bytes(300)


def json_files(draw: Draw, kind_name: str | None = None) -> None:
    """Every kind of JSON file Docker writes, through the store function that reads it from a
    root: a shaped document, the real file damaged, or any bytes."""
    from forensics.evidence import Evidence
    from forensics.model import Host

    kind = JSON_KINDS[KIND_NAMES.index(kind_name or draw.choice(KIND_NAMES))]
    root = scratch_dir() / "root"
    path = root / kind.rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(json_file_bytes(draw, kind))
    try:
        kind.read(Evidence(root), Host(root=str(root)))
    finally:
        path.unlink()


def tag_recovery(draw: Draw) -> None:
    """The repair's reading of a damaged repositories.json: complete pairs and the cut one."""
    from forensics.repair.tags import _pairs

    kind = JSON_KINDS[KIND_NAMES.index("repositories.json")]
    data = mutate_bytes(draw, json_example(kind)) if draw.boolean() else draw.rest(600)
    pairs, cut = _pairs(data)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in pairs.items())
    assert cut is None or isinstance(cut, str)


# -- linkgraph.db -----------------------------------------------------------------------------

LINKGRAPH = LAYOUT_EXAMPLES / "legacy_1.9.1_aufs/linkgraph.db"
SQLITE_HEADER = b"SQLite format 3\0"


@functools.cache
def linkgraph_example() -> bytes:
    return LINKGRAPH.read_bytes()


def linkgraph_bytes(draw: Draw) -> None:
    """Any bytes as linkgraph.db, through the store's reader: alone, behind SQLite's magic, or
    behind the real file's 100-byte database header (page size, counts), so that SQLite itself
    reads them as pages. SQLite is C, unseen by the coverage feedback: the header is given
    rather than left for libFuzzer to find."""
    from forensics.evidence import Evidence
    from forensics.model import Host
    from forensics.stores.legacy import read_linkgraph

    header = draw.choice((b"", SQLITE_HEADER, linkgraph_example()[:100]))
    root = scratch_dir() / "linkgraph"
    root.mkdir(exist_ok=True)
    (root / "linkgraph.db").write_bytes(header + draw.rest(2048))
    host = Host(root=str(root))
    read_linkgraph(Evidence(root), host)
    assert set(host.problems) <= {"linkgraph"}


@functools.cache
def linkgraph_wal_example() -> tuple[bytes, bytes]:
    """The real linkgraph.db switched to WAL mode by SQLite and renamed, not checkpointed: the
    database file and its log."""
    work = scratch_dir() / "wal-example"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    (work / "l.db").write_bytes(linkgraph_example())
    db = sqlite3.connect(work / "l.db")
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.execute("UPDATE edge SET name = name || 'x'")
        db.commit()
        return (work / "l.db").read_bytes(), (work / "l.db-wal").read_bytes()
    finally:
        db.close()


def linkgraph_wal(draw: Draw) -> None:
    """A damaged write-ahead log (or any bytes) beside linkgraph.db: applied or left out,
    never an exception."""
    from forensics.formats.sqlite_wal import apply_wal

    db, wal = linkgraph_wal_example()
    log = mutate_bytes(draw, wal, 4) if draw.integer(0, 3) else draw.rest(600)
    result = apply_wal(db if draw.integer(0, 3) else b"", log)
    assert result.transactions >= 0 and (result.data[18:20] != b"\2\2")


def linkgraph_mutations(draw: Draw) -> None:
    """The real linkgraph.db damaged: the reader gives edges or sqlite3's own error; the repair's
    purge gives new bytes or its own error."""
    from forensics.repair.linkgraph import LinkgraphError, purge_entities
    from forensics.stores.legacy import _linkgraph_edges

    data = mutate_bytes(draw, linkgraph_example(), 8)
    try:
        edges = _linkgraph_edges(data)
    except (sqlite3.Error, MemoryError):
        edges = []
    assert all(isinstance(x, str) for edge in edges for x in edge)
    if draw.integer(0, 3) == 0:
        entities = {e for e, _, _ in edges[: draw.integer(0, 2)]} or {"x"}
        try:
            purge_entities(data, entities)
        except LinkgraphError:
            pass


# -- bbolt ----------------------------------------------------------------------------------------


@functools.cache
def bolt_example(rel: str) -> bytes:
    """A real bbolt file, read straight out of the real-daemon sample's tarball."""
    with tarfile.open(SAMPLE) as tar:
        member = tar.extractfile(f"docker/{rel}")
        assert member is not None
        return member.read()


def bolt_walk(data: bytes) -> None:
    """Open and walk ``data`` completely, freelist included, and take BuildKit's view of it;
    BoltDamage is the one way out."""
    from forensics.formats.bbolt import BoltDamage, Entry, open_bolt
    from forensics.stores.buildkit import _tokens, snapshot_dirs

    try:
        db = open_bolt(data)
        entries = list(db.entries())
        free = db.freelist()
    except BoltDamage as damage:
        assert damage.kind and str(damage) and "\n" not in str(damage)
        return
    assert all(isinstance(e, Entry) for e in entries)
    assert all(isinstance(p, int) for p in free)
    snapshot_dirs(entries)
    for entry in entries:
        _tokens(entry)


def bolt_bytes(draw: Draw) -> None:
    if draw.boolean():
        bolt_walk(draw.rest(1024))
    else:
        bolt_walk(tiled(draw.rest(512), 3 * BOLT_PAGE))


def bolt_mutations(draw: Draw) -> None:
    """Random bytes over a real database; half the time the meta pages are spared, so the
    damage lands in the tree and the freelist behind a meta that still validates."""
    original = bytearray(bolt_example(draw.choice(BOLT_DBS)))
    start = draw.choice((0, 2 * BOLT_PAGE))
    for _ in range(draw.integer(1, 16)):
        at = draw.integer(start, len(original) - 1)
        if draw.boolean():
            original[at] = draw.integer(0, 255)
        else:  # a whole field: a page id, a count, an element position
            width = draw.choice((2, 4, 8))
            value = field_value(draw, width).to_bytes(width, "little")
            original[at : at + width] = value[: len(original) - at]
    if draw.boolean():
        del original[draw.integer(0, len(original)) :]
    bolt_walk(bytes(original))


def bolt_meta_page(index: int, root: int, freelist: int, hwm: int, txid: int) -> bytes:
    """A page holding a meta that validates (magic, version 2, FNV-1a checksum)."""
    from forensics.formats.bbolt import fnv1a_64

    meta = struct.pack("<IIII", 0xED0CDAED, 2, BOLT_PAGE, 0) + struct.pack(
        "<QQQQQ", root, 0, freelist, hwm, txid
    )
    meta += struct.pack("<Q", fnv1a_64(meta))
    return (struct.pack("<QHHI", index, 0x04, 0, 0) + meta).ljust(BOLT_PAGE, b"\0")


def bolt_random_page(draw: Draw, pgid: int, pages: int) -> bytes:
    """A page that is mostly well formed (its own id, a leaf or branch, elements that point into
    it), with any field liable to be anything."""
    flags = draw.choice((0x01, 0x02, 0x02, 0x02, 0x01, 0x02, 0x04, 0x10, 0x03))
    count = mostly(draw, draw.integer(0, 8), 0, 0xFFFF)
    overflow = mostly(draw, 0, 0, pages)
    own = mostly(draw, pgid, 0, pages + 2)
    elements = payload = b""
    n = min(count, 8)
    for i in range(n):
        key, value = draw.bytes(12), draw.bytes(40)
        leaf_flags = draw.choice((0, 0, 1)) if draw.integer(0, 3) else draw.integer(0, 0xFFFFFFFF)
        if leaf_flags & 1 and draw.boolean():  # a nested bucket: paged root or inline
            root = mostly(draw, 0, 0, pages + 2)
            value = struct.pack("<QQ", root, 0) + bolt_random_inline(draw)
        pos = mostly(draw, (n - i) * 16 + len(payload), 0, (1 << 32) - 1)
        if flags == 0x01:  # branch: pos, ksize, child pgid
            child = mostly(draw, draw.integer(2, pages - 1), 0, pages + 2)
            elements += struct.pack("<IIQ", pos, len(key), child)
            payload += key
        else:
            vsize = mostly(draw, len(value), 0, (1 << 32) - 1)
            elements += struct.pack("<IIII", leaf_flags, pos, len(key), vsize)
            payload += key + value
    page = struct.pack("<QHHI", own, flags, count, overflow) + elements + payload
    return page[:BOLT_PAGE].ljust(BOLT_PAGE, b"\0")


def bolt_random_inline(draw: Draw) -> bytes:
    """The page inside an inline bucket's value: a leaf of a few elements, or any bytes."""
    if draw.boolean():
        return draw.bytes(64)
    count = draw.integer(0, 3)
    elements = payload = b""
    for i in range(count):
        key, value = draw.bytes(8), draw.bytes(16)
        flags = draw.choice((0, 1))
        elements += struct.pack(
            "<IIII", flags, (count - i) * 16 + len(payload), len(key), len(value)
        )
        payload += key + value
    flags = mostly(draw, 0x02, 0, 0xFFFF)
    return struct.pack("<QHHI", 0, flags, count, 0) + elements + payload


def bolt_pages(draw: Draw) -> None:
    """Random pages behind valid meta pages, so the walk itself is exercised, not only the
    meta check."""
    pages = draw.integer(3, 8)
    hwm = mostly(draw, pages, 0, pages + 2)
    root = mostly(draw, draw.integer(2, pages - 1), 0, pages + 1)
    freelist = mostly(draw, 0xFFFFFFFFFFFFFFFF, 0, pages + 1)
    txids = (draw.integer(0, 5), draw.integer(0, 5))
    body = b"".join(bolt_random_page(draw, pgid, pages) for pgid in range(2, pages))
    metas = [bolt_meta_page(i, root, freelist, hwm, txids[i]) for i in (0, 1)]
    bolt_walk(metas[0] + metas[1] + body)


# -- containerd's bolt files -------------------------------------------------------------------

CONTAINERD_SAMPLE = REPO / "samples/containerd-store.tar.xz"
CONTAINERD_DBS = (
    "containerd/daemon/io.containerd.metadata.v1.bolt/meta.db",
    "containerd/daemon/io.containerd.snapshotter.v1.overlayfs/metadata.db",
)


@functools.cache
def containerd_db(rel: str) -> bytes:
    """One of the containerd-store sample's real bolt files, out of its tarball."""
    with tarfile.open(CONTAINERD_SAMPLE) as tar:
        member = tar.extractfile(f"docker/{rel}")
        assert member is not None
        return member.read()


def containerd_walk(data: bytes, snapshotter: bool) -> None:
    """Read ``data`` as containerd reads it here: the salvaging walk, then the metadata's
    namespaces or the snapshotter's records. Nothing may raise: damage is a problem."""
    from forensics.containerd_model import Snapshotter, StoreProblem
    from forensics.stores.containerd.boltread import read_tree
    from forensics.stores.containerd.metadata import decode_namespaces
    from forensics.stores.containerd.snapshotter import decode_snapshotter_db

    tree = read_tree(data)
    assert all(p.kind and "\n" not in p.detail for p in tree.problems)
    problems: list[StoreProblem] = []
    if snapshotter:
        decode_snapshotter_db(Snapshotter("overlayfs", "sn"), tree.root, problems)
    else:
        decode_namespaces(tree.root, "meta.db", problems)
    assert all(isinstance(p, StoreProblem) for p in problems)


def containerd_mutations(draw: Draw) -> None:
    """Random bytes and fields over the sample's meta.db or the snapshotter's metadata.db;
    half the time the meta pages are spared, so the damage lands in the tree."""
    which = draw.integer(0, 1)
    data = bytearray(containerd_db(CONTAINERD_DBS[which]))
    start = draw.choice((0, 2 * BOLT_PAGE))
    for _ in range(draw.integer(1, 16)):
        at = draw.integer(start, len(data) - 1)
        if draw.boolean():
            data[at] = draw.integer(0, 255)
        else:
            width = draw.choice((2, 4, 8))
            value = field_value(draw, width).to_bytes(width, "little")
            data[at : at + width] = value[: len(data) - at]
    if draw.boolean():
        del data[draw.integer(0, len(data)) :]
    containerd_walk(bytes(data), which == 1)


def containerd_values(draw: Draw) -> None:
    """The real meta.db with one value of a record replaced by any bytes (a time, a size, a
    spec): the records' decoders on every shape of value."""
    from forensics.containerd_model import StoreProblem
    from forensics.stores.containerd.boltread import Bucket, read_tree
    from forensics.stores.containerd.metadata import decode_namespaces

    tree = read_tree(containerd_db(CONTAINERD_DBS[0]))
    buckets: list[Bucket] = []
    stack = [tree.root]
    while stack:
        node = stack.pop()
        buckets.append(node)
        stack.extend(node.buckets.values())
    for _ in range(draw.integer(1, 4)):
        node = draw.choice(buckets)
        if node.values:
            key = draw.choice(sorted(node.values))
            node.values[key] = draw.bytes(24)
    problems: list[StoreProblem] = []
    decode_namespaces(tree.root, "meta.db", problems)


# -- tar-split streams and tar headers -------------------------------------------------------

TAR_SPLIT_EXAMPLE = (
    LAYOUT_EXAMPLES
    / "modern_28.x_overlay2/image/overlay2/layerdb/sha256"
    / "85a9aa0b50367c436af24d88c410f963fb63e0665f55b40f2e981d5f9f339cf1/tar-split.json.gz"
)


@functools.cache
def tar_split_lines() -> tuple[bytes, ...]:
    return tuple(gzip.decompress(TAR_SPLIT_EXAMPLE.read_bytes()).splitlines())


def drain_tar_split(data: bytes) -> None:
    from forensics.formats.tarsplit import TarSplitDamage, iter_entries

    try:
        for _ in iter_entries(io.BytesIO(data)):
            pass
    except TarSplitDamage:
        pass


def tar_split_bytes(draw: Draw) -> None:
    data = draw.rest(600)
    drain_tar_split(data)
    drain_tar_split(gzip.compress(data, compresslevel=1))


def tar_split_entry(draw: Draw) -> dict[str, object]:
    """One tar-split JSON line: any subset of its fields, each of any plausible type."""
    entry: dict[str, object] = {}
    fields: Sequence[tuple[str, Callable[[], object]]] = (
        ("type", lambda: draw.integer(-2, 4)),
        ("name", lambda: draw.text(30) if draw.integer(0, 3) else None),
        ("name_raw", lambda: draw.text(10)),
        ("size", lambda: draw.integer(-5, 1 << 40)),
        ("payload", lambda: draw.text(40) if draw.integer(0, 3) else None),
        ("position", lambda: draw.integer(-3, 1 << 20)),
    )
    for key, value in fields:
        if draw.boolean():
            entry[key] = value()
    return entry


def tar_split_entries(draw: Draw) -> None:
    entries = [tar_split_entry(draw) for _ in range(draw.integer(0, 8))]
    lines = b"\n".join(json.dumps(e).encode() for e in entries)
    drain_tar_split(gzip.compress(lines, compresslevel=1))


def tar_split_mutations(draw: Draw) -> None:
    """The real stream with bytes of a few lines changed."""
    lines = list(tar_split_lines())
    for _ in range(draw.integer(1, 4)):
        n = draw.integer(0, len(lines) - 1)
        line = bytearray(lines[n])
        if line:
            line[draw.integer(0, len(line) - 1)] = draw.integer(0, 255)
        lines[n] = bytes(line)
    drain_tar_split(gzip.compress(b"\n".join(lines), compresslevel=1))


def tar_header(draw: Draw) -> None:
    from forensics.formats.ustar import HeaderError, checksum_ok, decode_header

    block = draw.rest(512).ljust(512, b"\0")
    checksum_ok(block)
    try:
        decode_header(block)
    except HeaderError:
        pass


def tar_member(draw: Draw) -> None:
    from forensics.formats.ustar import HeaderError, read_member

    offset = draw.integer(0, 600)
    fast = draw.boolean()  # the fast path for plain headers, or the full decoder alone
    try:
        read_member(draw.rest(3000), offset, fast=fast)
    except HeaderError:
        pass


def pax_records(draw: Draw) -> None:
    from forensics.formats.ustar import HeaderError, parse_pax

    try:
        parse_pax(draw.rest(300))
    except HeaderError:
        pass


# -- the registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[Draw], None]
    #: what one input is, for ``atheris_run.py --list``
    about: str
    #: the largest raw input worth feeding (libFuzzer's -max_len)
    max_len: int = 4096


def _thin(name: str) -> Callable[[Draw], None]:
    """A thin-pool target, imported when first run (it builds a real pool with thin_restore)."""

    def run(draw: Draw) -> None:
        import thin_targets

        getattr(thin_targets, name)(draw)

    return run


def _fs(name: str) -> Callable[[Draw], None]:
    """A filesystem target, imported when first run (it makes a real image with mkfs)."""

    def run(draw: Draw) -> None:
        import fs_targets

        getattr(fs_targets, name)(draw)

    return run


def _evidence(name: str) -> Callable[[Draw], None]:
    """An evidence-source target, imported when first run (it makes real archives and disks
    with GNU tar and sfdisk)."""

    def run(draw: Draw) -> None:
        import evidence_targets

        getattr(evidence_targets, name)(draw)

    return run


_ALL = (
    Target("json-bytes", json_any_bytes, "any bytes through decode_json", 400),
    Target("go-json", go_json, "Docker's keys respelled, bad UTF-8 in a string: Go's reading"),
    Target("go-types", go_types, "container configs of any shape judged by Go's field types"),
    Target("value-readers", value_readers, "any bytes as a value file and a JSON object", 200),
    Target("json-shapes", json_shapes, "JSON of any shape taken apart (container, image, device)"),
    Target("json-files", json_files, "every JSON file kind through its store reader"),
    Target("tag-recovery", tag_recovery, "a damaged repositories.json through the repair", 600),
    Target("linkgraph-bytes", linkgraph_bytes, "any bytes as linkgraph.db", 2048),
    Target("linkgraph-wal", linkgraph_wal, "a damaged write-ahead log beside linkgraph.db", 600),
    Target(
        "linkgraph-mutations", linkgraph_mutations, "the real linkgraph.db damaged: read, purge"
    ),
    Target("bolt-bytes", bolt_bytes, "any bytes (or a pattern over 3 pages) as a bbolt file", 1024),
    Target("bolt-mutations", bolt_mutations, "the sample's real bbolt files damaged"),
    Target("bolt-pages", bolt_pages, "random pages behind valid meta pages"),
    Target("containerd-bolt", containerd_mutations, "containerd's meta.db and metadata.db damaged"),
    Target("containerd-values", containerd_values, "meta.db records with values of any bytes"),
    Target("thin-superblock", _thin("superblock"), "a real pool's block 0 damaged or any bytes"),
    Target(
        "thin-node", _thin("node"), "one tree of a real pool, nodes damaged, walked alone", 8192
    ),
    Target(
        "thin-random-node", _thin("random_node"), "a drawn btree root over drawn children", 8192
    ),
    Target("thin-spacemap", _thin("spacemap"), "one space map of a real pool, damaged", 8192),
    Target(
        "thin-check-file", _thin("check_file"), "thin check/dump/ls on a damaged pool (slow)", 8192
    ),
    Target("tar-split-bytes", tar_split_bytes, "any bytes, raw and gzipped, as tar-split", 600),
    Target("tar-split-entries", tar_split_entries, "tar-split JSON lines of any fields"),
    Target("tar-split-mutations", tar_split_mutations, "the real tar-split stream damaged"),
    Target("tar-header", tar_header, "any 512-byte block as a tar header", 512),
    Target("tar-member", tar_member, "any buffer and offset as a tar member", 3100),
    Target("pax-records", pax_records, "any bytes as PAX records", 300),
    Target("fs-ext4", _fs("ext4_image"), "a real ext4 image damaged, walked and read whole", 1024),
    Target("fs-xfs", _fs("xfs_image"), "a real xfs image damaged, walked and read whole", 1024),
    Target("tar-index", _evidence("tar_mutations"), "a real archive damaged, indexed, read"),
    Target("tar-bytes", _evidence("tar_bytes"), "any bytes as a tar archive", 4608),
    Target("locator", _evidence("locator_trees"), "archives of drawn names: roots located"),
    Target("partitions", _evidence("partition_tables"), "a real GPT or MBR disk damaged"),
    Target("lvm-label", _evidence("lvm_label"), "any bytes or a drawn label as an LVM PV", 600),
    Target("tree-root", _evidence("tree_root"), "the sample's root as a damaged archive, read"),
)
TARGETS: dict[str, Target] = {t.name: t for t in _ALL}
