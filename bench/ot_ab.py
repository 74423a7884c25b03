"""A/B of fastgan.ot's public entry points: this tree against another build of fastgan.

Each round runs one process per side, in turn (A, B, A, B, ...), each
timing every entry point of bench/ot_overhead.py (``--calls`` calls after a
warm-up, the median of ``--repeats``); the ratio B / A is taken within a
round and the median [quartiles] over rounds printed. Side A imports the
fastgan given by ``--before`` (a checkout whose ``fastgan/`` holds a built
extension, e.g. ``git worktree add /tmp/before <commit>`` plus the
compiled ``fastgan/_C*.so`` when the C++ sources are the same), side B this
tree's.

    .venv/bin/python bench/ot_ab.py --before /tmp/before [--rounds 6] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, statistics, sys, time
import torch
torch.set_num_threads({threads})
sys.path.insert(0, {bench!r})
import fastgan
import ot_overhead
from ot_overhead import entry_points
g = torch.Generator().manual_seed(1)
x = torch.rand(1000, 2, dtype=torch.float64, generator=g)
y = torch.rand(1000, 2, dtype=torch.float64, generator=g)
import itertools
# entry_points() rebinds its inputs: each call is timed before the next is made
first = [("wasserstein, 1000 x 1000, 2-D", lambda: fastgan.ot.wasserstein(x, y))]
calls = itertools.chain(first, ((name, public) for name, public, _ in entry_points()))
out = {{"fastgan": fastgan.__file__}}
for name, fn in calls:
    try:
        fn()
    except (AttributeError, TypeError):  # an entry point that side does not have
        continue
    times = []
    for _ in range({repeats}):
        start = time.perf_counter()
        for _ in range({calls}):
            fn()
        times.append((time.perf_counter() - start) / {calls})
    out[name] = statistics.median(times)
print(json.dumps(out))
"""


def run_side(pythonpath: str | None, args: argparse.Namespace) -> dict:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    code = CHILD.format(threads=args.threads, bench=str(HERE), repeats=args.repeats, calls=args.calls)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd="/")
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the checkout of side A (its fastgan/ is imported)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch_threads())
    args = parser.parse_args()
    ratios: dict[str, list[float]] = {}
    sides: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        a = run_side(args.before, args)
        b = run_side(str(HERE.parent), args)
        print(f"A: {a.pop('fastgan')}  B: {b.pop('fastgan')}", file=sys.stderr)
        for name in [k for k in a if k in b]:
            ratios.setdefault(name, []).append(b[name] / a[name])
            sides.setdefault(name, []).append(a[name])
            sides.setdefault(name + " (B)", []).append(b[name])
    print(f"{args.threads} torch threads, {args.rounds} rounds; B / A per round, median [quartiles]")
    for name, values in ratios.items():
        q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
        a_ms = statistics.median(sides[name]) * 1e3
        b_ms = statistics.median(sides[name + " (B)"]) * 1e3
        print(f"  {name:<58} A {a_ms:9.2f} ms  B {b_ms:9.2f} ms  B/A {q2:.3f} [{q1:.3f}, {q3:.3f}]")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
