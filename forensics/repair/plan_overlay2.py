"""overlay2's own bookkeeping in a repair plan: ``link`` files remade or rewritten, missing
``l/`` links made again, and short links whose layer is gone quarantined."""

from __future__ import annotations

import hashlib

from forensics.drivers import init_name, is_init_name, rw_name
from forensics.formats.ids import LINK_ID, short
from forensics.repair.actions import Action
from forensics.repair.planbase import PlannerBase, link_owner, quarantine_found, reason_of
from forensics.report import Finding

LINK_FILE_CHECKS = ("overlay2.link-missing", "overlay2.link-damaged")
LINK_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class Overlay2Planning(PlannerBase):
    def _orphan_links(self, removed: set[str]) -> list[Action]:
        actions = []
        for f in self.by_check["overlay2.link-orphan"]:
            if (f.check, f.path) in self.answered:
                continue
            link = f.path.rsplit("/", 1)[-1]
            target = self.host.links.get(link)
            owner = link_owner(target, self.links)
            if owner is None:
                self._skip(f, f"not a symlink of the form {self.links.target('<id>')}: left alone")
            elif owner in removed:
                continue  # quarantined with its directory
            elif self.ev.lstat(self.layout.layer(owner)) is not None:
                self._skip(f, f"its target {self.layout.layer(owner)} exists: left alone")
            else:
                actions.append(
                    quarantine_found(
                        f,
                        f"points to {target!r}, which does not exist: no layer can use it",
                        f"link {link}",
                        kind="symlink",
                        summary="a short link whose layer directory is gone",
                        what="a short link whose layer directory is gone",
                    )
                )
        return actions

    # -- relink ------------------------------------------------------------------------------

    def _relinks(self, removed: set[str]) -> list[Action]:
        actions = []
        for f in self.by_check["overlay2.link-dangling"]:
            name = f.object_id or ""
            ddir = self.host.driver_dirs.get(name)
            if ddir is None or name in removed:
                continue
            link = ddir.link or ""
            why = self._relink_refusal(name, link)
            if why:
                self._skip(f, why)
                continue
            how = f"recreated from {self.links.file(name)}"
            actions.append(self._relink_action(f, name, link, how))
        return actions

    def _relink_action(self, f: Finding, name: str, link: str, how: str) -> Action:
        return Action(
            "relink",
            self.links.link(link),
            reason_of(f, how),
            [f.check],
            "makes the link overlay2 made for this layer, from the layer's own link file (as "
            "containers/storage does); nothing that exists is changed",
            f"driver-dir {name}",
            target=self.links.target(name),
            summary=f"the missing short link of layer directory {short(name)}",
        )

    def _relink_refusal(self, name: str, link: str) -> str | None:
        ddir = self.host.driver_dirs[name]
        links = self.links
        if not LINK_ID.fullmatch(link):
            return "the layer's link file holds no valid link id: nothing to link"
        if not ddir.has_diff:
            return f"{self._content(name)} is missing: a link to it would dangle"
        if link in self.host.links or self.ev.lstat(links.link(link)) is not None:
            return f"{links.link(link)} exists and points elsewhere: left alone"
        if not self.ev.is_dir(links.directory):
            return f"{links.directory} is no directory: left alone"
        sharing = [d for d in self.dirs_by_link.get(link, []) if d != name]
        if sharing:
            return f"{self.layout.layer(sharing[0])} has the same link id: ownership in doubt"
        return None

    def _content(self, name: str) -> str:
        """The directory that a short link of ``name`` points to (its diff)."""
        content = self.layout.content
        assert content is not None
        return content(name)

    # -- link files --------------------------------------------------------------------------

    def _link_files(self, removed: set[str]) -> list[Action]:
        """A layer directory whose ``link`` file is missing or damaged gets it back: with the
        id its ``l/`` symlink or its children's ``lower`` files still name, else a new one."""
        actions: list[Action] = []
        for check in LINK_FILE_CHECKS:
            for f in self.by_check[check]:
                name = f.object_id or ""
                if name not in self.host.driver_dirs or name in removed:
                    continue
                actions += self._link_file_actions(f, name)
        return actions

    def _link_file_actions(self, f: Finding, name: str) -> list[Action]:
        ddir = self.host.driver_dirs[name]
        rel = self.links.file(name)
        kind = self._kind(rel)
        if kind not in (None, "file"):
            self._skip(f, f"{rel} is a {kind}, not a file: left alone")
            return []
        link, source = self._recover_link_id(name)
        if link is None:
            self._skip(f, source)
            return []
        new_link = link not in self.host.links
        if new_link and not ddir.has_diff:
            self._skip(f, f"{self._content(name)} is missing: a link to it would dangle")
            return []
        checks = [f.check]
        for orphan in self.by_check["overlay2.link-orphan"]:
            if orphan.path == self.links.link(link):
                self.answered.add((orphan.check, orphan.path))
                checks.append(orphan.check)
        what = f"link id {link}, {source}"
        action = Action(
            "rewrite" if kind else "create",
            rel,
            reason_of(f, what),
            sorted(checks),
            "overlay2 reads a layer's link file to stack other layers on it; the file gets the "
            "id that still names the layer"
            + ("" if kind is None else ", the original is quarantined"),
            f"driver-dir {name}",
            kind=kind,
            summary=f"the link file of layer directory {short(name)}: {what}",
            content=link.encode(),
            mode=0o644,
            details={"link": link, "from": source},
        )
        actions = [action]
        if new_link:
            actions.append(self._relink_action(f, name, link, "made with the new link file"))
        return actions

    def _recover_link_id(self, name: str) -> tuple[str | None, str]:
        """(link id, where it comes from), or (None, why none can be trusted)."""
        links = self.links
        target = links.target(name)
        pointing = sorted(k for k, v in self.host.links.items() if v == target)
        if len(pointing) > 1:
            return (
                None,
                f"{len(pointing)} links in {links.directory} point to it: ownership in doubt",
            )
        if pointing:
            return pointing[0], f"from {links.link(pointing[0])}, which points to its diff/"
        named = self._links_named_by_children(name)
        if len(named) > 1:
            return None, "its children's lower files name different links: in doubt"
        if named:
            (link,) = named
            if link in self.host.links:
                return None, f"{links.link(link)} points elsewhere: in doubt"
            return link, "from the lower files of the layers stacked on it"
        if self._children(name):
            return None, "layers stacked on it name no link: in doubt"
        return self._new_link_id(name), "a new id (nothing names the old one)"

    def _children(self, name: str) -> list[str]:
        """Driver dirs stacked directly on ``name`` (layers and init layers)."""
        layers = {lay.id for lay in self.host.layers.values() if lay.cache_id == name}
        out = [lay.cache_id for lay in self.host.layers.values()
               if lay.parent in layers and lay.cache_id]  # fmt: skip
        for mount in self.host.mounts.values():
            if mount.parent in layers:
                out.append(mount.init_id or init_name(mount.mount_id or ""))
        if is_init_name(name):
            out.append(rw_name(name))
        return [d for d in out if d in self.host.driver_dirs]

    def _links_named_by_children(self, name: str) -> set[str]:
        named = set()
        entry = self.layout.lower.entry if self.layout.lower is not None else None
        for child in self._children(name):
            lower = self.host.driver_dirs[child].lower or []
            link = entry.ident(lower[0]) if entry is not None and lower else None
            if link is not None:
                named.add(link)
        return {n for n in named if LINK_ID.fullmatch(n)}

    def _new_link_id(self, name: str) -> str:
        """A link id of overlay2's form, derived from the directory name (so that two dry runs
        print the same plan) and not used yet."""
        seed = name.encode()
        while True:
            digest = hashlib.sha256(seed).digest()
            link = "".join(LINK_ALPHABET[b % 32] for b in digest[:26])
            if link not in self.host.links and link not in self.dirs_by_link:
                return link
            seed = digest
