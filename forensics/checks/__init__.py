"""Rules: a :class:`forensics.model.Host` in, findings out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial

from forensics.checks.cascade import FindingIndex, link_cascades
from forensics.checks.causes import find_cascades, object_name
from forensics.checks.containerd import check_containerd
from forensics.checks.containers import check_containers, check_mounts
from forensics.checks.devicemapper import check_devicemapper
from forensics.checks.drivers import check_driver_dirs
from forensics.checks.images import check_images, check_repositories
from forensics.checks.layers import check_layers, check_leftovers
from forensics.checks.layout import check_layout, check_volumes
from forensics.checks.legacy import check_graph
from forensics.checks.migration import check_migrated
from forensics.checks.thinpool import check_thin_pool
from forensics.heap import no_cycle_collection
from forensics.model import Host
from forensics.report import Finding, sort_findings

RULES: list[Callable[[Host], Iterable[Finding]]] = [
    check_layout,
    check_repositories,
    check_images,
    check_layers,
    check_leftovers,
    check_mounts,
    check_containers,
    check_driver_dirs,
    check_volumes,
    check_graph,
    check_devicemapper,
    check_migrated,
    check_thin_pool,
    check_containerd,
]


def run_checks(host: Host, deep: Iterable[Finding] = ()) -> list[Finding]:
    """Every rule over ``host``, with the findings of ``verify --deep`` (``deep``), each
    consequence linked to its cause (see :mod:`forensics.checks.cascade`); sorted by path then
    check id."""
    with no_cycle_collection():
        findings = [f for rule in RULES for f in rule(host)] + list(deep)
        cascades = find_cascades(host, FindingIndex(findings))
        return sort_findings(link_cascades(findings, cascades, partial(object_name, host)))
