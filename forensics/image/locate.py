"""Where the Docker root (and a containerd root) lies in evidence held as a file: on which
volume of a disk image, or where in a tar archive.

Each tree (a volume's filesystem, or the archive) is searched:

- the places a root lives: ``var/lib/docker`` on a root filesystem, ``lib/docker`` on a
  separate ``/var``, ``docker`` on a volume mounted at ``/var/lib`` — and, generally, every
  directory named ``docker`` down to :data:`SEARCH_DEPTH` levels, which also finds a triage
  collection's ``HOSTNAME/var/lib/docker`` and an archive's ``docker/``; the tree's own root
  (an archive made with ``tar -C /var/lib/docker .``);
- the ``data-root`` (or the old ``graph``) of every ``etc/docker/daemon.json``, on the volume
  that holds it and, since the path may lie on another volume mounted below ``/``, as each of
  its tails on every volume (``/srv/docker`` is ``docker`` on the volume mounted at ``/srv``);
- containerd's roots: ``var/lib/containerd`` and every directory named ``containerd`` to the
  same depth that holds containerd's plugin directories (``io.containerd.*``), outside a
  Docker root (dockerd's own containerd state lies inside it).

A directory is a Docker root when the project's own detection (``detect_layout`` of
:mod:`forensics.stores.host`, which decides the layout of every root the tool reads) says it
is one: a layout other than ``unknown``. That function reads through an
:class:`~forensics.evidence.Evidence`; :class:`TreeView` is the minimal adapter that gives it
the three calls it makes (``listdir_or_empty``, ``names``, ``is_dir``) over a tree, until
``Evidence`` reads trees itself.

:func:`choose` turns the candidates into the one to read: one found is used; several need a
pick (``VOLUME:/PATH`` or ``/PATH``, as ``IMAGE:/path`` and ``--path`` will spell it); none is
an error that says what was searched.
"""

from __future__ import annotations

import stat
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from forensics.errors import ForensicsError, OperationalError, UsageError
from forensics.formats.jsonfile import JsonDamage, decode_json
from forensics.fs.tree import Parts, Refusal, Tree

#: how deep below a tree's root directories named ``docker``/``containerd`` are looked for
SEARCH_DEPTH = 4
#: directories listed in that search, at most, per tree
SEARCH_DIRS = 20_000
#: the largest daemon.json read
DAEMON_JSON_LIMIT = 1 << 20
#: where a Docker root lives, by what the volume is mounted at
KNOWN_PLACES: tuple[Parts, ...] = (
    (b"var", b"lib", b"docker"),
    (b"lib", b"docker"),
    (b"docker",),
)
CONTAINERD_PLACE: Parts = (b"var", b"lib", b"containerd")
DAEMON_JSON: Parts = (b"etc", b"docker", b"daemon.json")


@dataclass(frozen=True)
class Candidate:
    """A root found: on which volume (``p2``, ``vg0/root``, ``whole``, or ``archive``), the
    path inside it, ``docker`` or ``containerd``, and what made it one."""

    volume: str
    parts: Parts
    kind: str
    reason: str

    @property
    def path(self) -> str:
        return "/" + "/".join(p.decode("utf-8", "backslashreplace") for p in self.parts)

    @property
    def spec(self) -> str:
        """How to pick it: ``VOLUME:/PATH``."""
        return f"{self.volume}:{self.path}"


@dataclass
class Search:
    """What the search found and what it looked at (for the message when nothing is found)."""

    candidates: list[Candidate] = field(default_factory=list)
    searched: list[str] = field(default_factory=list)

    @property
    def docker(self) -> list[Candidate]:
        return [c for c in self.candidates if c.kind == "docker"]

    @property
    def containerd(self) -> list[Candidate]:
        return [c for c in self.candidates if c.kind == "containerd"]


