"""fastgan: compiled kernels for adversarial training under a thin PyTorch API.

Ops run fastgan's C++ kernels on CPU tensors and its CUDA (or Triton) kernels
on GPU tensors; every op has a pure-PyTorch twin in :mod:`fastgan.reference`
(``backend="reference"``). ``python -m fastgan.info`` reports what this
installation can run.
"""

from fastgan import _library  # loads the compiled ops once (warns if missing)
from fastgan import divergences, losses, metrics, nn, ot, reference
from fastgan.clip import clip_parameters_
from fastgan.penalty import (
    CriticLoss,
    gradient_penalty,
    mlp_critic_layers,
    mlp_critic_penalty,
    penalty_from_gradients,
    wgan_gp_critic_loss,
)
from fastgan import train  # callable: fastgan.train(algo, data, ...) runs train.train
from fastgan.train import Trainer

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
    "nn",
    "ot",
    "penalty_from_gradients",
    "reference",
    "train",
    "Trainer",
    "wgan_gp_critic_loss",
    "__version__",
]
