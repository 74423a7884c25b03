"""The training loop: GAN, WGAN, WGAN-GP, SN-GAN, LSGAN and f-GAN on fastgan's kernels.

One :class:`Trainer` runs every algorithm of :mod:`fastgan.train.presets`:
``n_critic`` critic updates (loss from :mod:`fastgan.losses`, plus fastgan's
gradient penalty, weight clipping or spectral norm), then one generator update.
Set-up, the steps, the loop and multi-process training are here; checkpoints and
resume in :class:`fastgan.train.checkpoint.Checkpointing`, samples, scores, metrics and
plots in :class:`fastgan.train.evaluation.Evaluation`.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

import fastgan
from fastgan import losses
from fastgan.arrangements import couples_samples, mlp_critic_layers
from fastgan.mlp_critic import mlp_critic_penalty, mlp_critic_scores
from fastgan.penalty import interpolate, penalty_from_gradients
from fastgan.train.checkpoint import Checkpointing
from fastgan.train.data import DataSource, MixtureData, make_data
from fastgan.train.evaluation import Evaluation, Rescaled, exact_w1
from fastgan.train.models import build_models, check_dropout
from fastgan.train.optim import FusedAdamStep
from fastgan.train.presets import Config, preset

__all__ = ["Trainer", "TrainingDiverged", "train", "exact_w1", "data_scale", "Rescaled"]

BACKENDS = ("auto", "reference")
LR_DECAYS = ("none", "linear")


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


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


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` runs bfloat16 products natively: a CUDA GPU that supports bf16, or a
    CPU with AVX512-BF16 or AMX tiles (oneDNN's bf16 convolutions and matrix products then beat
    float32's; elsewhere they are emulated and slower)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def _finite(name: str, value: Tensor, step: int) -> None:
    """Raises TrainingDiverged unless the 0-dim loss ``value`` is finite (one read of it)."""
    if not math.isfinite(value.item()):
        raise TrainingDiverged(
            f"the {name} became {float(value)} at generator step {step}: training stopped; "
            "the last good checkpoint is kept (lower the learning rate or check the data)"
        )


class Trainer(Checkpointing, Evaluation):
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
        #: whether the models run under bf16 autocast (``config.bf16``, "auto" resolved)
        self.bf16 = native_bf16(self.device) if cfg.bf16 == "auto" else bool(cfg.bf16)
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[cfg.dtype]
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if cfg.batch_size % self.world:
            raise ValueError(f"`batch_size`={cfg.batch_size} must be a multiple of the {self.world} processes")
        self.local_batch = cfg.batch_size // self.world
        if cfg.pack > 1 and self.local_batch % cfg.pack:
            raise ValueError(f"the per-process batch {self.local_batch} must be a multiple of `pack`={cfg.pack}")
        gp_batch = cfg.gp_batch or cfg.batch_size
        if gp_batch > cfg.batch_size or gp_batch % self.world or (gp_batch // self.world) % cfg.pack:
            raise ValueError(
                f"`gp_batch`={cfg.gp_batch} must be at most `batch_size`={cfg.batch_size} and a multiple of "
                f"{self.world} processes x `pack`={cfg.pack}"
            )
        self.gp_batch = gp_batch  #: interpolates in the penalty, over all processes
        self.local_gp_batch = gp_batch // self.world

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
                critic_convs=cfg.critic_convs,
                critic_dropout=cfg.critic_dropout,
            )
            if cfg.backend == "auto":
                # One-channel images: the first critic layer's input gradient and the
                # generator's last layer through fastgan's kernel (fastgan.nn.conv).
                fastgan.nn.use_single_channel_convs_(g_built)
                fastgan.nn.use_single_channel_convs_(d_built)
                # The critic's dropout masks from fastgan's counter-based generator (fastgan.nn.dropout).
                fastgan.nn.use_fast_dropout_(d_built)
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
        # The critic's dropout layers, off in the generator's step unless `generator_step_dropout`.
        self._d_dropouts = [] if cfg.generator_step_dropout else [m for m in self.D.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
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
        if cfg.backend == "auto" and not self.distributed and not self.bf16:
            self._mlp_critic = mlp_critic_layers(self.D)
        self.opt_D = self._optimizer(self.D.parameters(), cfg.lr)
        self.opt_G = self._optimizer(self.G.parameters(), cfg.lr_g or cfg.lr)
        self._fused_steps: dict[int, FusedAdamStep] = {}
        self.critic_loss = losses.get(cfg.loss)
        self.generator_loss = losses.get(cfg.g_loss) if cfg.g_loss else self.critic_loss
        self.latent_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.penalty_gen = torch.Generator().manual_seed(cfg.seed + 2)
        self._shared_fake: Optional[Tensor] = None  # the fake batch the generator step reuses
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
        for name in ("sample_every", "w1_every", "threads", "latent_dim", "seed", "critic_convs"):
            value = getattr(cfg, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"`{name}` must be an int >= 0, got {value!r}")
        check_dropout(cfg.critic_dropout, "critic_dropout")
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
        if cfg.gp_batch < 0:
            raise ValueError(f"`gp_batch` must be >= 0 (0: the batch), got {cfg.gp_batch!r}")
        if cfg.lr_decay not in LR_DECAYS:
            raise ValueError(f"`lr_decay` must be one of {LR_DECAYS}, got {cfg.lr_decay!r}")
        if not 0 <= cfg.ema < 1:
            raise ValueError(f"`ema` must be in [0, 1), got {cfg.ema!r}")
        if not (isinstance(cfg.bf16, bool) or cfg.bf16 == "auto"):
            raise ValueError(f"`bf16` must be True, False or 'auto', got {cfg.bf16!r}")
        if cfg.bf16 is True and torch.device(cfg.device).type not in ("cuda", "cpu"):
            raise ValueError(f"`bf16` autocast is for CUDA and CPU devices, got `device`={cfg.device!r}")

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

    def _update(self, opt: torch.optim.Optimizer) -> FusedAdamStep:
        """``opt``'s zero_grad and step (fastgan.train.optim.FusedAdamStep), made once per optimizer."""
        update = self._fused_steps.get(id(opt))
        if update is None or update.optimizer is not opt:
            update = self._fused_steps[id(opt)] = FusedAdamStep(opt)
        return update

    # ------------------------------------------------------------------ batches

    def _local(self, t: Tensor, size: Optional[int] = None) -> Tensor:
        """This process's slice of a global batch (``size`` rows a process; default the batch's)."""
        n = self.local_batch if size is None else size
        return t[self.rank * n : (self.rank + 1) * n].to(self.device, self.dtype)

    def _real(self) -> Tensor:
        real = self._local(self.data.sample(self.cfg.batch_size))
        return real / self.scale if self.scale != 1.0 else real

    def _latent(self) -> Tensor:
        return self._local(torch.randn(self.cfg.batch_size, self.latent_dim, generator=self.latent_gen))

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    # ------------------------------------------------------------------ steps

    def _critic_step(self, share: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """One critic update. ``share``: the fake batch keeps its generator graph in
        ``self._shared_fake`` for the generator step that follows (``config.share_fake``)."""
        cfg = self.cfg
        real = self._real()
        z = self._latent()
        if share:
            with self._autocast():
                self._shared_fake = self.G_train(z)
            fake = self._shared_fake.detach().to(self.dtype)
        else:
            with torch.no_grad(), self._autocast():
                fake = self.G(z).to(self.dtype)
        penalty = torch.zeros((), device=self.device, dtype=self.dtype)
        if cfg.gp_weight > 0:
            h = self.local_gp_batch
            eps = self._local(torch.rand(self.gp_batch, generator=self.penalty_gen), h)
            x_hat = interpolate(real[:h], fake[:h], eps, backend=cfg.backend)
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
        update = self._update(self.opt_D)
        update.zero_grad()
        loss.backward()
        update.step()
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
        grads = grads.to(self.dtype).reshape(x_hat.shape[0] // cfg.pack, -1)  # one gradient per pack; penalty in float32 (or 64)
        return d_real, d_fake, cfg.gp_weight * penalty_from_gradients(grads, backend=cfg.backend)

    def _generator_step(self) -> Tensor:
        fake, self._shared_fake = self._shared_fake, None
        real_out = None
        # An MLP critic scores the fake batch in one node whose gradient goes to the
        # batch alone (fastgan.mlp_critic_scores); other critics are frozen meanwhile.
        fused = self._mlp_critic is not None
        frozen = [] if fused else self._d_params
        for p in frozen:  # no parameter gradients of the critic in the generator step
            p.requires_grad_(False)
        dropouts = [m for m in self._d_dropouts if m.training]
        for m in dropouts:  # the critic's mean network scores the fake batch
            m.train(False)
        try:
            with self._autocast():
                if fake is None:  # no batch shared by the critic step: a fresh one
                    fake = self.G_train(self._latent())
                if fused:
                    fake_out = mlp_critic_scores(self._mlp_critic, fake, parameters=False)
                else:
                    fake_out = self.D(fake).to(self.dtype)
                if self.generator_loss.generator_needs_real:
                    with torch.no_grad():
                        real_out = self.D(self._real()).to(self.dtype)
            loss = self.generator_loss.generator(fake_out, real_out)
            _finite("generator loss", loss.detach(), self.step)
            update = self._update(self.opt_G)
            update.zero_grad()
            loss.backward()
            update.step()
        finally:
            for p in frozen:
                p.requires_grad_(True)
            for m in dropouts:
                m.train(True)
        if self.G_ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(self._ema_pairs[0], self._ema_pairs[1], 1.0 - self.cfg.ema)
                for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                    b_ema.copy_(b)
        return loss.detach()

    # ------------------------------------------------------------------ the loop

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
        for i in range(self.cfg.n_critic):
            losses_ = self._critic_step(share=self.cfg.share_fake and i == self.cfg.n_critic - 1)
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


def train(algo: str = "wgan-gp", data: Any = "grid25", *, out: Optional[str | os.PathLike] = None, resume: bool = False, **overrides: Any) -> Trainer:
    """Builds a :class:`Trainer` for ``algo`` on ``data`` with the paper defaults and ``overrides``, and trains it.

    Returns the trainer (``trainer.metrics`` holds the final metrics).
    """
    trainer = Trainer(preset(algo, data=data, **overrides), out=out)
    trainer.fit(resume=resume)
    return trainer