class TreeView:
    """A directory of a tree seen through the three calls of :class:`~forensics.evidence.
    Evidence` that the layout detection makes (paths relative to ``top``, ``/``-separated)."""

    def __init__(self, tree: Tree, top: Parts) -> None:
        self.tree, self.top = tree, top
        self.root = "/" + "/".join(p.decode("utf-8", "surrogateescape") for p in top)

    def _parts(self, rel: str) -> Parts:
        return self.top + tuple(p.encode("utf-8", "surrogateescape") for p in rel.split("/") if p)

    def listdir_or_empty(self, rel: str) -> list[str]:
        listing = self.tree.listdir(self._parts(rel))
        if isinstance(listing, Refusal):
            return []
        return sorted(e.name.decode("utf-8", "surrogateescape") for e in listing.entries)

    def names(self, rel: str) -> set[str]:
        return set(self.listdir_or_empty(rel))

    def is_dir(self, rel: str) -> bool:
        st = self.tree.lstat(self._parts(rel))
        return not isinstance(st, Refusal) and stat.S_ISDIR(st.mode)


def docker_root_reason(tree: Tree, parts: Parts) -> str | None:
    """What makes ``parts`` of ``tree`` a Docker root (the layout detection's verdict), or
    None when it is none."""
    from forensics.model import Host
    from forensics.stores.host import detect_layout

    st = tree.lstat(parts)
    if isinstance(st, Refusal) or not stat.S_ISDIR(st.mode):
        return None
    view = TreeView(tree, parts)
    found = detect_layout(view, Host(root=view.root))  # type: ignore[arg-type]
    if found.layout == "unknown":
        return None
    if found.layout == "modern":
        return f"an image store ({found.store}) with driver {found.driver}"
    if found.layout == "legacy":
        return f"a legacy graph/ store (driver {found.driver or 'unknown'})"
    if found.layout == "containerd":
        return "Docker's containerd image store"
    return "Docker's directories (containers/, image/, volumes/, …) without an image store"


def containerd_root_reason(tree: Tree, parts: Parts) -> str | None:
    """What makes ``parts`` a containerd root: its ``io.containerd.*`` plugin directories."""
    listing = tree.listdir(parts)
    if isinstance(listing, Refusal):
        return None
    plugins = sorted(
        e.name.decode("utf-8", "replace")
        for e in listing.entries
        if e.name.startswith(b"io.containerd.")
    )
    if not any(
        p.startswith(("io.containerd.metadata.", "io.containerd.content.")) for p in plugins
    ):
        return None
    more = ", …" if len(plugins) > 3 else ""
    return f"containerd's plugin directories ({', '.join(plugins[:3])}{more})"


def search(trees: list[tuple[str, Tree]]) -> Search:
    """Every Docker and containerd root in ``trees`` (volume name, tree)."""
    result = Search()
    data_roots: list[tuple[str, Parts]] = []
    for volume, tree in trees:
        result.searched.append(
            f"{volume}: /, /var/lib/docker, /lib/docker, /docker, directories named docker or "
            f"containerd down to {SEARCH_DEPTH} levels, /etc/docker/daemon.json"
        )
        data_root = read_data_root(tree)
        if data_root is not None:
            data_roots.append((volume, data_root))
    seen: set[tuple[str, Parts]] = set()
    for volume, tree in trees:
        places: list[tuple[Parts, str]] = []
        for origin, root in data_roots:
            where = "/" + b"/".join(root).decode("utf-8", "backslashreplace")
            for i in range(len(root)):
                tail = root[i:]
                note = f"; data-root {where} in /etc/docker/daemon.json of {origin}"
                places.append((tail, note if i == 0 else f"{note}, as the volume mounted there"))
        places += [((), ""), *((p, "") for p in KNOWN_PLACES)]
        places += [(p, "") for p in _named_dirs(tree, b"docker")]
        for parts, note in places:
            if (volume, parts) in seen:
                continue
            reason = docker_root_reason(tree, parts)
            if reason is not None:
                seen.add((volume, parts))
                result.candidates.append(Candidate(volume, parts, "docker", reason + note))
        dockers = [c.parts for c in result.docker if c.volume == volume]
        for parts in [CONTAINERD_PLACE, *_named_dirs(tree, b"containerd")]:
            inside_docker = any(parts[: len(d)] == d for d in dockers)
            if (volume, parts) in seen or inside_docker:
                continue
            reason = containerd_root_reason(tree, parts)
            if reason is not None:
                seen.add((volume, parts))
                result.candidates.append(Candidate(volume, parts, "containerd", reason))
    _drop_nested(result)
    return result


