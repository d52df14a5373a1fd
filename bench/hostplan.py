"""Plan a synthetic Docker 28.x host: layers, images, containers and volumes, all in memory.

Nothing here touches the disk (``hostwrite`` does); every choice comes from one seeded
``random.Random`` so a seed always gives the same host.

Shape, after real hosts: a few one- or two-layer base images (debian, alpine, …), a few dozen
runtime images on them (python, node, postgres, …, 2–6 layers each), team "platform" images on
runtimes, and many application repositories whose successive builds all sit on the same parent
and add 1–6 layers, so most images have 3–15 layers and share long chain prefixes. Popular images
run many containers; states, volumes and names are mixed the way ``docker ps -a`` shows them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from dataclasses import dataclass, field

from catalog import (
    BASES,
    DATA_RUNTIMES,
    DAY_NS,
    LAYER_FILES,
    MAX_DEPTH,
    NOW_NS,
    NS,
    RUNTIMES,
    SERVICES,
    TEAMS,
    rfc3339nano,
)
from hostmodel import Image, Layer, Settings
from tarsplit import EMPTY_DIFF_ID, Entry, build_layer


@dataclass(eq=False)
class Repo:
    name: str
    kind: str
    parent: Repo | None
    images: list[Image] = field(default_factory=list)
    tags: set[str] = field(default_factory=set)
    team: str = ""
    service: str = ""
    platform: bool = False
    classic: bool = False

    @property
    def latest(self) -> Image:
        return self.images[-1]


class Planner:
    """Draws the whole host from one seeded generator."""

    def __init__(self, seed: int, layers: int, containers: int) -> None:
        self.rng = random.Random(seed)
        self.remaining = layers
        self.n_containers = containers
        self.layers: list[Layer] = []
        self.images: list[Image] = []
        self.repos: list[Repo] = []
        self.app_repos: list[Repo] = []
        self.seen_ids: set[str] = set()
        self.seen_links: set[str] = set()
        self.refs: set[str] = set()

    # ---- ids -------------------------------------------------------------------------------

    def hex64(self) -> str:
        while True:
            value = self.rng.randbytes(32).hex()
            if value not in self.seen_ids:
                self.seen_ids.add(value)
                return value

    def link_id(self) -> str:
        """overlay2's ``generateID``: base32 of 16 random bytes, cut to 26 characters."""
        while True:
            value = base64.b32encode(self.rng.randbytes(16)).decode()[:26]
            if value not in self.seen_links:
                self.seen_links.add(value)
                return value

    def time_after(self, start_ns: int, span_ns: int | None = None) -> int:
        end = NOW_NS - 60 * NS if span_ns is None else min(NOW_NS - 60 * NS, start_ns + span_ns)
        return start_ns + int(self.rng.random() * max(end - start_ns, NS))

    # ---- layers ----------------------------------------------------------------------------

    def layer_entries(self, kind: str, index: int) -> list[Entry]:
        folder, first, second = self.rng.choice(LAYER_FILES[kind])
        token = self.rng.randbytes(8).hex()
        body = f"{kind} layer {index} {token}\n".encode()
        return [
            Entry(folder, None),
            Entry(f"{folder}/{first}", body * self.rng.randint(1, 4)),
            Entry(f"{folder}/{second}", f"{token}\n".encode()),
        ]

    def new_layer(
        self, parent: Layer | None, kind: str, created_ns: int, repo: str | None
    ) -> Layer:
        self.remaining -= 1
        empty = parent is not None and not parent.empty_child and self.rng.random() < 0.02
        entries = [] if empty else self.layer_entries(kind, len(self.layers))
        blob = build_layer(entries, created_ns // NS)
        diff_id = EMPTY_DIFF_ID if empty else blob.diff_id
        if parent is None:
            chain_id = diff_id
        else:
            parent.empty_child = parent.empty_child or empty
            text = f"{parent.chain_id} {diff_id}".encode()
            chain_id = "sha256:" + hashlib.sha256(text).hexdigest()
        digest = f"sha256:{self.rng.randbytes(32).hex()}" if repo else None
        layer = Layer(
            parent,
            diff_id,
            chain_id,
            self.hex64(),
            self.link_id(),
            entries,
            blob,
            created_ns,
            repo,
            digest,
        )
        self.layers.append(layer)
        return layer

    def grow(
        self, top: Layer | None, count: int, kind: str, start_ns: int, end_ns: int, repo: str | None
    ) -> tuple[Layer, list[int]]:
        span = end_ns - start_ns
        times = sorted(start_ns + int(self.rng.random() * span) for _ in range(count))
        assert count >= 1
        for when in times:
            top = self.new_layer(top, kind, when, repo)
        assert top is not None
        return top, times

    # ---- images ----------------------------------------------------------------------------

    def unique_ref(self, repo: Repo, tag: str) -> str | None:
        ref = f"{repo.name}:{tag}"
        if ref in self.refs:
            return None
        self.refs.add(ref)
        repo.tags.add(tag)
        return ref

    def add_image(
        self,
        repo: Repo,
        top: Layer,
        created_ns: int,
        settings: Settings,
        history: list[dict[str, object]],
        tag: str | None,
        pulled: bool,
    ) -> Image:
        config = image_config(
            settings, created_ns, history, top, classic=repo.classic, rng=self.rng
        )
        image_id = hashlib.sha256(config).hexdigest()
        refs = []
        ref = self.unique_ref(repo, tag) if tag else None
        if ref:
            refs.append(ref)
            if pulled:
                refs.append(f"{repo.name}@sha256:{self.rng.randbytes(32).hex()}")
        image = Image(
            image_id, top, config, created_ns, repo.kind, settings, history, refs, repo.name
        )
        image.built_locally = not pulled
        if repo.classic and repo.parent:
            image.parent = repo.parent.latest
        if ref and self.rng.random() < 0.15:
            image.last_updated = rfc3339nano(self.time_after(created_ns))
        repo.images.append(image)
        self.images.append(image)
        return image

    def make_bases(self) -> list[Repo]:
        count = min(len(BASES), max(2, self.remaining // 2000))
        repos = []
        for name, tags, shell in BASES[:count]:
            if self.remaining <= 0:
                break
            repo = Repo(name, "base", None)
            created = NOW_NS - int((400 + self.rng.random() * 300) * DAY_NS)
            depth = 2 if self.rng.random() < 0.2 and self.remaining >= 2 else 1
            source = f"docker.io/library/{name}"
            top, times = self.grow(None, depth, "base", created - DAY_NS, created, source)
            history = [
                hist(t, f"ADD file:{self.rng.randbytes(32).hex()} in / ", False) for t in times
            ]
            cmd = [shell] if shell else []
            history.append(hist(created, f'CMD ["{shell}"]' if shell else "USER nonroot", True))
            env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
            settings = Settings(env=env, cmd=cmd, user="" if shell else "65532")
            self.add_image(repo, top, created, settings, history, tags[0], pulled=True)
            for extra in tags[1:]:
                if self.rng.random() < 0.5:
                    self.image_alias(repo, extra)
            repos.append(repo)
        self.repos.extend(repos)
        return repos

    def image_alias(self, repo: Repo, tag: str) -> None:
        """A second tag on the same image (``docker tag``, or a registry alias)."""
        ref = self.unique_ref(repo, tag)
        if ref:
            repo.latest.refs.append(ref)

    def make_runtimes(self, bases: list[Repo]) -> list[Repo]:
        count = min(len(RUNTIMES), max(2, self.remaining // 500))
        repos = []
        for name, version, cmd, port in RUNTIMES[:count]:
            if self.remaining <= 0:
                break
            base = self.rng.choice(bases)
            repo = Repo(name, "runtime", base)
            builds = self.rng.randint(1, 3)
            for build in range(builds):
                if self.remaining <= 0:
                    break
                self.runtime_build(repo, version, build, cmd, port)
            repos.append(repo)
        self.repos.extend(repos)
        return repos

    def runtime_build(
        self, repo: Repo, version: str, build: int, cmd: list[str], port: str
    ) -> None:
        assert repo.parent is not None
        parent = repo.parent.latest
        start = parent.created_ns + DAY_NS
        created = self.time_after(start, 200 * DAY_NS)
        count = min(self.rng.randint(2, 6), self.remaining, MAX_DEPTH - parent.top.depth)
        source = f"docker.io/library/{repo.name}"
        top, times = self.grow(parent.top, count, "runtime", start, created, source)
        variable = f"{env_name(repo.name)}_VERSION={version}"
        history = list(parent.history)
        history.append(hist(start, f"ENV {variable}", True))
        install = f"RUN /bin/sh -c set -eux; install-{repo.name} {version} # buildkit"
        history += [hist(t, install, False) for t in times]
        env = parent.settings.env + [variable]
        ports = [port] if port else []
        volumes = [DATA_RUNTIMES[repo.name]] if repo.name in DATA_RUNTIMES else []
        for volume in volumes:
            history.append(hist(created, f"VOLUME [{volume}]", True))
        history.append(hist(created, f"CMD {json_list(cmd)}", True))
        settings = Settings(
            env=env,
            cmd=cmd,
            ports=ports,
            volumes=volumes,
            entrypoint=["docker-entrypoint.sh"] if volumes else None,
        )
        tag = version if build == 0 else f"{version}.{build}"
        self.add_image(repo, top, created, settings, history, tag, pulled=True)
        if build == 0:
            self.image_alias(repo, "latest")

    # ---- application images ----------------------------------------------------------------

    def new_app_repo(self, runtimes: list[Repo], bases: list[Repo]) -> Repo:
        platforms = [r for r in self.app_repos if r.platform and r.latest.top.depth <= 11]
        roll = self.rng.random()
        if platforms and roll < 0.25:
            parent = self.rng.choice(platforms)
        elif (languages := [r for r in runtimes if r.name not in DATA_RUNTIMES]) and roll < 0.9:
            parent = self.rng.choice(languages)
        else:
            parent = self.rng.choice(bases)
        team = self.rng.choice(TEAMS)
        service = self.rng.choice(SERVICES)
        platform = parent.kind == "runtime" and self.rng.random() < 0.12
        if platform:
            service = f"{parent.name.split('/')[-1]}-base"
        name = f"registry.example.com/{team}/{service}"
        suffix = 2
        while any(r.name == name for r in self.app_repos):
            name = f"registry.example.com/{team}/{service}-{suffix}"
            suffix += 1
        repo = Repo(name, "app", parent, team=team, service=service, platform=platform)
        repo.classic = self.rng.random() < 0.2
        self.app_repos.append(repo)
        return repo

    def pick_app_repo(self, runtimes: list[Repo], bases: list[Repo]) -> Repo:
        if not self.app_repos or self.rng.random() < 0.12:
            return self.new_app_repo(runtimes, bases)
        return self.rng.choice(self.app_repos)

    def app_layer_count(self, parent: Image) -> int:
        depth = parent.top.depth
        low = max(1, 3 - depth)
        high = max(low, min(6, MAX_DEPTH - depth))
        return min(self.rng.randint(low, high), self.remaining)

    def app_build(self, repo: Repo) -> Image | None:
        assert repo.parent is not None
        parent = repo.parent.latest
        if parent.top.depth >= MAX_DEPTH:
            return None
        count = self.app_layer_count(parent)
        floor = repo.images[-1].created_ns if repo.images else parent.created_ns
        start = self.time_after(max(floor, parent.created_ns), 7 * DAY_NS)
        created = self.time_after(start, 3600 * NS)
        top, times = self.grow(parent.top, count, "app", start, created, None)
        build = len(repo.images) + 1
        history, settings = app_recipe(parent, repo, build, times, created)
        tag = self.app_tag(repo, build)
        return self.add_image(repo, top, created, settings, history, tag, pulled=False)

    def app_tag(self, repo: Repo, build: int) -> str | None:
        roll = self.rng.random()
        if roll < 0.1:
            return None  # dangling: the tag moved on to a later build
        if roll < 0.55:
            return f"build-{build}"
        if roll < 0.85:
            return f"1.{build // 10}.{build % 10}"
        return f"sha-{self.rng.randbytes(4).hex()[:7]}"

    def config_only_variant(self, repo: Repo, image: Image) -> None:
        """An image sharing another one's layers, differing only in config (LABEL/CMD edits)."""
        created = self.time_after(image.created_ns, 3600 * NS)
        settings = Settings(**{**image.settings.__dict__})
        settings.labels = {**settings.labels, "com.example.variant": "debug"}
        history = image.history + [hist(created, "LABEL com.example.variant=debug", True)]
        self.add_image(
            repo, image.top, created, settings, history, f"debug-{len(repo.images)}", pulled=False
        )

    def make_apps(self, runtimes: list[Repo], bases: list[Repo]) -> None:
        while self.remaining > 0:
            repo = self.pick_app_repo(runtimes, bases)
            image = self.app_build(repo)
            if image and self.rng.random() < 0.03:
                self.config_only_variant(repo, image)

    def plan_images(self) -> None:
        bases = self.make_bases()
        runtimes = self.make_runtimes(bases)
        self.make_apps(runtimes, bases)


def hist(ns: int, created_by: str, empty: bool) -> dict[str, object]:
    entry: dict[str, object] = {
        "created": rfc3339nano(ns),
        "created_by": created_by,
        "comment": "buildkit.dockerfile.v0",
    }
    if empty:
        entry["empty_layer"] = True
    return entry


def env_name(repo: str) -> str:
    return repo.upper().replace("/", "_").replace("-", "_")


def json_list(items: list[str]) -> str:
    return "[" + ",".join(f'"{item}"' for item in items) + "]"


def app_recipe(
    parent: Image, repo: Repo, build: int, times: list[int], created: int
) -> tuple[list[dict[str, object]], Settings]:
    history = list(parent.history)
    history.append(hist(times[0], "WORKDIR /app", True))
    steps = [
        "COPY requirements.txt . # buildkit",
        "RUN /bin/sh -c install-deps # buildkit",
        "COPY . /app # buildkit",
        "RUN /bin/sh -c make build # buildkit",
    ]
    history += [hist(t, steps[i % len(steps)], False) for i, t in enumerate(times)]
    revision = hashlib.sha1(f"{repo.name}{build}".encode()).hexdigest()
    labels = {
        "org.opencontainers.image.source": f"https://git.example.com/{repo.team}/{repo.service}",
        "org.opencontainers.image.revision": revision,
        "com.example.build": str(build),
    }
    env = parent.settings.env + ["APP_ENV=production", f"APP_BUILD={build}"]
    history.append(hist(created, f"ENV APP_BUILD={build}", True))
    cmd = ["/app/run", repo.service] if not repo.platform else parent.settings.cmd
    history.append(hist(created, f"CMD {json_list(cmd)}", True))
    settings = Settings(
        env=env,
        cmd=cmd,
        entrypoint=parent.settings.entrypoint,
        workdir="/app",
        labels=labels,
        ports=parent.settings.ports or ["8080/tcp"],
        volumes=parent.settings.volumes,
    )
    return history, settings


def image_config(
    settings: Settings,
    created_ns: int,
    history: list[dict[str, object]],
    top: Layer,
    classic: bool,
    rng: random.Random,
) -> bytes:
    """The image config JSON, as BuildKit (or the classic builder) marshals it: sorted top keys."""
    config: dict[str, object] = {}
    if settings.user:
        config["User"] = settings.user
    if settings.ports:
        config["ExposedPorts"] = {port: {} for port in settings.ports}
    config["Env"] = settings.env
    if settings.entrypoint:
        config["Entrypoint"] = settings.entrypoint
    if settings.cmd:
        config["Cmd"] = settings.cmd
    if settings.volumes:
        config["Volumes"] = {v: {} for v in settings.volumes}
    if settings.workdir:
        config["WorkingDir"] = settings.workdir
    if settings.labels:
        config["Labels"] = settings.labels
    diff_ids = []
    layer: Layer | None = top
    while layer:
        diff_ids.append(layer.diff_id)
        layer = layer.parent
    doc: dict[str, object] = {
        "architecture": "amd64",
        "config": config,
        "created": rfc3339nano(created_ns),
        "history": history,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids[::-1]},
    }
    if classic:
        doc["container"] = rng.randbytes(32).hex()
        doc["container_config"] = {**config, "Cmd": ["/bin/sh", "-c", "#(nop) ", *settings.cmd]}
        doc["docker_version"] = "20.10.24"
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def uuid4_from(rng: random.Random) -> str:
    raw = bytearray(rng.randbytes(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
