"""Training configurations: the papers' defaults for each algorithm, and recipes for 2-D toys.

A :class:`Config` holds every knob of a run; :func:`preset` returns the defaults
of one algorithm, and ``preset(algo, **overrides)`` changes any of them.

On the built-in 2-D data sets (``TOY_DATA``) GAN, WGAN-GP, SN-GAN and LSGAN get a toy
recipe (``TOY_RECIPES``; WGAN keeps its paper's settings, no recipe measured held across
seeds): the paper's algorithm (loss, penalty or spectral norm, Adam)
with the knobs the papers leave open for toy data chosen by measurement, as
Gulrajani et al.'s own toy code departs from their Algorithm 1 (docs/training.md
gives the measurements). On the labelled image data (``IMAGE_DATA``: MNIST, the
8x8 digits) GAN, WGAN-GP and SN-GAN get image recipes (``IMAGE_RECIPES``) chosen
the same way. ``preset(algo, paper_defaults=True)`` (``fastgan train
--paper-defaults``) gives the table below on any data.

=========  ==========================================================================
algo       defaults (paper)
=========  ==========================================================================
gan        Goodfellow et al.: non-saturating G loss (``g_loss="minimax"`` for the
           saturating one), Adam lr 2e-4, betas (0.5, 0.999), n_critic 1
wgan       WGAN Algorithm 1: RMSProp lr 5e-5, clip c = 0.01 after every critic
           update (fastgan's ``clip_parameters_``), batch 64, n_critic 5, no sigmoid
wgan-gp    WGAN-GP Algorithm 1: Adam lr 1e-4, betas (0, 0.9), lambda = 10,
           n_critic 5, fastgan's gradient penalty
sngan      SN-GAN: fastgan's batched spectral norm on every critic layer, hinge
           loss, Adam lr 2e-4, betas (0, 0.9), n_critic 5
lsgan      Mao et al.: least-squares loss (a=0, b=1, c=1), Adam lr 2e-4, betas (0.5, 0.999)
fgan-<d>   Nowozin et al.: f-GAN for divergence d of ``fastgan.losses.F_DIVERGENCES``,
           Adam lr 2e-4, betas (0.5, 0.999)
=========  ==========================================================================
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from fastgan import losses

__all__ = ["Config", "ALGOS", "TOY_DATA", "TOY_RECIPES", "IMAGE_DATA", "IMAGE_RECIPES", "preset", "algorithms"]


@dataclass
class Config:
    """Every knob of a training run (see :func:`preset` for each algorithm's defaults)."""

    algo: str = "wgan-gp"
    data: Any = "grid25"
    image_size: int = 0  #: image side for image data (0: the data's native size; image folders: 32)
    steps: int = 3000  #: generator iterations
    batch_size: int = 256  #: the WGAN-GP toy code's batch (WGAN's preset: its paper's 64)
    n_critic: int = 5
    loss: str = "wgan"  #: critic loss name in ``fastgan.losses``
    g_loss: Optional[str] = None  #: generator loss name, when it differs (gan: "ns" / "minimax")
    optimizer: str = "adam"  #: "adam" or "rmsprop"
    lr: float = 1e-4
    lr_g: Optional[float] = None  #: generator lr (default: ``lr``)
    betas: tuple[float, float] = (0.0, 0.9)
    lr_decay: str = "none"  #: "linear": both learning rates fall linearly to 0 at ``steps``
    clip: Optional[float] = None  #: WGAN weight clipping c
    gp_weight: float = 0.0  #: lambda of the gradient penalty (0: none)
    #: interpolates x_hat in the penalty's Monte-Carlo mean (0: the batch); fewer rows make the
    #: double backward, the step's costliest part under WGAN-GP, cheaper
    gp_batch: int = 0
    #: the generator step reuses the last critic step's fake batch (the same z) with its graph:
    #: one generator forward per iteration instead of two
    share_fake: bool = False
    spectral_norm: bool = False
    model: str = "auto"  #: "mlp", "dcgan", "sngan-cnn", "resnet"; auto: mlp for flat data, dcgan for images
    width: int = 128  #: hidden units (MLP) or base channels (CNNs: pass e.g. 64)
    depth: int = 3
    latent_dim: int = 0  #: 0: 2 for flat data, 100 for images
    critic_norm: str = "none"  #: DCGAN critic normalisation: batch, layer, none
    sigmoid: bool = False  #: final sigmoid in the critic (losses then see probabilities)
    pack: int = 1  #: PacGAN packing degree
    minibatch_std: bool = False
    #: extra 3x3 stride-1 convolutions in the dcgan-small and dcgan critics, after their strided ones
    critic_convs: int = 0
    #: dropout probability after every LeakyReLU of the dcgan-small and dcgan critics (0: none)
    critic_dropout: float = 0.0
    #: the generator's step sees the critic's dropout too (False: it scores its batch with the
    #: critic's mean network, dropout off; the critic's own step always has it)
    generator_step_dropout: bool = False
    ema: float = 0.0  #: EMA decay of the generator weights (0: off)
    #: flat data: the models see samples divided by the data's standard deviation
    #: (``Trainer.scale``); samples, metrics and plots stay in data units
    normalize: bool = False
    backend: str = "auto"  #: "auto" (fastgan's kernels) or "reference" (pure PyTorch)
    device: str = "cpu"
    #: parameter and data dtype: "float32", or "float64" for checks (e.g. that 2 processes
    #: match 1: Adam turns float32 rounding noise in a near-zero gradient into a full step)
    dtype: str = "float32"
    #: bf16 autocast of the models' forward and backward (parameters, optimizer, losses, the
    #: penalty and sampling stay float32); "auto": on where the device has bf16 arithmetic
    #: (a CUDA GPU that supports it; a CPU with AVX512-BF16 or AMX), off elsewhere
    bf16: bool | str = False
    seed: int = 0
    log_every: int = 50  #: loss-curve points / bar updates
    sample_every: int = 0  #: sample plots every k steps (0: only at the end)
    checkpoint_every: int = 500
    eval_samples: int = 2500
    #: critic estimate vs exact W_1 (and, on mixtures, modes) every k steps (0: about 100 checks
    #: a run, at least ``log_every * 4`` apart)
    w1_every: int = 0
    w1_batch: int = 256  #: minibatch size for the exact W_1
    #: torch.set_num_threads for the run (0: leave torch's setting). The 2-D MLPs run
    #: fastest on one thread: their matrices are too small to split, and on a busy
    #: machine two threads waiting on each other measured 50x slower (61 s vs 1.25 s
    #: for 20 WGAN-GP steps at width 32 on 2 shared cores).
    threads: int = 0
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (the data as its name)."""
        d = dataclasses.asdict(self)
        if not isinstance(d["data"], (str, int, float)):
            d["data"] = type(self.data).__name__
        d["betas"] = list(self.betas)
        return d

    def replace(self, **changes: Any) -> "Config":
        """A copy with ``changes`` applied (unknown names raise a ValueError)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown config option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)


