"""Rules on the storage driver's directories: what references them, and the driver's own
bookkeeping where its row (:mod:`forensics.drivers`) has some: short links and the lower
files that name them (overlay2 ``link``/``lower``/``l/``), a list of parents (aufs
``layers/``), the image's top layer (overlay ``lower-id``)."""

from __future__ import annotations

from collections.abc import Iterator

from forensics.checks.catalog import finding
from forensics.checks.common import problem_findings, short
from forensics.drivers import DriverLayout, Links, Lower, init_name, is_init_name, layout_of
from forensics.formats.ids import LINK_ID, MOUNT_ID
from forensics.model import DriverDir, Host
from forensics.report import Finding


def referenced_driver_dirs(host: Host) -> dict[str, str]:
    """Driver dir name → what references it (``layer:<id>``, ``mount:<cid>``, ``init:<cid>``)."""
    refs: dict[str, str] = {}
    for layer in host.layers.values():
        if layer.cache_id:
            refs[layer.cache_id] = f"layer:{layer.id}"
    if host.layout == "modern":
        for mount in host.mounts.values():
            if mount.mount_id:
                refs[mount.mount_id] = f"mount:{mount.container_id}"
            if mount.init_id:
                refs[mount.init_id] = f"init:{mount.container_id}"
    else:
        for cid in host.containers:
            refs[cid] = f"mount:{cid}"
            refs[init_name(cid)] = f"init:{cid}"
    if host.legacy is not None:  # a migrated root: graph/ still owns what it did not migrate
        for gid in host.legacy.layers:
            refs.setdefault(gid, f"graph:{gid}")
    return refs


def expected_lowers(host: Host, refs: dict[str, str]) -> dict[str, list[str]]:
    """Driver dir name → the driver dirs below it, nearest first (what overlay2 ``lower`` and aufs
    ``layers/<id>`` must list)."""
    out: dict[str, list[str]] = {}
    chains = _CacheChains(host)
    for name, ref in refs.items():
        kind, ident = ref.split(":", 1)
        if kind == "graph":
            continue
        if kind == "layer":
            out[name] = chains.below(host.layers[ident].parent)
        else:
            chain = chains.below(_container_image_top(host, ident))
            init = _init_id(host, ident)
            out[name] = ([init] + chain) if kind == "mount" and init else chain
    return out


def _container_image_top(host: Host, cid: str) -> str | None:
    if host.layout == "modern":
        mount = host.mounts.get(cid)
        return mount.parent if mount else None
    container = host.containers.get(cid)
    return container.image_id if container else None


def _init_id(host: Host, cid: str) -> str | None:
    """The init layer of container ``cid``: from its mount record where there is one (the
    record stays when the container's own directory is gone)."""
    if host.layout == "modern":
        mount = host.mounts.get(cid)
        return mount.init_id if mount else None
    container = host.containers.get(cid)
    return container.init_id if container else None


