"""Where things are in the real-daemon sample, found from the daemon's own truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forensics.formats.ids import chain_ids

STORE = "image/overlay2"
#: every bbolt file that the real dockerd wrote into the sample
BOLT_DBS = (
    "buildkit/cache.db",
    "buildkit/containerdmeta.db",
    "buildkit/metadata_v2.db",
    "buildkit/snapshots.db",
    "containerd/daemon/io.containerd.metadata.v1.bolt/meta.db",
    "network/files/local-kv.db",
    "volumes/metadata.db",
)
#: the sample host's page size (tests/test_bbolt.py checks it from the files themselves)
BOLT_PAGE = 4096


@dataclass
class SamplePaths:
    root: Path
    truth: dict[str, Any]

    def container_id(self, name: str) -> str:
        (cid,) = [c["Id"] for c in self.truth["inspect_containers"] if c["Name"] == f"/{name}"]
        return cid

    def mount_id(self, name: str) -> str:
        rel = f"{self.store}/layerdb/mounts/{self.container_id(name)}/mount-id"
        return (self.root / rel).read_text().strip()

    def image(self, tag: str) -> dict[str, Any]:
        (image,) = [i for i in self.truth["inspect_images"] if tag in i["RepoTags"]]
        return image

    def image_id(self, tag: str) -> str:
        return self.image(tag)["Id"]

    @property
    def store(self) -> str:
        return f"image/{self.truth['driver']}"

    def image_config(self, tag: str) -> str:
        return f"{self.store}/imagedb/content/sha256/{self.image_id(tag).removeprefix('sha256:')}"

    def chain(self, tag: str) -> list[str]:
        return chain_ids(self.image(tag)["RootFS"]["Layers"])

    def layer_dir(self, chain: str) -> str:
        return f"{self.store}/layerdb/sha256/{chain.removeprefix('sha256:')}"

    def cache_id(self, chain: str) -> str:
        return (self.root / self.layer_dir(chain) / "cache-id").read_text().strip()

    def link(self, cache_id: str) -> str:
        return (self.root / "overlay2" / cache_id / "link").read_text().strip()

    def path(self, rel: str) -> Path:
        return self.root / rel


@dataclass
class DmSamplePaths:
    """Where things are in a devicemapper sample (legacy or modern), found from its truth."""

    root: Path
    truth: dict[str, Any]

    POOL = "devicemapper/devicemapper"

    @property
    def data(self) -> Path:
        return self.root / self.POOL / "data"

    @property
    def metadata(self) -> Path:
        return self.root / self.POOL / "metadata"

    def record(self, name: str) -> Path:
        """``devicemapper/metadata/<name>`` (``base`` for the base device)."""
        return self.root / "devicemapper" / "metadata" / name

    def device_id(self, name: str) -> int:
        return int(self.truth["devices"][name]["device_id"])

    def layer_devices(self) -> dict[str, int]:
        """Each layer's device id, by graph id (legacy) or chain id (modern)."""
        return {
            layer.get("id") or layer["chain_id"]: layer["device_id"]
            for layer in self.truth["layers"]
        }

    def container(self, name: str) -> dict[str, Any]:
        (found,) = [c for c in self.truth["containers"] if c["name"] == name]
        return found


#: the containerd-store sample: a Docker 29 root whose containerd root is containerd/daemon
CONTAINERD_SAMPLE = "containerd-store"
CONTAINERD_ROOT = "containerd/daemon"
CONTAINERD_META_DB = f"{CONTAINERD_ROOT}/io.containerd.metadata.v1.bolt/meta.db"
CONTAINERD_SNAPSHOTTER_DB = f"{CONTAINERD_ROOT}/io.containerd.snapshotter.v1.overlayfs/metadata.db"
