"""Rebuilding a damaged ``repositories.json`` from what evidence is left.

dockerd refuses to start on a tag store it cannot parse (a zero-byte or truncated file after a
power cut), while a missing file is simply created empty. The rewrite keeps every reference that
can be recovered, in this order of trust:

1. complete ``"<ref>":"sha256:<id>"`` pairs in the damaged file (its parseable prefix, or the
   valid entries of a file with a bad structure);
2. the containers' ``Config.Image`` names (what ``docker run`` was given), pointing to the image
   the container was made from — the newest container wins when two disagree;

and keeps only references to images that exist. What is lost is named: references to images that
are gone, a reference cut off by the truncation, and images that were tagged (imagedb
``lastUpdated``, which ``docker tag`` and builds write) but got no reference back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from forensics.formats.ids import short
from forensics.formats.jsonfile import JsonDamage, decode_json
from forensics.model import Host

_PAIR = re.compile(rb'"((?:[^"\\\x00-\x1f]|\\.)*)"\s*:\s*"(sha256:[0-9a-f]{64})"')
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?/)?"
_NAME = re.compile(rf"{_DOMAIN}{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HEX_ID = re.compile(r"(?:sha256:)?[0-9a-f]{1,64}")
_DEFAULT_PREFIXES = (
    "docker.io/library/",
    "index.docker.io/library/",
    "docker.io/",
    "index.docker.io/",
)


@dataclass
class Recovery:
    """The references of the rewritten tag store, where each came from, and what is lost."""

    references: dict[str, str] = field(default_factory=dict)  # ref → image id
    sources: dict[str, str] = field(default_factory=dict)  # ref → "damaged file" / "container …"
    lost: list[str] = field(default_factory=list)

    def document(self) -> bytes:
        """The new ``repositories.json``, as dockerd writes it (Go's json.Marshal: sorted keys,
        compact, no newline)."""
        repos: dict[str, dict[str, str]] = {}
        for ref, image in sorted(self.references.items()):
            repos.setdefault(repository_of(ref), {})[ref] = image
        doc = {"Repositories": repos}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def repository_of(ref: str) -> str:
    """The familiar repository name of a stored reference (``name:tag`` or ``name@digest``)."""
    if "@" in ref:
        return ref.split("@", 1)[0]
    name, _, tag = ref.rpartition(":")
    return name if name and "/" not in tag else ref


def valid_reference(ref: str) -> bool:
    """True for a stored reference: a familiar ``name:tag`` or ``name@sha256:<hex>``."""
    if "@" in ref:
        name, _, digest = ref.partition("@")
        return bool(_NAME.fullmatch(name) and _DIGEST.fullmatch(digest))
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return False
    return bool(_NAME.fullmatch(name) and _TAG.fullmatch(tag))


def familiar(image: str) -> str | None:
    """A container's ``Config.Image`` as the tag store keys it, or None when it names an image
    by id (or is no valid reference)."""
    if not image or _HEX_ID.fullmatch(image):
        return None
    for prefix in _DEFAULT_PREFIXES:
        if image.startswith(prefix):
            image = image[len(prefix) :]
            break
    if "@" not in image:
        last = image.rsplit("/", 1)[-1]
        if ":" not in last:
            image += ":latest"
    return image if valid_reference(image) else None


def recover(host: Host, damaged: bytes | None) -> Recovery:
    """The references that can be recovered for ``host``'s tag store from the ``damaged`` bytes
    (None when they cannot be read) and from the containers."""
    rec = Recovery()
    found, cut = _pairs(damaged or b"")
    found.update(host.references)  # entries of a file that parsed but had a bad structure
    for ref, image in sorted(found.items()):
        if not valid_reference(ref):
            rec.lost.append(f"{ref[:120]!r}: not a valid reference")
        elif image not in host.images:
            rec.lost.append(f"{ref}: its image {short(image)} does not exist")
        else:
            rec.references[ref] = image
            rec.sources[ref] = "damaged file"
    _from_containers(host, rec)
    if cut:
        rec.lost.append(f"a reference cut off by the truncation: {cut!r}")
    _untagged(host, rec)
    return rec


def _pairs(data: bytes) -> tuple[dict[str, str], str | None]:
    """Complete ``"ref":"sha256:…"`` pairs in ``data``, and the text of a pair cut off after the
    last complete one (None when the data ends cleanly)."""
    pairs: dict[str, str] = {}
    end = 0
    for match in _PAIR.finditer(data):
        try:
            ref = decode_json(b'"' + match.group(1) + b'"')
        except JsonDamage:
            continue
        pairs[ref] = match.group(2).decode()
        end = match.end()
    tail = data[end:].decode("utf-8", "replace").strip(" \t\r\n\x00")
    cut = tail.lstrip("{}[],: \t\r\n")
    strings = re.findall(r'"([^"]*)"?', cut)
    words = [s for s in strings if s and s != "Repositories"]
    if not words:
        return pairs, None
    if words[-1].startswith("sha256:") and len(words) > 1:
        return pairs, f"{words[-2][:120]} → {words[-1]}…"
    return pairs, words[-1][:120]


def _from_containers(host: Host, rec: Recovery) -> None:
    votes: dict[str, tuple[str, str, str]] = {}  # ref → (created, image id, container id)
    for container in sorted(host.containers.values(), key=lambda c: c.created or ""):
        if not container.config_ok or not container.image or not container.image_id:
            continue
        ref = familiar(container.image)
        if ref is None or container.image_id not in host.images:
            continue
        votes[ref] = (container.created or "", container.image_id, container.id)
    for ref, (_, image, cid) in sorted(votes.items()):
        if ref in rec.references:
            continue
        rec.references[ref] = image
        rec.sources[ref] = f"container {short(cid)}"


def _untagged(host: Host, rec: Recovery) -> None:
    tagged = set(rec.references.values())
    for image in sorted(host.images.values(), key=lambda i: i.id):
        if image.last_updated and image.id not in tagged:
            rec.lost.append(
                f"the tags of image {short(image.id)} (tagged {image.last_updated}): "
                "no evidence names them"
            )
