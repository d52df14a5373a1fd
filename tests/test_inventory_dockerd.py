"""The slow tier: what the samples cannot show (published ports, a healthcheck, an OOM kill, a
restart policy) made by a real, private dockerd, and inventory held against its ``docker ps -a``
and ``docker inspect`` of the same root while it runs (read-only: inventory writes nothing)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from dockerd_util import PrivateDockerd, private_dockerd, require_dockerd

pytestmark = pytest.mark.dockerd

IMAGE = "sample/app:1.0"
#: a loop that doubles a shell variable until the 8 MiB memory limit kills it
OOM_LOOP = "a=xxxxxxxxxxxxxxxx; while :; do a=$a$a; done"


@pytest.fixture(autouse=True)
def _need_dockerd() -> None:
    require_dockerd()


def _make_containers(daemon: PrivateDockerd) -> None:
    _run_out_of_memory(daemon)
    daemon.docker("network", "create", "--driver", "bridge", "pubnet", check=True)
    daemon.docker(
        "run", "-d", "--network", "pubnet", "--name", "web",
        "-p", "127.0.0.1:18080:80", "-p", "18443:443/udp", "-p", "9000",
        "-p", "7000-7001:7000-7001",
        "--health-cmd", "true", "--health-interval", "1s",
        "--restart", "on-failure:3", "--label", "case=live",
        IMAGE, "sleep", "100000",
        check=True,
    )  # fmt: skip
    for _ in range(120):
        health = daemon.docker("inspect", "-f", "{{.State.Health.Status}}", "web").stdout
        if health.strip() == "healthy":
            return
        time.sleep(0.25)
    pytest.fail("web did not become healthy")


def _run_out_of_memory(daemon: PrivateDockerd) -> None:
    """A container that the kernel kills for lack of memory. The daemon learns it from an event
    that may come late or not at all on a loaded machine: tried until it says OOMKilled."""
    for attempt in range(3):
        name = f"oom{attempt}"
        run = daemon.docker(
            "run", "--network", "none", "--memory", "8m", "--memory-swap", "8m", "--name", name,
            IMAGE, "sh", "-c", OOM_LOOP,
        )  # fmt: skip
        assert run.returncode == 137, run.stderr
        time.sleep(1)
        killed = daemon.docker("inspect", "-f", "{{.State.OOMKilled}}", name).stdout.strip()
        if killed == "true":
            return
    pytest.fail("the daemon never said OOMKilled")


def _daemon_view(daemon: PrivateDockerd) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    lines = daemon.docker("ps", "-a", "--no-trunc", "--format", "{{json .}}", check=True).stdout
    ps = [json.loads(line) for line in lines.splitlines() if line.strip()]
    inspect = json.loads(daemon.docker("inspect", *[p["ID"] for p in ps], check=True).stdout)
    return ps, inspect


def _port_rows(port_map: dict[str, Any] | None) -> list[tuple[str, str | None, str | None]]:
    rows = []
    for port, bindings in (port_map or {}).items():
        rows += [(port, b["HostIp"], b["HostPort"]) for b in bindings or []] or [(port, None, None)]
    return sorted(rows)


def _ours(ports: list[dict[str, Any]]) -> list[tuple[str, str | None, str | None]]:
    return sorted((p["container_port"], p["host_ip"], p["host_port"]) for p in ports)


def test_ports_health_oom_and_restarts_as_docker_says(
    cli, sample_root: Path, tmp_path: Path
) -> None:
    from forensics import psview
    from forensics.evidence import Evidence
    from forensics.stores import read_host

    with private_dockerd(sample_root, tmp_path / "d") as daemon:
        _make_containers(daemon)
        ps, inspect = _daemon_view(daemon)
        asked = time.time_ns()
        host = read_host(Evidence(sample_root))
        doc = cli("inventory", sample_root, "--format", "json").json()
        text = cli("inventory", sample_root, "--no-trunc").stdout
    ours = {c["id"]: c for c in doc["containers"]}
    assert set(ours) == {p["ID"] for p in ps}
    for inspected in inspect:
        mine, state = ours[inspected["Id"]], inspected["State"]
        assert mine["oom_killed"] is state["OOMKilled"]
        assert mine["exit_code"] == state["ExitCode"]
        assert mine["health"] == (
            {
                "status": state["Health"]["Status"],
                "failing_streak": state["Health"]["FailingStreak"],
            }
            if state.get("Health")
            else None
        )
        assert mine["restart_count"] == inspected["RestartCount"]
        policy = inspected["HostConfig"]["RestartPolicy"]
        assert mine["restart_policy"] == {
            "name": policy["Name"],
            "maximum_retry_count": policy["MaximumRetryCount"],
        }
        assert _ours(mine["ports"]) == _port_rows(inspected["NetworkSettings"]["Ports"])
        assert _ours(mine["port_bindings"]) == _port_rows(inspected["HostConfig"]["PortBindings"])
        assert mine["config"]["labels"] == inspected["Config"]["Labels"]
    web = next(c for c in doc["containers"] if c["name"] == "web")
    killed = [c for c in doc["containers"] if c["oom_killed"]]
    assert web["health"]["status"] == "healthy" and killed
    assert web["config"]["healthcheck"] == ["CMD-SHELL", "true"]
    for p in ps:  # docker ps's PORTS column, ranges and all
        row = next(line for line in text.splitlines() if line.startswith(p["ID"]))
        assert row.endswith(p["Ports"]) if p["Ports"] else True
    assert "0.0.0.0:7000-7001->7000-7001/tcp" in text and "127.0.0.1:18080->80/tcp" in text
    for c in killed:
        row = next(line for line in text.splitlines() if line.startswith(c["id"]))
        assert "Exited (137) at " in row and row.endswith("(OOM killed)")

    daemon_words = {p["ID"]: p["Status"] for p in ps}

    def words(now: int) -> dict[str, str]:
        return {
            c.id: psview.status(c, now).removesuffix(" (OOM killed)")
            for c in host.containers.values()
        }

    moments = (asked - step * 10_000_000 for step in range(1000))  # the 10 s before we asked
    assert any(words(now) == daemon_words for now in moments)
