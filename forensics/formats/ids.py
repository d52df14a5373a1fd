"""Docker's content identifiers: digests, DiffIDs, ChainIDs."""

from __future__ import annotations

import hashlib
import re

HEX64 = re.compile(r"[0-9a-f]{64}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
#: overlay2 link ids: 26 characters of base32 (A–Z, 2–7)
LINK_ID = re.compile(r"[A-Z2-7]{26}")
MOUNT_ID = re.compile(r"[0-9a-f]{64}(-init)?")


def is_hex64(value: str) -> bool:
    return HEX64.fullmatch(value) is not None


def is_digest(value: str) -> bool:
    return DIGEST.fullmatch(value) is not None


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


def hex_of(digest: str) -> str:
    """The hex part of ``sha256:<hex>`` (or the value itself when it has no algorithm)."""
    return digest.split(":", 1)[1] if ":" in digest else digest
