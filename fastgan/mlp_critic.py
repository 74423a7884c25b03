r"""The fused MLP critic ops: an MLP critic's scores and gradient penalty in one node, or its scores alone.

For an MLP critic (:func:`fastgan.mlp_critic_layers`: ``Linear`` layers with
piecewise-linear activations, one output) the activations' slopes are
constants of the graph, so a critic step's input gradient and penalty, and a
generator step's gradient with respect to the samples, follow fixed linear
paths through the weights. :func:`mlp_critic_penalty` (a critic step) and
:func:`mlp_critic_scores` (a generator step, or any use of the scores) run
them as one autograd node each (``csrc/mlp_critic.cpp``), under
:func:`fastgan.nn.spectral_norm_all` with one power iteration per call.
"""

from __future__ import annotations

import torch

from fastgan import _library
from fastgan._tensors import check_same_device, real_number
from fastgan.arrangements import MlpLayers, mlp_critic_layers

__all__ = ["mlp_critic_penalty", "mlp_critic_scores"]


def _weight_or_nan(weight: float, points: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    r"""``weight`` as a 0-dim tensor of ``dtype``, or NaN when a penalty point is NaN or infinite.

    The penalty is multiplied by it (``weight * penalty`` to the same bits):
    the gradient autograd gives at such a point is finite for a
    piecewise-linear critic (a NaN fails every ``x > 0`` test and takes the
    other slope) and means nothing, so the penalty there is NaN.
    :math:`\sum_j 0 \cdot x_j` is exactly 0 when every :math:`x_j` is
    finite and NaN otherwise: one pass over the points, no host
    synchronisation, no node in the graph beyond the multiplication."""
    return points.detach().mul(0).sum(dtype=dtype).add_(weight)


def mlp_critic_penalty(
    critic: torch.nn.Module | MlpLayers,
    real: torch.Tensor,
    fake: torch.Tensor,
    x_hat: torch.Tensor | None = None,
    *,
    center: float = 1.0,
    one_sided: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""``critic(real)``, ``critic(fake)`` and the gradient penalty at ``x_hat``, in one fused op.

    For an MLP critic (:func:`mlp_critic_layers`) with piecewise-linear
    activations, returns :math:`D(x_{real})`, :math:`D(x_{fake})` and
    :math:`P = \frac1H \sum_i \phi(\|\nabla_x D(\hat x_i)\|_2)`,
    :math:`\phi(n) = (n - c)^2` (or :math:`\max(0, n - c)^2` when
    ``one_sided``), equal to what ``critic`` and :func:`fastgan.gradient_penalty`
    give, with gradients with respect to the critic's parameters
    (``loss.backward()`` once; no ``create_graph``). The activations'
    slopes are constants of the graph, so the input gradient is a linear
    function of the weights along a fixed path; the op computes it and the
    parameters' gradients of the penalty directly, in one autograd node,
    sharing each layer's matrix product between the real, fake and
    interpolate rows (``fastgan::mlp_critic_penalty``). Under
    :func:`fastgan.nn.spectral_norm_all` the group's power iteration runs
    once, as in one forward of ``critic``, and the op uses every W / sigma.

    Args:
        critic: the MLP (or its :class:`MlpLayers`).
        real, fake: ``(R, d)`` and ``(F, d)`` samples to score (detached).
        x_hat: ``(H, d)``, the points of the penalty (detached); None or no
            rows: no penalty (returned as 0), scores only.
        center, one_sided: as in :func:`fastgan.penalty_from_gradients`.

    Returns:
        ``(d_real, d_fake, penalty)``: scores shaped as the critic returns
        them ((N,) or (N, 1)) and the unweighted penalty (0-dim).

        The penalty is NaN when a row of ``x_hat`` is NaN or infinite.

    Raises:
        ValueError: ``critic`` is not such an MLP, or ``center`` is not
            finite; TypeError: a non-Tensor input or a ``center`` that is not
            a real number; RuntimeError: bad shapes, dtypes or devices
            (named), or inputs that require gradients.
    """
    layers = _layers_of(critic)
    for name, t in (("real", real), ("fake", fake), ("x_hat", x_hat)):
        if not isinstance(t, torch.Tensor) and not (name == "x_hat" and t is None):
            raise TypeError(f"`{name}` must be a Tensor, got {type(t).__name__}")
    center = real_number(center, "center")
    check_same_device({"real": real, "fake": fake, "x_hat": x_hat}, "mlp_critic_penalty")
    _library.require_kernel("mlp_critic_penalty", real.device)
    if x_hat is None:
        x_hat = real.new_empty((0, real.shape[-1]))
    d_real, d_fake, penalty = _call_with_layers(
        torch.ops.fastgan.mlp_critic_penalty.default,
        (real, fake, x_hat, layers.weights, layers.biases, layers.alphas, float(center), bool(one_sided)),
        layers,
        "mlp_critic_penalty",
    )
    if x_hat.numel():
        penalty = penalty * _weight_or_nan(1.0, x_hat, penalty.dtype)
    if not layers.flat:
        d_real, d_fake = d_real.unsqueeze(1), d_fake.unsqueeze(1)
    return d_real, d_fake, penalty


def mlp_critic_scores(critic: torch.nn.Module | MlpLayers, x: torch.Tensor, *, parameters: bool = True) -> torch.Tensor:
    r"""``critic(x)`` for an MLP critic, as one autograd node (a generator step's evaluation).

    For an MLP critic (:func:`mlp_critic_layers`: ``Linear`` layers with
    piecewise-linear activations, one output) returns :math:`D(x)`, equal to
    ``critic(x)``, from one fused op (``fastgan::mlp_critic_scores``) whose
    backward runs the layers back along the activations' slopes
    :math:`s_l`: :math:`\delta_{L-1} = \partial L / \partial D`,
    :math:`\delta_l = (\delta_{l+1} W_{l+1}) \odot s_l`,
    :math:`\partial L / \partial x = \delta_0 W_0` (and, with
    ``parameters``, :math:`\partial L / \partial W_l = \delta_l^T h_{l-1}`,
    :math:`\partial L / \partial b_l = \sum_i \delta_{l,i}`), in place of the
    2L - 1 nodes of the modules and their backward graph.
    ``parameters=False`` is a generator step: the gradient goes to ``x``
    (and on into the generator) and none to the critic, as with the
    critic's parameters frozen, without freezing them. Under
    :func:`fastgan.nn.spectral_norm_all` the group's power iteration runs
    once, as in one forward of ``critic``, and the op uses every W / sigma.

    Args:
        critic: the MLP (or its :class:`MlpLayers`).
        x: ``(N, d)`` samples; may require gradients (a generator's output).
        parameters: whether the critic's parameters get gradients.

    Returns:
        Scores shaped as the critic returns them ((N,) or (N, 1)).
        Differentiable once (``create_graph`` through it is refused).

    Raises:
        ValueError: ``critic`` is not such an MLP; TypeError: ``x`` is not a
            Tensor; RuntimeError: bad shapes, dtypes or devices (named).
    """
    layers = _layers_of(critic)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"`x` must be a Tensor, got {type(x).__name__}")
    _library.require_kernel("mlp_critic_scores", x.device)
    weights, biases = layers.weights, layers.biases
    if not parameters:
        weights, biases = [w.detach() for w in weights], [b.detach() for b in biases]
    scores = _call_with_layers(torch.ops.fastgan.mlp_critic_scores.default, (x, weights, biases, layers.alphas), layers, "mlp_critic_scores")
    return scores if layers.flat else scores.unsqueeze(1)


def _layers_of(critic: torch.nn.Module | MlpLayers) -> MlpLayers:
    layers = critic if isinstance(critic, MlpLayers) else mlp_critic_layers(critic)
    if layers is None:
        raise ValueError(
            "`critic` must be an nn.Sequential of Linear layers and LeakyReLU / ReLU activations "
            "with one output (see fastgan.mlp_critic_layers)"
        )
    return layers


def _call_with_layers(op, args: tuple, layers: MlpLayers, name: str):
    """``op(*args)``, with the spectral-norm group's state appended and its power iteration run once."""
    if layers.group is None:
        return op(*args)
    group = layers.group
    group.before_forward(None, ())
    try:
        states = [sn._group_state for sn in layers.norms]
        state = states[0][0]
        if any(s[0] is not state for s in states):
            raise RuntimeError(
                f"{name}: the critic's spectral-norm layers iterate with different settings "
                "(n_power_iterations, eps or train/eval); call the critic instead"
            )
        return op(*args, state, [s[1] for s in states], [s[2] for s in states])
    finally:
        group.after_forward(None, (), None)


if _library.LOADED:

    @torch.library.register_fake("fastgan::mlp_critic_penalty")
    def _mlp_critic_penalty_fake(
        real, fake, x_hat, weights, biases, alphas, center, one_sided, sn_state=None, sn_indices=(), sn_offsets=()
    ):
        return real.new_empty((real.shape[0],)), fake.new_empty((fake.shape[0],)), real.new_empty(())

    @torch.library.register_fake("fastgan::mlp_critic_scores")
    def _mlp_critic_scores_fake(x, weights, biases, alphas, sn_state=None, sn_indices=(), sn_offsets=()):
        return x.new_empty((x.shape[0],))
