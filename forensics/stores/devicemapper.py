"""The devicemapper driver's per-device records: ``devicemapper/metadata/<id>``.

Layer contents live inside the thin pool; here a layer "exists" when its device record does.
"""

from __future__ import annotations

from forensics.evidence import Evidence
from forensics.model import DriverDir, Host
from forensics.progress import track

POOL_RECORDS = {"base", "deviceset-metadata", "transaction-metadata"}


def read_devicemapper(ev: Evidence, host: Host, base: str = "devicemapper") -> None:
    records = ev.scandir_types(f"{base}/metadata")
    for name in track(sorted(records), "devices"):
        rel = f"{base}/metadata/{name}"
        if name in POOL_RECORDS:
            continue
        if records[name] != "file":
            host.add_leftover("driver-stray", rel)
            continue
        host.driver_dirs[name] = DriverDir(id=name, path=rel, has_diff=True)