def _drop_nested(result: Search) -> None:
    """A Docker root found inside another on the same volume (a layer's copy of
    ``/var/lib/docker`` in ``overlay2/…/diff``) is part of that one, not a root of the host."""
    docker = result.docker
    keep = []
    for c in result.candidates:
        outer = [
            d for d in docker if d.volume == c.volume and d.parts != c.parts
            and c.parts[: len(d.parts)] == d.parts
        ]  # fmt: skip
        if not outer:
            keep.append(c)
    result.candidates = keep


def read_data_root(tree: Tree) -> Parts | None:
    """The ``data-root`` (or ``graph``) that ``etc/docker/daemon.json`` sets, as path
    components, or None."""
    f = tree.open_file(DAEMON_JSON)
    if isinstance(f, Refusal):
        return None
    with f:
        try:
            data = f.read(DAEMON_JSON_LIMIT + 1)
        except OSError:
            return None
    if len(data) > DAEMON_JSON_LIMIT:
        return None
    try:
        config: Any = decode_json(data)
    except JsonDamage:
        return None
    if not isinstance(config, dict):
        return None
    value = config.get("data-root") or config.get("graph")
    if not isinstance(value, str) or not value.startswith("/"):
        return None
    parts = tuple(p.encode("utf-8", "surrogateescape") for p in value.split("/") if p)
    if not parts or any(p in (b".", b"..") for p in parts):
        return None
    return parts


def _named_dirs(tree: Tree, name: bytes) -> list[Parts]:
    """Directories called ``name`` down to :data:`SEARCH_DEPTH` levels (breadth first,
    within :data:`SEARCH_DIRS` listings), not descending into them."""
    found: list[Parts] = []
    queue: deque[Parts] = deque([()])
    listed = 0
    while queue and listed < SEARCH_DIRS:
        parts = queue.popleft()
        listing = tree.listdir(parts)
        listed += 1
        if isinstance(listing, Refusal):
            continue
        for entry in listing.entries:
            child = (*parts, entry.name)
            if entry.type and not stat.S_ISDIR(entry.type):
                continue
            if entry.name == name:
                found.append(child)
            elif len(child) < SEARCH_DEPTH:
                queue.append(child)
    return found


class LocateError(ForensicsError):
    """No Docker root, or several: the message says what was searched or how to pick."""


class NoDockerRoot(LocateError, OperationalError):
    """No Docker root is found (where the pick says, or anywhere searched)."""


class SeveralDockerRoots(LocateError, UsageError):
    """Several Docker roots are found and no pick says which: a choice for the user."""


def parse_pick(text: str) -> tuple[str | None, Parts]:
    """``VOLUME:/PATH`` or ``/PATH`` as (volume or None, path components)."""
    if text.startswith("/"):
        volume, path = "", text
    else:
        volume, _, path = text.partition(":")
    parts = tuple(p.encode("utf-8", "surrogateescape") for p in path.split("/") if p)
    return (volume or None), parts


def choose(found: Search, pick: str | None = None, evidence: str = "IMAGE") -> Candidate:
    """The Docker root to read: the one found, or the one ``pick`` names. Raises
    :class:`NoDockerRoot` when none is found, :class:`SeveralDockerRoots` when several are and
    no pick says which."""
    docker = found.docker
    if pick is not None:
        volume, parts = parse_pick(pick)
        named = [c for c in docker if c.parts == parts and volume in (None, c.volume)]
        if len(named) == 1:
            return named[0]
        if not named:
            raise NoDockerRoot(f"{evidence}: no Docker root at {pick}; " + _listing(found))
        docker = named
    if len(docker) == 1:
        return docker[0]
    if not docker:
        raise NoDockerRoot(
            f"{evidence}: no Docker root found. Searched: " + "; ".join(found.searched)
        )
    how = f"pick one as {evidence}:VOLUME:/PATH or with --path VOLUME:/PATH"
    lines = [f"{evidence}: {len(docker)} Docker roots; {how}:"]
    lines += [f"  {c.spec}  ({c.reason})" for c in docker]
    raise SeveralDockerRoots("\n".join(lines))


def _listing(found: Search) -> str:
    if not found.docker:
        return "none found. Searched: " + "; ".join(found.searched)
    return "found: " + ", ".join(c.spec for c in found.docker)
