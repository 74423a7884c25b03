"""References of fastgan's compiled kernels: plain PyTorch, except ``emd_solve``
(and ``emd`` / ``emd2`` on it), which solves the linear program with SciPy's
HiGHS.

Each function has the same signature and contract as the public op it
mirrors. They are the test oracle, the benchmark baseline and what
``backend="reference"`` runs. ``linear_sum_assignment`` and
``mlp_critic_penalty`` have none (the tests check them against SciPy and
torch's autograd); the ops composed of kernels (``ot.wasserstein``, the
sliced distances, ``SamplesLoss``) have none of their own and are checked
against POT and GeomLoss.
"""

from fastgan.reference.clip import clip_parameters_
from fastgan.reference.emd import emd, emd2, emd_solve
from fastgan.reference.bias_act import bias_act, bias_act_grad
from fastgan.reference.ot import wasserstein_1d
from fastgan.reference.sinkhorn import sinkhorn_log, sinkhorn_points
from fastgan.reference.penalty import (
    gradient_penalty,
    interpolate,
    penalty_from_gradients,
    wgan_gp_critic_loss,
)
from fastgan.reference.spectral_norm import (
    spectral_norm,
    spectral_norm_all,
    spectral_norm_power_iteration,
)

__all__ = [
    "bias_act",
    "bias_act_grad",
    "clip_parameters_",
    "emd",
    "emd2",
    "emd_solve",
    "gradient_penalty",
    "interpolate",
    "penalty_from_gradients",
    "sinkhorn_log",
    "sinkhorn_points",
    "wasserstein_1d",
    "spectral_norm",
    "spectral_norm_all",
    "spectral_norm_power_iteration",
    "wgan_gp_critic_loss",
]
