"""``fastgan train | sample | eval``: the command line of the training loops.

Examples::

    fastgan train --algo wgan-gp --data grid25 --out runs/wgan-gp-grid25
    fastgan train --algo sngan --data ring8 --steps 3000 --out runs/sngan-ring8
    fastgan train --algo wgan-gp --data grid25 --out runs/wgan-gp-grid25 --resume
    fastgan sample --run runs/wgan-gp-grid25 -n 64 --out samples.png
    fastgan eval --run runs/wgan-gp-grid25

Under ``torchrun --nproc_per_node K --no-python fastgan train ...`` the processes join
one group (gloo on the CPU, NCCL on GPUs) and split every batch. ``--no-python`` runs
the installed command, so it works from any folder; ``-m fastgan`` imports whatever
``fastgan/`` the current folder holds (in a source checkout: the unbuilt sources).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

__all__ = ["main", "format_metrics"]


def _betas(text: str) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"--betas must be two numbers 'b1,b2', got {text!r}")
    return float(parts[0]), float(parts[1])


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    from fastgan.train.presets import ALGOS

    p = argparse.ArgumentParser(prog="fastgan", description="Train and evaluate GANs on fastgan's kernels.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one algorithm on one data set")
    t.add_argument("--algo", default="wgan-gp", help=f"one of {', '.join(ALGOS)} (default wgan-gp)")
    t.add_argument("--data", default="grid25", help="grid25, ring8, swissroll, digits (8x8), digits32, mnist (28x28) or an image folder")
    t.add_argument("--out", default=None, help="run directory (default runs/<algo>-<data>)")
    t.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--paper-defaults", action="store_true",
                   help="the paper's settings even on 2-D data (no toy recipe; see fastgan.train.presets)")
    knobs: list[tuple[str, Any, str]] = [
        ("steps", int, "generator iterations"),
        ("batch-size", int, "global batch size"),
        ("n-critic", int, "critic updates per generator update"),
        ("loss", str, "critic loss (fastgan.losses name)"),
        ("g-loss", str, "generator loss when it differs (gan: ns or minimax)"),
        ("optimizer", str, "adam or rmsprop"),
        ("lr", float, "learning rate"),
        ("lr-g", float, "generator learning rate"),
        ("betas", _betas, "Adam betas 'b1,b2'"),
        ("clip", float, "WGAN weight clipping c"),
        ("gp-weight", float, "gradient penalty lambda"),
        ("gp-batch", int, "interpolates in the gradient penalty (default: the batch)"),
        ("model", str, "mlp, dcgan, sngan-cnn, resnet"),
        ("width", int, "model width"),
        ("depth", int, "MLP hidden layers"),
        ("latent-dim", int, "latent dimension"),
        ("critic-norm", str, "DCGAN critic normalisation: batch, layer, none"),
        ("critic-convs", int, "extra 3x3 convolutions in the dcgan-small and dcgan critics"),
        ("critic-dropout", float, "dropout probability after every LeakyReLU of the dcgan-small and dcgan critics"),
        ("pack", int, "PacGAN packing degree"),
        ("ema", float, "EMA decay of the generator (0: off)"),
        ("lr-decay", str, "learning-rate schedule: none or linear (to 0 at --steps)"),
        ("backend", str, "auto (fastgan kernels) or reference (pure PyTorch)"),
        ("device", str, "cpu, cuda, cuda:1, ..."),
        ("seed", int, "random seed"),
        ("image-size", int, "image side for image data (default: the data's own; image folders 32)"),
        ("log-every", int, "steps between loss records"),
        ("sample-every", int, "steps between sample plots (0: end only)"),
        ("checkpoint-every", int, "steps between checkpoints"),
        ("eval-samples", int, "samples for the final metrics"),
        ("w1-every", int, "steps between critic-vs-exact-W_1 checks"),
        ("threads", int, "torch threads (default: 1 for 2-D data, torch's default for images)"),
        ("dtype", str, "float32 or float64"),
    ]
    for name, typ, help_ in knobs:
        t.add_argument(f"--{name}", type=typ, default=None, help=help_)
    for name, help_ in (("spectral-norm", "spectral norm on every critic layer"), ("sigmoid", "final sigmoid in the critic"),
                        ("minibatch-std", "minibatch standard deviation feature")):
        t.add_argument(f"--{name}", action="store_true", default=None, help=help_)
    t.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast of the models on a GPU or CPU; the penalty, losses and optimizer stay float32 "
                        "(MNIST GAN recipe: on where the device has bf16 arithmetic, e.g. AVX512-BF16)")
    t.add_argument("--share-fake", action=argparse.BooleanOptionalAction, default=None,
                   help="the generator step reuses the last critic step's fake batch (image recipes: on)")
    t.add_argument("--generator-step-dropout", action=argparse.BooleanOptionalAction, default=None,
                   help="the generator's step sees the critic's dropout too (default: off there, the critic's mean network)")
    t.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="2-D data: the models see the data divided by its standard deviation (toy recipes: on)")

    s = sub.add_parser("sample", help="plot samples of a trained run")
    s.add_argument("--run", required=True, help="run directory (holds checkpoint.pt)")
    s.add_argument("-n", type=_positive_int, default=2500, help="number of samples")
    s.add_argument("--out", default=None, help="PNG path (default <run>/samples_cli.png); .pt saves the tensor")
    s.add_argument("--seed", type=int, default=None)

    e = sub.add_parser("eval", help="recompute the metrics of a trained run")
    e.add_argument("--run", required=True, help="run directory (holds checkpoint.pt)")
    e.add_argument("-n", type=_positive_int, default=None, help="number of samples")
    return p


def format_metrics(metrics: dict[str, Any]) -> str:
    """The metrics as a two-column text table."""
    rows = []
    for key, value in metrics.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        rows.append((key, str(value)))
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 2 + max(len(v) for _, v in rows))
    return "\n".join([line] + [f"{k.ljust(width)}  {v}" for k, v in rows] + [line])


def _memory_bytes(device: str) -> Optional[int]:
    """The memory of ``device``: the GPU's, or the machine's for the CPU; None where unknown
    (no such GPU: the trainer says so)."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return None
        return torch.cuda.get_device_properties(torch.device(device)).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def _check_fits(cfg) -> None:
    """SystemExit at once when one batch's hidden activations alone (batch x
    width x depth values, a lower bound of what a step holds) exceed the memory."""
    import torch

    itemsize = torch.finfo(getattr(torch, str(cfg.dtype))).bits // 8
    need = cfg.batch_size * max(1, int(cfg.width)) * max(1, int(cfg.depth or 1)) * itemsize
    device = str(cfg.device or "cpu")
    have = _memory_bytes(device)
    if have is not None and need > have:
        raise SystemExit(
            f"fastgan: --batch-size {cfg.batch_size} cannot fit: one batch's activations need at least "
            f"{need / 2**30:.3g} GiB and {device} has {have / 2**30:.3g} GiB"
        )


