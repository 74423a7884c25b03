"""Interleaved timings: every contender of a comparison once per round, in turn.

pytest-benchmark times all rounds of one contender, then all of the next.
On a shared machine whose speed drifts by 10-40% within minutes, the ratio
of two such medians carries the drift. Here each round times every contender
back to back (``--calls`` calls each, after a warm-up), ratios are taken
within each round, and the median and quartiles of the per-round ratios are
printed. The contenders are the ones of the pytest benchmarks named below.

    python bench/interleaved.py wgan-gp    # bench_wgan_gp.py: reference / fastgan, penalty overheads
    python bench/interleaved.py sn-step    # bench_spectral_norm.py: spectral-norm overhead of a step
    python bench/interleaved.py power      # bench_spectral_norm.py: power iteration against its floor
    python bench/interleaved.py train      # bench_train.py: one generator iteration of each algorithm
    python bench/interleaved.py train --only wgan-gp-128   # one algorithm at one width
    python bench/interleaved.py train-images --data mnist  # a generator iteration of each image recipe
    python bench/interleaved.py image-knobs --data mnist   # the image recipes' step knobs on and off
    python bench/interleaved.py image-bf16 --data mnist --only gan   # float32 against bf16 autocast
    python bench/interleaved.py dropout    # bench_dropout.py: the GAN critic's dropout layers
    python bench/interleaved.py sn-step --only mlp_critic-16 --rounds 25
    python bench/interleaved.py power --rounds 40 --calls 20 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from conftest import timed  # noqa: E402

Timings = dict[str, list[float]]


def rounds(contenders: dict[str, Callable[[], None]], n_rounds: int, calls: int, device: torch.device) -> Timings:
    """Seconds per call of every contender, one list entry per round."""
    runs = {name: timed(fn, device, calls) for name, fn in contenders.items()}
    for run in runs.values():  # warm-up: allocations, caches, thread pools
        run()
    times: Timings = {name: [] for name in runs}
    for _ in range(n_rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - start) / calls)
    return times


def summary(values: list[float]) -> str:
    """Median [lower quartile, upper quartile]."""
    if len(values) < 2:
        return f"{values[0]:.3f}"
    # statistics' default (exclusive) quartiles; inclusive ones for a few rounds,
    # where the exclusive method extrapolates beyond the data.
    q1, q2, q3 = statistics.quantiles(values, n=4, method="exclusive" if len(values) >= 4 else "inclusive")
    return f"{q2:.3f} [{q1:.3f}, {q3:.3f}]"


def report(title: str, times: Timings, ratios: dict[str, list[float]]) -> None:
    print(f"\n{title}")
    for name, values in times.items():
        print(f"  {name:<28} {statistics.median(values) * 1e3:10.3f} ms per call (median of {len(values)} rounds)")
    for name, values in ratios.items():
        print(f"  {name:<44} {summary(values)}")


def selected(cases, args: argparse.Namespace, name: Callable[[object], str] = str) -> list:
    """The cases whose name contains ``--only`` (all without it)."""
    return [case for case in cases if args.only is None or args.only in name(case)]


def per_round(times: Timings, expr: Callable[..., float], *names: str) -> list[float]:
    """``expr`` of the named contenders' times, round by round."""
    return [expr(*values) for values in zip(*(times[n] for n in names))]


def ratio(a: float, b: float) -> float:
    return a / b


def wgan_gp(args: argparse.Namespace, device: torch.device) -> None:
    import bench_wgan_gp as wg

    names = ["reference", "fastgan", "reference (no penalty)", "fastgan (no penalty)"]
    for setup in selected(wg.SETUPS, args):
        times = rounds({n: wg.critic_step(setup, n, device) for n in names}, args.rounds, args.calls, device)
        report(
            f"WGAN-GP critic step / {setup} ({device.type})",
            times,
            {
                "reference / fastgan": per_round(times, ratio, "reference", "fastgan"),
                "penalty overhead, reference (with / without)": per_round(
                    times, ratio, "reference", "reference (no penalty)"),
                "penalty overhead, fastgan (with / without)": per_round(
                    times, ratio, "fastgan", "fastgan (no penalty)"),
            },
        )


