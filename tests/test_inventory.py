"""inventory against the daemon's own view (the sample's truth) and against the real corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import CORPUS


def _tags_by_image(rows: list[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for row in rows:
        tags = out.setdefault(row["ID"], set())
        if row["Tag"] != "<none>":
            tags.add(f"{row['Repository']}:{row['Tag']}")
    return out


def test_sample_containers_match_the_daemon(
    cli, sample_master: Path, truth: dict[str, Any]
) -> None:
    result = cli("inventory", sample_master, "--format", "json")
    assert result.code == 0, result.stderr
    doc = result.json()
    ours = {(c["id"], c["name"], c["state"]) for c in doc["containers"]}
    daemon = {(p["ID"], p["Names"], p["State"]) for p in truth["ps"]}
    assert ours == daemon
    assert doc["layout"] == "modern" and doc["driver"] == truth["driver"]


def test_sample_container_details_match_inspect(
    cli, sample_master: Path, truth: dict[str, Any]
) -> None:
    doc = cli("inventory", sample_master, "--format", "json").json()
    ours = {c["id"]: c for c in doc["containers"]}
    for inspected in truth["inspect_containers"]:
        mine = ours[inspected["Id"]]
        assert mine["image_id"] == inspected["Image"]
        assert mine["created"] == inspected["Created"]
        assert mine["exit_code"] == inspected["State"]["ExitCode"]
        graph = inspected["GraphDriver"]
        assert graph["Name"] == mine["driver"] == doc["driver"]
        if "UpperDir" in graph["Data"]:
            assert mine["mount_id"] == graph["Data"]["UpperDir"].split("/")[-2]
        names = sorted(m["Name"] for m in inspected["Mounts"] if m["Type"] == "volume")
        assert sorted(v["name"] for v in mine["volumes"] if v["type"] == "volume") == names


def test_sample_images_match_the_daemon(cli, driver_sample: tuple[Path, dict[str, Any]]) -> None:
    root, truth = driver_sample
    doc = cli("inventory", root, "--format", "json").json()
    ours_all = {i["id"]: set(i["tags"]) for i in doc["images"]}
    ours_top = {i["id"]: set(i["tags"]) for i in doc["images"] if not i["intermediate"]}
    assert ours_top == _tags_by_image(truth["images"])
    assert ours_all == _tags_by_image(truth["images_all"])
    layers = {i["id"]: [layer["diff_id"] for layer in i["layers"]] for i in doc["images"]}
    for inspected in truth["inspect_images"]:
        assert layers[inspected["Id"]] == inspected["RootFS"]["Layers"]


def test_sample_volumes_match_the_daemon(cli, driver_sample: tuple[Path, dict[str, Any]]) -> None:
    root, truth = driver_sample
    doc = cli("inventory", root, "--format", "json").json()
    assert {v["name"] for v in doc["volumes"]} == {v["Name"] for v in truth["volumes"]}


def _expected(name: str, what: str) -> Any:
    return json.loads((CORPUS / "expected" / f"{name}.de-list-{what}.json").read_text())


def test_corpus_containers_match_docker_explorer(cli, corpus_roots: dict[str, Path]) -> None:
    for name, root in corpus_roots.items():
        doc = cli("inventory", root, "--format", "json").json()
        ours = {c["id"]: c for c in doc["containers"]}
        peer = _expected(name, "all-containers")
        assert set(ours) == {p["container_id"] for p in peer}, name
        for p in peer:
            mine = ours[p["container_id"]]
            assert mine["image_id"].removeprefix("sha256:") == p["image_id"]
            if "mount_id" in p:
                assert mine["mount_id"] == p["mount_id"]
            assert all(mine["name"] for mine in ours.values()), "every container has its name"


def test_corpus_images_match_docker_explorer(cli, corpus_roots: dict[str, Path]) -> None:
    for name, root in corpus_roots.items():
        doc = cli("inventory", root, "--format", "json").json()
        tagged = {
            i["id"].removeprefix("sha256:"): set(i["tags"]) for i in doc["images"] if i["tags"]
        }
        expected: dict[str, set[str]] = {}
        for store in _expected(name, "repositories"):
            for repo, refs in store["Repositories"].items():
                for ref, target in refs.items():
                    if "@" in ref:
                        continue
                    tag = ref if ":" in ref else f"{repo}:{ref}"
                    expected.setdefault(target.removeprefix("sha256:"), set()).add(tag)
        assert tagged == expected, name


def test_legacy_corpus_names_and_layers(cli, corpus_roots: dict[str, Path]) -> None:
    doc = cli("inventory", corpus_roots["aufs.v1"], "--format", "json").json()
    assert doc["layout"] == "legacy" and doc["driver"] == "aufs"
    names = {c["id"][:12]: c["name"] for c in doc["containers"]}
    assert names == {
        "3b03d0958390": "insane_rosalind",
        "fbb6711cefc7": "kickass_mestorf",
        "de44dd97cfd1": "angry_rosalind",
    }
    (busybox,) = [i for i in doc["images"] if i["tags"]]
    assert busybox["tags"] == ["busybox:latest"]
    assert [layer["id"][:12] for layer in busybox["layers"]] == ["df557f39d413", "1cee97b18f87"]


def test_inventory_text_lists_everything(cli, sample_master: Path, truth: dict[str, Any]) -> None:
    result = cli("inventory", sample_master)
    assert result.code == 0
    for p in truth["ps"]:
        assert p["ID"][:12] in result.stdout and p["Names"] in result.stdout
    assert "sample/app:1.0" in result.stdout


# -- what docker ps -a, docker images -a and docker inspect show, field by field ---------------


def _by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in doc["containers"]}


def _port_rows(port_map: dict[str, Any] | None) -> list[tuple[str, str | None, str | None]]:
    """A docker inspect port map as (port, host ip, host port) rows, one per binding."""
    rows = []
    for port, bindings in (port_map or {}).items():
        rows += [(port, b["HostIp"], b["HostPort"]) for b in bindings or []] or [(port, None, None)]
    return sorted(rows)


def _our_port_rows(ports: list[dict[str, Any]]) -> list[tuple[str, str | None, str | None]]:
    return sorted((p["container_port"], p["host_ip"], p["host_port"]) for p in ports)


def _run_config_matches(ours: dict[str, Any], docker: dict[str, Any]) -> None:
    assert ours["env"] == (docker.get("Env") or [])
    assert ours["entrypoint"] == docker.get("Entrypoint")
    assert ours["cmd"] == docker.get("Cmd")
    assert ours["labels"] == (docker.get("Labels") or {})
    assert ours["working_dir"] == docker.get("WorkingDir")
    assert ours["user"] == docker.get("User")
    assert ours["exposed_ports"] == sorted(docker.get("ExposedPorts") or {})
    assert ours["healthcheck"] == (docker.get("Healthcheck") or {}).get("Test")


def test_container_details_match_inspect_on_every_sample(
    cli, driver_sample: tuple[Path, dict[str, Any]]
) -> None:
    root, truth = driver_sample
    ours = _by_id(cli("inventory", root, "--format", "json").json())
    for inspected in truth["inspect_containers"]:
        mine = ours[inspected["Id"]]
        state, host_config = inspected["State"], inspected["HostConfig"]
        _run_config_matches(mine["config"], inspected["Config"])
        assert mine["hostname"] == inspected["Config"]["Hostname"]
        assert mine["oom_killed"] is state["OOMKilled"]
        assert mine["error"] == (state["Error"] or None)
        assert mine["restart_count"] == inspected["RestartCount"]
        assert mine["health"] == state.get("Health")  # none of the samples has a healthcheck
        assert mine["log_path"] == (inspected["LogPath"] or None)
        assert mine["log_driver"] == host_config["LogConfig"]["Type"]
        assert mine["network_mode"] == host_config["NetworkMode"]
        assert mine["restart_policy"] == {
            "name": host_config["RestartPolicy"]["Name"],
            "maximum_retry_count": host_config["RestartPolicy"]["MaximumRetryCount"],
        }
        assert _our_port_rows(mine["ports"]) == _port_rows(inspected["NetworkSettings"]["Ports"])
        assert _our_port_rows(mine["port_bindings"]) == _port_rows(host_config["PortBindings"])
        networks = inspected["NetworkSettings"]["Networks"]
        assert [n["name"] for n in mine["networks"]] == sorted(networks)
        for n in mine["networks"]:
            assert n["ip_address"] == (networks[n["name"]]["IPAddress"] or None)
        _mounts_match(root, mine["mounts"], inspected["Mounts"])
        _upper_dir_matches(root, mine, inspected["GraphDriver"])


def _mounts_match(root: Path, ours: list[dict[str, Any]], docker: list[dict[str, Any]]) -> None:
    assert len(ours) == len(docker)
    for mine, theirs in zip(ours, sorted(docker, key=lambda m: m["Destination"]), strict=True):
        for key in ("type", "name", "destination", "driver", "mode", "rw", "propagation"):
            assert mine[key] == theirs[key.capitalize() if key != "rw" else "RW"], key
        # docker inspect gives a volume's path from the volume store where the record has none
        assert mine["source"] in (theirs["Source"], "")
        assert theirs["Source"].endswith(f"/volumes/{theirs['Name']}/_data")


def _upper_dir_matches(root: Path, mine: dict[str, Any], graph: dict[str, Any]) -> None:
    data = graph["Data"] or {}
    if "UpperDir" in data:
        assert data["UpperDir"].endswith("/docker/" + mine["upper_dir"])
        assert (root / mine["upper_dir"]).is_dir()
    else:  # vfs: the container layer is a full copy, docker shows no upper dir either
        assert mine["upper_dir"] is None


def test_ps_columns_match_the_daemon(cli, driver_sample: tuple[Path, dict[str, Any]]) -> None:
    root, truth = driver_sample
    ours = _by_id(cli("inventory", root, "--format", "json").json())
    text = cli("inventory", root, "--no-trunc").stdout
    for p in truth["ps"]:
        mine = ours[p["ID"]]
        assert mine["ps_command"] == json.loads(p["Command"])  # docker quotes it as Go does
        created = p["CreatedAt"].replace(" +0000 UTC", " UTC")  # the CLI's zone is UTC here
        row = next(line for line in text.splitlines() if line.startswith(p["ID"]))
        assert created in row and p["Command"] in row


def test_image_configs_match_inspect(cli, driver_sample: tuple[Path, dict[str, Any]]) -> None:
    root, truth = driver_sample
    images = {i["id"]: i for i in cli("inventory", root, "--format", "json").json()["images"]}
    assert len(truth["inspect_images"]) == len(images)
    for inspected in truth["inspect_images"]:
        _run_config_matches(images[inspected["Id"]]["config"], inspected["Config"])


def _words_at(host: Any, now: int) -> dict[str, tuple[str, str]]:
    from forensics import psview

    return {c.id: (psview.status(c, now), psview.created(c, now)) for c in host.containers.values()}


def test_docker_words_at_the_time_the_daemon_was_asked(
    driver_sample: tuple[Path, dict[str, Any]],
) -> None:
    """docker ps says "Exited (3) 10 seconds ago": at some moment just after the last recorded
    time, our words (``--now``) are docker's for every container at once."""
    from forensics.evidence import Evidence
    from forensics.psview import epoch_ns
    from forensics.stores import read_host

    root, truth = driver_sample
    host = read_host(Evidence(root))
    daemon = {p["ID"]: (p["Status"], p["RunningFor"]) for p in truth["ps"]}
    times = [epoch_ns(t) for c in host.containers.values() for t in (c.started, c.finished)]
    latest = max(t for t in times if t is not None)
    moments = (latest + step * 10_000_000 for step in range(6000))  # 60 s in 10 ms steps
    assert any(_words_at(host, now) == daemon for now in moments)
    before = latest - 20 * 1_000_000_000  # and not at just any time
    assert _words_at(host, before) != daemon


