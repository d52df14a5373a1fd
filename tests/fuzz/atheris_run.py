"""The long fuzz runs: one target of :mod:`targets` under atheris (libFuzzer, coverage-guided).

    pip install -e '.[test,fuzz]'
    python tests/fuzz/atheris_run.py --list
    python tests/fuzz/atheris_run.py NAME [--runs N] [--seed S] [-- LIBFUZZER_FLAGS...]

The target functions are the very ones the hypothesis harnesses call; atheris builds their
structured input from the raw bytes it mutates (:class:`draw.ProviderDraw`). An uncaught exception
is a crash: atheris prints the traceback, libFuzzer writes the input to ``crash-*`` (under
``--artifacts``) and the run stops with a non-zero status. At the end the runner prints the
number of inputs run and the time taken.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parents[1])]

#: a progress line every this many inputs
REPORT_EVERY = 100_000


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", nargs="?", help="the target (see --list)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--runs", type=int, default=1_000_000, help="inputs to run (1,000,000)")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer's seed (1)")
    parser.add_argument(
        "--artifacts", default="fuzz-artifacts", help="where crash inputs go (./fuzz-artifacts)"
    )
    parser.add_argument(
        "--no-instrument",
        action="store_true",
        help="no coverage instrumentation of forensics (faster, blind: random inputs only)",
    )
    ours, _, extra = _split(argv)
    return parser.parse_args(ours), extra


def _split(argv: list[str]) -> tuple[list[str], str, list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], "--", argv[i + 1 :]
    return argv, "", []


def main(argv: list[str]) -> int:
    args, extra = parse(argv)
    import atheris

    with atheris.instrument_imports(include=["forensics"]) if not args.no_instrument else _null():
        import forensics.formats.bbolt  # noqa: F401  (instrumented when imported here)
        import forensics.formats.jsonfile  # noqa: F401
        import forensics.formats.tarsplit  # noqa: F401
        import forensics.formats.thin  # noqa: F401
        import forensics.formats.ustar  # noqa: F401
        import forensics.fs.ext4  # noqa: F401
        import forensics.fs.xfs  # noqa: F401
        import forensics.repair.linkgraph  # noqa: F401
        import forensics.repair.tags  # noqa: F401
        import forensics.stores.buildkit  # noqa: F401
        import forensics.stores.containerd.metadata  # noqa: F401
        import forensics.stores.containerd.snapshotter  # noqa: F401
        import forensics.stores.containers  # noqa: F401
        import forensics.stores.devicemapper  # noqa: F401
        import forensics.stores.imagestore  # noqa: F401
        import forensics.stores.legacy  # noqa: F401
        import forensics.stores.tags  # noqa: F401
        import forensics.thin.check  # noqa: F401
        import forensics.thin.device  # noqa: F401
        import forensics.thin.dump  # noqa: F401
        import forensics.thin.ls  # noqa: F401
    from draw import ProviderDraw
    from targets import TARGETS

    if args.list or not args.name:
        for t in TARGETS.values():
            print(f"{t.name:22} {t.about}")
        return 0
    if args.name not in TARGETS:
        print(f"no target {args.name!r}; see --list", file=sys.stderr)
        return 16
    target = TARGETS[args.name]
    target.run(ProviderDraw(atheris.FuzzedDataProvider(b"")))  # build fixtures before timing
    counter = Counter(args.name, args.runs)

    def one_input(data: bytes) -> None:
        if counter.tick() == 1:  # atheris.Fuzz() has put its own tracers in place by now
            _untrace_array_comparisons(atheris)
        target.run(ProviderDraw(atheris.FuzzedDataProvider(data)))

    Path(args.artifacts).mkdir(parents=True, exist_ok=True)
    replay = any(not a.startswith("-") for a in extra)  # input files: run each once
    flags = [
        sys.argv[0],
        *([] if replay else [f"-runs={args.runs}"]),
        f"-seed={args.seed}",
        f"-max_len={target.max_len}",
        "-rss_limit_mb=3072",
        "-timeout=30",
        "-print_final_stats=1",
        f"-artifact_prefix={args.artifacts.rstrip('/')}/{args.name}-",
        *extra,
    ]
    atheris.Setup(flags, one_input)
    counter.start()
    atheris.Fuzz()  # libFuzzer exits the process itself, through Counter's exit hook
    return 0


def _untrace_array_comparisons(atheris: Any) -> None:
    """Compare numpy arrays without atheris' comparison tracing.

    Instrumented code calls ``atheris._trace_cmp(left, right, op, counter, is_const)`` for every
    comparison; atheris 3.0.0 leaks the result when it is an array (``keys < limit``: one
    boolean array per comparison, gigabytes over a million inputs of the thin-pool readers,
    until libFuzzer's RSS limit stops the run). Array comparisons are done here, untraced;
    every other comparison still goes to atheris (their values guide libFuzzer). Installed once
    the fuzzing runs: ``atheris.Fuzz()`` sets ``_trace_cmp`` anew when it starts."""
    import operator

    import numpy as np

    ops = (operator.lt, operator.le, operator.eq, operator.ne, operator.gt, operator.ge)
    traced = atheris._trace_cmp

    def trace_cmp(left: Any, right: Any, op: int, counter: int, is_const: bool) -> Any:
        if isinstance(left, np.ndarray) or isinstance(right, np.ndarray):
            return ops[op](left, right)
        return traced(left, right, op, counter, is_const)

    atheris._trace_cmp = trace_cmp


class Counter:
    """Counts inputs, prints progress, and the totals when libFuzzer ends the process."""

    def __init__(self, name: str, runs: int) -> None:
        self.name, self.runs, self.n, self.t0 = name, runs, 0, time.monotonic()
        self.reported = False

    def start(self) -> None:
        self.t0 = time.monotonic()
        import atexit

        atexit.register(self.done)

    def tick(self) -> int:
        """Count one input; its number."""
        self.n += 1
        if self.n % REPORT_EVERY == 0 and self.n < self.runs:
            print(f"[{self.name}] {self.n:,} inputs, {self.elapsed():.0f} s", file=sys.stderr)
        if self.n == self.runs:
            self.done()
        return self.n

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def done(self) -> None:
        if self.reported:
            return
        self.reported = True
        t = self.elapsed()
        rate = self.n / t if t else 0.0
        print(
            f"[{self.name}] {self.n:,} inputs in {t:.0f} s ({rate:,.0f}/s)",
            file=sys.stderr,
            flush=True,
        )


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main(sys.argv[1:]))