def sn_step(args: argparse.Namespace, device: torch.device) -> None:
    import bench_spectral_norm as sn

    for critic, batch in selected(sn.STEP_CASES, args, lambda case: f"{case[0]}-{case[1]}"):
        names = ["no_sn", "torch", "fastgan"]
        times = rounds({n: sn.critic_step(critic, batch, n, device) for n in names}, args.rounds, args.calls, device)
        over_torch = per_round(times, lambda t, b: (t - b) * 1e3, "torch", "no_sn")
        over_fastgan = per_round(times, lambda f, b: (f - b) * 1e3, "fastgan", "no_sn")
        med_t, med_f = statistics.median(over_torch), statistics.median(over_fastgan)
        report(
            f"critic step / {critic} batch {batch} ({device.type})",
            times,
            {
                "overhead of torch's spectral norm, ms": over_torch,
                "overhead of fastgan's spectral norm, ms": over_fastgan,
            },
        )
        ratio = f"{med_t / med_f:.2f}x" if med_f > 0 else "fastgan's overhead is below the noise"
        print(f"  {'median overheads, torch / fastgan':<44} {ratio}")


def power(args: argparse.Namespace, device: torch.device) -> None:
    import bench_spectral_norm as sn

    repeat = 10 if device.type == "cuda" else 1
    for critic in selected(sn.CRITICS, args):
        contenders = {}
        for name in ("floor", "fastgan", "torch"):
            run, weights = sn.power_iteration(critic, name, device)
            contenders[name] = (lambda run=run: [run() for _ in range(repeat)])
        n = sum(w.numel() for w in weights)
        times = rounds(contenders, args.rounds, args.calls, device)
        report(
            f"power iteration / {critic} ({device.type}, {len(weights)} weights, {n / 1e6:.2f}M elements)",
            times,
            {
                "fastgan / floor": per_round(times, ratio, "fastgan", "floor"),
                "torch / fastgan": per_round(times, ratio, "torch", "fastgan"),
            },
        )


def train(args: argparse.Namespace, device: torch.device) -> None:
    import bench_train as bt

    cases = [(width, algo) for width in bt.WIDTHS for algo in bt.ALGOS]
    for width, algo in selected(cases, args, lambda case: f"{case[1]}-{case[0]}"):
        names = ["fastgan", "reference"]
        times = rounds(
            {n: bt.generator_iteration(algo, n, device, width) for n in names}, args.rounds, args.calls, device
        )
        report(
            f"train / {algo} generator iteration / mlp 3x{width} batch {bt.BATCH} ({device.type})",
            times,
            {"reference / fastgan": per_round(times, ratio, "reference", "fastgan")},
        )


def train_images(args: argparse.Namespace, device: torch.device) -> None:
    """One generator iteration of each image recipe (``preset(algo, data=--data)``: the small
    convolutional models), ``backend="auto"`` against ``backend="reference"`` (the autograd
    penalty through torch's activations, the spectral-norm parametrization): the same loop,
    seed and weights."""
    from fastgan.train import Trainer, preset

    for algo in selected(("gan", "wgan-gp", "sngan"), args):
        trainers = {b: Trainer(preset(algo, data=args.data, backend=b, device=str(device), progress=False, seed=0))
                    for b in ("auto", "reference")}
        times = rounds({("fastgan" if b == "auto" else b): (lambda t=t: t.train_steps(1)) for b, t in trainers.items()},
                       args.rounds, args.calls, device)
        cfg = trainers["auto"].cfg
        report(f"train-images / {algo} generator iteration / {args.data} width {cfg.width} batch {cfg.batch_size} "
               f"({device.type}, {torch.get_num_threads()} threads)",
               times, {"reference / fastgan": per_round(times, ratio, "reference", "fastgan")})


