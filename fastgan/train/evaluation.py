"""What a run measures and draws: samples, mode and image scores, the critic against the exact W_1, plots.

:class:`Evaluation` holds the :class:`~fastgan.train.trainer.Trainer` methods that look at
a run without changing it: every draw comes from a random stream of its own (seeded
from the run's seed and step), so a check never shifts the training's random numbers.
It reads the trainer's ``cfg``, ``data``, ``G`` / ``G_ema`` / ``D``, ``scale``,
``latent_dim``, ``image``, ``step``, ``elapsed``, ``history``, ``w1_history``, ``out``
and ``rank``.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from typing import Any, Optional

import torch
from torch import Tensor, nn

import fastgan
from fastgan.train.data import MixtureData

__all__ = ["Evaluation", "exact_w1", "Rescaled"]


def exact_w1(x: Tensor, y: Tensor) -> float:
    """Exact W_1 between two equal-size uniform point sets (fastgan's exact assignment / n)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"`x` and `y` must hold as many points, got {x.shape[0]} and {y.shape[0]}")
    cost = torch.cdist(x.reshape(x.shape[0], -1).double().cpu(), y.reshape(y.shape[0], -1).double().cpu())
    return float(fastgan.ot.linear_sum_assignment(cost).cost) / x.shape[0]


class Rescaled(nn.Module):
    """A generator whose output is multiplied by a fixed ``scale``: model units to data units."""

    def __init__(self, generator: nn.Module, scale: float) -> None:
        super().__init__()
        self.generator = generator
        self.scale = float(scale)

    def forward(self, z: Tensor) -> Tensor:
        return self.generator(z) * self.scale


class Evaluation:
    """Samples, scores, metrics and plots of a :class:`~fastgan.train.trainer.Trainer`."""

    def _eval_generator(self, step: int) -> torch.Generator:
        # Diagnostics draw from their own stream, so they never shift the training's.
        return torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step + 17)

    def _w1_check(self) -> None:
        g = self._eval_generator(self.step)
        n = self.cfg.w1_batch
        real = self.data.sample(n, generator=g).to(self.device, self.dtype)
        with torch.no_grad():
            fake = self.G(torch.randn(n, self.latent_dim, generator=g).to(self.device, self.dtype)).to(self.dtype) * self.scale
        s = self.scale

        def critic(x: Tensor) -> Tensor:  # the critic in data units, Lipschitz constant unchanged
            return self.D(x / s) * s if s != 1.0 else self.D(x)

        was_training = self.D.training
        self.D.eval()
        try:
            if self.cfg.pack > 1:
                est = {"estimate": float(critic(real).mean() - critic(fake).mean()), "grad_norm_mean": math.nan}
                est["w1"] = exact_w1(real, fake)
            else:
                est = fastgan.metrics.critic_estimate(critic, real, fake, w1=exact_w1, generator=g)
        finally:
            self.D.train(was_training)
        # The floor of the exact W_1: two independent real minibatches of the same size
        # are not at distance 0 (about 0.5 on grid25 at 256 points).
        real2 = self.data.sample(n, generator=g).to(self.device, self.dtype)
        est["w1_real"] = exact_w1(real, real2)
        self.w1_history["step"].append(self.step)
        for key in ("estimate", "w1", "grad_norm_mean", "w1_real"):
            self.w1_history.setdefault(key, []).append(float(est[key]))
        modes, hq = math.nan, math.nan
        if isinstance(self.data, MixtureData):
            mm = self.mode_quality()
            modes, hq = mm["modes_covered"], mm["high_quality_pct"]
        self.w1_history["modes"].append(modes)
        self.w1_history["high_quality_pct"].append(hq)
        self.w1_history["wall_s"].append(self.elapsed)
        scores = self.image_quality() if self.scorer() is not None else {}
        for key in ("classes_at_5pct", "confident_pct", "fd_over_floor"):
            self.w1_history.setdefault(key, []).append(float(scores.get(key, math.nan)))


    @torch.no_grad()
    def mode_quality(self, n: Optional[int] = None, *, seed: Optional[int] = None) -> dict[str, Any]:
        """Mode metrics of ``n`` fresh samples of the generator (Gaussian-mixture data only).

        The samples are the generator's raw output (the EMA weights when ``ema`` > 0),
        drawn from a stream of their own (``seed``; default: one derived from the step),
        so a check never shifts the training's random numbers. Returns
        :func:`fastgan.metrics.mode_metrics`' dict with ``high_quality_pct`` added.
        """
        if not isinstance(self.data, MixtureData):
            raise ValueError(f"mode metrics need Gaussian-mixture data, got {self.data.name!r}")
        g = self._eval_generator(self.step) if seed is None else torch.Generator().manual_seed(int(seed))
        n = n or self.cfg.eval_samples
        z = torch.randn(n, self.latent_dim, generator=g).to(self.device, self.dtype)
        mm = dict(fastgan.metrics.mode_metrics(self.sampler()(z).float().cpu(), self.data.centres, self.data.sigma))
        mm["high_quality_pct"] = 100.0 * mm["high_quality_fraction"]
        return mm

    def scorer(self) -> Any:
        """The :class:`~fastgan.train.scoring.ImageScorer` of the data (None: not labelled images).

        Built on first use: the data's classifier is trained once and cached on disk.
        """
        if not self._scorer_built:
            from fastgan.train.scoring import ImageScorer

            self._scorer = ImageScorer.for_data(self.data) if self.image else None
            self._scorer_built = True
        return self._scorer

    @torch.no_grad()
    def image_quality(self, n: Optional[int] = None, *, seed: Optional[int] = None) -> dict[str, Any]:
        """Image scores of ``n`` fresh samples of the generator (labelled image data only).

        The generator's raw samples (its EMA weights when ``ema`` > 0, eval mode) from a
        stream of their own (``seed``; default: one derived from the step): per-class
        shares, the share classified with probability >= 0.9 and the Fréchet distance on
        the classifier's features against its real-vs-real floor
        (:func:`fastgan.metrics.image_scores`), plus ``meets_bar``.
        """
        scorer = self.scorer()
        if scorer is None:
            raise ValueError(f"image scores need labelled one-channel image data (mnist, digits), got {self.data.name!r}")
        seed = self.cfg.seed * 1_000_003 + self.step + 17 if seed is None else int(seed)
        fake = self.sample(n or self.cfg.eval_samples, seed=seed)
        scores = scorer.scores(fake)
        scores["meets_bar"] = scorer.meets_bar(scores)
        return scores


    # ------------------------------------------------------------------ sampling and metrics

    def sampler(self) -> nn.Module:
        """The generator used for samples, in data units (the EMA copy when enabled).

        With ``normalize`` the models work on data divided by :attr:`scale`; the sampler
        multiplies the generator's output back.
        """
        g = self.G_ema if self.G_ema is not None else self.G
        return Rescaled(g, self.scale) if self.scale != 1.0 else g

    @torch.no_grad()
    def sample(self, n: int, *, seed: Optional[int] = None) -> Tensor:
        """``n`` generated samples on the CPU (eval mode; from ``seed`` or the run's seed)."""
        g = torch.Generator().manual_seed(self.cfg.seed + 99 if seed is None else seed)
        model = self.sampler()
        was_training = model.training
        model.eval()
        try:
            z = torch.randn(n, self.latent_dim, generator=g).to(self.device, self.dtype)
            return model(z).float().cpu()
        finally:
            model.train(was_training)

    def evaluate(self, *, write: bool = False, n: Optional[int] = None) -> dict[str, Any]:
        """Final metrics: modes covered, high-quality %, reverse KL (Gaussian mixtures), W_1 to data.

        W_1 is exact between ``n`` generated and ``n`` data samples (at most 2,500 points:
        an exact assignment). With ``write`` (rank 0, ``out`` set) also writes
        metrics.json and the plots.
        """
        n = n or self.cfg.eval_samples
        fake = self.sample(n)
        g = self._eval_generator(-1)
        metrics: dict[str, Any] = {"algo": self.cfg.algo, "data": self.data.name, "steps": self.step, "backend": self.cfg.backend, "bf16": self.bf16}
        if isinstance(self.data, MixtureData):
            mm = fastgan.metrics.mode_metrics(fake, self.data.centres, self.data.sigma)
            metrics["modes_covered"] = mm["modes_covered"]
            metrics["modes_covered_strict"] = mm["modes_covered_strict"]
            metrics["modes_total"] = int(self.data.centres.shape[0])
            metrics["high_quality_pct"] = 100.0 * mm["high_quality_fraction"]
            metrics["reverse_kl"] = mm["reverse_kl"]
        if not self.image:
            m = min(n, 2500)
            metrics["w1_to_data"] = exact_w1(fake[:m], self.data.sample(m, generator=g))
        elif self.scorer() is not None:
            scorer = self.scorer()
            scores = scorer.scores(fake)
            metrics.update({k: scores[k] for k in ("classes_at_5pct", "min_class_share", "confident_pct", "real_confident_pct",
                                                   "frechet_distance", "frechet_floor", "fd_over_floor")})
            metrics["meets_image_bar"] = scorer.meets_bar(scores)
            metrics["class_shares"] = [round(v, 4) for v in scores["class_shares"]]
            metrics["scorer"] = scorer.name
        if self.w1_history["step"]:
            metrics["critic_estimate"] = self.w1_history["estimate"][-1]
            metrics["minibatch_w1"] = self.w1_history["w1"][-1]
            metrics["minibatch_w1_real"] = self.w1_history["w1_real"][-1]
        metrics["wall_time_s"] = self.elapsed
        self.metrics = metrics
        if write and self.rank == 0 and self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
            (self.out / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2, default=str) + "\n")
            self._write_history()
            if self._check_plots():
                self.plot_all()
        return metrics

    def _write_history(self) -> None:
        assert self.out is not None
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "history.json").write_text(json.dumps({"losses": self.history, "w1": self.w1_history}) + "\n")

    # ------------------------------------------------------------------ plots

    def plot_samples(self, path: str | os.PathLike) -> None:
        """Scatter over the true density (2-D) or an image grid."""
        from fastgan.train import plots

        if self.image:
            plots.image_grid(self.sample(64), path)
        else:
            plots.scatter(self.sample(self.cfg.eval_samples), self.data, path, title=f"{self.cfg.algo}, step {self.step}")

    def _check_plots(self) -> bool:
        """Whether this run draws its plots: rank 0 with a run directory and matplotlib.

        Checked before the first step, so a run without matplotlib says so up front
        (and then writes its metrics, history and checkpoints without plots) instead
        of failing after training.
        """
        from fastgan.train import plots

        if self._plots is None:
            wanted = self.rank == 0 and self.out is not None
            self._plots = wanted and plots.available()
            if wanted and not self._plots:
                warnings.warn(f"matplotlib is not installed: the run writes no plots ({plots.PLOT_EXTRA})", stacklevel=3)
        return self._plots

    def plot_all(self) -> None:
        """Samples, loss curves, critic estimate vs exact W_1, latent traversals into ``out``."""
        from fastgan.train import plots

        assert self.out is not None
        self.plot_samples(self.out / "samples.png")
        plots.loss_curves(self.history, self.out / "losses.png")
        if self.w1_history["step"]:
            plots.w1_curves(self.w1_history, self.out / "critic_vs_w1.png")
        plots.latent_grids(self.sampler(), self.latent_dim, self.image, self.out, device=self.device, data=self.data)