def test_images_dash_a_lists_the_intermediate_images(
    cli, driver_sample: tuple[Path, dict[str, Any]]
) -> None:
    root, truth = driver_sample
    short = {i["ID"].removeprefix("sha256:")[:12] for i in truth["images"]}
    every = {i["ID"].removeprefix("sha256:")[:12] for i in truth["images_all"]}

    def listed(*args: str) -> set[str]:
        text = cli("inventory", root, *args).stdout
        table = text.split("\nIMAGES")[1].split("\n\n")[0].splitlines()[2:]
        return {line.split()[0] for line in table}

    assert listed() == short
    assert listed("-a") == every and every > short


def test_times_in_text_carry_their_zone(cli, sample_master: Path, truth: dict[str, Any]) -> None:
    text = cli("inventory", sample_master).stdout
    exited = next(c for c in truth["inspect_containers"] if c["Name"] == "/exited")
    finished = exited["State"]["FinishedAt"]
    assert f"Exited (3) at {finished[:10]} {finished[11:19]} UTC" in text
    assert "T01:" not in text  # no bare ISO time without its zone


# -- one container, found as docker finds it --------------------------------------------------


def test_container_found_by_id_name_and_prefix(
    cli, sample_master: Path, truth: dict[str, Any]
) -> None:
    ids = sorted(c["Id"] for c in truth["inspect_containers"])
    target = next(c for c in truth["inspect_containers"] if c["Name"] == "/exited")
    unique = next(
        cid[:n]
        for n in range(1, 64)
        for cid in [target["Id"]]
        if sum(i.startswith(cid[:n]) for i in ids) == 1
    )
    for wanted in (target["Id"], "exited", "/exited", unique):
        result = cli("inventory", sample_master, "--container", wanted, "--format", "json")
        assert result.code == 0, (wanted, result.stderr)
        mine = result.json()
        assert mine["id"] == target["Id"] and mine["name"] == "exited"
        assert mine["status"].startswith("Exited (3) at ")
    text = cli("inventory", sample_master, "--container", "exited").stdout
    assert "ID:" in text and target["Id"] in text and "GREETING=hello" in text


