#!/usr/bin/env python3
"""Independent consistency check of a generated host (does not import the generator).

    python bench/check_host.py ROOT [--containers N --layers M]

Recomputes image IDs, chain IDs and every layer's DiffID from its tar-split stream and
``overlay2/<cache-id>/diff`` (crc64 of each file too), and follows every cross reference:
layerdb ↔ overlay2 dirs ↔ ``l/`` links ↔ ``lower`` chains, mounts ↔ containers ↔ images,
repositories.json, image metadata, distribution, volumes. Meant for small hosts (pure Python
crc64). Exit 0 when consistent, 1 with a list of problems otherwise.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HEX64 = re.compile(r"[0-9a-f]{64}")
LINK = re.compile(r"[A-Z2-7]{26}")
STORE = "image/overlay2"


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        value = i
        for _ in range(8):
            value = (value >> 1) ^ 0xD800000000000000 if value & 1 else value >> 1
        table.append(value)
    return table


CRC_TABLE = _crc_table()


def crc64(data: bytes) -> bytes:
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc = CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return (crc ^ 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


@dataclass
class LayerInfo:
    chain: str
    diff: str
    cache_id: str
    parent: str | None
    children: int = 0


@dataclass
class Checker:
    root: Path
    problems: list[str] = field(default_factory=list)
    layers: dict[str, LayerInfo] = field(default_factory=dict)
    images: dict[str, list[str]] = field(default_factory=dict)  # image hex -> chain ids
    owners: Counter[str] = field(default_factory=Counter)  # overlay2 dir -> references
    stacks: dict[str, str] = field(default_factory=dict)
    volumes_used: set[str] = field(default_factory=set)

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def read(self, rel: str) -> str | None:
        try:
            return (self.root / rel).read_text()
        except OSError as error:
            self.fail(rel, f"unreadable ({error.strerror})")
            return None

    def readlink(self, rel: str) -> str | None:
        try:
            return os.readlink(self.root / rel)
        except OSError:
            return None

    # ---- layers -----------------------------------------------------------------------------

    def load_layers(self) -> None:
        base = f"{STORE}/layerdb/sha256"
        for name in sorted(os.listdir(self.root / base)):
            rel = f"{base}/{name}"
            diff, cache_id = self.read(f"{rel}/diff"), self.read(f"{rel}/cache-id")
            parent_path = self.root / rel / "parent"
            parent = parent_path.read_text() if parent_path.exists() else None
            if diff is None or cache_id is None:
                continue
            self.layers["sha256:" + name] = LayerInfo("sha256:" + name, diff, cache_id, parent)
            self.owners[cache_id] += 1

    def check_layer_ids(self) -> None:
        for chain, layer in self.layers.items():
            rel = f"{STORE}/layerdb/sha256/{chain[7:]}"
            if layer.parent is None:
                expected = layer.diff
            elif layer.parent not in self.layers:
                self.fail(rel, f"parent {layer.parent} missing")
                continue
            else:
                self.layers[layer.parent].children += 1
                text = f"{layer.parent} {layer.diff}".encode()
                expected = "sha256:" + hashlib.sha256(text).hexdigest()
            if expected != chain:
                self.fail(rel, f"chain id should be {expected}")

    def stack(self, chain: str) -> str:
        if chain not in self.stacks:
            layer = self.layers[chain]
            link = self.read(f"overlay2/{layer.cache_id}/link") or "?"
            own = f"l/{link}"
            self.stacks[chain] = f"{own}:{self.stack(layer.parent)}" if layer.parent else own
        return self.stacks[chain]

    def check_driver_dir(self, dir_id: str, lower: str | None, committed: bool) -> None:
        rel = f"overlay2/{dir_id}"
        path = self.root / rel
        if not (path / "diff").is_dir():
            self.fail(rel, "no diff/ directory")
            return
        link = self.read(f"{rel}/link") or ""
        if not LINK.fullmatch(link):
            self.fail(f"{rel}/link", f"bad link id {link!r}")
        target = self.readlink(f"overlay2/l/{link}") if link else None
        if target != f"../{dir_id}/diff":
            self.fail(f"overlay2/l/{link}", f"points to {target!r}, not ../{dir_id}/diff")
        found_lower = (path / "lower").read_text() if (path / "lower").exists() else None
        if found_lower != lower:
            self.fail(f"{rel}/lower", f"is {found_lower!r}, expected {lower!r}")
        if (path / "work").is_dir() != (lower is not None):
            self.fail(rel, "work/ present on a base layer or missing on a child")
        if (path / "committed").exists() != committed:
            self.fail(f"{rel}/committed", f"should {'' if committed else 'not '}exist")

    def check_layer_dirs(self) -> None:
        for chain, layer in self.layers.items():
            lower = self.stack(layer.parent) if layer.parent else None
            try:
                self.check_driver_dir(layer.cache_id, lower, layer.children > 0)
                self.check_tar_split(chain, layer)
            except (OSError, ValueError, KeyError) as error:
                self.fail(f"overlay2/{layer.cache_id}", f"unreadable: {error!r}")

    def check_tar_split(self, chain: str, layer: LayerInfo) -> None:
        rel = f"{STORE}/layerdb/sha256/{chain[7:]}"
        diff_dir = self.root / "overlay2" / layer.cache_id / "diff"
        digest, payload = hashlib.sha256(), 0
        stream = gzip.decompress((self.root / rel / "tar-split.json.gz").read_bytes())
        for position, line in enumerate(stream.splitlines()):
            entry = json.loads(line)
            if entry["position"] != position:
                self.fail(rel, f"position {entry['position']} at line {position}")
            if entry["type"] == 2:
                digest.update(base64.b64decode(entry["payload"] or ""))
            elif entry.get("size"):
                data = (diff_dir / entry["name"]).read_bytes()
                payload += len(data)
                digest.update(data)
                if crc64(data) != base64.b64decode(entry["payload"]):
                    self.fail(rel, f"crc64 mismatch for {entry['name']}")
        if "sha256:" + digest.hexdigest() != layer.diff:
            self.fail(rel, "tar-split does not reassemble to the DiffID")
        files = sum(p.stat().st_size for p in diff_dir.rglob("*") if p.is_file())
        size = self.read(f"{rel}/size")
        if size != str(files) or payload != files:
            self.fail(f"{rel}/size", f"{size} vs {files} bytes in diff/, {payload} in tar-split")

    # ---- images -----------------------------------------------------------------------------

    def chains_of(self, diff_ids: list[str]) -> list[str]:
        chains: list[str] = []
        for diff in diff_ids:
            if not chains:
                chains.append(diff)
            else:
                text = f"{chains[-1]} {diff}".encode()
                chains.append("sha256:" + hashlib.sha256(text).hexdigest())
        return chains

    def check_images(self) -> None:
        base = f"{STORE}/imagedb/content/sha256"
        for name in sorted(os.listdir(self.root / base)):
            rel = f"{base}/{name}"
            data = (self.root / rel).read_bytes()
            if hashlib.sha256(data).hexdigest() != name:
                self.fail(rel, "sha256 of the config differs from its name")
            config = json.loads(data)
            diff_ids = config["rootfs"]["diff_ids"]
            built = [h for h in config["history"] if not h.get("empty_layer")]
            if len(built) != len(diff_ids):
                self.fail(rel, f"{len(built)} non-empty history entries, {len(diff_ids)} layers")
            chains = self.chains_of(diff_ids)
            self.images[name] = chains
            for index, chain in enumerate(chains):
                layer = self.layers.get(chain)
                if layer is None or layer.diff != diff_ids[index]:
                    self.fail(rel, f"layer {index} ({chain}) missing or with another diff")

    def check_metadata(self) -> None:
        base = f"{STORE}/imagedb/metadata/sha256"
        for name in sorted(os.listdir(self.root / base)):
            if name not in self.images:
                self.fail(f"{base}/{name}", "metadata for an unknown image")
                continue
            parent_file = self.root / base / name / "parent"
            if parent_file.exists():
                parent = parent_file.read_text().removeprefix("sha256:")
                chains = self.images.get(parent)
                if chains is None or self.images[name][: len(chains)] != chains:
                    self.fail(f"{base}/{name}/parent", "parent missing or not a prefix")

    def check_repositories(self) -> None:
        rel = f"{STORE}/repositories.json"
        repos = json.loads((self.root / rel).read_text())["Repositories"]
        for repo, refs in repos.items():
            for ref, image in refs.items():
                if not ref.startswith(repo + (":" if "@" not in ref else "@")):
                    self.fail(rel, f"{ref} listed under {repo}")
                if image.removeprefix("sha256:") not in self.images:
                    self.fail(rel, f"{ref} -> {image}: no such image")

    def check_distribution(self) -> None:
        diffs = {layer.diff for layer in self.layers.values()}
        base = self.root / STORE / "distribution"
        for path in (base / "diffid-by-digest/sha256").iterdir():
            if path.read_text() not in diffs:
                self.fail(str(path.relative_to(self.root)), "unknown diff id")
        for path in (base / "v2metadata-by-diffid/sha256").iterdir():
            if "sha256:" + path.name not in diffs:
                self.fail(str(path.relative_to(self.root)), "metadata for an unknown diff id")

    # ---- containers -------------------------------------------------------------------------

    def check_containers(self) -> int:
        names: set[str] = set()
        cids = sorted(os.listdir(self.root / "containers"))
        for cid in cids:
            try:
                self.check_container(cid, names)
            except (OSError, ValueError, KeyError) as error:
                self.fail(f"containers/{cid}", f"unreadable: {error!r}")
        mounts = set(os.listdir(self.root / STORE / "layerdb/mounts"))
        for orphan in sorted(mounts - set(cids)):
            self.fail(f"{STORE}/layerdb/mounts/{orphan}", "mount without a container")
        return len(cids)

    def check_container(self, cid: str, names: set[str]) -> None:
        rel = f"containers/{cid}"
        config = json.loads((self.root / rel / "config.v2.json").read_text())
        json.loads((self.root / rel / "hostconfig.json").read_text())
        if config["ID"] != cid or not HEX64.fullmatch(cid):
            self.fail(rel, "ID differs from the directory name")
        if config["Name"] in names or not config["Name"].startswith("/"):
            self.fail(rel, f"name {config['Name']} duplicated or malformed")
        names.add(config["Name"])
        image = config["Image"].removeprefix("sha256:")
        if config["Driver"] != "overlay2" or image not in self.images:
            self.fail(rel, "wrong driver or unknown image")
            return
        self.check_mount(cid, self.images[image][-1])
        self.check_runtime_files(rel, config)
        for point in config["MountPoints"].values():
            if point["Type"] == "volume":
                self.volumes_used.add(point["Name"])
                if not (self.root / "volumes" / point["Name"] / "_data").is_dir():
                    self.fail(rel, f"volume {point['Name']} missing")

    def check_runtime_files(self, rel: str, config: dict[str, object]) -> None:
        if not config["HasBeenStartedBefore"]:
            return
        for name in ("hostname", "hosts", "resolv.conf", f"{config['ID']}-json.log"):
            if not (self.root / rel / name).is_file():
                self.fail(rel, f"started container without {name}")
        resolv = (self.root / rel / "resolv.conf").read_bytes()
        recorded = (self.root / rel / "resolv.conf.hash").read_text()
        if recorded != "sha256:" + hashlib.sha256(resolv).hexdigest():
            self.fail(f"{rel}/resolv.conf.hash", "does not match resolv.conf")
        for line in (self.root / rel / f"{config['ID']}-json.log").read_text().splitlines():
            json.loads(line)

    def check_mount(self, cid: str, top: str) -> None:
        rel = f"{STORE}/layerdb/mounts/{cid}"
        mount_id, init_id = self.read(f"{rel}/mount-id"), self.read(f"{rel}/init-id")
        if self.read(f"{rel}/parent") != top:
            self.fail(f"{rel}/parent", f"should be the image's top layer {top}")
        if mount_id is None or not HEX64.fullmatch(mount_id) or init_id != f"{mount_id}-init":
            self.fail(rel, "bad mount-id / init-id")
            return
        self.owners[mount_id] += 1
        self.owners[init_id] += 1
        self.layers[top].children += 1
        self.check_driver_dir(init_id, self.stack(top), committed=True)
        init_link = self.read(f"overlay2/{init_id}/link")
        self.check_driver_dir(mount_id, f"l/{init_link}:{self.stack(top)}", committed=False)

    # ---- driver-wide ------------------------------------------------------------------------

    def check_overlay2(self) -> None:
        dirs = [name for name in os.listdir(self.root / "overlay2") if name != "l"]
        for name in dirs:
            if self.owners[name] != 1:
                self.fail(f"overlay2/{name}", f"referenced {self.owners[name]} times")
        links = os.listdir(self.root / "overlay2/l")
        if len(links) != len(dirs):
            self.fail("overlay2/l", f"{len(links)} links for {len(dirs)} layer directories")
        for link in links:
            target = os.readlink(self.root / "overlay2/l" / link)
            owner = target.removeprefix("../").removesuffix("/diff")
            if self.read(f"overlay2/{owner}/link") != link:
                self.fail(f"overlay2/l/{link}", f"target {target} does not name this link")

    def check_volumes(self) -> int:
        names = [n for n in os.listdir(self.root / "volumes") if n != "metadata.db"]
        for name in self.volumes_used - set(names):
            self.fail("volumes", f"{name} used but missing")
        return len(names)


def run(root: Path, containers: int | None, layers: int | None) -> Checker:
    check = Checker(root)
    check.load_layers()
    check.check_layer_ids()
    check.check_images()
    found = check.check_containers()  # before layer dirs: mounts add children
    check.check_layer_dirs()
    check.check_metadata()
    check.check_repositories()
    check.check_distribution()
    check.check_overlay2()
    volumes = check.check_volumes()
    if containers is not None and found != containers:
        check.fail("containers", f"{found} containers, expected {containers}")
    if layers is not None and len(check.layers) != layers:
        check.fail(f"{STORE}/layerdb/sha256", f"{len(check.layers)} layers, expected {layers}")
    print(
        f"checked {len(check.layers)} layers, {len(check.images)} images, {found} containers, "
        f"{volumes} volumes",
        file=sys.stderr,
    )
    return check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--containers", type=int)
    parser.add_argument("--layers", type=int)
    args = parser.parse_args(argv)
    check = run(args.root, args.containers, args.layers)
    for problem in check.problems[:50]:
        print(problem)
    if check.problems:
        print(f"{len(check.problems)} problem(s)")
        return 1
    print("consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
