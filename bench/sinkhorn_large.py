"""One large Sinkhorn divergence on the CPU: time and peak memory.

    python bench/sinkhorn_large.py                  # n = m = 100,000, d = 2, float32
    python bench/sinkhorn_large.py --n 20000 --dtype float64

GeomLoss's defaults (p = 2, blur = 0.05, scaling = 0.5, debiased), forward
and backward with respect to x. A stored cost matrix would take n * m * 4
bytes (40 GB at n = 100,000; four of them for the debiased divergence);
fastgan streams the costs, so the peak resident memory stays O((n + m) d)
above the interpreter and torch. Peak RSS is the process's ru_maxrss.
Runs minutes on a laptop-class CPU (about 60 softmins of n * m pairs).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

import fastgan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=2)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--blur", type=float, default=0.05)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, args.d, generator=gen, dtype=dtype).requires_grad_()
    y = torch.randn(args.n, args.d, generator=gen, dtype=dtype) * 0.8 + 0.5
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    value = fastgan.ot.sinkhorn_divergence(x, y, blur=args.blur)
    forward = time.perf_counter() - start
    value.backward()
    total = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    stored = 4 * args.n * args.n * torch.finfo(dtype).bits / 8 / 2**30
    print(
        f"sinkhorn_divergence n = m = {args.n}, d = {args.d}, {args.dtype}, blur {args.blur}, debiased, "
        f"{torch.get_num_threads()} threads: value {float(value.detach()):.6g}, forward {forward:.1f} s, "
        f"forward + backward {total:.1f} s, peak RSS {peak:.2f} GiB (before the call {before:.2f} GiB; "
        f"the four stored cost matrices would take {stored:.0f} GiB), grad finite: "
        f"{bool(torch.isfinite(x.grad).all())}"
    )


if __name__ == "__main__":
    main()
