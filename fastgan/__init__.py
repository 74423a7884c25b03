"""fastgan: compiled kernels for adversarial training under a thin PyTorch API.

Ops run fastgan's C++ kernels on CPU tensors and its CUDA (or Triton) kernels
on GPU tensors; every op has a pure-PyTorch twin in :mod:`fastgan.reference`
(``backend="reference"``). ``python -m fastgan.info`` reports what this
installation can run.

Training (:mod:`fastgan.train`, callable as ``fastgan.train(algo, data, ...)``,
and :class:`fastgan.Trainer`) loads on first use: ``import fastgan`` brings in
the ops, losses, metrics and optimal transport, not the training loops and
their dependencies (tqdm).
"""

from __future__ import annotations

import importlib

from fastgan import _library  # loads the compiled ops once (warns if missing)
from fastgan import divergences, losses, metrics, nn, ot, reference
from fastgan.clip import clip_parameters_
from fastgan.penalty import (
    CriticLoss,
    gradient_penalty,
    mlp_critic_layers,
    mlp_critic_penalty,
    mlp_critic_scores,
    penalty_from_gradients,
    wgan_gp_critic_loss,
)

__version__ = "0.1.0"

__all__ = [
    "CriticLoss",
    "clip_parameters_",
    "divergences",
    "gradient_penalty",
    "losses",
    "metrics",
    "mlp_critic_layers",
    "mlp_critic_penalty",
    "mlp_critic_scores",
    "nn",
    "ot",
    "penalty_from_gradients",
    "reference",
    "train",
    "Trainer",
    "wgan_gp_critic_loss",
    "__version__",
]

#: Names this package loads on first access, and the module each comes from.
_LAZY = {"train": "fastgan.train", "Trainer": "fastgan.train"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fastgan' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    value = loaded if name == "train" else getattr(loaded, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
