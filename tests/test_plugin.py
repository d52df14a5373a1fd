"""docker-forensics as a Docker CLI plugin (`docker forensics …`), and shell completion."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli

DOCKER_CLIENTS = [
    c for c in ("/usr/bin/docker", shutil.which("docker")) if c and os.access(c, os.X_OK)
]


@pytest.fixture
def docker_config(tmp_path: Path) -> Path:
    """A Docker client config dir with our executable installed as its plugin."""
    exe = shutil.which("docker-forensics")
    assert exe
    plugins = tmp_path / "docker-config" / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-forensics").symlink_to(exe)
    return plugins.parent


def _docker(client: str, config: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_CONFIG": str(config), "DOCKER_HOST": "unix:///nonexistent.sock"}
    return subprocess.run([client, *map(str, args)], capture_output=True, text=True, env=env)


def test_metadata() -> None:
    result = run_cli("docker-cli-plugin-metadata")
    assert result.code == 0
    meta = json.loads(result.stdout)
    assert meta["SchemaVersion"] == "0.1.0" and meta["Version"] and meta["ShortDescription"]


@pytest.mark.skipif(not DOCKER_CLIENTS, reason="no docker client installed")
@pytest.mark.parametrize("client", sorted(set(DOCKER_CLIENTS)))
def test_docker_forensics_runs_as_a_plugin(
    client: str, docker_config: Path, sample_root: Path
) -> None:
    assert "forensics" in _docker(client, docker_config, "--help").stdout
    clean = _docker(client, docker_config, "forensics", "verify", sample_root, "--format", "json")
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout)["summary"]["error"] == 0
    (sample_root / "overlay2" / ("a" * 64)).mkdir()
    damaged = _docker(client, docker_config, "forensics", "verify", sample_root)
    assert damaged.returncode == 4 and "driver.orphan-dir" in damaged.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_script(shell: str) -> None:
    result = run_cli(env={"_DOCKER_FORENSICS_COMPLETE": f"{shell}_source"})
    assert result.code == 0
    assert "_DOCKER_FORENSICS_COMPLETE" in result.stdout


def test_plugin_help_says_docker_forensics() -> None:
    """Called as a plugin (our own name first), the usage lines name ``docker forensics``;
    called as itself, ``docker-forensics``."""
    plugin = run_cli("forensics", "thin", "--help")
    assert plugin.code == 0 and "Usage: docker forensics thin" in plugin.stdout
    assert "docker-forensics" not in plugin.stdout
    assert "Usage: docker forensics verify" in run_cli("forensics", "verify", "--help").stdout
    assert "Usage: docker-forensics thin" in run_cli("thin", "--help").stdout
