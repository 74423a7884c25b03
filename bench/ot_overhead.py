"""What fastgan.ot's input checks and rescaling cost, and exact W_2 against its core and POT.

Interleaved rounds (bench/interleaved.py): every contender once per round,
ratios taken within the round, median [quartiles] printed.

1. ``fastgan.ot.wasserstein(x, y, p=2)`` for n = 1,000 points in 2-D
   (uniform in the unit square, float64; bench_ot.py's) against the work it is made of, and against what a user would
   otherwise run for the same exact value:

   - ``linear_sum_assignment(C)``: fastgan's public assignment on the
     precomputed squared-distance cost C (its own checks included; the
     cost's construction not timed);
   - POT: ``ot.emd2(a, b, ot.dist(x, y))`` with uniform weights (numpy),
     the same exact W_2^2 (the same accuracy: both exact LPs);
   - core: cdist, the compiled assignment op on the cost, the pair sums,
     with no checks.

2. Every OT entry point against its core: the public call on valid inputs
   against the compiled op(s) it runs on the same inputs, already checked
   and shaped (and the glue the op needs: the cost from the points for
   ``wasserstein``, the projections for the sliced distance). The ratio - 1
   bounds the cost of the checks, rescaling and conversions (<= 5% is the
   budget).

    .venv/bin/python bench/ot_overhead.py [--rounds 15] [--only sinkhorn] [--threads 1]

Timings on a shared machine: say what else ran; compare ratios only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from interleaved import per_round, ratio, report, rounds  # noqa: E402

import fastgan.ot as fot  # noqa: E402
from fastgan.ot.sinkhorn import epsilon_schedule  # noqa: E402

CPU = torch.device("cpu")
EXACT = "donot_use_mm_for_euclid_dist"


def exact_w2(args: argparse.Namespace) -> None:
    import ot

    g = torch.Generator().manual_seed(1)  # bench_ot.py's points: uniform in the unit square
    n = 1000
    x = torch.rand(n, 2, dtype=torch.float64, generator=g)
    y = torch.rand(n, 2, dtype=torch.float64, generator=g)
    C = torch.cdist(x, y, compute_mode=EXACT).square()
    xn, yn, w = x.numpy(), y.numpy(), np.full(n, 1.0 / n)

    def core():
        M = torch.cdist(x, y, compute_mode=EXACT).square_()
        cols = torch.ops.fastgan.linear_sum_assignment.default(M.unsqueeze(0))[0][0]
        return ((x - y[cols]).square().sum() / n).sqrt()

    value = float(fot.wasserstein(x, y))
    assert abs(value**2 - float(ot.emd2(w, w, ot.dist(xn, yn)))) < 1e-12
    assert abs(value - float(core())) < 1e-12
    times = rounds(
        {
            "wasserstein": lambda: fot.wasserstein(x, y),
            "linear_sum_assignment(C)": lambda: fot.linear_sum_assignment(C),
            "POT emd2(ot.dist)": lambda: ot.emd2(w, w, ot.dist(xn, yn)),
            "core": core,
        },
        args.rounds, args.calls, CPU,
    )
    report(
        "exact W_2, n = m = 1000, 2-D, float64 (cpu)",
        times,
        {
            "wasserstein / linear_sum_assignment(C)": per_round(times, ratio, "wasserstein", "linear_sum_assignment(C)"),
            "POT / wasserstein": per_round(times, ratio, "POT emd2(ot.dist)", "wasserstein"),
            "wasserstein / core": per_round(times, ratio, "wasserstein", "core"),
        },
    )


def entry_points():
    """(name, public call, core call) for every OT entry point, on valid float64 inputs."""
    g = torch.Generator().manual_seed(1)
    f64 = dict(dtype=torch.float64, generator=g)

    def hist(k):
        w = torch.rand(k, **f64) + 0.1
        return w / w.sum()

    # emd2: general weights (network simplex)
    a, b = hist(500), hist(700)
    M = torch.cdist(torch.randn(500, 2, **f64), torch.randn(700, 2, **f64)).square()
    yield ("emd2, weights, 500 x 700", lambda: fot.emd2(a, b, M),
           lambda: torch.ops.fastgan.emd.default(a[None], b[None], M[None], 100000))
    # emd2 / linear_sum_assignment: uniform n = m (assignment)
    C = torch.cdist(torch.randn(1000, 2, **f64), torch.randn(1000, 2, **f64)).square()
    yield ("emd2, uniform, 1000 x 1000", lambda: fot.emd2(None, None, C),
           lambda: torch.ops.fastgan.linear_sum_assignment.default(C[None]))
    yield ("linear_sum_assignment, 1000 x 1000", lambda: fot.linear_sum_assignment(C),
           lambda: torch.ops.fastgan.linear_sum_assignment.default(C[None]))
    # sinkhorn2 (log domain), POT's defaults
    a, b = hist(400), hist(500)
    Ms = torch.cdist(torch.randn(400, 2, **f64), torch.randn(500, 2, **f64)).square()
    Ms /= Ms.max()
    yield ("sinkhorn2, 400 x 500, reg 0.05", lambda: fot.sinkhorn2(a, b, Ms, 0.05),
           lambda: torch.ops.fastgan.sinkhorn_log.default(a[None], b[None], Ms[None], 0.05, 1000, 1e-9))
    # wasserstein_1d
    u, v = torch.randn(200_000, **f64), torch.randn(150_000, **f64)
    yield ("wasserstein_1d, 2e5 vs 1.5e5", lambda: fot.wasserstein_1d(u, v, p=1),
           lambda: torch.ops.fastgan.wasserstein_1d.default(u[None], v[None], None, None, 1.0, False))
    # sliced, fixed projections
    xs, ys = torch.randn(2000, 10, **f64), torch.randn(1500, 10, **f64)
    P = torch.randn(10, 50, **f64)
    P /= P.norm(dim=0)

    def sliced_core():
        xp, yp = (xs @ P).T.contiguous(), (ys @ P).T.contiguous()
        costs = torch.ops.fastgan.wasserstein_1d.default(xp, yp, None, None, 2.0, False)[0]
        return costs.mean().sqrt()

    yield ("sliced_wasserstein_distance, 2000 vs 1500, d 10, 50 dirs",
           lambda: fot.sliced_wasserstein_distance(xs, ys, projections=P), sliced_core)
    # sinkhorn_divergence between clouds
    xd, yd = torch.randn(1, 300, 2, **f64), torch.randn(1, 300, 2, **f64)
    ad = torch.full((1, 300), 1 / 300, dtype=torch.float64)
    pts = torch.cat((xd[0], yd[0]))
    diameter = float((pts.max(0).values - pts.min(0).values).norm())
    eps_list = epsilon_schedule(2, diameter, 0.05, 0.5)
    yield ("sinkhorn_divergence, 300 vs 300, 2-D", lambda: fot.sinkhorn_divergence(xd[0], yd[0]),
           lambda: torch.ops.fastgan.sinkhorn_points.default(xd, yd, ad, ad, 2, eps_list, True, -1.0, 1000, None))


def overheads(args: argparse.Namespace) -> None:
    for name, public, core in entry_points():
        if args.only is not None and args.only not in name:
            continue
        times = rounds({"public": public, "core": core}, args.rounds, args.calls, CPU)
        report(f"{name} (cpu, float64)", times, {"public / core": per_round(times, ratio, "public", "core")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--only", default=None, help="run the comparisons whose name contains this")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.only is None or args.only in "exact W_2 wasserstein":
        exact_w2(args)
    overheads(args)


if __name__ == "__main__":
    main()
