"""Plan the containers of the synthetic host: which image, state, name, mounts and network.

Popular images run many containers (a Zipf-like draw); about four in ten containers belong to a
compose project (``<project>-<service>-<n>`` plus compose labels), the rest carry Docker's
``adjective_surname`` names. States are mixed the way ``docker ps -a`` shows them on a busy host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import accumulate

from catalog import ADJECTIVES, DAY_NS, NS, SURNAMES, TEAMS
from hostmodel import Container, Image, MountSpec, Volume
from hostplan import Planner
from tarsplit import Entry

#: (state, cumulative probability)
STATES = [
    ("running", 0.20),
    ("paused", 0.22),
    ("restarting", 0.23),
    ("dead", 0.24),
    ("created", 0.32),
    ("exited", 1.0),
]
EXIT_CODES = [0] * 12 + [1, 1, 1, 2, 137, 137, 143, 143]
SHARED_VOLUMES = ["shared-cache", "uploads", "certs", "backups", "models", "spool"]


@dataclass
class Naming:
    """Keeps names and per-network addresses unique."""

    names: set[str] = field(default_factory=set)
    numbers: dict[tuple[str, str], int] = field(default_factory=dict)
    networks: dict[str, str] = field(default_factory=dict)
    subnets: dict[str, int] = field(default_factory=dict)
    addresses: dict[str, int] = field(default_factory=dict)


class ContainerPlanner:
    def __init__(self, planner: Planner) -> None:
        self.planner = planner
        self.rng = planner.rng
        self.naming = Naming()
        self.volumes: dict[str, Volume] = {}

    def pick_images(self, count: int) -> list[Image]:
        """Zipf-like over application images; about one in ten runs a stock image directly."""
        apps = [image for image in self.planner.images if image.kind == "app"]
        stock = [image for image in self.planner.images if image.kind != "app" and image.refs]
        self.rng.shuffle(apps)
        cumulative = list(accumulate(1.0 / (rank + 1) ** 0.9 for rank in range(len(apps))))
        picks = []
        for _ in range(count):
            if stock and (not apps or self.rng.random() < 0.1):
                picks.append(self.rng.choice(stock))
            else:
                picks.append(self.rng.choices(apps, cum_weights=cumulative)[0])
        return picks

    def state(self) -> str:
        roll = self.rng.random()
        return next(name for name, limit in STATES if roll < limit)

    def docker_name(self) -> str:
        base = f"{self.rng.choice(ADJECTIVES)}_{self.rng.choice(SURNAMES)}"
        name, extra = base, 1
        while name in self.naming.names:
            name = f"{base}{extra}"
            extra += 1
        return name

    def compose_identity(self, image: Image) -> tuple[str, str]:
        if image.kind == "app":
            parts = image.repo.split("/")
            return parts[1], parts[2]
        return self.rng.choice(TEAMS), image.repo.split("/")[-1]

    def name_container(self, container: Container) -> None:
        if self.rng.random() < 0.4:
            project, service = self.compose_identity(container.image)
            key = (project, service)
            number = self.naming.numbers.get(key, 0) + 1
            self.naming.numbers[key] = number
            container.project, container.service, container.number = project, service, number
            container.name = f"{project}-{service}-{number}"
            container.restart = self.rng.choice(["unless-stopped", "always", "no"])
            container.network = f"{project}_default"
        else:
            container.name = self.docker_name()
            container.restart = "no" if self.rng.random() < 0.8 else "on-failure"
        self.naming.names.add(container.name)
        if container.network not in self.naming.networks:
            self.naming.networks[container.network] = self.planner.hex64()
            self.naming.subnets[container.network] = 17 + len(self.naming.subnets)
        container.network_id = self.naming.networks[container.network]

    def set_times(self, container: Container) -> None:
        c, rng = container, self.rng
        c.created_ns = self.planner.time_after(c.image.created_ns, 60 * DAY_NS)
        if c.state == "created":
            return
        c.started_ns = self.planner.time_after(c.created_ns, 30 * DAY_NS)
        if c.state in ("running", "paused"):
            c.pid = rng.randint(1000, 4_000_000)
            return
        c.finished_ns = self.planner.time_after(c.started_ns, 10 * DAY_NS)
        c.exit_code = rng.choice(EXIT_CODES) if c.state != "restarting" else 1
        c.oom_killed = c.exit_code == 137 and rng.random() < 0.5
        if c.state == "restarting":
            c.pid = 0

    def set_network(self, container: Container) -> None:
        c = container
        if not c.started:
            c.network_id = ""
            return
        c.sandbox_id = self.planner.hex64()
        if c.state not in ("running", "paused", "restarting"):
            return
        host = self.naming.addresses.get(c.network, 1) + 1
        self.naming.addresses[c.network] = host
        subnet = self.naming.subnets[c.network]
        c.ip = f"172.{subnet}.{host // 250}.{host % 250 + 2}"
        c.mac = f"02:42:ac:{subnet:02x}:{host // 250:02x}:{host % 250 + 2:02x}"
        c.endpoint_id = self.planner.hex64()

    def volume(self, name: str, anonymous: bool) -> str:
        if name not in self.volumes:
            files = [("PG_VERSION", b"16\n")] if anonymous else [("README", f"{name}\n".encode())]
            self.volumes[name] = Volume(name, anonymous, files)
        return name

    def set_mounts(self, container: Container) -> None:
        c, rng = container, self.rng
        for path in c.image.settings.volumes:
            if c.project and rng.random() < 0.6:
                name = self.volume(f"{c.project}_{c.service}-data", False)
            else:
                name = self.volume(self.planner.hex64(), True)
            c.mounts.append(MountSpec("volume", name, path))
        if not c.image.settings.volumes and rng.random() < 0.12:
            name = f"{c.project}_{c.service}-cache" if c.project else rng.choice(SHARED_VOLUMES)
            c.mounts.append(MountSpec("volume", self.volume(name, False), "/data"))
        if rng.random() < 0.1:
            owner = c.project or "apps"
            source = f"/srv/{owner}/{c.service or c.name}/config"
            c.mounts.append(MountSpec("bind", source, "/etc/app", rw=False))

    def set_contents(self, container: Container) -> None:
        c, rng = container, self.rng
        if not c.started:
            return
        if rng.random() < 0.5:
            c.rw_entries = [Entry("tmp", None), Entry("tmp/app.pid", f"{c.pid or 1}\n".encode())]
        else:
            c.rw_entries = [Entry("root", None), Entry("root/.ash_history", b"ls\nps aux\nexit\n")]
        when = c.started_ns
        c.logs = [
            (when + 1_000_000, "stdout", f"starting {c.service or c.name}\n"),
            (when + 2_500_000, "stderr", "warning: no config override found\n"),
        ]
        if c.finished_ns:
            c.logs.append((c.finished_ns - NS // 10, "stdout", f"exiting with {c.exit_code}\n"))

    def make(self, image: Image) -> Container:
        planner = self.planner
        container = Container(
            planner.hex64(),
            "",
            image,
            planner.hex64(),
            planner.link_id(),
            planner.link_id(),
            self.state(),
            0,
        )
        image.top.children += 1  # the container's init layer is a child of the image's top
        self.name_container(container)
        self.set_times(container)
        self.set_network(container)
        self.set_mounts(container)
        self.set_contents(container)
        if container.state in ("running", "paused") and self.rng.random() < 0.2:
            container.healthy = self.rng.random() < 0.9
        return container

    def dangling_volumes(self, count: int) -> None:
        for _ in range(max(1, count // 50)):
            self.volume(self.planner.hex64(), True)


def plan_containers(planner: Planner, count: int) -> tuple[list[Container], dict[str, Volume]]:
    maker = ContainerPlanner(planner)
    containers = [maker.make(image) for image in maker.pick_images(count)]
    maker.dangling_volumes(count)
    return containers, maker.volumes