_PRESETS: dict[str, dict[str, Any]] = {
    "gan": dict(loss="minimax", g_loss="ns", optimizer="adam", lr=2e-4, betas=(0.5, 0.999), n_critic=1),
    "wgan": dict(loss="wgan", optimizer="rmsprop", lr=5e-5, clip=0.01, batch_size=64, n_critic=5),
    "wgan-gp": dict(loss="wgan", optimizer="adam", lr=1e-4, betas=(0.0, 0.9), gp_weight=10.0, n_critic=5),
    "sngan": dict(loss="hinge", optimizer="adam", lr=2e-4, betas=(0.0, 0.9), spectral_norm=True, n_critic=5),
    "lsgan": dict(loss="lsgan", optimizer="adam", lr=2e-4, betas=(0.5, 0.999), n_critic=1),
}

#: The built-in 2-D data sets, on which :data:`TOY_RECIPES` apply.
TOY_DATA = ("grid25", "ring8", "swissroll")

#: Knobs of the 2-D recipes, over the paper defaults (docs/training.md has the runs that chose them,
#: on grid25 and ring8; swissroll takes the same recipes, unmeasured there): the models see the
#: data divided by its standard deviation (``normalize``, as the WGAN-GP toy code divides its data
#: by 2.828), WGAN-GP's toy-code penalty weight and betas, one critic step per generator step
#: (with two time-scale learning rates where measured better), a linear decay of both rates to 0
#: at the last step, and an EMA of the generator.
TOY_RECIPES: dict[str, dict[str, Any]] = {
    "wgan-gp": dict(normalize=True, gp_weight=0.1, betas=(0.5, 0.9), n_critic=1, lr=4e-4, lr_g=2.5e-4,
                    lr_decay="linear", ema=0.999, steps=60000),
    "sngan": dict(normalize=True, n_critic=1, lr=4e-4, lr_g=4e-4, lr_decay="linear", ema=0.999, steps=40000),
    "gan": dict(normalize=True, lr=4e-4, lr_decay="linear", ema=0.999, steps=40000),
    "lsgan": dict(normalize=True, lr=4e-4, lr_decay="linear", ema=0.999, steps=40000),
}