def _check_writable(out: str) -> None:
    """SystemExit before the first step when the run directory cannot be written."""
    import tempfile

    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as e:
        raise SystemExit(f"fastgan: cannot write to the run directory {out} ({e.strerror or e})")


def _init_distributed() -> bool:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def _trainer_from_run(run: str):
    from fastgan.train import checkpoint as ckpt
    from fastgan.train.presets import Config
    from fastgan.train.trainer import Trainer

    path = Path(run) / "checkpoint.pt"
    if not path.exists():
        raise SystemExit(f"fastgan: no checkpoint at {path}")
    try:
        state = ckpt.load(path)
    except ValueError as e:
        raise SystemExit(f"fastgan: {e}")
    cfg = dict(state["config"])
    cfg["betas"] = tuple(cfg["betas"])
    trainer = Trainer(Config(**cfg), out=run, progress=False)
    trainer.load_state_dict(state)
    return trainer


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``fastgan`` console script and ``python -m fastgan``."""
    args = _parser().parse_args(argv)
    if args.command == "train":
        from fastgan.train.presets import preset
        from fastgan.train.trainer import Trainer, TrainingDiverged

        if args.image_size is not None and args.image_size < 4:  # 0 means "native" only inside Config
            raise SystemExit(f"fastgan: --image-size must be an int >= 4, got {args.image_size}")
        distributed = _init_distributed()
        overrides = {k: v for k, v in vars(args).items() if k not in ("command", "algo", "out", "resume", "no_progress", "paper_defaults") and v is not None}
        if args.no_progress:
            overrides["progress"] = False
        if args.threads is None and str(args.data) in ("grid25", "ring8", "swissroll"):
            overrides["threads"] = 1  # the 2-D MLPs are too small to split across threads
        try:
            cfg = preset(args.algo, paper_defaults=args.paper_defaults, **overrides)
        except ValueError as e:
            raise SystemExit(f"fastgan: {e}")
        out = args.out or os.path.join("runs", f"{cfg.algo}-{Path(str(cfg.data)).name}")
        _check_fits(cfg)
        _check_writable(out)
        try:
            trainer = Trainer(cfg, out=out)
        except ValueError as e:
            raise SystemExit(f"fastgan: {e}")
        finished = False
        try:
            metrics = trainer.fit(resume=args.resume)
            finished = True
        except TrainingDiverged as e:
            print(f"fastgan: {e}", file=sys.stderr)
            return 2
        except ValueError as e:  # a damaged --resume checkpoint, named
            raise SystemExit(f"fastgan: {e}")
        finally:
            if distributed:
                import torch.distributed as dist

                if finished:
                    dist.barrier()  # rank 0 has written its files; no rank leaves while a peer still talks
                dist.destroy_process_group()
        if trainer.rank == 0:
            print(format_metrics(metrics))
            print(f"run directory: {out}")
        return 0
    trainer = _trainer_from_run(args.run)
    if args.command == "sample":
        out = args.out or os.path.join(args.run, "samples_cli.png")
        if out.endswith(".pt"):
            import torch

            torch.save(trainer.sample(args.n, seed=args.seed), out)
            print(out)
            return 0
        from fastgan.train import plots

        if not plots.available():
            raise SystemExit(f"fastgan: a picture ({out}) needs matplotlib, which is not installed: {plots.PLOT_EXTRA}; "
                             "or save the samples as a tensor with --out FILE.pt")
        if trainer.image:
            plots.image_grid(trainer.sample(args.n, seed=args.seed), out)
        else:
            plots.scatter(trainer.sample(args.n, seed=args.seed), trainer.data, out, title=f"{trainer.cfg.algo}, step {trainer.step}")
        print(out)
        return 0
    metrics = trainer.evaluate(n=args.n)
    print(format_metrics(metrics))
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
