"""Every check id of ``verify``, its severity and what it means: the one place where a
verify finding's severity is decided (a :class:`~forensics.catalog.Catalog`; ``thin check`` has
the other, :mod:`forensics.thin.findings`). A new check is a line here, the rule that makes its
findings in a module of :mod:`forensics.checks`, its entry in man/docker-forensics-verify.1 and
a test.

Severity: ``error`` — the daemon fails, skips the object, or its data is unreachable or no
longer accounted for (a driver directory or mount record that nothing owns);
``warning`` — waste, leftovers of interrupted operations, things that break later;
``info`` — facts worth knowing that are not damage.
"""

from __future__ import annotations

from forensics.catalog import Catalog, Check
from forensics.report import Finding

_CHECKS = [
    # layout
    Check("layout.unknown-root", "warning", "ROOT does not look like a Docker root"),
    Check("layout.containerd-store", "info", "Docker's containerd image store is in use"),
    Check(
        "layout.legacy-graph", "info", "a pre-1.10 graph/ is still present beside the modern store"
    ),
    Check("layout.stale-store", "info", "an image/<driver> store of a driver that is not in use"),
    Check(
        "layout.copy-artefact",
        "warning",
        "the evidence is a copy that changed every file's metadata the same way (said once)",
    ),
    Check(
        "layout.evidence-damaged",
        "error",
        "a part of the root that the archive or disk image holds damaged: it is not read whole",
    ),
    # repositories
    Check(
        "repositories.damaged",
        "error",
        "the tag store is unreadable or cannot be parsed: the daemon will not start",
    ),
    Check("repositories.target-missing", "warning", "a tag names an image that does not exist"),
    # images
    Check(
        "image.config-damaged",
        "error",
        "an image config cannot be read or decoded (empty, truncated, not JSON, not a file)",
    ),
    Check("image.digest-mismatch", "error", "an image config's sha256 differs from its file name"),
    Check("image.rootfs-missing", "error", "an image config has no rootfs.diff_ids"),
    Check("image.history-mismatch", "warning", "more non-empty history entries than layers"),
    Check("image.parent-missing", "warning", "imagedb metadata names a parent image that is gone"),
    Check("image.parent-damaged", "warning", "imagedb metadata parent file is damaged"),
    Check("image.last-updated-damaged", "warning", "imagedb metadata lastUpdated file is damaged"),
    Check("image.metadata-damaged", "warning", "imagedb metadata entry is no readable directory"),
    Check("image.layer-missing", "error", "a ChainID of the image is not in the layer store"),
    Check(
        "image.missing",
        "error",
        "an image that two or more containers or tags name is not in the image store",
    ),
    # layers
    Check("layer.empty-dir", "error", "an empty layerdb directory (breaks pulls of that layer)"),
    Check("layer.diff-missing", "error", "a layer has no diff file"),
    Check("layer.diff-damaged", "error", "a layer's diff file is empty or not a digest"),
    Check("layer.size-missing", "error", "a layer has no size file"),
    Check("layer.size-damaged", "error", "a layer's size file is empty or not a number"),
    Check("layer.cache-id-missing", "error", "a layer has no cache-id file"),
    Check(
        "layer.cache-id-damaged",
        "error",
        "a layer's cache-id file is empty, unreadable or holds no layer id",
    ),
    Check("layer.parent-damaged", "error", "a layer's parent file is empty or not a ChainID"),
    Check("layer.config-missing", "error", "a legacy graph image has no json file"),
    Check(
        "layer.config-damaged",
        "error",
        "a legacy graph image's json is empty, truncated or not JSON",
    ),
    Check(
        "layer.layersize-damaged",
        "error",
        "a legacy graph image's layersize is not a number: the daemon ignores the image",
    ),
    Check(
        "layer.chain-id-mismatch", "error", "a layer's directory name is not ChainID(parent, diff)"
    ),
    Check(
        "layer.parent-mismatch", "error", "a layer's parent differs from the image's layer chain"
    ),
    Check("layer.parent-missing", "error", "a layer's parent is not in the layer store"),
    Check(
        "layer.missing",
        "error",
        "a layer that two or more images, layers or containers name is not in the layer store",
    ),
    Check("layer.driver-dir-missing", "error", "the driver has no data for a layer's cache-id"),
    Check("layer.unreferenced", "warning", "a layer that no image and no container uses"),
    Check(
        "layer.tar-split-missing",
        "warning",
        "a layer without tar-split (cannot be saved or pushed)",
    ),
    Check(
        "layer.removing-leftover",
        "warning",
        "a *-removing layer directory of an interrupted delete",
    ),
    Check("layer.tmp-leftover", "warning", "an interrupted layer registration under layerdb/tmp"),
    Check("layer.stray-entry", "warning", "an entry in layerdb/sha256 that is not a layer"),
    Check(
        "image.stray-entry", "warning", "an entry in imagedb/content/sha256 that is not an image"
    ),
    Check(
        "layer.graph-tmp-leftover",
        "warning",
        "a leftover of an interrupted operation in graph/_tmp",
    ),
    Check("layer.graph-stray", "warning", "an entry in graph/ that is not an image"),
    # layer contents (verify --deep)
    Check("layer.file-modified", "error", "a layer file whose crc64 differs from the tar-split's"),
    Check(
        "layer.file-size-changed", "error", "a layer file whose size differs from the tar-split's"
    ),
    Check("layer.file-mode-changed", "error", "a layer entry whose permission bits changed"),
    Check(
        "layer.file-type-changed", "error", "a layer entry of another type (file, link, dir) now"
    ),
    Check(
        "layer.file-missing", "error", "a layer entry that the tar-split names and the disk lacks"
    ),
    Check("layer.file-extra", "error", "a file in a layer's diff that the tar-split does not hold"),
    Check("layer.file-unreadable", "error", "a layer file that cannot be read"),
    Check(
        "layer.file-metadata-changed",
        "error",
        "a layer entry whose owner, mtime or security.capability differs from its tar header",
    ),
    Check(
        "layer.file-removed",
        "error",
        "a file of the parent layer gone from a full-rootfs layer without a whiteout in its tar",
    ),
    Check(
        "layer.file-inherited-changed",
        "error",
        "an entry of the parent layer changed in a layer whose tar does not hold it",
    ),
    Check("layer.file-unverifiable", "info", "a layer entry that cannot be checked (e.g. sparse)"),
    Check(
        "layer.tar-header-damaged", "error", "a tar header in the tar-split that fails its checksum"
    ),
    Check("layer.tar-trailer-damaged", "error", "the end of the layer tar is not two zero blocks"),
    Check(
        "layer.unsafe-path", "error", "a tar-split entry whose path leaves the layer (never read)"
    ),
    Check("layer.diff-id-mismatch", "error", "the rebuilt layer tar does not hash to its DiffID"),
    Check(
        "layer.tarsum-mismatch",
        "error",
        "the rebuilt legacy layer tar does not reproduce the TarSum of its graph checksum file",
    ),
    Check(
        "layer.not-deep-checked",
        "info",
        "layers that --deep cannot rebuild (a direct-lvm pool; legacy layers without tar-data)",
    ),
    Check(
        "layer.tar-split-damaged", "error", "a tar-split that is truncated, not gzip or not JSON"
    ),
    Check(
        "layer.content-dir-missing", "error", "the layer's files (its driver directory) are gone"
    ),
    Check(
        "layer.content-unreadable",
        "error",
        "the filesystem or thin device holding a layer's files cannot be opened",
    ),
    Check(
        "layer.content-damaged",
        "error",
        "damage in the filesystem or thin device holding a layer's files, besides its members",
    ),
    Check(
        "layer.changes-unchecked",
        "warning",
        "a full-rootfs layer whose files could not be held against its parent layer's",
    ),
    Check("layer.duplicate-path", "error", "a tar-split that names one path twice"),
    Check("layer.root-unreadable", "error", "ROOT vanished while the layer was checked"),
    Check("layer.position-gap", "warning", "tar-split entry positions that skip a number"),
    Check("layer.lossy-name", "warning", "a name that tar-split stored as lossy UTF-8"),
    Check(
        "layer.unknown-entry",
        "warning",
        "a tar-split entry of a type tar-split never writes (skipped, as Docker skips it)",
    ),
    Check(
        "layer.path-too-deep",
        "error",
        "a layer path longer than Linux allows (PATH_MAX from the layer root): not followed",
    ),
    Check(
        "layer.check-failed",
        "error",
        "the check of a layer stopped on an internal error (the other layers were checked)",
    ),
    # mounts
    Check("mount.container-missing", "error", "a mount record whose container is gone"),
    Check("mount.dir-missing", "error", "a mount record path is not a directory"),
    Check(
        "mount.mount-id-missing",
        "error",
        "a mount record without mount-id: the container is not restored",
    ),
    Check("mount.mount-id-damaged", "error", "a mount-id that is empty or malformed"),
    Check("mount.init-id-damaged", "error", "an init-id that is empty or malformed"),
    Check("mount.parent-damaged", "error", "a mount parent file that is empty or not a ChainID"),
    Check(
        "mount.driver-dir-missing",
        "error",
        "the driver has no directory for a container's RW layer",
    ),
    Check(
        "mount.init-dir-missing",
        "error",
        "the driver has no directory for a container's init layer",
    ),
    Check("mount.parent-mismatch", "error", "a mount's parent is not the top layer of its image"),
    Check("mount.parent-missing", "error", "a mount's parent layer is not in the layer store"),
    # containers
    Check("container.config-missing", "error", "a container without a config: the daemon skips it"),
    Check(
        "container.config-damaged",
        "error",
        "a container config that is empty, truncated or not JSON",
    ),
    Check(
        "container.hostconfig-damaged",
        "error",
        "a hostconfig.json that is empty, truncated or not JSON",
    ),
    Check(
        "container.id-mismatch",
        "error",
        "the ID inside a container config differs from its directory",
    ),
    Check("container.image-missing", "error", "a container whose image does not exist"),
    Check(
        "container.driver-mismatch",
        "error",
        "a container of another storage driver: the daemon skips it",
    ),
    Check(
        "container.mount-missing",
        "error",
        "a container without a layerdb mount record: not restored",
    ),
    Check("container.layer-missing", "error", "a legacy container whose driver layers are gone"),
    Check(
        "container.volume-missing", "error", "a container names a local volume that does not exist"
    ),
    Check(
        "container.name-duplicate", "error", "two containers with one name: the daemon drops one"
    ),
    Check("container.tmp-leftover", "warning", "a leftover of an interrupted config write"),
    Check("container.stray-entry", "warning", "an entry in containers/ that is not a container"),
    Check("container.was-running", "info", "recorded as running: the host stopped while it ran"),
    # volumes
    Check("volume.data-missing", "warning", "a volume directory without _data"),
    # drivers
    Check("driver.orphan-dir", "error", "a driver directory that no layer or container references"),
    Check("driver.buildkit-dir", "info", "a driver directory that BuildKit's database names"),
    Check(
        "driver.unknown-dir", "warning", "an unreferenced driver directory that may be BuildKit's"
    ),
    Check(
        "buildkit.db-damaged",
        "warning",
        "a BuildKit database cannot be read or decoded: BuildKit ownership is in doubt",
    ),
    Check("driver.stray-entry", "warning", "a file where the driver keeps directories"),
    Check("overlay2.diff-missing", "error", "an overlay2 layer directory without diff/"),
    Check("overlay2.link-missing", "error", "an overlay2 layer without a link file (mounts fail)"),
    Check("overlay2.link-damaged", "error", "an overlay2 link file that is empty or malformed"),
    Check(
        "overlay2.link-dangling",
        "error",
        "l/<link> is missing or does not point to the layer's diff",
    ),
    Check(
        "overlay2.lower-damaged",
        "error",
        "an overlay2 lower file that is empty or has an entry that is no l/<link id>",
    ),
    Check(
        "overlay2.lower-mismatch",
        "error",
        "an overlay2 lower differs from the links of the parent chain",
    ),
    Check("overlay2.link-orphan", "warning", "an l/ link that no layer's link file names"),
    Check(
        "overlay2.links-dir-missing",
        "error",
        "overlay2's l/ directory of short links is missing: no layer can be mounted",
    ),
    Check(
        "overlay2.links-dir-damaged",
        "error",
        "overlay2's l/ is not a directory or cannot be read: no layer can be mounted",
    ),
    Check(
        "aufs.layers-missing", "error", "a layer without aufs/layers/<id>: the daemon sees no layer"
    ),
    Check(
        "aufs.layers-damaged",
        "error",
        "aufs/layers/<id> cannot be read or lists something that is no layer id",
    ),
    Check("aufs.lower-mismatch", "error", "aufs/layers/<id> differs from the layer's parent chain"),
    Check(
        "overlay.lower-id-damaged",
        "error",
        "an overlay lower-id file that is empty or holds no layer id",
    ),
    Check(
        "overlay.data-missing",
        "error",
        "an overlay layer without root/ (image) or upper/ (container)",
    ),
    Check(
        "overlay.lower-mismatch", "error", "an overlay lower-id that is not the image's top layer"
    ),
    Check("linkgraph.damaged", "error", "linkgraph.db cannot be read"),
    Check(
        "linkgraph.container-missing",
        "error",
        "a name or link in linkgraph.db whose container is gone",
    ),
    # legacy graph
    Check("graph.id-malformed", "error", "an image directory in graph/ whose name is no graph id"),
    Check("graph.id-mismatch", "error", "the id inside graph/<id>/json differs from its directory"),
    Check(
        "graph.digest-mismatch",
        "error",
        "a v2-pulled graph json no longer hashes to its directory name",
    ),
    Check("graph.parent-loop", "error", "a graph parent chain that loops"),
    Check(
        "graph.image-missing",
        "error",
        "a graph image that two or more images, tags or containers name is not in graph/",
    ),
    Check(
        "graph.tag-target-missing", "error", "a tag of repositories-<driver> names a missing image"
    ),
    Check(
        "layer.checksum-damaged", "error", "a graph checksum file that is not a digest or TarSum"
    ),
    # thin pool against Docker's device records
    Check("thinpool.unreadable", "error", "the thin pool's metadata file cannot be read"),
    Check("thinpool.damaged", "error", "the thin pool's metadata trees are damaged"),
    Check("thinpool.device-missing", "error", "a device record whose thin device the pool lacks"),
    Check("thinpool.device-leaked", "warning", "a thin device of the pool that no record names"),
    Check("thinpool.transaction-pending", "warning", "a create or delete the pool never completed"),
    Check(
        "thinpool.transaction-ahead", "error", "an open transaction more than one past the pool's"
    ),
    Check("thinpool.transaction-behind", "warning", "an open transaction behind the pool's"),
    Check("thinpool.record-ahead", "error", "a device record newer than the pool's transaction"),
    Check("thinpool.mapping-beyond-size", "error", "a thin device mapping blocks past its size"),
    Check("thinpool.data-file-short", "error", "a data file smaller than the pool's data blocks"),
    # migration 1.9 → 1.10
    Check(
        "migration.not-migrated", "info", "a graph image that no 1.10+ layer uses (never migrated)"
    ),
    Check(
        "migration.tag-not-migrated",
        "warning",
        "a tag of repositories-<driver> the migration could not carry to the 1.10+ tag store",
    ),
    Check(
        "migration.diffid-mismatch",
        "error",
        "a layer's DiffID differs from what the migration computed",
    ),
    Check(
        "layer.migration-diffid-damaged",
        "error",
        "a .migration-diffid file that is empty or unreadable",
    ),
    # devicemapper records
    Check("devicemapper.record-damaged", "error", "a device record that is not well-formed JSON"),
    Check(
        "devicemapper.deviceset-damaged", "error", "deviceset-metadata cannot be parsed: no start"
    ),
    Check(
        "devicemapper.transaction-damaged",
        "error",
        "transaction-metadata cannot be parsed (no start), or its device_hash names no device",
    ),
    Check(
        "devicemapper.metadata-dir-damaged",
        "error",
        "the records directory is missing or unreadable",
    ),
    Check("devicemapper.device-id-duplicate", "error", "two device records with one device id"),
    Check("devicemapper.device-id-range", "error", "a device id outside the 24 bits of the pool"),
    Check(
        "devicemapper.next-id-stale",
        "warning",
        "the next device id is below an id in use (saved at shutdown)",
    ),
    Check(
        "devicemapper.transaction-pending",
        "warning",
        "a crashed create or delete that the daemon rolls back",
    ),
    Check(
        "devicemapper.mnt-orphan", "warning", "a mount point under mnt/ of a device with no record"
    ),
    Check("devicemapper.tmp-leftover", "warning", "a temp file of an interrupted record write"),
    Check(
        "devicemapper.base-missing", "warning", "no base device record: the daemon makes a new base"
    ),
    Check(
        "devicemapper.pool-files-missing", "warning", "no loop-lvm pool files (direct-lvm, or lost)"
    ),
    # containerd's store (Docker 29's image store, a containerd root)
    Check(
        "containerd.db-damaged",
        "error",
        "meta.db or a snapshotter's metadata.db cannot be read whole (what could be read is used)",
    ),
    Check(
        "containerd.db-fell-back",
        "warning",
        "a bolt database whose newer meta page is damaged: its last transaction is lost",
    ),
    Check("containerd.blob-missing", "error", "a blob that an image needs or a namespace records"),
    Check(
        "containerd.blob-size-mismatch",
        "error",
        "a blob whose size differs from its record or descriptor",
    ),
    Check("containerd.blob-damaged", "error", "a content store entry that is no blob file"),
    Check("containerd.blob-unrecorded", "warning", "a blob file that no namespace records"),
    Check(
        "containerd.document-damaged",
        "error",
        "an image's index, manifest or config that is not a document of its kind",
    ),
    Check(
        "containerd.rootfs-mismatch",
        "error",
        "an image config whose DiffIDs are not as many as its manifest's layers",
    ),
    Check(
        "containerd.diffid-mismatch",
        "error",
        "a layer blob's containerd.io/uncompressed label differs from its config's DiffID",
    ),
    Check(
        "containerd.snapshot-chain-broken",
        "error",
        "an unpacked image whose snapshots do not follow its ChainIDs",
    ),
    Check(
        "containerd.snapshot-backend-missing",
        "error",
        "a namespace's snapshot that its snapshotter does not have",
    ),
    Check("containerd.snapshot-parent-missing", "error", "a snapshot whose parent does not exist"),
    Check(
        "containerd.snapshot-parent-mismatch",
        "error",
        "a snapshot whose parent differs between meta.db and its snapshotter",
    ),
    Check("containerd.snapshot-dir-missing", "error", "a snapshot without its directory"),
    Check("containerd.snapshot-fs-missing", "error", "a snapshot directory without its fs/"),
    Check(
        "containerd.snapshot-work-missing",
        "error",
        "an active snapshot directory without its work/",
    ),
    Check(
        "containerd.snapshot-dir-orphan",
        "error",
        "a snapshot directory that no snapshot owns, holding files (containerd deletes it)",
    ),
    Check(
        "containerd.snapshot-dir-leftover",
        "warning",
        "an empty snapshot directory that no snapshot owns",
    ),
    Check(
        "containerd.snapshot-unrecorded",
        "warning",
        "a snapshotter's snapshot that no namespace records",
    ),
    Check(
        "containerd.container-snapshot-missing",
        "error",
        "a containerd container whose snapshot does not exist",
    ),
    Check(
        "containerd.docker-snapshot-missing",
        "error",
        "a Docker 29 container whose writable snapshot is not in namespace moby",
    ),
    Check(
        "containerd.docker-lease-missing",
        "error",
        "a Docker 29 container without the lease that keeps its writable snapshot",
    ),
    Check(
        "containerd.docker-image-missing",
        "warning",
        "a Docker 29 container whose image is not in namespace moby",
    ),
    Check(
        "containerd.lease-expired",
        "info",
        "a lease past its expiry: the next collection removes it",
    ),
    Check(
        "containerd.lease-expire-damaged",
        "warning",
        "a lease's containerd.io/gc.expire that is not a time",
    ),
    Check(
        "containerd.ingest-leftover",
        "warning",
        "an unfinished write of the content store that nothing will finish",
    ),
    Check(
        "containerd.ingest-in-progress",
        "info",
        "an interrupted download that containerd keeps until it expires",
    ),
    Check(
        "containerd.garbage",
        "info",
        "what containerd's collector would remove, and the bytes it frees",
    ),
    # containerd's store, --deep: blobs hashed, layer tars held against their snapshots
    Check(
        "containerd.blob-digest-mismatch",
        "error",
        "a blob whose sha256 differs from its name (--deep)",
    ),
    Check(
        "containerd.layer-damaged",
        "error",
        "a layer blob that does not decompress or read as a tar to its end (--deep)",
    ),
    Check(
        "containerd.layer-unsafe-path",
        "error",
        "a layer tar member whose name leaves the layer or lies beyond PATH_MAX (--deep)",
    ),
    Check(
        "containerd.layer-diffid-mismatch",
        "error",
        "a layer blob whose uncompressed tar does not hash to its DiffID (--deep)",
    ),
    Check(
        "containerd.snapshot-file-modified",
        "error",
        "a snapshot file whose size, sha256, link target or device differs from its layer's",
    ),
    Check(
        "containerd.snapshot-file-type-changed",
        "error",
        "a snapshot entry of another type than its layer's (never followed, never read)",
    ),
    Check(
        "containerd.snapshot-file-mode-changed",
        "error",
        "a snapshot entry whose permission bits differ from its layer's",
    ),
    Check(
        "containerd.snapshot-file-metadata-changed",
        "error",
        "a snapshot entry whose owner or xattrs differ from its layer's",
    ),
    Check(
        "containerd.snapshot-file-missing",
        "error",
        "a layer tar entry that its committed snapshot lacks",
    ),
    Check(
        "containerd.snapshot-file-extra",
        "error",
        "an entry of a committed snapshot that its layer's tar does not hold",
    ),
    Check("containerd.snapshot-file-unreadable", "error", "a snapshot file that cannot be read"),
    Check(
        "containerd.snapshot-whiteout-changed",
        "error",
        "a deletion of the layer not kept as overlayfs keeps it (0:0 device, opaque xattr)",
    ),
    Check(
        "containerd.snapshot-file-unverifiable",
        "info",
        "a snapshot entry that cannot be checked (an opaque xattr only root may read)",
    ),
    Check(
        "containerd.layer-not-deep-checked",
        "info",
        "an unpacked layer whose blob is not in the content store: its snapshot is not checked",
    ),
    Check(
        "containerd.layer-check-failed",
        "error",
        "the deep check of a blob stopped on an internal error (the rest was checked)",
    ),
]

#: verify's catalogue (:mod:`forensics.catalog`)
CHECKS = Catalog("verify", _CHECKS)


def finding(
    check: str,
    path: str,
    message: str,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    damage: str | None = None,
) -> Finding:
    """A finding of ``check``, with the severity the catalogue gives it. The check id is the
    catalogue's own string, not the one built for the call: a million findings share it."""
    spec = CHECKS[check]
    return Finding(
        check=spec.id,
        severity=spec.severity,
        path=path,
        message=message,
        object_type=object_type,
        object_id=object_id,
        damage=damage,
    )