#: The built-in labelled image data sets, on which :data:`IMAGE_RECIPES` apply.
IMAGE_DATA = ("mnist", "digits")

#: Knobs of the image recipes, per data set, over the paper defaults (docs/training.md has the
#: runs that chose them): the small DCGAN-style models (``model="auto"``) at width 32, one critic
#: step per generator step, a higher learning rate falling linearly to 0 at the last step and an
#: EMA of the generator. On MNIST all three take more and cheaper steps: a batch of 32 and one
#: generator forward per iteration (``share_fake``; WGAN-GP's penalty on 8 interpolates,
#: ``gp_batch``), and one more critic layer (``critic_convs=1``: a 3x3 convolution after the
#: strided ones), which lifted each more than its cost. The GAN's critic, unconstrained, takes the
#: layer only with dropout after each LeakyReLU (``critic_dropout``, the original GAN's regulariser;
#: off in the generator's step, which scores with the critic's mean network) and a rate of its own
#: below the generator's (3e-4 against 1e-3). The GAN's models run under bf16 autocast where the
#: device has bf16 arithmetic (``bf16="auto"``: AVX512-BF16 / AMX CPUs, bf16 GPUs; float32 elsewhere).
IMAGE_RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "mnist": {
        "gan": dict(width=32, latent_dim=64, batch_size=32, share_fake=True, n_critic=1, lr=3e-4, lr_g=1e-3,
                    betas=(0.5, 0.999), critic_convs=1, critic_dropout=0.3, lr_decay="linear", ema=0.999, steps=26000,
                    bf16="auto"),
        "wgan-gp": dict(width=32, latent_dim=64, batch_size=32, gp_batch=8, share_fake=True, n_critic=1, lr=1e-3, lr_g=1e-3,
                        betas=(0.5, 0.9), critic_convs=1, lr_decay="linear", ema=0.999, steps=20000),
        "sngan": dict(width=32, latent_dim=64, batch_size=32, share_fake=True, n_critic=1, lr=1e-3, lr_g=1e-3, betas=(0.5, 0.999),
                      critic_convs=1, lr_decay="linear", ema=0.999, steps=24000),
    },
    "digits": {
        "gan": dict(width=32, latent_dim=32, batch_size=64, lr=5e-4, ema=0.999, steps=3000),
        "wgan-gp": dict(width=32, latent_dim=32, batch_size=64, n_critic=1, lr=4e-4, lr_g=1e-4, betas=(0.5, 0.9), ema=0.999,
                        steps=3000),
        "sngan": dict(width=32, latent_dim=32, batch_size=64, n_critic=1, lr=4e-4, lr_g=1e-4, betas=(0.5, 0.9), ema=0.999,
                      steps=3000),
    },
}

#: The algorithm names (f-GAN ones as ``fgan-<divergence>``).
ALGOS = tuple(_PRESETS) + tuple(f"fgan-{d}" for d in losses.F_DIVERGENCES)


def algorithms() -> tuple[str, ...]:
    """The preset names."""
    return ALGOS


def preset(algo: str, *, paper_defaults: bool = False, **overrides: Any) -> Config:
    """The defaults of ``algo`` (see the module docstring), with ``overrides`` applied.

    The paper's settings, plus :data:`TOY_RECIPES` when ``data`` (default ``"grid25"``)
    is one of :data:`TOY_DATA` and ``paper_defaults`` is False. ``overrides`` win over both.
    """
    if not isinstance(algo, str):
        raise TypeError(f"`algo` must be a string, got {type(algo).__name__}")
    key = algo.lower().replace("_", "-")
    if key in _PRESETS:
        base = dict(_PRESETS[key])
    elif key.startswith("fgan-") and key[5:].replace("-", "_") in losses.F_DIVERGENCES:
        base = dict(loss=f"fgan_{key[5:].replace('-', '_')}", optimizer="adam", lr=2e-4, betas=(0.5, 0.999), n_critic=1)
    else:
        raise ValueError(f"unknown `algo`={algo!r}; expected one of {', '.join(ALGOS)}")
    base["algo"] = key
    data = overrides.get("data", Config.data)
    if not paper_defaults and isinstance(data, str) and data in TOY_DATA:
        base.update(TOY_RECIPES.get(key, {}))
    if not paper_defaults and isinstance(data, str) and data in IMAGE_DATA:
        base.update(IMAGE_RECIPES[data].get(key, {}))
    cfg = Config().replace(**base)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return cfg.replace(**overrides)
