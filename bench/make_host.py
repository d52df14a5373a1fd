#!/usr/bin/env python3
"""Generate a synthetic, realistically shaped Docker 28.x root (graphdriver store, overlay2).

    python bench/make_host.py OUT --containers 5000 --layers 20000 [--seed 1] [--force]

Every cross reference is consistent: image IDs are the sha256 of the config bytes, chain IDs follow
the ChainID formula, each layer's tar-split stream reassembles from ``overlay2/<cache-id>/diff`` to
its DiffID, ``lower`` files and ``l/`` links follow the layer chains, container mounts sit on the
top layer of their image. Shapes follow shared/reference/layout_examples/modern_28.x_overlay2 and
the real capture in shared/corpus/docker-explorer/overlay2.v2.tgz. Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from containerplan import plan_containers  # noqa: E402
from hostmodel import HostPlan  # noqa: E402
from hostplan import Planner, uuid4_from  # noqa: E402
from hostwrite import write_host  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to create (the Docker root)")
    parser.add_argument("--containers", type=int, default=5000)
    parser.add_argument("--layers", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)
    if args.layers < 1 or args.containers < 0:
        parser.error("need --layers >= 1 and --containers >= 0")
    return args


def plan_host(seed: int, layers: int, containers: int) -> HostPlan:
    """Everything the writer needs, drawn deterministically from ``seed``."""
    planner = Planner(seed, layers, containers)
    planner.plan_images()
    found, volumes = plan_containers(planner, containers)
    return HostPlan(planner.layers, planner.images, found, volumes, uuid4_from(planner.rng))


def prepare_out(out: Path, force: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not force:
            raise SystemExit(f"{out} exists and is not empty (use --force to replace it)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def summary(plan: HostPlan, seconds: float) -> str:
    volumes = len(plan.volumes)
    return (
        f"made {len(plan.layers)} layers, {len(plan.images)} images, "
        f"{len(plan.containers)} containers, {volumes} volumes in {seconds:.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    prepare_out(args.out, args.force)
    plan = plan_host(args.seed, args.layers, args.containers)
    write_host(plan, os.fspath(args.out))
    print(summary(plan, time.perf_counter() - start), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
