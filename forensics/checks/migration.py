"""Rules on a root migrated from 1.8/1.9 to 1.10+: the legacy store left beside the modern one
is checked as a legacy store, and the migration's bookkeeping against the modern layers."""

from __future__ import annotations

from collections.abc import Iterator

from forensics.checks.catalog import finding
from forensics.checks.common import short
from forensics.checks.layers import check_layers, check_leftovers
from forensics.checks.legacy import check_graph
from forensics.model import Host
from forensics.report import Finding


def check_migrated(host: Host) -> Iterator[Finding]:
    legacy = host.legacy
    if legacy is None:
        return
    yield from check_graph(legacy)
    yield from check_layers(legacy)
    yield from check_leftovers(legacy)
    yield from _check_legacy_tags(host, legacy)
    by_cache = {layer.cache_id: layer for layer in host.layers.values() if layer.cache_id}
    migrated = set(legacy.migrated_images)
    for gid, old in sorted(legacy.layers.items()):
        new = by_cache.get(gid)
        ident = {"object_type": "layer", "object_id": gid}
        if new is None and gid not in migrated:
            yield finding(
                "migration.not-migrated",
                old.path,
                "no 1.10+ layer uses this graph image: it is invisible to the daemon",
                **ident,
            )
        elif new is not None and old.migration_diff_id and new.diff_id != old.migration_diff_id:
            yield finding(
                "migration.diffid-mismatch",
                f"{old.path}/.migration-diffid",
                f"the migration computed DiffID {short(old.migration_diff_id)} but layer "
                f"{short(new.id)} records {short(new.diff_id or 'none')}",
                **ident,
            )


def _check_legacy_tags(host: Host, legacy: Host) -> Iterator[Finding]:
    """Tags of ``repositories-<driver>`` that the migration could not carry over: the tag
    migration takes only tags of migrated images, so a tag of a graph image that is missing or
    was never migrated is in no 1.10+ tag store (unless retagged there since)."""
    modern = {_familiar(ref) for ref in host.references}
    for ref, gid in sorted(legacy.references.items()):
        if gid in legacy.migrated_images or _familiar(ref) in modern:
            continue
        if gid in legacy.layers:
            why = f"its graph image {short(gid)} was never migrated"
        else:
            why = f"its graph image {short(gid)} does not exist"
        yield finding(
            "migration.tag-not-migrated",
            legacy.references_path or "",
            f"{ref}: {why}, so 1.10+ has no such tag",
            object_type="tag",
            object_id=ref,
        )


def _familiar(ref: str) -> str:
    """A reference as the tag stores write it (``busybox:latest``, not
    ``docker.io/library/busybox:latest``)."""
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "library/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref
