"""Rules on the tag store and on image configs (modern imagedb and legacy graph json)."""

from __future__ import annotations

from collections.abc import Iterator

from forensics.checks.catalog import finding
from forensics.checks.common import problem_findings, short
from forensics.model import Host, Image
from forensics.report import Finding

IMAGE_LABELS = {
    "config": "image config",
    "parent": "imagedb parent file",
    "last-updated": "imagedb lastUpdated file",
    "metadata": "imagedb metadata entry",
}


def check_repositories(host: Host) -> Iterator[Finding]:
    problem = host.problems.get("repositories")
    if problem is not None:
        yield finding(
            "repositories.damaged",
            problem.path,
            f"tag store: {problem.detail}; the daemon will not start until it is valid JSON",
            object_type="repositories",
            damage=problem.damage,
        )
    # 1.10+ keeps a tag of a missing image harmlessly; for 1.8/1.9 runs of that tag fail
    legacy = host.image_store == "graph"
    check = "graph.tag-target-missing" if legacy else "repositories.target-missing"
    effect = ": runs of it fail" if legacy else ""
    for ref, target in sorted(host.references.items()):
        if target not in host.images:
            yield finding(
                check,
                host.references_path or "",
                f"{ref} names image {short(target)}, which does not exist{effect}",
                object_type="tag",
                object_id=ref,
            )


def check_images(host: Host) -> Iterator[Finding]:
    if host.layout != "modern":
        return
    for image in host.images.values():
        yield from _check_image(host, image)


def _check_image(host: Host, image: Image) -> Iterator[Finding]:
    ident = {"object_type": "image", "object_id": image.id}
    yield from problem_findings(
        "image",
        image.problems,
        IMAGE_LABELS,
        "image",
        image.id,
        ("config", "parent", "last-updated", "metadata"),
    )
    if image.computed_digest is not None and image.computed_digest != image.id:
        yield finding(
            "image.digest-mismatch",
            image.path,
            f"content hashes to {short(image.computed_digest)}, not to its name: "
            "the daemon rejects the image (failed to verify)",
            **ident,
        )
    if not image.config_ok:
        return
    if not image.has_rootfs:
        detail = image.problems.get("rootfs")
        yield finding(
            "image.rootfs-missing",
            image.path,
            detail.detail if detail else "the config has no rootfs.diff_ids: the daemon skips it",
            **ident,
        )
    if image.history_layers is not None and image.history_layers > len(image.diff_ids):
        yield finding(
            "image.history-mismatch",
            image.path,
            f"{image.history_layers} non-empty history entries for {len(image.diff_ids)} layers",
            **ident,
        )
    if image.parent and image.parent not in host.images:
        yield finding(
            "image.parent-missing",
            image.path.replace("/content/", "/metadata/") + "/parent",
            f"names parent image {short(image.parent)}, which does not exist",
            **ident,
        )
    for position, chain in enumerate(image.layers):
        if chain not in host.layers:
            yield finding(
                "image.layer-missing",
                image.path,
                f"layer {position + 1} of {len(image.layers)} (ChainID {short(chain)}, "
                f"DiffID {short(image.diff_ids[position])}) is not in the layer store",
                **ident,
            )
