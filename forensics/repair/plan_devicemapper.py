"""devicemapper in a repair plan: the thin device behind a record, mount points without a
record, a pending transaction settled, and a repaired copy of damaged pool metadata. The pool's
metadata is never written: the steps that put a repaired copy in place on a Docker host
(:func:`install_steps`, also printed by ``thin repair``) are left to the operator."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from forensics.drivers import DEVICEMAPPER_POOL
from forensics.repair.actions import POOL_COPY, Action
from forensics.repair.planbase import PlannerBase, plural, reason_of

THIN = DEVICEMAPPER_POOL
TRANSACTION_FILE = THIN.transaction


class DeviceMapperPlanning(PlannerBase):
    # -- devicemapper ------------------------------------------------------------------------

    def _device_details(self, name: str) -> dict[str, Any]:
        """For a device record: the thin device it names, which stays in the pool."""
        device = self.host.devices.get(name)
        ds = self.host.deviceset
        if self.layout.thin is None or device is None or device.device_id is None:
            return {}
        pool = ds.pool if ds is not None else None
        if pool is None or not pool.readable or device.device_id not in pool.devices:
            return {"pool_device": device.device_id, "in_pool": False}
        return {
            "pool_device": device.device_id,
            "in_pool": True,
            "reclaim": (
                f"thin device {device.device_id} stays in the pool (its metadata is never "
                "rewritten here): with the pool active and dockerd stopped, "
                f"'dmsetup message <pool> 0 \"delete {device.device_id}\"' frees its blocks "
                "(<pool>: the docker-…-pool of 'dmsetup ls')"
            ),
        }

    def _settle_transaction(self, planned: set[str]) -> list[Action]:
        """A pending devicemapper transaction settled as dockerd's rollbackTransaction does,
        where that needs no live pool: the device it created is not in the pool, so its record
        and the transaction file go (dockerd then finds no open transaction)."""
        findings = self.by_check["thinpool.transaction-pending"]
        findings += self.by_check["devicemapper.transaction-pending"]
        ds = self.host.deviceset
        if not findings or ds is None:
            return []
        pool = ds.pool
        device_id = ds.transaction_device_id
        if pool is None or not pool.readable or pool.damaged or device_id is None:
            for f in findings:
                self._skip(f, "the pool's metadata cannot be read cleanly: dockerd settles it")
            return []
        if device_id in pool.devices:
            for f in findings:
                self._skip(
                    f,
                    f"thin device {device_id} is in the pool: dockerd deletes it and its record "
                    "when it starts (that needs the live pool)",
                )
            return []
        checks = sorted({f.check for f in findings})
        actions = []
        thin = self.layout.thin
        record = thin.record(ds.transaction_hash) if thin and ds.transaction_hash else None
        if record and self._kind(record) == "file" and record not in planned:
            actions.append(
                Action(
                    "quarantine",
                    record,
                    reason_of(findings[0], f"the record of device {device_id}"),
                    checks,
                    f"the record of thin device {device_id}, which the pool does not have: the "
                    "unfinished transaction's device; dockerd removes this record itself",
                    "transaction",
                    kind="file",
                    summary=f"the record of the never-created device {device_id}",
                )
            )
        actions.append(
            Action(
                "quarantine",
                TRANSACTION_FILE,
                reason_of(findings[0], "the transaction is closed"),
                checks,
                "dockerd removes this file when it rolls a transaction back; without it, it "
                "finds no open transaction",
                "transaction",
                kind=self._kind(TRANSACTION_FILE),
                summary=f"the open transaction {ds.open_transaction_id}, settled",
            )
        )
        return actions

    def _pool_copy(self) -> list[Action]:
        """Damaged pool metadata: a repaired copy written into the quarantine run (never over
        the original), with the steps that put it in place."""
        findings = self.by_check["thinpool.damaged"] + self.by_check["thinpool.unreadable"]
        ds = self.host.deviceset
        if not findings or ds is None or ds.pool is None:
            return []
        path = ds.pool.path
        from forensics.repair.poolcopy import PoolCopyError, salvage_pool

        if self._kind(path) != "file":
            for f in findings:
                self._skip(f, f"{path} is no regular file: no copy can be made")
            return []
        try:
            salvage, overrides = salvage_pool(self.ev.abspath(path), self.host)
        except PoolCopyError as exc:
            for f in findings:
                self._skip(f, str(exc))
            return []
        summary = salvage.summary
        details: dict[str, Any] = {
            "copy": POOL_COPY,
            "devices": len(summary.devices),
            "mappings": summary.mappings_written,
            "losses": summary.losses,
            "lost": summary.lost + [n for d in summary.devices for n in d.notes if not d.complete],
            "steps": [
                s.as_dict() for s in install_steps(self.ev.abspath(path), f"RUN/{POOL_COPY}")
            ],
        }
        if overrides:
            details["superblock_from_docker"] = overrides
        loss = "with losses" if summary.losses else "nothing lost"
        devices = plural(len(summary.devices), "device")
        what = f"{devices}, {summary.mappings_written} mappings, {loss}"
        return [
            Action(
                "copy-out",
                path,
                reason_of(findings[0], f"a repaired copy: {what}"),
                sorted({f.check for f in findings}),
                "the pool's metadata is only read: the repaired copy is written into the "
                "quarantine run, and putting it in place is left to you (see the steps)",
                "pool",
                kind="file",
                target=POOL_COPY,
                summary=f"a repaired copy of the thin pool's metadata ({what})",
                details=details,
            )
        ]


# -- putting a repaired copy of the pool's metadata in place -------------------------------------

#: where Docker keeps a loop-lvm pool's metadata (under its default root)
DOCKER_METADATA = Path("/var/lib/docker", THIN.pool_metadata)
#: the pool metadata file's path in a Docker root, as components
_POOL_METADATA_PARTS = tuple(THIN.pool_metadata.split("/"))


@dataclass(frozen=True)
class InstallStep:
    """One step of putting a repaired copy in place: what to do, and a command for it."""

    what: str
    command: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


def install_steps(
    metadata: str | os.PathLike[str], out: str | os.PathLike[str]
) -> list[InstallStep]:
    """The steps that put the repaired copy ``out`` in place of the pool's metadata, for a
    Docker devicemapper pool. ``metadata`` names the pool's metadata file when it is Docker's
    (``…/devicemapper/devicemapper/metadata``); for a copy of it, Docker's default path is
    shown."""
    source = Path(metadata).absolute()
    docker = source.parts[-len(_POOL_METADATA_PARTS) :] == _POOL_METADATA_PARTS
    target = source if docker else DOCKER_METADATA
    data = target.with_name(THIN.data_name)
    copy = Path(out).absolute()
    return [
        InstallStep(
            "Stop the Docker daemon (and anything else that uses the pool)", "systemctl stop docker"
        ),
        InstallStep(
            "If the pool is still active, remove its thin devices, then the pool itself "
            "(Docker names them docker-MAJ:MIN-INODE-*)",
            "dmsetup ls --target thin; dmsetup ls --target thin-pool; dmsetup remove NAME",
        ),
        InstallStep(
            "Detach the loop devices of a loop-lvm pool",
            f"losetup -j {target}; losetup -j {data}; losetup -d /dev/loopN",
        ),
        InstallStep(
            "Keep the original metadata",
            f"cp --sparse=always {target} {target}.before-repair",
        ),
        InstallStep(
            "Put the repaired copy in place (for a direct-lvm pool, write it to a new volume "
            "and swap it in: lvconvert --thinpool VG/POOL --poolmetadata VG/NEW)",
            f"cp --sparse=always {copy} {target}",
        ),
        InstallStep("Check it", f"thin_check {target}"),
        InstallStep(
            "Start the Docker daemon, then compare Docker's records with the pool",
            f"systemctl start docker; docker-forensics verify {target.parents[2]}",
        ),
    ]
