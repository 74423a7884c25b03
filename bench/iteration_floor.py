"""A training iteration beside its matrix-product floor, one and two threads.

For each algorithm's 2-D recipe (the trainer's defaults on grid25), times
``--iters`` generator iterations (``Trainer.train_steps``, everything a step
does) on one and on two threads, rounds alternating so that both see the same
machine. Then the shapes of the step's matrix products (``aten::mm``,
``addmm``, ``addmm_``, ``bmm``) are recorded and replayed alone with
``torch.mm``: the floor a step cannot go under without doing less arithmetic;
the rest is elementwise work, the optimizer and per-op overhead.

    python bench/iteration_floor.py --algos wgan-gp,sngan --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from fastgan.train import Trainer, preset

PRODUCTS = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::matmul")


def timed(trainer: Trainer, iters: int) -> float:
    start = time.perf_counter()
    trainer.train_steps(iters)
    return (time.perf_counter() - start) / iters


def products(trainer: Trainer, iters: int) -> tuple[float, float]:
    """(GFLOP per iteration in matrix products, seconds those products take alone).

    The products' shapes are recorded by the profiler over ``iters`` iterations, then
    each shape is replayed with ``torch.mm`` on fresh operands, outside the profiler,
    as many times per iteration as the step ran it: the floor of the step's arithmetic.
    """
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        trainer.train_steps(iters)
    gemms: list[tuple[int, int, int, float]] = []  # (m, k, n, calls per iteration)
    for e in prof.key_averages(group_by_input_shape=True):
        if e.key not in PRODUCTS:
            continue
        mats = [s for s in e.input_shapes if len(s) == 2]
        a, b = mats[-2], mats[-1]  # mm: (A, B); addmm / addmm_: (bias or C, A, B)
        gemms.append((a[0], a[1], b[1], e.count / iters))
    flops = sum(2 * m * k * n * c for m, k, n, c in gemms)
    operands = [(torch.randn(m, k), torch.randn(k, n), c) for m, k, n, c in gemms]
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(50):
            for a, b, c in operands:
                for _ in range(round(c)):
                    torch.mm(a, b)
        best = min(best, (time.perf_counter() - start) / 50)
    return flops * 1e-9, best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algos", default="wgan-gp,sngan")
    p.add_argument("--iters", type=int, default=400)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--backend", default="auto")
    args = p.parse_args()
    for algo in args.algos.split(","):
        trainer = Trainer(preset(algo, progress=False, backend=args.backend))
        trainer.train_steps(200)  # warm-up
        times: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(args.rounds):
            for threads in (1, 2):
                torch.set_num_threads(threads)
                times[threads].append(timed(trainer, args.iters))
        torch.set_num_threads(1)
        gflop, floor = products(trainer, args.iters)
        one, two = statistics.median(times[1]), statistics.median(times[2])
        print(
            f"{algo} ({args.backend}): iteration {1e3 * one:.2f} ms on 1 thread, {1e3 * two:.2f} ms on 2 "
            f"(medians of {args.rounds} rounds of {args.iters}); its matrix products {gflop:.3f} GFLOP, "
            f"{1e3 * floor:.2f} ms alone on 1 thread ({gflop / floor:.0f} GFLOP/s): the iteration is "
            f"{one / floor:.2f}x its product floor"
        )


if __name__ == "__main__":
    main()
