"""Docker's identifiers: digests, DiffIDs, ChainIDs, and the ids that name directories.

Several files under ROOT hold the name of another directory: a layer's ``cache-id``, a mount
record's ``mount-id`` and ``init-id``, an overlay2 ``link`` and the ``l/<link>`` entries of
``lower``, an overlay ``lower-id``, aufs ``layers/<id>``, devicemapper's ``device_hash``. Such a
value becomes a path component, so it is judged by the grammar of the ids Docker (or BuildKit)
writes there before it is used (``../../../etc`` is damage, never a path); :func:`id_problem`
says what is wrong with one, for the finding at the file that holds it.
"""

from __future__ import annotations

import hashlib
import re

from forensics.drivers import INIT_SUFFIX, LINK_ENTRY

HEX64 = re.compile(r"[0-9a-f]{64}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
#: overlay2 link ids: 26 characters of base32 (A–Z, 2–7)
LINK_ID = re.compile(r"[A-Z2-7]{26}")
#: a container's read-write layer (random 64 hex; a 1.10 migration kept the container id) and
#: its init layer, ``<mount-id>-init``
MOUNT_ID = re.compile(rf"[0-9a-f]{{64}}({re.escape(INIT_SUFFIX)})?")
#: a BuildKit snapshot key (``identity.NewID``: 128 random bits in base36, 25 characters),
#: which moby's BuildKit adapter also registers as a layer's cache-id
BUILDKIT_ID = re.compile(r"[0-9a-z]{25}")
#: a layer's driver directory: a random 64-hex id (the graph id on migrated and legacy roots)
#: or a BuildKit snapshot key
CACHE_ID = re.compile(rf"{HEX64.pattern}|{BUILDKIT_ID.pattern}")
#: any driver directory that a layer, a container or BuildKit owns
DRIVER_DIR_ID = re.compile(rf"{MOUNT_ID.pattern}|{BUILDKIT_ID.pattern}")
#: an overlay2 ``lower`` entry: the short link of a lower layer
LOWER_ENTRY = re.compile(
    re.escape(LINK_ENTRY.prefix) + LINK_ID.pattern + re.escape(LINK_ENTRY.suffix)
)
#: a storage driver's name (``overlay2``, ``devicemapper``, …): it names files and directories
DRIVER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")

#: what each grammar is called in a finding
_WHAT = {
    HEX64: "a 64-hex id",
    DIGEST: "a sha256 digest",
    LINK_ID: "an overlay2 link id",
    MOUNT_ID: "a 64-hex layer id",
    CACHE_ID: "a layer id (64 hex or a BuildKit key)",
    DRIVER_DIR_ID: f"a layer id (64 hex, <id>{INIT_SUFFIX} or a BuildKit key)",
    LOWER_ENTRY: LINK_ENTRY("<link id>"),
}


def short(value: str, n: int = 12) -> str:
    """A digest or id shortened as Docker prints it."""
    hexpart = value.split(":", 1)[1] if value.startswith("sha256:") else value
    return hexpart[:n]


def is_hex64(value: str) -> bool:
    return HEX64.fullmatch(value) is not None


def is_digest(value: str) -> bool:
    return DIGEST.fullmatch(value) is not None


def id_problem(value: str, grammar: re.Pattern[str]) -> str | None:
    """None when ``value`` is a whole match of ``grammar``; else why not, with the value shown
    (cut to 80 characters), for a finding."""
    if grammar.fullmatch(value):
        return None
    return f"not {_WHAT.get(grammar, 'a valid id')}: {value[:80]!r}"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_id(parent_chain: str | None, diff_id: str) -> str:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    if parent_chain is None:
        return diff_id
    return sha256_digest(f"{parent_chain} {diff_id}".encode())


def chain_ids(diff_ids: list[str]) -> list[str]:
    out: list[str] = []
    parent: str | None = None
    for diff in diff_ids:
        parent = chain_id(parent, diff)
        out.append(parent)
    return out
