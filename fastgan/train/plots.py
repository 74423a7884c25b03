"""Plots of a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
import os
from typing import Any, Optional

import torch
from torch import Tensor, nn

__all__ = ["available", "PLOT_EXTRA", "scatter", "image_grid", "loss_curves", "w1_curves", "latent_grids", "tile"]


PLOT_EXTRA = "pip install 'fastgan[plot]' (or matplotlib)"


def available() -> bool:
    """Whether matplotlib can be imported (the plots' only optional dependency)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _plt():
    if not available():
        raise ModuleNotFoundError(f"plots need matplotlib, which is not installed: {PLOT_EXTRA}", name="matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scatter(samples: Tensor, data: Any, path: str | os.PathLike, *, title: str = "") -> None:
    """Generated 2-D points over the true density (mixtures) or over data samples."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    pts = samples.detach().float().cpu()
    real = data.sample(2000, generator=torch.Generator().manual_seed(0)) if data is not None else None
    lo = hi = None
    if real is not None:
        lo, hi = float(real.min()) - 1.0, float(real.max()) + 1.0
    if hasattr(data, "log_density") and data.centres is not None:
        axis = torch.linspace(lo, hi, 150)
        gx, gy = torch.meshgrid(axis, axis, indexing="xy")
        dens = data.log_density(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)).exp().reshape(150, 150)
        ax.contourf(gx.numpy(), gy.numpy(), dens.numpy(), levels=20, cmap="Greens")
        ax.scatter(data.centres[:, 0], data.centres[:, 1], marker="+", c="k", s=30, label="centres")
    elif real is not None:
        ax.scatter(real[:, 0], real[:, 1], s=2, c="tab:green", alpha=0.4, label="data")
    ax.scatter(pts[:, 0], pts[:, 1], s=2, c="tab:blue", alpha=0.5, label="generated")
    if lo is not None:
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=7)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def tile(images: Tensor, nrow: int = 8) -> Tensor:
    """(N, C, H, W) in [-1, 1] -> one (H', W', C) image in [0, 1] with a 1-pixel border."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2)
    n, c, h, w = x.shape
    ncol = min(nrow, n)
    nrows = math.ceil(n / ncol)
    grid = torch.ones(c, nrows * (h + 1) + 1, ncol * (w + 1) + 1)
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[:, 1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = x[i]
    return grid.permute(1, 2, 0)


def image_grid(images: Tensor, path: str | os.PathLike, *, nrow: int = 8, title: str = "") -> None:
    """Saves a grid of (N, C, H, W) images in [-1, 1] as a PNG."""
    plt = _plt()
    grid = tile(images, nrow)
    fig, ax = plt.subplots(figsize=(6, 6 * grid.shape[0] / grid.shape[1]))
    ax.imshow(grid.squeeze(-1).numpy() if grid.shape[-1] == 1 else grid.numpy(), cmap="gray", vmin=0, vmax=1)
    ax.axis("off")
    if title:
        ax.set_title(title)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def loss_curves(history: dict[str, list[float]], path: str | os.PathLike) -> None:
    """Critic and generator losses and the critic's W estimate over generator steps."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("d_loss", "critic loss"), ("g_loss", "generator loss"), ("wasserstein", "E D(real) - E D(fake)")):
        if history.get(key):
            ax.plot(history["step"], history[key], label=label)
    ax.set_xlabel("generator step")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def w1_curves(w1_history: dict[str, list[float]], path: str | os.PathLike) -> None:
    """The critic's estimate E D(real) - E D(fake) against the exact W_1 between the same minibatches.

    Beside them, the exact W_1 between two independent real minibatches of the same
    size (``w1_real``): the floor a perfect generator would show at that batch size.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(w1_history["step"], w1_history["w1"], label="exact W_1 between minibatches (assignment)")
    ax.plot(w1_history["step"], w1_history["estimate"], label="critic estimate E D(real) - E D(fake)")
    if w1_history.get("w1_real"):
        ax.plot(w1_history["step"], w1_history["w1_real"], "--", color="grey",
                label="exact W_1 between two real minibatches (the floor)")
    ax.set_xlabel("generator step")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def latent_vectors(latent_dim: int, *, dim: int = 0, steps: int = 8, span: float = 2.0) -> dict[str, Tensor]:
    """Seed 003's latent probes: all 1s, all 0.5, dimension ``dim`` swept over [-span, span], and an interpolation."""
    sweep = torch.zeros(steps, latent_dim)
    sweep[:, dim] = torch.linspace(-span, span, steps)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, latent_dim, generator=g)
    t = torch.linspace(0, 1, steps).unsqueeze(1)
    return {
        "ones": torch.ones(1, latent_dim),
        "halves": torch.full((1, latent_dim), 0.5),
        "sweep": sweep,
        "interpolation": (1 - t) * a + t * b,
    }


@torch.no_grad()
def latent_grids(
    generator: nn.Module, latent_dim: int, image: bool, out: str | os.PathLike, *, device: Any = "cpu", data: Any = None, dims: Optional[int] = None
) -> None:
    """latent_traversal.png: per-dimension sweeps (one row each), all-1s / all-0.5 and an interpolation."""
    plt = _plt()
    was_training = generator.training
    generator.eval()
    try:
        dims = min(latent_dim, dims or 8)
        rows = [latent_vectors(latent_dim, dim=d)["sweep"] for d in range(dims)]
        probes = latent_vectors(latent_dim)
        if image:
            z = torch.cat(rows + [probes["interpolation"], torch.cat([probes["ones"], probes["halves"]])])
            imgs = generator(z.to(device, next(generator.parameters()).dtype)).float().cpu()
            image_grid(imgs, os.path.join(out, "latent_traversal.png"), nrow=8,
                       title="rows: dimension sweeps -2..2, interpolation; last: all 1s, all 0.5")
            return
        fig, ax = plt.subplots(figsize=(5, 5))
        if data is not None:
            real = data.sample(1000, generator=torch.Generator().manual_seed(0))
            ax.scatter(real[:, 0], real[:, 1], s=2, c="0.8")
        for d, z in enumerate(rows):
            path = generator(z.to(device, next(generator.parameters()).dtype)).float().cpu()
            ax.plot(path[:, 0], path[:, 1], "-o", ms=3, label=f"z[{d}] swept")
        interp = generator(probes["interpolation"].to(device, next(generator.parameters()).dtype)).float().cpu()
        ax.plot(interp[:, 0], interp[:, 1], "--", c="k", label="interpolation")
        for key, marker in (("ones", "*"), ("halves", "s")):
            p = generator(probes[key].to(device, next(generator.parameters()).dtype)).float().cpu()
            ax.scatter(p[:, 0], p[:, 1], marker=marker, s=80, c="r", label=f"z = all {'1' if key == 'ones' else '0.5'}")
        ax.legend(fontsize=7)
        ax.set_aspect("equal")
        fig.savefig(os.path.join(out, "latent_traversal.png"), dpi=100, bbox_inches="tight")
        plt.close(fig)
    finally:
        generator.train(was_training)
