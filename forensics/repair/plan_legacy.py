"""The legacy layout in a repair plan: names and links of removed containers taken out of
``linkgraph.db``, as dockerd 1.x's ``Purge`` does."""

from __future__ import annotations

from forensics.evidence import ReadFailure
from forensics.formats.ids import short
from forensics.repair.actions import Action
from forensics.repair.linkgraph import LinkgraphError, purge_entities
from forensics.repair.planbase import PlannerBase, plural
from forensics.stores.legacy import LINKGRAPH, LINKGRAPH_LIMIT, LINKGRAPH_WAL


class LegacyPlanning(PlannerBase):
    # -- legacy names ------------------------------------------------------------------------

    def _rewrite_linkgraph(self, purged: dict[str, str]) -> list[Action]:
        """One rewrite of ``linkgraph.db`` without the names and links of the containers that
        are quarantined and of those that no longer exist (dockerd's ``Purge``)."""
        if self.host.layout != "legacy":
            return []
        stale = {
            e for e, _, _ in self.host.link_edges if e != "0" and e not in self.host.containers
        }
        named = {e for e, _, _ in self.host.link_edges} | {p for _, p, _ in self.host.link_edges}
        entities = (purged.keys() & named) | stale
        findings = self.by_check["linkgraph.container-missing"]
        if not entities:
            return []
        if self._kind(LINKGRAPH) != "file":
            for f in findings:
                self._skip(f, f"{LINKGRAPH} is no regular file: left alone")
            return []
        if self._kind(LINKGRAPH_WAL) is not None:
            # a rewrite of the file alone would be overlaid by the log's stale frames
            for f in findings:
                self._skip(f, f"{LINKGRAPH} has a write-ahead log ({LINKGRAPH_WAL}): left alone")
            return []
        try:
            new, removed = purge_entities(self.ev.read_bytes(LINKGRAPH, LINKGRAPH_LIMIT), entities)
        except (ReadFailure, LinkgraphError) as exc:
            for f in findings:
                self._skip(f, f"{LINKGRAPH} {exc}: left alone")
            return []
        for f in findings:
            self.answered.add((f.check, f.path))
        names = [f"{'' if p == '0' else short(p) + '/'}{n} -> {short(e)}" for e, p, n in removed]
        return [
            Action(
                "rewrite",
                LINKGRAPH,
                f"{', '.join(names)} taken out, as dockerd's containerGraph.Purge does when it "
                "removes a container",
                sorted({f.check for f in findings} | {purged[e] for e in entities & purged.keys()}),
                "only the rows of containers that are gone or quarantined are deleted (in a copy "
                "in memory, checked with SQLite's integrity check); the original is quarantined",
                "linkgraph",
                kind="file",
                summary=f"{plural(len(removed), 'name')} of removed containers taken out",
                content=new,
                mode=self._mode(LINKGRAPH),
                details={"removed": names},
            )
        ]
