"""The errors the library raises on purpose: one family, three kinds.

- :class:`Damage`: the evidence is not what its format allows (a truncated JSON file, a btree
  node that fails its checksum, a tar header that is no tar header, a name that climbs out of
  ROOT). The reader that finds it raises it; the layer above turns it into a finding with its
  path and goes on with the rest. One that reaches a command leaves that command nothing to
  work on (``thin repair``: nothing could be salvaged).
- :class:`OperationalError`: the run cannot be done as asked: ROOT is missing or cannot be read
  whole, an output cannot be written, a journal is refused, a repair stopped half-way.
- :class:`UsageError`: the request contradicts itself or the evidence: options that exclude
  each other, an output inside ROOT, a time that is no time; :class:`NotFound` when it names
  something (a container) that ROOT does not hold.

Every error class of the package derives from one of these (``tests/test_api.py`` holds it),
keeping a built-in base where callers catch one (``OSError``, ``ValueError``). Anything else
that escapes a command is a bug. The command line maps each kind to its exit status in one
place (:mod:`forensics.cli.common`); the library never exits.
"""

from __future__ import annotations


class ForensicsError(Exception):
    """Base of every error the library raises on purpose."""


class Damage(ForensicsError):
    """The evidence is damaged: what was read is not what its format allows."""


class OperationalError(ForensicsError):
    """The run cannot be done: ROOT unreadable, an output not writable, a journal refused."""


class UsageError(ForensicsError):
    """The request cannot be done as given: its parts contradict each other or the evidence."""


class NotFound(UsageError):
    """The request names something the evidence does not hold (said in one line, as docker
    says ``No such container``)."""
