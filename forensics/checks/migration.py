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
