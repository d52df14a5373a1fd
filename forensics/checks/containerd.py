"""The rules for a containerd store read with the root (Docker 29's image store, or a
containerd root): its databases, blobs and snapshots (:mod:`.containerd_store`), its images
(:mod:`.containerd_images`), and what holds what (:mod:`.containerd_holders`)."""

from __future__ import annotations

from collections.abc import Iterator

from forensics.checks.containerd_holders import check_containerd_holders
from forensics.checks.containerd_images import check_containerd_images
from forensics.checks.containerd_store import check_containerd_store
from forensics.model import Host
from forensics.report import Finding


def check_containerd(host: Host) -> Iterator[Finding]:
    ctd = host.containerd
    if ctd is None:
        return
    yield from check_containerd_store(ctd)
    yield from check_containerd_images(ctd)
    yield from check_containerd_holders(host, ctd)
