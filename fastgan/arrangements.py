r"""How a critic step evaluates the critic: the arrangements, and which one applies.

A WGAN-GP critic step needs :math:`D(x)`, :math:`D(\tilde x)` and
:math:`\nabla_{\hat x} D(\hat x)` for B real, B fake and B interpolated
samples. The arrangements evaluate the same function in different batches.
:func:`choose_arrangement` picks one for :func:`fastgan.wgan_gp_critic_loss`;
:func:`couples_samples` and :func:`mlp_critic_layers` are the two facts about
a critic it reads. Calls per step and the double backward's rows:

================  ==================================  =====  ====  ==============================================
arrangement       critic calls                        rows   SN    picked by ``"auto"`` when, and why
================  ==================================  =====  ====  ==============================================
``separate``      D(real), D(fake), D(x_hat)          B      3     the critic couples samples (BatchNorm,
                                                                   ``couples_batch``, not an ``nn.Module``):
                                                                   only separate calls keep its outputs; or it
                                                                   convolves (level with ``pair`` on a 2-core
                                                                   CPU, and each call keeps the batch size)
``pair``          D([real; fake]), D(x_hat)           B      2     no convolution and not fusable: about 5%
                                                                   faster than ``separate`` (MLP, 2-core CPU)
``joint``         D([real; fake; x_hat])              3B     1     never: one forward, but the double backward
                                                                   over 3B rows is 1.4-2x slower
``fused``         none: one ``mlp_critic_penalty``    --     1     an MLP critic (:func:`mlp_critic_layers`) on
                  op (scores, penalty, gradients)                  the CPU, float32 / float64 ``(B, d)`` rows,
                                                                   ``backend="auto"``: each layer's product is
                                                                   shared by the 3B rows; first derivatives only
================  ==================================  =====  ====  ==============================================

"SN": power-iteration rounds per step under spectral normalisation in
training mode (:func:`fastgan.nn.spectral_norm` / ``spectral_norm_all`` or
torch's): each forward of the critic advances ``u`` and ``v`` by
``n_power_iterations`` steps before normalising.

The training loop (:class:`fastgan.train.Trainer`) makes the same choice in
its own critic step, for any adversarial loss and for packed samples
(``pack``: one score per pack of ``pack`` samples):

=================================  =========================================  ===========================
critic step path                   when                                       critic calls (SN rounds)
=================================  =========================================  ===========================
fused, with penalty                MLP critic (``backend="auto"``, one         one ``mlp_critic_penalty``
                                   process, no bf16), ``gp_weight`` > 0        on real, fake, x_hat (1)
fused, scores only                 MLP critic, ``gp_weight`` = 0               one ``mlp_critic_penalty``
                                                                               on real, fake (1)
scores only                        ``gp_weight`` = 0, not fusable              D(real), D(fake) when
                                                                               coupled (2); else
                                                                               D([real; fake]) (1)
autograd penalty                   ``gp_weight`` > 0, not fusable:             one of the three below
                                   ``Trainer._penalized_scores``
  -- coupled                       the critic couples samples                  separate: 3 calls (3)
  -- DDP or SN                     under torchrun (DDP's reducer expects       joint: 1 call (1)
                                   one forward and one backward) or with
                                   spectral normalisation
  -- otherwise                     no coupling, one process, no SN             pair: 2 calls (no SN)
=================================  =========================================  ===========================

What the arrangements share, and where they differ. For a critic whose
forward is a function of its input and parameters alone, every arrangement
gives the same loss, scores and parameter gradients up to rounding
(``"joint"`` and ``"pair"`` change the batch a convolution runs on, which
changes its float32 rounding by about 1e-5 relative; ``"fused"`` gives first
derivatives only). A critic whose forward changes its own state, or draws
random numbers (dropout), is another function under each arrangement, as
the number of its calls differs. Under spectral normalisation in training
mode the SN column above says how many power-iteration rounds one step runs,
and each call normalises with the sigma of the rounds run so far, so
``"separate"`` and ``"pair"`` give other numbers than ``"joint"`` and
``"fused"`` (which agree with each other), and leave other ``u`` / ``v``
buffers. In evaluation mode (no iteration) all four agree to rounding
(``tests/test_penalty.py`` checks both against the normalisation written
out).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from fastgan.nn.modules import BiasAct, Flat
from fastgan.nn.spectral_norm import SpectralNorm, SpectralNormGroup, _normalized_linear

__all__ = [
    "ARRANGEMENTS",
    "AUTO_ARRANGEMENT",
    "MlpLayers",
    "choose_arrangement",
    "couples_samples",
    "mlp_critic_layers",
]

ARRANGEMENTS = ("auto", "separate", "pair", "joint", "fused")

#: The arrangement ``wgan_gp_critic_loss(arrangement="auto")`` uses for
#: critics whose samples do not interact (no BatchNorm), by device type and
#: by whether the critic convolves. On a 2-core CPU (bench/bench_wgan_gp.py,
#: README.md) "pair" was about 5% faster than "separate" for the MLP critic
#: and level for the DCGAN critic, where the larger batch also changes the
#: convolution algorithms' float32 rounding (1e-5 relative in the gradients);
#: "joint" was 1.4-2x slower. The GPU entries follow the same rule and have
#: not been measured yet.
AUTO_ARRANGEMENT: dict[tuple[str, bool], str] = {
    ("cpu", False): "pair",
    ("cpu", True): "separate",
    ("cuda", False): "pair",
    ("cuda", True): "separate",
}


def couples_samples(critic: object) -> bool:
    """Whether a critic's output for one sample may depend on the other samples of its batch.

    True for a critic with BatchNorm, with a module whose class sets ``couples_batch = True``
    (fastgan's ``MinibatchStd``: declare it on any layer that computes batch statistics),
    or that is not an ``nn.Module`` (it cannot be inspected). Such a critic must see real,
    fake and interpolated samples in separate calls.
    """
    if not isinstance(critic, torch.nn.Module):
        return True
    return any(
        isinstance(m, torch.nn.modules.batchnorm._BatchNorm) or getattr(m, "couples_batch", False) for m in critic.modules()
    )


class MlpLayers(NamedTuple):
    """What :func:`fastgan.mlp_critic_penalty` needs of an MLP critic (see :func:`mlp_critic_layers`)."""

    weights: list[torch.Tensor]  #: the Linear weights (the unnormalised ones under spectral norm)
    biases: list[torch.Tensor]
    alphas: list[float]  #: the leaky-relu slope after each hidden layer
    flat: bool  #: scores (N,) (a final :class:`fastgan.nn.Flat`) rather than (N, 1)
    group: object = None  #: the :class:`~fastgan.nn.spectral_norm.SpectralNormGroup` normalising every layer, or None
    norms: tuple = ()  #: each layer's SpectralNorm parametrization (with ``group``)


def _spectral_norm_group(critic: torch.nn.Module):
    """The SpectralNormGroup whose hooks are the only ones on ``critic``; None without hooks; False otherwise."""
    pre, post = list(critic._forward_pre_hooks.values()), list(critic._forward_hooks.values())
    if not pre and not post:
        return None
    if len(pre) != 1 or len(post) != 1:
        return False
    group = getattr(pre[0], "__self__", None)
    if (
        not isinstance(group, SpectralNormGroup)
        or getattr(pre[0], "__func__", None) is not SpectralNormGroup.before_forward
        or getattr(post[0], "__self__", None) is not group
        or getattr(post[0], "__func__", None) is not SpectralNormGroup.after_forward
    ):
        return False
    return group


def mlp_critic_layers(critic: object) -> MlpLayers | None:
    """The layers of ``critic`` when it is an MLP that :func:`fastgan.mlp_critic_penalty` evaluates, else None.

    Eligible: an ``nn.Sequential`` of ``Linear`` layers (with biases)
    alternating with ``LeakyReLU`` / ``ReLU`` / ``Identity`` modules or
    fastgan's :class:`~fastgan.nn.BiasAct` with those activations (no bias,
    gain 1), the last ``Linear`` with one output, optionally followed by
    :class:`~fastgan.nn.Flat`; no hooks on any of them, except
    :func:`fastgan.nn.spectral_norm_all`'s when it normalises every ``Linear``
    (and nothing else).
    """
    if type(critic) is not torch.nn.Sequential:
        return None
    group = _spectral_norm_group(critic)
    if group is False:
        return None
    children = list(critic)
    flat = bool(children) and type(children[-1]) is Flat
    if flat:
        children = children[:-1]
    if len(children) % 2 == 0:
        return None
    weights, biases, alphas, norms = [], [], [], []
    for i, m in enumerate(children):
        if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks:
            return None
        if i % 2 == 0:
            if not isinstance(m, torch.nn.Linear) or type(m).forward is not torch.nn.Linear.forward or m.bias is None:
                return None
            own_forward = m.__dict__.get("forward")  # set on the instance: only spectral_norm_all's
            if own_forward is not None and getattr(own_forward, "func", None) is not _normalized_linear:
                return None
            plists = m._modules.get("parametrizations")
            if (plists is None) != (group is None):
                return None
            if plists is None:
                weights.append(m.weight)
            else:
                plist = plists._modules.get("weight")
                if len(plists) != 1 or plist is None or len(plist) != 1 or plist not in group.lists:
                    return None
                sn = plist._modules["0"]
                if not isinstance(sn, SpectralNorm) or sn.dim != 0:
                    return None
                weights.append(plist._parameters["original"])
                norms.append(sn)
            biases.append(m.bias)
            continue
        if type(m) is torch.nn.LeakyReLU:
            alphas.append(float(m.negative_slope))
        elif type(m) is torch.nn.ReLU:
            alphas.append(0.0)
        elif type(m) is torch.nn.Identity:
            alphas.append(1.0)
        elif type(m) is BiasAct and m.bias is None and m.gain == 1 and m.act in ("lrelu", "relu", "linear"):
            alphas.append({"lrelu": float(m.alpha), "relu": 0.0, "linear": 1.0}[m.act])
        else:
            return None
    if weights[-1].shape[0] != 1 or (group is not None and len(norms) != len(group.lists)):
        return None
    return MlpLayers(weights, biases, alphas, flat, group, tuple(norms))


_UNSET = object()


def fusable_mlp(critic: object, arrangement: str, backend: str) -> MlpLayers | None:
    """``mlp_critic_layers(critic)`` where the arrangement may be "fused", else None."""
    if backend == "reference" or arrangement not in ("auto", "fused"):
        return None
    return mlp_critic_layers(critic)


def fused_accepts(mlp: object, sample: torch.Tensor | None) -> bool:
    """Whether mlp_critic_penalty takes ``sample`` (a batch of real samples):
    flat (B, d) rows of float32 / float64, the dtype of every layer."""
    if sample is None:
        return True
    if sample.dim() != 2 or sample.dtype not in (torch.float32, torch.float64):
        return False
    return all(w.dtype == sample.dtype for w in mlp.weights)


def choose_arrangement(
    critic: object,
    arrangement: str,
    device: torch.device,
    backend: str = "auto",
    mlp: object = _UNSET,
    sample: torch.Tensor | None = None,
) -> str:
    """The arrangement to use; ``mlp``: ``fusable_mlp(...)`` when the caller has it;
    ``sample``: the real batch, for "auto" to pick only a path that accepts it."""
    if arrangement not in ARRANGEMENTS:
        raise ValueError(f"`arrangement` must be one of {ARRANGEMENTS}, got {arrangement!r}")
    if mlp is _UNSET:
        mlp = fusable_mlp(critic, arrangement, backend)
    if arrangement == "fused":
        if backend == "reference" or mlp is None:
            raise ValueError(
                "arrangement='fused' needs an MLP critic (see fastgan.mlp_critic_layers) and "
                "fastgan's kernels (backend='auto')"
            )
        return arrangement
    coupled = couples_samples(critic)
    if arrangement == "auto":
        if coupled:
            return "separate"
        if backend != "reference" and device.type == "cpu" and mlp is not None and fused_accepts(mlp, sample):
            return "fused"
        convolves = any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in critic.modules())
        return AUTO_ARRANGEMENT.get((device.type, convolves), "separate")
    if arrangement != "separate" and coupled:
        raise ValueError(
            f"arrangement={arrangement!r} evaluates real and fake samples in one batch, which "
            "changes the outputs of a critic with BatchNorm or another batch statistic (or a critic "
            "that is not an nn.Module)"
        )
    return arrangement
