"""Modules over the fused bias + activation, and the one-line critic conversion."""

from __future__ import annotations

import math

import torch
from torch import nn

from fastgan._tensors import integer, positive_int, real_number
from fastgan.nn.functional import BACKENDS, bias_act, resolve

__all__ = ["BiasAct", "Flat", "FusedLeakyReLU", "fuse_activations_"]


class Flat(nn.Module):
    """A critic's scores, (N, 1) or (N, 1, 1, 1), as one score per sample, (N,)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0])


class BiasAct(nn.Module):
    r"""``gain * act(x + bias)`` as a module (see :func:`fastgan.nn.functional.bias_act`).

    Args:
        act: the activation's name (``"lrelu"``, ``"relu"``, ``"tanh"``, ...).
        channels: with a number, the module owns a learnable bias of that
            length (initialised to ``bias_init``); None for no bias.
        alpha, gain: as in ``bias_act`` (None: the activation's defaults).
        dim: the dimension the bias runs along.
        backend: as in ``bias_act`` (``"auto"``: fused kernels on the CPU,
            torch's own activations on CUDA).
    """

    def __init__(
        self,
        act: str = "lrelu",
        channels: int | None = None,
        alpha: float | None = None,
        gain: float | None = None,
        dim: int = 1,
        bias_init: float = 0.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self.act = act
        self.alpha, self.gain = resolve(act, alpha, gain)
        self.dim = integer(dim, "dim")
        if channels is None:
            self.register_parameter("bias", None)
        else:
            channels = positive_int(channels, "channels", minimum=0)
            self.bias = nn.Parameter(torch.full((channels,), real_number(bias_init, "bias_init")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_act(x, self.bias, self.act, self.alpha, self.gain, self.dim, backend=getattr(self, "backend", "auto"))

    def extra_repr(self) -> str:
        channels = None if self.bias is None else self.bias.numel()
        return f"act={self.act!r}, channels={channels}, alpha={self.alpha}, gain={self.gain:.4g}, dim={self.dim}"


class FusedLeakyReLU(BiasAct):
    r"""StyleGAN2's fused leaky ReLU: ``scale * leaky_relu(x + bias, negative_slope)``.

    A learnable bias of ``channels`` elements along dim 1 (zeros, or no bias
    with ``bias=False``), negative slope 0.2 and scale sqrt(2) by default.
    """

    def __init__(
        self,
        channels: int,
        bias: bool = True,
        negative_slope: float = 0.2,
        scale: float = math.sqrt(2),
    ) -> None:
        channels = positive_int(channels, "channels", minimum=0)
        negative_slope, scale = real_number(negative_slope, "negative_slope"), real_number(scale, "scale")
        super().__init__("lrelu", channels if bias else None, alpha=negative_slope, gain=scale)


# torch's activation module -> (fastgan's act, how to read its alpha from the module).
_SWAPS = {
    nn.ReLU: ("relu", None),
    nn.LeakyReLU: ("lrelu", lambda m: m.negative_slope),
    nn.ELU: ("elu", lambda m: m.alpha),
    nn.SELU: ("selu", None),
    nn.Tanh: ("tanh", None),
    nn.Sigmoid: ("sigmoid", None),
    nn.SiLU: ("swish", None),
    nn.Softplus: ("softplus", None),
}

# The attributes of each swapped module that the fused op reproduces: any
# value (read into alpha above, or `inplace`, which changes no output), or
# only the value given. A module with any other attribute or value is left alone.
_ANY = object()
_REPRODUCED = {
    nn.ReLU: {"inplace": _ANY},
    nn.LeakyReLU: {"negative_slope": _ANY, "inplace": _ANY},
    nn.ELU: {"alpha": _ANY, "inplace": _ANY},
    nn.SELU: {"inplace": _ANY},
    nn.Tanh: {},
    nn.Sigmoid: {},
    nn.SiLU: {"inplace": _ANY},
    # softplus is exact log(1 + e^x) where torch's returns x past `threshold`:
    # they agree to 1e-8 at torch's default threshold 20, not below it.
    nn.Softplus: {"beta": 1, "threshold": 20},
}


def _reproducible(module: nn.Module) -> bool:
    """Whether fastgan's op reproduces every attribute of ``module`` (and no hook would be lost)."""
    if module._forward_hooks or module._forward_pre_hooks or module._backward_hooks:
        return False
    if getattr(module, "_backward_pre_hooks", None):
        return False
    if module._parameters or module._buffers or module._modules:
        return False
    allowed = _REPRODUCED[type(module)]
    for name, value in vars(module).items():
        if name.startswith("_") or name == "training":
            continue
        if name not in allowed:
            return False
        if allowed[name] is not _ANY and value != allowed[name]:
            return False
    return all(name in vars(module) for name, value in allowed.items() if value is not _ANY)


def _replacement(module: nn.Module, backend: str = "auto") -> nn.Module | None:
    """fastgan's equivalent of a torch activation module, or None where it would not compute the same."""
    swap = _SWAPS.get(type(module))
    if swap is None or not _reproducible(module):
        return None
    act, alpha = swap
    return BiasAct(act, alpha=None if alpha is None else alpha(module), gain=1.0, backend=backend)


def fuse_activations_(module: nn.Module, backend: str = "auto") -> nn.Module:
    r"""Swaps torch's activation modules inside ``module`` for fastgan's, in place.

    ``nn.ReLU``, ``nn.LeakyReLU``, ``nn.ELU``, ``nn.SELU``, ``nn.Tanh``,
    ``nn.Sigmoid``, ``nn.SiLU`` and ``nn.Softplus`` (beta 1, threshold 20)
    anywhere in the module tree become :class:`BiasAct` modules computing the same function
    (gain 1, no bias). Parameters, buffers, ``state_dict`` keys and outputs
    are unchanged (softplus agrees with torch's to 1e-8 beyond torch's
    linear threshold at 20); activations called functionally inside a
    ``forward`` are not touched, and neither is a module with an attribute
    the fused op does not reproduce (another softplus ``beta`` or
    ``threshold``, an extra attribute, a hook, a subclass). The double backward of a gradient penalty
    then runs through fastgan's fused derivatives and, for relu / lrelu,
    skips the path back through the forward pass.

    Args:
        module: the model (or a single activation module).
        backend: the swapped modules' ``bias_act`` backend: ``"auto"`` (fused
            kernels on the CPU, torch's own activations on CUDA, where the
            Triton kernels measured slower at critic sizes), ``"fused"``
            (fastgan's kernels on every device) or ``"reference"``.

    Returns:
        ``module``, or its replacement when ``module`` is itself an activation.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"`module` must be an nn.Module, got {type(module).__name__}")
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
    top = _replacement(module, backend)
    if top is not None:
        return top.train(module.training)
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            new = _replacement(child, backend)
            if new is not None:
                setattr(parent, name, new.train(child.training))
    return module
