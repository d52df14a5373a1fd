"""What ``diff`` compares for a container of a containerd store: its writable snapshot's
``fs/`` over its parent chain, against the parent chain alone.

moby's ``Changes`` on the containerd image store (``daemon/containerd/image_changes.go``)
mounts the container's snapshot and a view of its parent (``<id>-init`` for Docker 29's
containers) and compares the two trees with ``archive.ChangesDirs``: the same comparison as
overlay2's, over the overlayfs snapshotter's directories (``snapshots/<id>/fs``, whiteouts and
opaque directories as overlay keeps them). So the plan is an ordinary
:class:`~forensics.layers.diff.DiffPlan` — the container's snapshot and its parents, top first,
against the parents — and :func:`~forensics.layers.diff.container_diff` applies the rules.

Two kinds of container have such a snapshot: Docker 29's (``containers/<id>/config.v2.json``
with a snapshotter as ``Driver``: snapshot ``<id>`` in namespace ``moby``) and containerd's own
(a record with a snapshot key, in any namespace: a Kubernetes node's are in ``k8s.io``).
"""

from __future__ import annotations

from forensics.containerd_graph import DOCKER_NAMESPACE, snapshot_chain
from forensics.containerd_model import ContainerdHost, CtrNamespace
from forensics.drivers import OVERLAY_WHITEOUTS, SNAPSHOTTERS
from forensics.layers.diff import DiffPlan
from forensics.lookup import NoSuchContainer
from forensics.model import Host

__all__ = ["containerd_container", "docker_snapshot_plan", "snapshot_fs", "snapshot_plan"]


def snapshot_fs(ctd: ContainerdHost, snapshotter: str, ident: int) -> str:
    """The files of snapshot directory ``ident`` of a directory snapshotter of the driver table
    (``snapshots/<id>/fs`` of overlayfs), relative to the evidence root of the store."""
    content = SNAPSHOTTERS[snapshotter].content
    assert content is not None
    rel = content(str(ident))
    return f"{ctd.store.root}/{rel}" if ctd.store.root else rel


def docker_snapshot_plan(host: Host, container_id: str) -> DiffPlan | str:
    """The plan of Docker 29's container ``container_id`` (its ``Driver`` a snapshotter), or
    why there is none."""
    container = host.containers[container_id]
    ctd = host.containerd
    if ctd is None:
        return (
            f"container {container_id}: its layers are in a containerd store that was not "
            "found (give it with --containerd-root)"
        )
    ns = ctd.store.namespaces.get(DOCKER_NAMESPACE)
    if ns is None:
        return f"container {container_id}: the containerd store has no namespace moby"
    return snapshot_plan(host, ns, container.driver or "", container_id, container_id)


def snapshot_plan(
    host: Host, ns: CtrNamespace, snapshotter: str, key: str, shown: str
) -> DiffPlan | str:
    """The plan of the snapshot ``key`` of ``ns`` (the container ``shown``) in the containerd
    store of ``host``, or why there is none: its snapshot, or one of its parents, is not
    recorded, or not a directory of a snapshotter whose files this tool reads."""
    ctd = host.containerd
    assert ctd is not None
    sn = ctd.store.snapshotters.get(snapshotter)
    if snapshotter not in SNAPSHOTTERS or sn is None:
        return (
            f"container {shown}: the {snapshotter or 'unknown'} snapshotter's files cannot be read"
        )
    if (snapshotter, key) not in ns.snapshots:
        return (
            f"container {shown}: its writable snapshot {key} is not in namespace {ns.name} "
            "(rw layer snapshot not found)"
        )
    dirs: list[str] = []
    chain = snapshot_chain(ns, snapshotter, key)
    for n, name in enumerate(chain):
        record = ns.snapshots.get((snapshotter, name))
        if record is None:
            below = chain[n - 1] if n else key
            return f"container {shown}: snapshot {below}'s parent {name} is not recorded"
        backend = sn.snapshots.get(record.name)
        if backend is None or backend.id is None:
            return (
                f"container {shown}: snapshot {name} is not in the {snapshotter} "
                f"snapshotter's database ({sn.db_path})"
            )
        dirs.append(snapshot_fs(ctd, snapshotter, backend.id))
    root = ctd.location if ctd.external else host.root  # where the store's paths start
    return DiffPlan(root, shown, snapshotter, tuple(dirs), tuple(dirs[1:]), OVERLAY_WHITEOUTS.name)


def containerd_container(ctd: ContainerdHost, wanted: str) -> tuple[CtrNamespace, str]:
    """The namespace and id of containerd's container ``wanted``: ``<namespace>/<id>``, or an
    id that one namespace alone has. Raises NoSuchContainer."""
    ns_name, slash, cid = wanted.partition("/")
    if slash and ns_name in ctd.store.namespaces:
        ns = ctd.store.namespaces[ns_name]
        if cid in ns.containers:
            return ns, cid
    holding = [ns for ns in ctd.store.namespaces.values() if wanted in ns.containers]
    if len(holding) == 1:
        return holding[0], wanted
    if holding:
        names = ", ".join(sorted(f"{ns.name}/{wanted}" for ns in holding))
        raise NoSuchContainer(
            f"{len(holding)} namespaces have a container {wanted}: name one ({names})"
        )
    raise NoSuchContainer(f"No such container: {wanted}")