def test_ambiguous_and_unknown_containers_say_so_as_docker(
    cli, sample_master: Path, truth: dict[str, Any]
) -> None:
    ids = [c["Id"] for c in truth["inspect_containers"]]
    shared = next(a[:n] for a in ids for b in ids if a != b for n in (1,) if b.startswith(a[:n]))
    result = cli("inventory", sample_master, "--container", shared)
    assert result.code == 16
    assert f"multiple IDs found with provided prefix: {shared}" in result.stderr
    missing = cli("inventory", sample_master, "--container", "no-such-name")
    assert missing.code == 16 and "No such container: no-such-name" in missing.stderr
    empty = cli("inventory", sample_master, "--container", "")
    assert empty.code == 16 and "invalid container name or ID: value is empty" in empty.stderr
    assert "Traceback" not in result.stderr + missing.stderr + empty.stderr


def test_a_name_wins_over_an_id_prefix(sample_master: Path, truth: dict[str, Any]) -> None:
    """docker looks for the exact name before it looks for a prefix."""
    from forensics.evidence import Evidence
    from forensics.lookup import find_container
    from forensics.stores import read_host

    host = read_host(Evidence(sample_master))
    running = next(c["Id"] for c in truth["inspect_containers"] if c["Name"] == "/running")
    other = next(c for c in host.containers.values() if c.id != running)
    other.name = running[:6]
    assert find_container(host, running[:6]) == other.id
    assert find_container(host, running[:7]) == running


