"""Time to quality: wall-clock seconds and generator steps until a GAN has learned its data.

The bar, checked every ``--check-every`` generator steps on 2,500 fresh samples of
the generator and, where it holds, confirmed on a second, independent draw of 2,500:

* 2-D mixtures (:func:`fastgan.metrics.mode_metrics`): every mode holds at least a fifth
  of the high-quality samples it should get (``modes_covered_strict``: 20 of 2,500 on
  grid25) and at least 90% of the samples are high quality (within 3 sigma of their
  nearest centre).
* labelled images (mnist, digits; :func:`fastgan.metrics.meets_image_bar`): every class at
  least 5% of the samples, at least 75% classified with probability >= 0.9, and a Fréchet
  distance on the classifier's features at most 15 times the real-vs-real floor.

The samples are the generator's raw output (its EMA weights when the recipe keeps an
EMA): nothing is rejected, filtered or resampled.

Each run is one :class:`fastgan.train.Trainer` with the preset's defaults (plus
``--set`` overrides), one thread, in a process of its own; ``--jobs`` processes run
side by side. A run stops at the bar, at the recipe's last step or at ``--limit``
seconds of training ("not reached by T"). Reported per (algo, data, backend): the
median and range over the seeds of the seconds to the bar (training time, and
wall time with the checks included), the generator steps, the training speed and
what one check cost.

Baseline: the same loop and recipe on ``backend="reference"``: plain PyTorch with
the penalty through ``torch.autograd.grad``, spectral norm as a
parametrization, torch's activations: the code a user writes without fastgan.

    python bench/time_to_quality.py                                  # the headline table
    python bench/time_to_quality.py --algos sngan --data ring8 --seeds 0
    python bench/time_to_quality.py --set n_critic=1 --set lr=3e-4   # try a recipe
    python bench/time_to_quality.py --summarize runs/a.json runs/b.json  # one table of several runs
"""

from __future__ import annotations

import argparse
import ast
import json
import multiprocessing as mp
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BAR_HQ_PCT = 90.0


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Trains one (algo, data, backend, seed) until the bar, the recipe's end or the limit."""
    import torch

    from fastgan.train import Trainer, TrainingDiverged, preset

    torch.set_num_threads(job.get("threads", 1))
    cfg = preset(job["algo"], data=job["data"], seed=job["seed"], backend=job["backend"], progress=False,
                 threads=job.get("threads", 1), **job["overrides"])
    trainer = Trainer(cfg)
    image = trainer.image
    if image:
        trainer.scorer()  # the classifier is trained (or loaded) before the clock starts
    every, limit = job["check_every"], job["limit"]
    checks: list[dict[str, Any]] = []
    check_s = 0.0
    reached = None
    diverged = None
    while trainer.step < cfg.steps and trainer.elapsed < limit:
        try:
            trainer.train_steps(min(every, cfg.steps - trainer.step))
        except TrainingDiverged as e:  # a recipe that blows up has not reached the bar: say where
            diverged = str(e)
            break
        t0 = time.perf_counter()
        check = _check(trainer, image)
        if check["bar"]:  # confirmed on a second, independent draw of samples
            second = _check(trainer, image, seed=10_000_019 + trainer.step)
            check["confirmed"] = second["bar"]
            check["second"] = {k: v for k, v in second.items() if k not in ("bar", "step", "train_s")}
        check_s += time.perf_counter() - t0
        checks.append(check)
        if job["verbose"]:
            print(f"{job['algo']} {job['data']} {job['backend']} seed {job['seed']}: {checks[-1]}", flush=True)
        if check["bar"] and check["confirmed"]:
            reached = checks[-1]
            break
    last = checks[-1] if checks else {}
    return {
        **{k: job[k] for k in ("algo", "data", "backend", "seed")},
        "overrides": job["overrides"],
        "reached": reached is not None,
        "diverged": diverged,
        "steps": reached["step"] if reached else None,
        "train_s": reached["train_s"] if reached else None,
        "wall_s": round(reached["train_s"] + check_s, 2) if reached else None,
        "last": last,
        "best_hq_pct": max((c["hq_pct"] for c in checks), default=None) if not image else None,
        "steps_per_s": round(trainer.step / trainer.elapsed, 1) if trainer.elapsed else None,
        "check_ms": round(1e3 * check_s / max(len(checks), 1), 1),
        "checks": checks,
    }


def _check(trainer: Any, image: bool, seed: Any = None) -> dict[str, Any]:
    """One check of 2,500 fresh samples: the numbers and whether the bar holds."""
    out: dict[str, Any] = {"step": trainer.step, "train_s": round(trainer.elapsed, 2)}
    if image:
        s = trainer.image_quality(2500, seed=seed)
        out.update(classes=s["classes_at_5pct"], min_share=round(s["min_class_share"], 4), conf_pct=round(s["confident_pct"], 2),
                   fd=round(s["frechet_distance"], 3), floor=round(s["frechet_floor"], 3), fd_ratio=round(s["fd_over_floor"], 2),
                   bar=bool(s["meets_bar"]))
    else:
        mm = trainer.mode_quality(2500, seed=seed)
        modes, strict, total = int(mm["modes_covered"]), int(mm["modes_covered_strict"]), int(trainer.data.centres.shape[0])
        out.update(modes=modes, modes_20=strict, hq_pct=round(mm["high_quality_pct"], 2),
                   bar=strict == total and mm["high_quality_pct"] >= BAR_HQ_PCT)
    return out


