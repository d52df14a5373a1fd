"""What a layer's diff directory holds: every entry and its kind, as a tree of names.

A layer that holds exactly its diff (overlay2, aufs) can be held against its tar-split both
ways: the members the disk lacks, and the entries the tar does not account for (extras). The
listing is read once, depth first, without following a symlink, and kept as a tree — one node
per directory, one dictionary slot per entry — so that an entry costs the same at any depth
(a path tuple per entry would make a deep tree cost the square of its depth). The walk keeps an
explicit stack, never recursion, and stops at what Linux allows: an entry whose path from the
layer root is longer than ``PATH_MAX`` is not listed, and is reported (dockerd could neither
have written nor read it).
"""

from __future__ import annotations

from collections.abc import Iterator

from forensics.layers.confine import Parts, Refusal, too_deep
from forensics.layers.content import LayerTree

__all__ = ["Dir", "Listing", "walk"]

#: a non-directory entry that a member accounts for (marked by :meth:`Listing.expect`)
_EXPECTED = "expected"


class Dir:
    """A directory of the listing: its entries by name (a :class:`Dir` for each directory,
    the kind — ``file``, ``symlink``, ``other`` — for the rest), in sorted order."""

    __slots__ = ("entries", "expected")

    def __init__(self) -> None:
        self.entries: dict[bytes, str | Dir] = {}
        self.expected = False


class Listing:
    """Every entry under a content directory (to ``PATH_MAX``), with its kind.

    ``count``: the entries listed. ``deep``: how many entries lay beyond ``PATH_MAX`` (not
    listed, nor anything below them), and ``first_deep`` the path of the first one.
    """

    def __init__(self) -> None:
        self.root = Dir()
        self.count = 0
        self.deep = 0
        self.first_deep: Parts = ()
        self._parent: Parts | None = None
        self._entries: dict[bytes, str | Dir] | None = None

    def kind(self, parts: Parts) -> str | None:
        """``file``, ``dir``, ``symlink`` or ``other`` for the entry ``parts``; None when it
        is not listed. Members come in directory order: the last directory is remembered."""
        if not parts:
            return "dir"
        parent = parts[:-1]
        if parent != self._parent:
            self._parent, self._entries = parent, self._entries_of(parent)
        entries = self._entries
        node = entries.get(parts[-1]) if entries is not None else None
        if node is None or isinstance(node, str):
            return node
        return "dir"

    def _entries_of(self, parts: Parts) -> dict[bytes, str | Dir] | None:
        node = self.root
        for name in parts:
            child = node.entries.get(name)
            if not isinstance(child, Dir):
                return None
            node = child
        return node.entries

    def expect(self, parts: Parts) -> None:
        """Mark the entry ``parts`` and every directory above it as accounted for."""
        node = self.root
        node.expected = True
        last = len(parts) - 1
        for i, name in enumerate(parts):
            child = node.entries.get(name)
            if child is None:
                return
            if isinstance(child, Dir):
                child.expected = True
                node = child
                continue
            if i == last:
                node.entries[name] = _EXPECTED
            return  # a non-directory on the way: nothing below it is listed

    def unexpected(self, skip_top: tuple[bytes, ...] = ()) -> Iterator[Parts]:
        """The entries that :meth:`expect` did not mark, parents first, in name order (the
        entries of a directory that is not expected are not either). Top-level names in
        ``skip_top`` are left out with everything below them."""
        names: list[bytes] = []  # the path of the directory of the innermost frame
        stack = [iter(self.root.entries.items())]
        while stack:
            for name, node in stack[-1]:
                if not names and name in skip_top:
                    continue
                if isinstance(node, Dir):
                    names.append(name)
                    if not node.expected:
                        yield tuple(names)
                    stack.append(iter(node.entries.items()))
                    break
                if node is not _EXPECTED:
                    yield (*names, name)
            else:
                stack.pop()
                if names:
                    names.pop()


def walk(tree: LayerTree) -> Listing:
    """Every entry under the content directory, from the directory listings (no stat per
    entry), depth first with sorted names; symlinks are never followed. The stack holds one
    frame per level (its path's length, the subdirectories still to enter) and one name per
    level: no recursion, no path kept per entry."""
    listing = Listing()
    names: list[bytes] = []
    stack: list[tuple[int, Iterator[tuple[bytes, Dir]]]] = []
    _list_into(tree, listing, (), 0, listing.root, stack)
    while stack:
        length, subdirs = stack[-1]
        step = next(subdirs, None)
        if step is None:
            stack.pop()
            if names:
                names.pop()
            continue
        name, node = step
        names.append(name)
        child_length = length + 1 + len(name) if length else len(name)
        _list_into(tree, listing, tuple(names), child_length, node, stack)
    return listing


def _list_into(
    tree: LayerTree,
    listing: Listing,
    parts: Parts,
    length: int,
    node: Dir,
    stack: list[tuple[int, Iterator[tuple[bytes, Dir]]]],
) -> None:
    """List directory ``parts`` (``length`` bytes from the layer root) into ``node``, and push
    its frame (its subdirectories to enter) onto ``stack``."""
    subdirs: list[tuple[bytes, Dir]] = []
    stack.append((length, iter(subdirs)))  # filled below; a frame even when there are none
    found = tree.listdir(parts)
    if isinstance(found, Refusal):
        return
    entries = node.entries
    base = length + 1 if parts else 0  # the bytes of "parts/" before a child's name
    for name, kind in found:
        if too_deep(base + len(name)):
            if not listing.deep:
                listing.first_deep = (*parts, name)
            listing.deep += 1
            continue
        if kind == "dir":
            sub = Dir()
            entries[name] = sub
            subdirs.append((name, sub))
        else:
            entries[name] = kind
        listing.count += 1