class _CacheChains:
    """The cache ids of a layer and its ancestors, nearest first, computed once per layer.
    A ``"?"`` ends a chain whose next layer is unknown (the comparison is then skipped)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.memo: dict[str, list[str]] = {}

    def below(self, start: str | None) -> list[str]:
        if not start:
            return []
        known = self.memo.get(start)
        if known is not None:
            return known
        walk: list[str] = []  # layers whose chains are still to compute, nearest first
        current: str | None = start
        tail: list[str] = []
        while current:
            if current in self.memo:
                tail = self.memo[current]
                break
            layer = self.host.layers.get(current)
            if layer is None or not layer.cache_id or current in walk:
                tail = ["?"]
                break
            walk.append(current)
            current = layer.parent
        for layer_id in reversed(walk):
            tail = [self.host.layers[layer_id].cache_id or "?", *tail]
            self.memo[layer_id] = tail
        return self.memo.get(start, tail)


def check_driver_dirs(host: Host) -> Iterator[Finding]:
    if host.layout not in ("modern", "legacy") or not host.driver:
        return
    refs = referenced_driver_dirs(host)
    yield from _check_orphans(host, refs)
    layout = layout_of(host.driver)
    lower = layout.lower if layout is not None else None
    if layout is None or lower is None:
        return  # no parents on disk: nothing of the driver's own to hold against the chain
    if layout.links is not None:
        yield from _check_linked_lowers(host, layout, layout.links, lower, refs)
    elif lower.reach == "chain":
        yield from _check_parent_lists(host, layout, lower, refs, expected_lowers(host, refs))
    else:
        yield from _check_top_lowers(host, layout, lower, refs, expected_lowers(host, refs))


def _check_orphans(host: Host, refs: dict[str, str]) -> Iterator[Finding]:
    for name, ddir in host.driver_dirs.items():
        if name in refs:
            continue
        ident = {"object_type": "driver-dir", "object_id": name}
        if name in host.buildkit_keys:
            yield finding(
                "driver.buildkit-dir",
                ddir.path,
                "named in BuildKit's database: BuildKit's own",
                **ident,
            )
        elif MOUNT_ID.fullmatch(name):
            yield finding(
                "driver.orphan-dir",
                ddir.path,
                "no layer, container mount or init layer references this directory",
                **ident,
            )
        else:
            owner = (
                "may be BuildKit's (buildkit/ is present)"
                if host.buildkit_present
                else "owner unknown"
            )
            yield finding(
                "driver.unknown-dir", ddir.path, f"referenced by nothing; {owner}", **ident
            )


def _check_linked_lowers(
    host: Host, layout: DriverLayout, links: Links, lower: Lower, refs: dict[str, str]
) -> Iterator[Finding]:
    """overlay2's rules: each directory's diff, link file, short link and lower file."""
    yield from _check_links_dir(host)
    named_links: set[str] = set()
    lowers = _Overlay2Lowers(host, lower.entry.prefix)
    sound = _SoundDir(host, links)
    # the sound directories (nearly all) in any order; the others by name, rule by rule
    unsound: list[tuple[str, DriverDir, list[str] | None]] = []
    driver_dirs, expected_of = host.driver_dirs, lowers.expected
    for name, ref in refs.items():
        ddir = driver_dirs.get(name)
        if ddir is None:
            continue  # reported as a missing driver dir by the layer and mount rules
        if ddir.link:
            named_links.add(ddir.link)
        expected = expected_of(ref)
        if not sound(ddir, expected):
            unsound.append((name, ddir, expected))
    unsound.sort(key=_first)
    for _, ddir, expected in unsound:
        yield from _check_overlay2_dir(host, layout, links, ddir)
        yield from _check_overlay2_lower(layout, lower, ddir, expected)
    for ddir in host.driver_dirs.values():
        if ddir.id not in refs and ddir.link:
            named_links.add(ddir.link)
    for link in sorted(set(host.links) - named_links):
        yield finding(
            "overlay2.link-orphan", links.link(link), "no layer's link file names this link"
        )


def _first(item: tuple[str, DriverDir, list[str] | None]) -> str:
    return item[0]


def _check_links_dir(host: Host) -> Iterator[Finding]:
    """``l/`` itself: without it no layer can be mounted (each link is then dangling too, and
    reported as a consequence of this finding)."""
    problem = host.problems.get("overlay2-links")
    if problem is None or not host.driver_dirs:
        return
    how = "missing" if problem.damage == "missing" else "damaged"
    check = f"overlay2.links-dir-{how}"
    yield finding(
        check,
        problem.path,
        f"the directory of short links: {problem.detail}: no layer can be mounted",
        object_type="driver",
        object_id=host.driver,
        damage=problem.damage,
    )


#: a lower chain that cannot be known (see :class:`_Overlay2Lowers`)
UNKNOWN: None = None


class _SoundDir:
    """The common case in one test: a directory in which the two rules below find nothing
    (its diff/, its link and l/ symlink, its lower). Tens of thousands of directories go
    through here; only the others are looked at rule by rule."""

    def __init__(self, host: Host, links: Links) -> None:
        self.links = host.links
        self.before, self.after = links.target.prefix, links.target.suffix

    def __call__(self, ddir: DriverDir, expected: list[str] | None) -> bool:
        link = ddir.link
        return (
            ddir.has_diff
            and not ddir.problems
            and link is not None
            and LINK_ID.fullmatch(link) is not None
            and self.links.get(link) == f"{self.before}{ddir.id}{self.after}"
            and (expected is UNKNOWN or ddir.lower == (expected or None))
        )


class _Overlay2Lowers:
    """The ``lower`` file that overlay2 writes into each directory: ``l/<link>`` of every
    directory below, nearest first. It is computed once per layer from its parent's, so the
    whole host costs one step per layer rather than one per layer of every chain.

    None where it cannot be known: a layer of the chain is unknown, has no cache id, sits in a
    loop, or its directory or link is missing. The comparison is then skipped: those gaps are
    reported by the rules on layers and links.
    """

    def __init__(self, host: Host, entry_prefix: str) -> None:
        self.host = host
        #: what a lower entry holds before the link id (``l/``)
        self.entry = entry_prefix
        #: layer id -> the lower entries of the layer and its ancestors, nearest first
        self.memo: dict[str, list[str] | None] = {}

    def expected(self, ref: str) -> list[str] | None:
        """The lower entries expected in the directory that ``ref`` (see
        :func:`referenced_driver_dirs`) names; [] when nothing is below it."""
        kind, ident = ref.split(":", 1)
        if kind == "graph":
            return []
        if kind == "layer":
            return self.chain(self.host.layers[ident].parent)
        chain = self.chain(_container_image_top(self.host, ident))
        init = _init_id(self.host, ident)
        if kind != "mount" or not init or chain is UNKNOWN:
            return chain
        link = self._link_of(init)
        return UNKNOWN if link is None else [f"{self.entry}{link}", *chain]

    def chain(self, start: str | None) -> list[str] | None:
        """The lower entries of layer ``start`` and its ancestors, nearest first."""
        if not start:
            return []
        if start in self.memo:
            return self.memo[start]
        walk: list[str] = []  # layers whose entries are still to compute, nearest first
        seen: set[str] = set()
        current: str | None = start
        tail: list[str] | None = []
        while current:
            if current in self.memo:
                tail = self.memo[current]
                break
            layer = self.host.layers.get(current)
            if layer is None or not layer.cache_id or current in seen:
                tail = UNKNOWN
                break
            walk.append(current)
            seen.add(current)
            current = layer.parent
        for layer_id in reversed(walk):
            if tail is not UNKNOWN:
                link = self._link_of(self.host.layers[layer_id].cache_id)
                tail = UNKNOWN if link is None else [f"{self.entry}{link}", *tail]
            self.memo[layer_id] = tail
        return self.memo.get(start, tail)

    def _link_of(self, name: str | None) -> str | None:
        """The link id of driver dir ``name``; None when it, or its link, is missing."""
        if not name or name == "?":
            return None
        ddir = self.host.driver_dirs.get(name)
        return ddir.link if ddir is not None else None


def _check_overlay2_dir(
    host: Host, layout: DriverLayout, links: Links, ddir: DriverDir
) -> Iterator[Finding]:
    ident = {"object_type": "driver-dir", "object_id": ddir.id}
    if not ddir.has_diff and layout.content is not None:
        yield finding(
            "overlay2.diff-missing",
            layout.content(ddir.id),
            f"the layer has no {layout.content.leaf}/ directory",
            **ident,
        )
    if links.key in ddir.problems:
        yield from problem_findings(
            layout.checks,
            ddir.problems,
            {links.key: links.words},
            "driver-dir",
            ddir.id,
            (links.key,),
        )
        return
    if ddir.link is None:
        yield finding(
            "overlay2.link-missing",
            links.file(ddir.id),
            "no link file: mounts of this layer fail",
            **ident,
        )
        return
    if not LINK_ID.fullmatch(ddir.link):
        yield finding(
            "overlay2.link-damaged",
            links.file(ddir.id),
            f"malformed link id {ddir.link[:80]!r}",
            **ident,
        )
        return
    target = host.links.get(ddir.link)
    expected = links.target(ddir.id)
    if ddir.link not in host.links:
        yield finding(
            "overlay2.link-dangling",
            links.link(ddir.link),
            f"missing: layer {short(ddir.id)} cannot be mounted as a lower layer",
            **ident,
        )
    elif target != expected:
        yield finding(
            "overlay2.link-dangling",
            links.link(ddir.link),
            f"points to {target!r}, not to {expected!r}"
            if target is not None
            else f"is not a symlink (it should point to {expected!r})",
            **ident,
        )


def _check_overlay2_lower(
    layout: DriverLayout, lower: Lower, ddir: DriverDir, expected: list[str] | None
) -> Iterator[Finding]:
    """``lower`` against the parent chain (``expected``; None when it cannot be known)."""
    ident = {"object_type": "driver-dir", "object_id": ddir.id}
    if lower.key in ddir.problems:
        yield from problem_findings(
            layout.checks,
            ddir.problems,
            {lower.key: lower.words},
            "driver-dir",
            ddir.id,
            (lower.key,),
        )
        return
    if expected is UNKNOWN:
        return  # a link of the chain is already reported missing
    if ddir.lower != (expected or None):
        shown = ":".join(ddir.lower) if ddir.lower else "absent"
        yield finding(
            "overlay2.lower-mismatch",
            lower.file(ddir.id),
            f"lower is {shown[:200]}, the parent chain gives {':'.join(expected) or 'none'}",
            **ident,
        )


def _check_parent_lists(
    host: Host,
    layout: DriverLayout,
    lower: Lower,
    refs: dict[str, str],
    lowers: dict[str, list[str]],
) -> Iterator[Finding]:
    """aufs' rule: each directory's list of parents against the layer chain."""
    for name in sorted(refs):
        ddir = host.driver_dirs.get(name)
        if ddir is None:
            continue
        ident = {"object_type": "driver-dir", "object_id": name}
        if ddir.problems:
            yield from problem_findings(
                layout.checks, ddir.problems, {lower.key: lower.words}, "driver-dir", name
            )
            continue
        below = lowers.get(name)
        if below is not None and "?" not in below and (ddir.lower or []) != below:
            yield finding(
                "aufs.lower-mismatch",
                lower.file(name),
                f"lists {len(ddir.lower or [])} parents, the layer chain gives {len(below)} "
                f"({', '.join(short(b) for b in below) or 'none'})",
                **ident,
            )


def _check_top_lowers(
    host: Host,
    layout: DriverLayout,
    lower: Lower,
    refs: dict[str, str],
    lowers: dict[str, list[str]],
) -> Iterator[Finding]:
    """overlay (v1): image layers hold a full ``root/``; container and init layers hold
    ``upper/`` and a ``lower-id`` naming the image's top layer (the init layer's upper is copied
    into the container's, so both name the same lower)."""
    assert layout.content is not None and layout.upper is not None
    data = {True: f"{layout.content.leaf}/", False: f"{layout.upper.leaf}/"}
    for name in sorted(refs):
        ddir = host.driver_dirs.get(name)
        if ddir is None:
            continue
        ident = {"object_type": "driver-dir", "object_id": name}
        is_layer = refs[name].startswith(("layer:", "graph:"))
        if not ddir.has_diff:
            yield finding(
                "overlay.data-missing", ddir.path, f"no {data[is_layer]} directory", **ident
            )
        if lower.key in ddir.problems:
            yield from problem_findings(
                layout.checks, ddir.problems, {lower.key: lower.words}, "driver-dir", name
            )
            continue
        if is_layer:
            continue
        below = [b for b in lowers.get(name, []) if not is_init_name(b)]
        expected = below[:1] or None
        if "?" not in below and ddir.lower != expected:
            yield finding(
                "overlay.lower-mismatch",
                lower.file(name),
                f"lower-id is {(ddir.lower or ['absent'])[0][:80]!r}, the image's top layer is "
                f"{(expected or ['none'])[0]!r}",
                **ident,
            )