def _last(row: dict[str, Any]) -> str:
    last = row["last"]
    if last and "fd_ratio" in last:
        return (f"{last['classes']} classes, {last['conf_pct']:.1f}% p>=0.9, FD {last['fd_ratio']:.1f}x floor at {last['step']}"
                + (" (then diverged)" if row.get("diverged") else ""))
    text = f"{last.get('modes_20', last['modes'])}, {last['hq_pct']:.1f}% at {last['step']}" if last else "-"
    return text + (" (then diverged)" if row.get("diverged") else "")


def _summary(rows: list[dict[str, Any]], limit: float) -> str:
    lines = [
        "| algo | data | backend | seconds to bar (median [range]) | with checks | generator steps | ms / step | one check "
        "| last check |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    keys = sorted({(r["algo"], r["data"], r["backend"]) for r in rows}, key=lambda k: (k[1], k[0], k[2]))
    for key in keys:
        group = [r for r in rows if (r["algo"], r["data"], r["backend"]) == key]
        times = sorted(r["train_s"] if r["reached"] else float("inf") for r in group)
        walls = sorted(r["wall_s"] if r["reached"] else float("inf") for r in group)
        steps = sorted(r["steps"] if r["reached"] else float("inf") for r in group)

        def fmt(values: list[float], never: str) -> str:
            show = lambda v: never if v == float("inf") else f"{v:.0f}"  # noqa: E731
            return f"{show(statistics.median(values))} [{show(values[0])}, {show(values[-1])}]"

        reached = sum(r["reached"] for r in group)
        speed = statistics.median(r["steps_per_s"] or 0 for r in group)
        check = statistics.median(r["check_ms"] for r in group)
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {fmt(times, f'> {limit:.0f}')} ({reached}/{len(group)} reached) "
            f"| {fmt(walls, f'> {limit:.0f}')} | {fmt(steps, 'not reached')} | {1e3 / speed if speed else float('nan'):.2f} | {check:.0f} ms "
            f"| {'; '.join(_last(r) for r in sorted(group, key=lambda r: r['seed']))} |"
        )
    # The kernels' claim per unit of work: seconds per generator step, each backend against the
    # reference (the trajectories part ways by rounding, so seconds to the bar mix in luck).
    pairs = sorted({(a, d) for a, d, _ in keys}, key=lambda k: (k[1], k[0]))
    for algo, data in pairs:
        speed = {b: statistics.median(r["steps_per_s"] or 0 for r in rows if (r["algo"], r["data"], r["backend"]) == (algo, data, b))
                 for b in {r["backend"] for r in rows if (r["algo"], r["data"]) == (algo, data)}}
        if speed.get("reference") and len(speed) > 1:
            lines.append("")
            lines += [f"{algo} {data}: {b} {1e3 / v:.2f} ms / step, {v / speed['reference']:.2f}x the reference's speed"
                      for b, v in sorted(speed.items()) if b != "reference" and v]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algos", default="wgan-gp,sngan")
    p.add_argument("--data", default="grid25,ring8")
    p.add_argument("--backends", default="auto,reference")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--limit", type=float, default=600.0, help="seconds of training per run before giving up")
    p.add_argument("--check-every", type=int, default=500, help="generator steps between checks")
    p.add_argument("--jobs", type=int, default=2, help="runs side by side")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a Config override for every run")
    p.add_argument("--verbose", action="store_true", help="print every check")
    p.add_argument("--out", default="runs/time_to_quality.json")
    p.add_argument("--summarize", nargs="+", metavar="JSON", help="print the table of earlier runs' --out files and exit")
    args = p.parse_args()
    if args.summarize:
        files = [json.loads(Path(f).read_text()) for f in args.summarize]
        print(_summary([r for f in files for r in f["rows"]], max(f["args"]["limit"] for f in files)))
        return
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key.replace("-", "_")] = _value(value)
    jobs = [
        {"algo": a, "data": d, "backend": b, "seed": int(s), "overrides": overrides, "check_every": args.check_every,
         "limit": args.limit, "verbose": args.verbose, "threads": args.threads}
        for d in args.data.split(",") for a in args.algos.split(",") for s in args.seeds.split(",")
        for b in args.backends.split(",")
    ]
    rows = []
    start = time.perf_counter()
    # A killed benchmark takes its runs with it (the pool is terminated on the way out).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:
        for row in pool.imap_unordered(run_one, jobs):
            rows.append(row)
            brief = {k: row[k] for k in ("algo", "data", "backend", "seed", "reached", "steps", "train_s", "wall_s",
                                         "best_hq_pct", "steps_per_s", "check_ms")}
            print(json.dumps({**brief, "last": row["last"]}), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1) + "\n")
    print(f"\n{len(jobs)} runs, {args.jobs} at a time, {time.perf_counter() - start:.0f} s; overrides {overrides or 'none'}")
    print(_summary(rows, args.limit))


if __name__ == "__main__":
    main()
