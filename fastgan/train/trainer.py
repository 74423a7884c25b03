"""The training loop: GAN, WGAN, WGAN-GP, SN-GAN, LSGAN and f-GAN on fastgan's kernels.

One :class:`Trainer` runs every algorithm of :mod:`fastgan.train.presets`:
``n_critic`` critic updates (loss from :mod:`fastgan.losses`, plus fastgan's
gradient penalty, weight clipping or spectral norm), then one generator update.
Checkpoints, resume, metrics, plots and multi-process training are handled here.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

import fastgan
from fastgan import losses
from fastgan.penalty import couples_samples, interpolate, mlp_critic_layers, mlp_critic_penalty, penalty_from_gradients
from fastgan.train import checkpoint as ckpt
from fastgan.train.data import DataSource, MixtureData, make_data
from fastgan.train.models import build_models
from fastgan.train.presets import Config, preset

__all__ = ["Trainer", "TrainingDiverged", "train", "exact_w1", "data_scale", "Rescaled"]

BACKENDS = ("auto", "reference")
LR_DECAYS = ("none", "linear")


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


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


def data_scale(data: DataSource) -> float:
    """The standard deviation of one coordinate of ``data``, averaged over coordinates.

    Exact for Gaussian mixtures (the centres' spread plus sigma^2); otherwise estimated
    from 10,000 samples drawn from a generator of its own (the data source's stream
    is not touched).
    """
    if isinstance(data, MixtureData):
        c = data.centres.double()
        var = (c - c.mean(dim=0)).square().mean() + data.sigma**2
    else:
        x = data.sample(10_000, generator=torch.Generator().manual_seed(12345)).double().flatten(1)
        var = x.var(dim=0).mean()
    scale = float(var.sqrt())
    return scale if math.isfinite(scale) and scale > 0 else 1.0


def _auto_model(shape: tuple[int, ...]) -> str:
    """``model="auto"``: the MLPs for flat samples; images up to 32 pixels a side (a multiple
    of 4: MNIST's 28, the 8x8 digits) the small DCGAN-style models, larger ones DCGAN."""
    if len(shape) != 3:
        return "mlp"
    return "dcgan-small" if shape[1] <= 32 and shape[1] % 4 == 0 else "dcgan"


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _finite(name: str, value: Tensor, step: int) -> None:
    if not bool(torch.isfinite(value).all()):
        raise TrainingDiverged(
            f"the {name} became {float(value)} at generator step {step}: training stopped; "
            "the last good checkpoint is kept (lower the learning rate or check the data)"
        )


class Trainer:
    """Trains a generator against a critic with one of the presets.

    Args:
        config: a :class:`Config` (default: ``preset(algo)``).
        algo: preset name when ``config`` is not given.
        out: run directory for checkpoints, plots and metrics (None: nothing written).
        data: overrides ``config.data``: a name, an image directory, a Dataset, a tensor
            or a :class:`~fastgan.train.data.DataSource`.
        generator, critic: models to use instead of the built-in ones.
        **overrides: any :class:`Config` field.

    In a process group (``torch.distributed`` initialised, e.g. by torchrun) each of the
    W processes computes ``batch_size / W`` samples of the same global batch and the
    models are wrapped in DistributedDataParallel; rank 0 writes the files.
    """

    def __init__(
        self,
        config: Optional[Config] = None,
        *,
        algo: Optional[str] = None,
        out: Optional[str | os.PathLike] = None,
        data: Any = None,
        generator: Optional[nn.Module] = None,
        critic: Optional[nn.Module] = None,
        **overrides: Any,
    ) -> None:
        if config is None:
            # The same configuration as ``preset(algo, data=...)`` and the command line:
            # the data decides which recipe applies.
            config = preset(algo or "wgan-gp", data=data if data is not None else overrides.get("data", Config.data))
        elif not isinstance(config, Config):
            raise TypeError(f"`config` must be a Config, got {type(config).__name__}")
        if data is not None:
            overrides["data"] = data
        cfg = config.replace(**overrides) if overrides else config
        self._check(cfg)
        self.cfg = cfg
        self.out = Path(out) if out is not None else None
        self.device = torch.device(cfg.device)
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[cfg.dtype]
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if cfg.batch_size % self.world:
            raise ValueError(f"`batch_size`={cfg.batch_size} must be a multiple of the {self.world} processes")
        self.local_batch = cfg.batch_size // self.world
        if cfg.pack > 1 and self.local_batch % cfg.pack:
            raise ValueError(f"the per-process batch {self.local_batch} must be a multiple of `pack`={cfg.pack}")

        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.data: DataSource = make_data(cfg.data, seed=cfg.seed, image_size=cfg.image_size)
        shape = tuple(self.data.shape)
        self.image = len(shape) == 3
        #: Flat data divided by this for the models (``normalize``); 1 for images.
        self.scale = data_scale(self.data) if cfg.normalize and not self.image else 1.0
        self.latent_dim = cfg.latent_dim or (100 if self.image else 2)
        model = cfg.model if cfg.model != "auto" else _auto_model(shape)
        if generator is None or critic is None:
            g_built, d_built = build_models(
                model,
                shape,
                latent_dim=self.latent_dim,
                width=cfg.width,
                depth=cfg.depth,
                critic_norm=cfg.critic_norm,
                sigmoid=cfg.sigmoid,
                pack=cfg.pack,
                minibatch_std=cfg.minibatch_std,
            )
            generator = generator if generator is not None else g_built
            critic = critic if critic is not None else d_built
        if cfg.gp_weight > 0 and _has_batchnorm(critic):
            raise ValueError("a gradient-penalty critic must not use BatchNorm (use `critic_norm`='layer' or 'none')")
        if cfg.spectral_norm:
            critic = fastgan.nn.spectral_norm_all(critic, backend=cfg.backend)
        if cfg.backend == "auto" and cfg.gp_weight > 0 and not cfg.spectral_norm:
            # Fused activations pay off in the penalty's double backward; without a
            # penalty torch's own activations are as fast.
            critic = fastgan.nn.fuse_activations_(critic)
        self.G = generator.to(self.device, self.dtype)
        self.D = critic.to(self.device, self.dtype)
        #: The critic mixes the samples of a batch (BatchNorm, minibatch std): real, fake and
        #: interpolated samples then go through it in separate calls, as ProGAN's and StyleGAN's do.
        self._coupled = couples_samples(self.D)
        if self._coupled and self.distributed:
            raise ValueError(
                "a critic with batch statistics (BatchNorm, `minibatch_std`) is not supported under torchrun: "
                "each process would see only its slice of the batch"
            )
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if cfg.ema > 0 else None
        # Parameter lists walked every generator step, gathered once.
        self._d_params = [p for p in self.D.parameters() if p.requires_grad]
        self._ema_pairs = ([p for p in self.G_ema.parameters()], [p for p in self.G.parameters()]) if self.G_ema is not None else None
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.G_train: nn.Module = nn.parallel.DistributedDataParallel(self.G, device_ids=ids)
            self.D_train: nn.Module = nn.parallel.DistributedDataParallel(self.D, device_ids=ids)
        else:
            self.G_train, self.D_train = self.G, self.D
        # An MLP critic's evaluation in the critic step (scores, and the penalty under
        # WGAN-GP) as one fused op: fastgan.mlp_critic_penalty.
        self._mlp_critic = None
        if cfg.backend == "auto" and not self.distributed and not cfg.bf16:
            self._mlp_critic = mlp_critic_layers(self.D)
        self.opt_D = self._optimizer(self.D.parameters(), cfg.lr)
        self.opt_G = self._optimizer(self.G.parameters(), cfg.lr_g or cfg.lr)
        self.critic_loss = losses.get(cfg.loss)
        self.generator_loss = losses.get(cfg.g_loss) if cfg.g_loss else self.critic_loss
        self.latent_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.penalty_gen = torch.Generator().manual_seed(cfg.seed + 2)
        self.step = 0
        self.history: dict[str, list[float]] = {k: [] for k in ("step", "d_loss", "g_loss", "wasserstein", "penalty")}
        self.w1_history: dict[str, list[float]] = {
            "step": [], "estimate": [], "w1": [], "w1_real": [], "grad_norm_mean": [], "modes": [], "high_quality_pct": [], "wall_s": [],
            "classes_at_5pct": [], "confident_pct": [], "fd_over_floor": [],
        }
        self._scorer: Any = None  # the ImageScorer of labelled image data, built on first use
        self._scorer_built = False
        self._plots: Optional[bool] = None  # whether the run draws plots, decided on first use
        self.elapsed = 0.0
        self.metrics: dict[str, Any] = {}
        self._loss_sums: Optional[list[Tensor]] = None
        self._loss_count = 0
        self._last_g_loss: Optional[Tensor] = None

    # ------------------------------------------------------------------ set-up

    @staticmethod
    def _check(cfg: Config) -> None:
        if cfg.backend not in BACKENDS:
            raise ValueError(f"`backend` must be one of {BACKENDS}, got {cfg.backend!r}")
        for name in ("steps", "batch_size", "n_critic", "width", "depth", "pack", "eval_samples", "log_every", "checkpoint_every"):
            value = getattr(cfg, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "steps" else 1):
                raise ValueError(f"`{name}` must be a positive int, got {value!r}")
        for name in ("sample_every", "w1_every", "threads", "latent_dim", "seed"):
            value = getattr(cfg, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"`{name}` must be an int >= 0, got {value!r}")
        if cfg.optimizer not in ("adam", "rmsprop"):
            raise ValueError(f"`optimizer` must be 'adam' or 'rmsprop', got {cfg.optimizer!r}")
        if not (isinstance(cfg.lr, (int, float)) and cfg.lr > 0):
            raise ValueError(f"`lr` must be > 0, got {cfg.lr!r}")
        if cfg.clip is not None and not cfg.clip > 0:
            raise ValueError(f"`clip` must be > 0 or None, got {cfg.clip!r}")
        if cfg.dtype not in ("float32", "float64"):
            raise ValueError(f"`dtype` must be 'float32' or 'float64', got {cfg.dtype!r}")
        if cfg.gp_weight < 0:
            raise ValueError(f"`gp_weight` must be >= 0, got {cfg.gp_weight!r}")
        if cfg.lr_decay not in LR_DECAYS:
            raise ValueError(f"`lr_decay` must be one of {LR_DECAYS}, got {cfg.lr_decay!r}")
        if not 0 <= cfg.ema < 1:
            raise ValueError(f"`ema` must be in [0, 1), got {cfg.ema!r}")
        if cfg.bf16 and not str(cfg.device).startswith("cuda"):
            raise ValueError("`bf16` autocast is for CUDA devices (`device`='cuda')")

    def _optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        """The preset's optimizer; Adam as torch's fused kernel where it has one.

        ``fused=True`` updates every parameter of the model in one kernel instead
        of about a dozen small ops per tensor (measured on one CPU core: 145 µs
        against 464 µs per step for a 3 x 128 MLP, 0.69 ms against 2.60 ms at
        512); the update is Adam's, whichever backend the trainer runs.
        """
        if self.cfg.optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr)
        b1, b2 = self.cfg.betas
        fused = self.device.type in ("cpu", "cuda")
        return torch.optim.Adam(params, lr=lr, betas=(float(b1), float(b2)), fused=fused)

    # ------------------------------------------------------------------ batches

    def _local(self, t: Tensor) -> Tensor:
        """This process's slice of a global batch."""
        return t[self.rank * self.local_batch : (self.rank + 1) * self.local_batch].to(self.device, self.dtype)

    def _real(self) -> Tensor:
        real = self._local(self.data.sample(self.cfg.batch_size))
        return real / self.scale if self.scale != 1.0 else real

    def _latent(self) -> Tensor:
        return self._local(torch.randn(self.cfg.batch_size, self.latent_dim, generator=self.latent_gen))

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cfg.bf16)

    # ------------------------------------------------------------------ steps

    def _critic_step(self) -> tuple[Tensor, Tensor, Tensor]:
        cfg = self.cfg
        real = self._real()
        z = self._latent()
        with torch.no_grad(), self._autocast():
            fake = self.G(z).to(self.dtype)
        penalty = torch.zeros((), device=self.device, dtype=self.dtype)
        if cfg.gp_weight > 0:
            eps = self._local(torch.rand(cfg.batch_size, generator=self.penalty_gen))
            x_hat = interpolate(real, fake, eps, backend=cfg.backend)
            if self._mlp_critic is not None:
                # Scores, input gradients and penalty in one op (fastgan.mlp_critic_penalty).
                d_real, d_fake, penalty = mlp_critic_penalty(self._mlp_critic, real, fake, x_hat)
                penalty = cfg.gp_weight * penalty
            else:
                d_real, d_fake, penalty = self._penalized_scores(real, fake, x_hat.requires_grad_(True))
        elif self._mlp_critic is not None:
            d_real, d_fake, _ = mlp_critic_penalty(self._mlp_critic, real, fake)
        else:
            with self._autocast():
                if self._coupled:
                    d_real, d_fake = self.D_train(real).to(self.dtype), self.D_train(fake).to(self.dtype)
                else:
                    scores = self.D_train(torch.cat([real, fake])).to(self.dtype)
                    m = scores.shape[0] // 2
                    d_real, d_fake = scores[:m], scores[m:]
        loss = self.critic_loss.critic(d_real, d_fake) + penalty
        _finite("critic loss", loss.detach(), self.step)
        self.opt_D.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_D.step()
        if cfg.clip is not None:
            fastgan.clip_parameters_(self.D, cfg.clip, backend=cfg.backend)
        return loss.detach(), (d_real.mean() - d_fake.mean()).detach(), penalty.detach()

    def _penalized_scores(self, real: Tensor, fake: Tensor, x_hat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """D(real), D(fake) and the weighted gradient penalty at ``x_hat``, through autograd."""
        cfg = self.cfg
        m = real.shape[0] // cfg.pack  # scores per part: one per sample, or one per pack
        with self._autocast():
            if self._coupled:
                d_real, d_fake = self.D_train(real).to(self.dtype), self.D_train(fake).to(self.dtype)
                d_hat = self.D_train(x_hat).to(self.dtype)
            elif self.distributed or cfg.spectral_norm:
                # One forward over [real; fake; x_hat], one backward: what DDP's reducer
                # expects, and one power iteration per critic step under spectral norm.
                scores = self.D_train(torch.cat([real, fake, x_hat])).to(self.dtype)
                d_real, d_fake, d_hat = scores[:m], scores[m : 2 * m], scores[2 * m :]
            else:
                # [real; fake] then x_hat: the double backward runs over B rows, not 3B
                # (fastgan.wgan_gp_critic_loss's "pair" arrangement).
                scores = self.D_train(torch.cat([real, fake])).to(self.dtype)
                d_real, d_fake = scores[:m], scores[m:]
                d_hat = self.D_train(x_hat).to(self.dtype)
        (grads,) = torch.autograd.grad(d_hat.sum(), x_hat, create_graph=True)
        grads = grads.to(self.dtype).reshape(m, -1)  # one gradient per pack; penalty in float32 (or 64)
        return d_real, d_fake, cfg.gp_weight * penalty_from_gradients(grads, backend=cfg.backend)

    def _generator_step(self) -> Tensor:
        z = self._latent()
        real_out = None
        for p in self._d_params:  # no parameter gradients of the critic in the generator step
            p.requires_grad_(False)
        try:
            with self._autocast():
                fake_out = self.D(self.G_train(z)).to(self.dtype)
                if self.generator_loss.generator_needs_real:
                    with torch.no_grad():
                        real_out = self.D(self._real()).to(self.dtype)
            loss = self.generator_loss.generator(fake_out, real_out)
            _finite("generator loss", loss.detach(), self.step)
            self.opt_G.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_G.step()
        finally:
            for p in self._d_params:
                p.requires_grad_(True)
        if self.G_ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(self._ema_pairs[0], self._ema_pairs[1], 1.0 - self.cfg.ema)
                for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                    b_ema.copy_(b)
        return loss.detach()

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and primitive containers."""
        state: dict[str, Any] = {
            "step": self.step,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "data": self.data.state_dict(),
            "latent_gen": self.latent_gen.get_state(),
            "penalty_gen": self.penalty_gen.get_state(),
            "rng": ckpt.capture_rng(),
            "history": self.history,
            "w1_history": self.w1_history,
            "elapsed": self.elapsed,
            "config": self.cfg.to_dict(),
            "log_window": {"sums": self._loss_sums, "count": self._loss_count, "g_loss": self._last_g_loss},
        }
        if self.G_ema is not None:
            state["G_ema"] = self.G_ema.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict` (models, optimizers, every RNG, history)."""
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.data.load_state_dict(state["data"])
        self.latent_gen.set_state(state["latent_gen"])
        self.penalty_gen.set_state(state["penalty_gen"])
        ckpt.restore_rng(state["rng"])
        self.history = {k: list(v) for k, v in state["history"].items()}
        self.w1_history = {k: list(v) for k, v in state["w1_history"].items()}
        self.elapsed = float(state.get("elapsed", 0.0))
        if self.G_ema is not None and "G_ema" in state:
            self.G_ema.load_state_dict(state["G_ema"])
        self.step = int(state["step"])
        window = state.get("log_window")
        if window is not None:  # losses since the last log record, so the next record matches an unbroken run
            self._loss_sums = list(window["sums"]) if window["sums"] is not None else None
            self._loss_count = int(window["count"])
            self._last_g_loss = window["g_loss"]
        # The optimizers' hyper-parameters are the configuration's, not the checkpoint's: a
        # resumed run with another --lr or --betas runs with them (and says so).
        old = state.get("config", {})
        changed = [f"{k} {old[k]!r} -> {getattr(self.cfg, k)!r}" for k in ("lr", "lr_g", "betas", "lr_decay")
                   if k in old and old[k] != (list(self.cfg.betas) if k == "betas" else getattr(self.cfg, k))]
        if self.cfg.optimizer == "adam":
            for opt in (self.opt_D, self.opt_G):
                for group in opt.param_groups:
                    group["betas"] = tuple(float(b) for b in self.cfg.betas)
        old_steps = old.get("steps", self.cfg.steps)
        if self.cfg.lr_decay == "linear" and old.get("lr_decay") == "linear" and old_steps != self.cfg.steps:
            # The schedule is a function of (step, steps): a new end moves the rates. Say by how much.
            changed.append(f"steps {old_steps} -> {self.cfg.steps}: the linear decay now ends at step {self.cfg.steps}, so at step "
                           f"{self.step} the rates go from {self._lr_scale(old_steps):.3g} to {self._lr_scale():.3g} of `lr`")
        self._set_learning_rates()
        if changed and self.rank == 0:
            warnings.warn(f"resumed at step {self.step} with the new optimizer settings: {', '.join(changed)}", stacklevel=2)

    @property
    def checkpoint_path(self) -> Optional[Path]:
        """``out/checkpoint.pt`` (None without a run directory)."""
        return self.out / "checkpoint.pt" if self.out is not None else None

    def save_checkpoint(self, path: Optional[str | os.PathLike] = None) -> Optional[Path]:
        """Writes :meth:`state_dict` atomically (rank 0 only); returns the path."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None or self.rank != 0:
            return None
        ckpt.save_atomic(self.state_dict(), path)
        return path

    def resume(self, path: Optional[str | os.PathLike] = None) -> bool:
        """Loads ``path`` (default ``out/checkpoint.pt``) if it exists; returns whether it did."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None or not path.exists():
            return False
        self.load_state_dict(ckpt.load(path, map_location=self.device))
        return True

    # ------------------------------------------------------------------ the loop

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

    def _lr_scale(self, steps: Optional[int] = None) -> float:
        """The learning rates' factor at this step: 1, or ``1 - step / steps`` under
        ``lr_decay="linear"`` (falling to 0 at ``steps``, default ``config.steps``)."""
        if self.cfg.lr_decay == "none":
            return 1.0
        return max(0.0, 1.0 - self.step / max(self.cfg.steps if steps is None else steps, 1))

    def _set_learning_rates(self) -> None:
        """The configured rates times :meth:`_lr_scale`."""
        scale = self._lr_scale()
        for opt, lr in ((self.opt_D, self.cfg.lr), (self.opt_G, self.cfg.lr_g or self.cfg.lr)):
            for group in opt.param_groups:
                group["lr"] = lr * scale

    def _iteration(self) -> None:
        """One generator iteration: ``n_critic`` critic updates, then one generator update.

        The losses are summed on the device for the next log record (no host sync).
        """
        self._set_learning_rates()
        for _ in range(self.cfg.n_critic):
            losses_ = self._critic_step()
            self._loss_sums = list(losses_) if self._loss_sums is None else [a + b for a, b in zip(self._loss_sums, losses_)]
            self._loss_count += 1
        self._last_g_loss = self._generator_step()
        self.step += 1

    def _log_losses(self) -> dict[str, float]:
        """Appends the mean losses since the last record to ``history``; returns them."""
        d_sum, w_sum, p_sum = self._loss_sums
        n = self._loss_count
        record = {"d_loss": float(d_sum) / n, "g_loss": float(self._last_g_loss), "wasserstein": float(w_sum) / n, "penalty": float(p_sum) / n}
        self._loss_sums, self._loss_count = None, 0
        self.history["step"].append(self.step)
        for k, v in record.items():
            self.history[k].append(v)
        return record

    def train_steps(self, n: int) -> None:
        """Runs ``n`` generator iterations with the loss log and nothing else.

        No checks, checkpoints, plots or files: the loop that :meth:`fit` wraps, for
        callers that interleave their own measurements (``bench/time_to_quality.py``).
        ``elapsed`` grows by the time spent here.
        """
        with self._thread_count():
            start = time.perf_counter()
            self.G.train()
            self.D.train()
            for _ in range(int(n)):
                self._iteration()
                if self.step % self.cfg.log_every == 0:
                    self._log_losses()
            self.elapsed += time.perf_counter() - start

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

    @contextlib.contextmanager
    def _thread_count(self):
        """``config.threads`` torch threads while training; the caller's count restored after."""
        before = torch.get_num_threads()
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def fit(self, steps: Optional[int] = None, *, resume: bool = False, progress: Optional[bool] = None) -> dict[str, Any]:
        """Trains up to generator step ``steps`` (default ``config.steps``), then evaluates.

        With ``resume``, continues from ``out/checkpoint.pt`` when it exists. Returns the
        metrics (also written to ``out/metrics.json``). Runs on ``config.threads`` torch
        threads (when set) and restores the caller's count afterwards.
        """
        with self._thread_count():
            return self._fit(steps, resume=resume, progress=progress)

    def _fit(self, steps: Optional[int], *, resume: bool, progress: Optional[bool]) -> dict[str, Any]:
        cfg = self.cfg
        total = cfg.steps if steps is None else int(steps)
        if resume:
            self.resume()
        show = (cfg.progress if progress is None else progress) and self.rank == 0
        self._check_plots()
        checks = 10 if self.image else 100  # an image check scores 2,500 samples: about 10 a run
        w1_every = cfg.w1_every or max(4 * cfg.log_every, total // checks // cfg.log_every * cfg.log_every)
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=self.step, desc=f"{cfg.algo} {self.data.name}", dynamic_ncols=True)
        self.G.train()
        self.D.train()
        start = time.perf_counter()
        start_elapsed = self.elapsed
        try:
            while self.step < total:
                self._iteration()
                self.elapsed = start_elapsed + time.perf_counter() - start
                if self.step % cfg.log_every == 0 or self.step == total:
                    record = self._log_losses()
                    if bar is not None:
                        bar.set_postfix(D=f"{record['d_loss']:.3f}", G=f"{record['g_loss']:.3f}", W=f"{record['wasserstein']:.3f}")
                if self.rank == 0 and self.out is not None and (self.step % w1_every == 0 or self.step == total):
                    self._w1_check()
                    if bar is not None and isinstance(self.data, MixtureData):
                        bar.set_postfix(D=f"{self.history['d_loss'][-1]:.3f}" if self.history["d_loss"] else "-",
                                        W=f"{self.w1_history['estimate'][-1]:.3f}", W1=f"{self.w1_history['w1'][-1]:.3f}",
                                        modes=self.w1_history["modes"][-1], HQ=f"{self.w1_history['high_quality_pct'][-1]:.1f}%")
                    elif bar is not None and self.scorer() is not None:
                        h = self.w1_history
                        bar.write(f"step {self.step}: classes>=5% {h['classes_at_5pct'][-1]:.0f}, "
                                  f"p>=0.9 {h['confident_pct'][-1]:.1f}%, FD/floor {h['fd_over_floor'][-1]:.1f}")
                if cfg.sample_every and self.step % cfg.sample_every == 0 and self.rank == 0 and self._plots:
                    self.plot_samples(self.out / f"samples_{self.step:06d}.png")
                if self.step % cfg.checkpoint_every == 0 or self.step == total:
                    self.save_checkpoint()
                    if self.rank == 0 and self.out is not None:
                        self._write_history()
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return self.evaluate(write=True)

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
        metrics: dict[str, Any] = {"algo": self.cfg.algo, "data": self.data.name, "steps": self.step, "backend": self.cfg.backend}
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
            self._plots = self.rank == 0 and self.out is not None and plots.available()
            if self.rank == 0 and self.out is not None and not self._plots:
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


def train(algo: str = "wgan-gp", data: Any = "grid25", *, out: Optional[str | os.PathLike] = None, resume: bool = False, **overrides: Any) -> Trainer:
    """Builds a :class:`Trainer` for ``algo`` on ``data`` with the paper defaults and ``overrides``, and trains it.

    Returns the trainer (``trainer.metrics`` holds the final metrics).
    """
    trainer = Trainer(preset(algo, data=data, **overrides), out=out)
    trainer.fit(resume=resume)
    return trainer
