"""containerd's store read offline: Docker 29's image store, or any containerd root.

:func:`find_containerd_root` says where the containerd root lies below an evidence root (the
root itself, or dockerd's own ``containerd/daemon``); :func:`read_containerd_store` reads it
into a :class:`~forensics.containerd_model.ContainerdStore`: the metadata database's
namespaces, every snapshotter's records and directories, the content store's blobs and ingests.
Nothing is hashed and no layer is opened here (that is for verification); every read goes
through :class:`~forensics.evidence.Evidence`, and damage becomes a
:class:`~forensics.containerd_model.StoreProblem`, never an exception.

:mod:`~forensics.stores.containerd.store` holds them; they are loaded at their first use (the
bbolt reader brings construct), so that a root without a containerd store, and the pure
decoders of :mod:`~forensics.stores.containerd.values`, never pay for it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "find_containerd_root",
    "read_bolt",
    "read_containerd_store",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from forensics.stores.containerd import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
