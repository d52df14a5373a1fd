"""The tag stores of both eras: ``image/<driver>/repositories.json`` (1.10+) and
``repositories-<driver>`` (1.8/1.9). Both are ``{"Repositories":{name:{key: image id}}}``; the
modern key is already a full reference, the legacy key a tag or digest under ``name``."""

from __future__ import annotations

from forensics.evidence import Evidence
from forensics.formats.jsonfile import field
from forensics.model import Host
from forensics.stores.reading import bad_value, read_json_object


def read_tag_store(ev: Evidence, host: Host, rel: str, *, legacy: bool) -> None:
    host.references_path = rel
    doc = read_json_object(ev, rel, host.problems, "repositories", optional=True)
    if doc is None:
        return
    repos = field(doc, "Repositories", nullable=True)
    if not isinstance(repos, dict):
        bad_value(host.problems, "repositories", rel, 'no "Repositories" object')
        return
    for name, refs in sorted(repos.items()):
        if not isinstance(refs, dict):
            bad_value(host.problems, "repositories", rel, f"repository {name!r} is not an object")
            continue
        for key, target in sorted(refs.items()):
            if isinstance(target, str):
                host.references[_reference(name, key) if legacy else key] = target


def _reference(name: str, key: str) -> str:
    """A legacy tag store key under ``name``: a tag, or a manifest digest of a pull by digest."""
    return f"{name}@{key}" if key.startswith("sha256:") else f"{name}:{key}"


def attach_tags(host: Host) -> None:
    """Give each image the references that name it."""
    for ref, target in sorted(host.references.items()):
        image = host.images.get(target)
        if image is not None:
            (image.digests if "@" in ref else image.tags).append(ref)
