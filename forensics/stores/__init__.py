"""Readers: a Docker root in, a :class:`forensics.model.Host` out."""

from forensics.stores.host import read_host

__all__ = ["read_host"]
