"""A training iteration beside its arithmetic floor, one and two threads.

For each algorithm's recipe on ``--data`` (the trainer's defaults: grid25's MLPs,
or the small convolutional models on mnist / digits), times ``--iters`` generator
iterations (``Trainer.train_steps``, everything a step does) on one and on two
threads, rounds alternating so that both see the same machine. Then the step's
matrix products (``aten::mm``, ``addmm``, ``addmm_``, ``bmm``, ``matmul``) and convolutions
(``aten::convolution`` forward, ``aten::convolution_backward``; the double
backward of a gradient penalty runs as such calls too) are recorded with their
shapes and arguments and replayed alone on fresh operands: the floor a step cannot
go under without doing less arithmetic or doing it faster; the rest is
elementwise work, normalisation, the optimizer, layout copies and per-op overhead.

    python bench/iteration_floor.py --algos wgan-gp,sngan --rounds 5
    python bench/iteration_floor.py --data mnist --algos gan,wgan-gp,sngan --iters 40 --backend reference
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from fastgan.train import Trainer, preset

PRODUCTS = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::matmul")
CONVOLUTIONS = ("aten::convolution", "aten::convolution_backward")


def timed(trainer: Trainer, iters: int) -> float:
    start = time.perf_counter()
    trainer.train_steps(iters)
    return (time.perf_counter() - start) / iters


def _nested(e) -> bool:
    """Whether a profiler event runs inside another recorded product or convolution."""
    parent = e.cpu_parent
    while parent is not None:
        if parent.name in PRODUCTS or parent.name in CONVOLUTIONS:
            return True
        parent = parent.cpu_parent
    return False


_DTYPES = {"float": torch.float32, "double": torch.float64, "c10::BFloat16": torch.bfloat16, "c10::Half": torch.float16}


def _replay(e) -> Callable[[], object]:
    """A closure that runs the recorded call ``e`` again on fresh operands of its shapes and dtypes
    (bfloat16 under autocast: ``config.bf16``)."""
    shapes, args = e.input_shapes, list(e.concrete_inputs)
    dtypes = [_DTYPES.get(d, torch.float32) for d in (getattr(e, "input_dtypes", None) or [])] + [torch.float32] * len(shapes)

    def rand(i: int) -> torch.Tensor:
        return torch.randn(*shapes[i], dtype=dtypes[i])

    if e.name in ("aten::bmm", "aten::matmul"):
        a, b = rand(0), rand(1)  # batched: torch.matmul broadcasts as the call did
        return lambda: torch.matmul(a, b)
    if e.name in PRODUCTS:
        mats = [i for i, s in enumerate(shapes) if len(s) == 2]
        a, b = rand(mats[-2]), rand(mats[-1])  # mm: (A, B); addmm / addmm_: (bias or C, A, B)
        return lambda: torch.mm(a, b)
    if e.name == "aten::convolution":
        x, w = rand(0), rand(1)
        b = rand(2) if shapes[2] else None
        return lambda: torch.ops.aten.convolution(x, w, b, *args[3:9])
    g, x, w = (rand(i) for i in range(3))  # convolution_backward(grad_out, input, weight, bias_sizes, ...)
    return lambda: torch.ops.aten.convolution_backward(g, x, w, *args[3:])


def products(trainer: Trainer, iters: int) -> tuple[float, float]:
    """(GFLOP per iteration in matrix products, seconds the products and convolutions take alone).

    Every matrix product and convolution (forward and backward) of ``iters`` iterations
    is recorded by the profiler with its shapes and arguments, then replayed on fresh
    operands, outside the profiler, as many times per iteration as the step ran it: the
    floor of the step's arithmetic. The GFLOP count covers the matrix products only.
    """
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        trainer.train_steps(iters)
    calls: dict[str, list] = {}  # one replay (operands allocated once) per distinct call, and its count
    flops = 0.0
    for e in prof.events():
        if (e.name in PRODUCTS or e.name in CONVOLUTIONS) and not _nested(e):
            key = repr((e.name, e.input_shapes, e.concrete_inputs))
            if key not in calls:
                calls[key] = [_replay(e), 0]
            calls[key][1] += 1
            if e.name in ("aten::bmm", "aten::matmul"):
                a, b = e.input_shapes[:2]
                batch = math.prod(torch.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2])))
                flops += 2 * batch * a[-2] * a[-1] * b[-1]
            elif e.name in PRODUCTS:
                mats = [s for s in e.input_shapes if len(s) == 2]
                flops += 2 * mats[-2][0] * mats[-2][1] * mats[-1][1]
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for call, count in calls.values():
            for _ in range(count):
                call()
        best = min(best, (time.perf_counter() - start) / iters)
    return flops / iters * 1e-9, best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algos", default="wgan-gp,sngan")
    p.add_argument("--iters", type=int, default=400)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--backend", default="auto")
    p.add_argument("--data", default="grid25")
    args = p.parse_args()
    for algo in args.algos.split(","):
        trainer = Trainer(preset(algo, data=args.data, progress=False, backend=args.backend))
        trainer.train_steps(max(3, args.iters // 2))  # warm-up
        times: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(args.rounds):
            for threads in (1, 2):
                torch.set_num_threads(threads)
                times[threads].append(timed(trainer, args.iters))
        torch.set_num_threads(1)
        gflop, floor = products(trainer, args.iters)
        one, two = statistics.median(times[1]), statistics.median(times[2])
        print(
            f"{algo} {args.data} ({args.backend}): iteration {1e3 * one:.2f} ms on 1 thread, {1e3 * two:.2f} ms on 2 "
            f"(medians of {args.rounds} rounds of {args.iters}); its matrix products ({gflop:.3f} GFLOP) and "
            f"convolutions take {1e3 * floor:.2f} ms alone on 1 thread: the iteration is {one / floor:.2f}x that floor"
        )


if __name__ == "__main__":
    main()