# -- the Docker 1.8 sample and the docker-explorer corpus -------------------------------------


def test_legacy_container_and_image_details(cli, dm_master: Path, dm_truth: dict[str, Any]) -> None:
    doc = cli("inventory", dm_master, "--format", "json").json()
    (truth_c,) = dm_truth["containers"]
    (mine,) = doc["containers"]
    assert mine["ps_command"] == truth_c["command"]
    assert mine["networks"] == [
        {"name": "bridge", "ip_address": "172.17.0.1", "mac_address": "02:42:ac:11:00:01"}
    ]
    assert mine["log_path"].endswith(f"/containers/{mine['id']}/{mine['id']}-json.log")
    assert (dm_master / "containers" / mine["id"] / f"{mine['id']}-json.log").is_file()
    assert mine["upper_dir"] is None  # devicemapper: the container layer is a thin device
    top = next(i for i in doc["images"] if i["id"] == truth_c["image_id"])
    steps = [layer["created_by"] for layer in dm_truth["layers"]]
    cmd = next(s for s in reversed(steps) if "#(nop) CMD" in s)
    assert top["config"]["cmd"] == json.loads(cmd.split("CMD ", 1)[1].replace('" "', '", "'))
    exposed = next(s for s in steps if "#(nop) EXPOSE" in s).split("EXPOSE ", 1)[1].split()
    assert top["config"]["exposed_ports"] == sorted(exposed)
    assert mine["config"]["exposed_ports"] == sorted(exposed)
    env = next(s for s in steps if "#(nop) ENV" in s).split("ENV ", 1)[1]
    assert env in top["config"]["env"]
    started = truth_c["started_at"]
    text = cli("inventory", dm_master, "--now", started[:19] + "Z", "--no-trunc").stdout
    assert "Up Less than a second" in text and "\"nginx -g 'daemon off;'\"" in text
    later = cli("inventory", dm_master, "--now", "2015-10-13T04:16:42Z").stdout
    assert "Up 2 hours" in later and "80/tcp, 443/tcp" in later


def test_corpus_details_match_docker_explorer(cli, corpus_roots: dict[str, Path]) -> None:
    from forensics.timeline import utc

    for name, root in corpus_roots.items():
        ours = _by_id(cli("inventory", root, "--format", "json").json())
        for p in _expected(name, "all-containers"):
            mine = ours[p["container_id"]]
            assert mine["log_path"] == p["log_path"]
            assert (mine["config"]["labels"] or None) == p.get("labels")
            peer_start = utc(p["start_date"].replace("+00:00", "Z"))  # to the microsecond
            assert (utc(mine["started"]) or "")[:26] == (peer_start or "")[:26]
            if "upper_dir" in p:
                assert p["upper_dir"] == "<root>/" + mine["upper_dir"]
            # the peer prefers a ContainerConfig key that docker never writes; docker inspect
            # shows Config.ExposedPorts, which is what we list
            assert set(mine["config"]["exposed_ports"]) <= set(p.get("exposed_ports", {}))


def test_json_written_in_pieces_is_the_whole_document(
    cli, driver_sample: tuple[Path, dict[str, Any]], dm_master: Path, corpus_roots: dict[str, Path]
) -> None:
    """The JSON is written one record at a time; the bytes are those of the whole document."""
    from forensics.evidence import Evidence
    from forensics.inventory import build_inventory
    from forensics.report import to_json
    from forensics.stores import read_host

    for root in (driver_sample[0], dm_master, *corpus_roots.values()):
        written = cli("inventory", root, "--format", "json").stdout
        assert written == to_json(build_inventory(read_host(Evidence(root))))
