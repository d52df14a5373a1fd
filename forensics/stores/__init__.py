"""Readers: a Docker root in, a :class:`forensics.model.Host` out.

:func:`read_host` is imported when first asked for: a module of the package (the containerd
store's value decoders, say) can be imported without every reader and what they import."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forensics.stores.host import read_host

__all__ = ["read_host"]


def __getattr__(name: str) -> Any:
    if name == "read_host":
        from forensics.stores.host import read_host

        return read_host
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
