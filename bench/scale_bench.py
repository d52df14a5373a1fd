#!/usr/bin/env python3
"""How verify grows with the host: time and peak memory on hosts of 5k, 20k and 50k layers.

    python bench/scale_bench.py [--layers 5000 20000 50000] [--repeat 2]

Hosts come from make_host.py (cached by run_bench.py's rules under bench/work/), with one
container for every four layers as on the default host. For each size it prints verify's best
wall time and peak RSS, and the growth from the smallest host relative to the growth in layers:
a ratio ≤ 1.0 means "no worse than linear".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_bench import ensure_host, find_ours, measure  # noqa: E402

WORK = Path(__file__).resolve().parent / "work"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[5000, 20000, 50000])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ours, why = find_ours()
    if ours is None:
        print(f"docker-forensics is not usable: {why}", file=sys.stderr)
        return 1
    rows = []
    (WORK / "runs").mkdir(parents=True, exist_ok=True)
    for layers in sorted(args.layers):
        root = ensure_host(layers // 4, layers, args.seed, fresh=False)
        runs = [
            measure(
                [*ours, "verify", str(root), "--format", "json"], WORK / "runs", f"scale-{layers}"
            )
            for _ in range(args.repeat)
        ]
        best = min(r.wall for r in runs)
        peak = max(r.peak_kib for r in runs) / 1024
        rows.append((layers, best, peak))
        print(
            f"{layers:>7} layers {layers // 4:>6} containers  {best:7.2f} s  {peak:7.1f} MiB",
            flush=True,
        )
    base_layers, base_time, base_peak = rows[0]
    print("\nlayers   time growth / layer growth   memory growth / layer growth")
    for layers, best, peak in rows[1:]:
        grow = layers / base_layers
        print(f"{layers:>7}   {best / base_time / grow:26.2f}   {peak / base_peak / grow:28.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