def image_bf16(args: argparse.Namespace, device: torch.device) -> None:
    """One generator iteration of each image recipe (``preset(algo, data=--data)``, fastgan's
    kernels) in float32 against the same recipe under bf16 autocast (``bf16=True``): the same
    models, seed and starting weights. Per iteration."""
    from fastgan.train import Trainer, preset

    for algo in selected(("gan", "wgan-gp", "sngan"), args):
        trainers = {name: Trainer(preset(algo, data=args.data, device=str(device), progress=False, seed=0, bf16=bf16))
                    for name, bf16 in (("float32", False), ("bf16", True))}
        times = rounds({n: (lambda t=t: t.train_steps(1)) for n, t in trainers.items()}, args.rounds, args.calls, device)
        report(f"image-bf16 / {algo} generator iteration / {args.data} ({device.type}, {torch.get_num_threads()} threads)",
               times, {"float32 / bf16": per_round(times, ratio, "float32", "bf16")})


def image_knobs(args: argparse.Namespace, device: torch.device) -> None:
    """What the image recipe's step knobs save: one generator iteration of each image recipe
    (``preset(algo, data=--data)``) against the same recipe with ``share_fake`` off (a second
    generator forward in the generator step), with the penalty over the whole batch
    (``gp_batch=0``), and with both off at a batch of 64. Per iteration, not per sample."""
    from fastgan.train import Trainer, preset

    for algo in selected(("gan", "wgan-gp", "sngan"), args):
        base = preset(algo, data=args.data, device=str(device), progress=False, seed=0)
        variants = {"recipe": {}, "share_fake off": dict(share_fake=False)}
        if base.gp_weight > 0:
            variants["gp_batch = batch"] = dict(gp_batch=0)
        variants["batch 64, both off"] = dict(batch_size=64, gp_batch=0, share_fake=False)
        trainers = {n: Trainer(base.replace(**kw)) for n, kw in variants.items()}
        times = rounds({n: (lambda t=t: t.train_steps(1)) for n, t in trainers.items()}, args.rounds, args.calls, device)
        report(f"image-knobs / {algo} generator iteration / {args.data} ({device.type}, {torch.get_num_threads()} threads)",
               times, {f"{n} / recipe": per_round(times, ratio, n, "recipe") for n in variants if n != "recipe"})


def dropout(args: argparse.Namespace, device: torch.device) -> None:
    """One dropout layer's forward and backward at the GAN recipe's feature-map shapes:
    fastgan's counter-based mask against ``F.dropout`` (CPU only)."""
    import bench_dropout as bd

    if device.type != "cpu":
        sys.exit("dropout: fastgan's mask runs on the CPU; on CUDA both contenders are torch's")
    for name in selected(list(bd.SHAPES), args):
        times = rounds({c: bd.forward_backward(c, bd.SHAPES[name]) for c in bd.CONTENDERS}, args.rounds, args.calls, device)
        report(f"dropout p={bd.P} fwd+bwd / {name} (cpu, {torch.get_num_threads()} threads)", times,
               {"torch / fastgan": per_round(times, ratio, "torch", "fastgan")})


COMPARISONS = {"dropout": dropout, "wgan-gp": wgan_gp, "sn-step": sn_step, "power": power, "train": train, "train-images": train_images,
               "image-knobs": image_knobs, "image-bf16": image_bf16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("comparison", choices=sorted(COMPARISONS))
    parser.add_argument("--rounds", type=int, default=15, help="rounds (each times every contender)")
    parser.add_argument("--calls", type=int, default=10, help="calls per contender per round")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", help="only the cases whose name contains this (e.g. mlp, sngan_cnn-8)")
    parser.add_argument("--data", default="mnist", help="train-images: the data set of the recipes")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device")
    if args.rounds < 1 or args.calls < 1:
        sys.exit("--rounds and --calls must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    try:
        COMPARISONS[args.comparison](args, device)
    finally:
        torch.set_flush_denormal(False)


if __name__ == "__main__":
    main()
