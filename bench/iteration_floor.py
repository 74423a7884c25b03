"""A training iteration beside its matrix-product floor, one and two threads.

For each algorithm's 2-D recipe (the trainer's defaults on grid25), times
``--iters`` generator iterations (``Trainer.train_steps``, everything a step
does) and, in the same profiled run, the self time of the matrix products
(``aten::mm``, ``addmm``, ``addmm_``, ``bmm``) with their FLOPs. The products'
time is the floor a step cannot go under without doing less arithmetic; the
rest is elementwise work, the optimizer and per-op overhead. Rounds alternate
the thread counts so that both see the same machine.

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


def products(trainer: Trainer, iters: int) -> tuple[float, float, float]:
    """(seconds per iteration under the profiler, product seconds per iteration, product GFLOP per iteration)."""
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        start = time.perf_counter()
        trainer.train_steps(iters)
        total = time.perf_counter() - start
    events = [e for e in prof.key_averages() if e.key in PRODUCTS]
    return total / iters, sum(e.self_cpu_time_total for e in events) * 1e-6 / iters, sum(e.flops for e in events) * 1e-9 / iters


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
        prof_s, mm_s, gflop = products(trainer, args.iters)
        one, two = statistics.median(times[1]), statistics.median(times[2])
        print(
            f"{algo} ({args.backend}): iteration {1e3 * one:.2f} ms on 1 thread, {1e3 * two:.2f} ms on 2 "
            f"(medians of {args.rounds} rounds of {args.iters}); products {gflop:.3f} GFLOP, "
            f"{1e3 * mm_s:.2f} ms of a profiled {1e3 * prof_s:.2f} ms iteration ({mm_s / prof_s:.0%}; "
            f"{gflop / mm_s:.1f} GFLOP/s in the products)"
        )


if __name__ == "__main__":
    main()
