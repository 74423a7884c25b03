r"""The gradient penalty (WGAN-GP, WGAN-LP, R1/R2, DRAGAN) and the WGAN-GP critic loss.

WGAN-GP (Gulrajani et al., Algorithm 1) adds
:math:`\lambda\,\mathbb{E}_{\hat x}[(\|\nabla_{\hat x} D(\hat x)\|_2 - 1)^2]` to
the critic loss, the norm taken per sample. :func:`penalty_from_gradients`
computes the expectation over a batch of gradients in one fused pass, and its
backward in another, instead of the chain of small ops (flatten, square, sum,
sqrt, subtract, square, mean) and their backwards that the usual code runs.
:func:`gradient_penalty` takes it at the points of :func:`penalty_points`;
:func:`fastgan.mlp_critic.mlp_critic_penalty` (re-exported here) evaluates an MLP
critic's scores and penalty in one op; :func:`wgan_gp_critic_loss` puts them together in the arrangement that
:mod:`fastgan.arrangements` picks (and explains).

A penalty point that is NaN or infinite makes every one of these penalties
NaN (the critic's value there is, and its gradient means nothing), without a
host synchronisation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from fastgan import _library
from fastgan._tensors import check_float_dtype, integer, positive, positive_int, real_number
from fastgan.arrangements import (  # noqa: F401  (re-exported: fastgan.penalty.<name> as before)
    _UNSET,
    ARRANGEMENTS,
    AUTO_ARRANGEMENT,
    MlpLayers,
    _spectral_norm_group,
    choose_arrangement as _arrangement,
    couples_samples,
    fusable_mlp as _fusable_mlp,
    fused_accepts as _fused_accepts,
    mlp_critic_layers,
)
from fastgan.mlp_critic import _weight_or_nan, mlp_critic_penalty, mlp_critic_scores  # noqa: F401  (re-exported)

__all__ = [
    "CriticLoss",
    "gradient_penalty",
    "interpolate",
    "mlp_critic_layers",
    "mlp_critic_penalty",
    "mlp_critic_scores",
    "penalty_from_gradients",
    "penalty_points",
    "wgan_gp_critic_loss",
]

BACKENDS = ("auto", "reference")

def penalty_from_gradients(
    grads: torch.Tensor, *, center: float = 1.0, one_sided: bool = False, backend: str = "auto"
) -> torch.Tensor:
    r"""The gradient penalty :math:`\frac1B \sum_i \phi(\|g_i\|_2)`.

    .. math::
        \phi(n) = (n - c)^2 \quad\text{or, when one\_sided,}\quad \max(0, n - c)^2

    Args:
        grads: gradients of shape ``(B, ...)`` (any rank: points, images,
            sequences); the norm runs over every dimension but the first.
            float32, float64, float16 or bfloat16.
        center: ``c`` (1 for WGAN-GP; 0 gives R1/R2-style penalties).
        one_sided: penalise only norms above ``c`` (WGAN-LP).
        backend: ``"auto"`` (fastgan's compiled kernels) or ``"reference"``
            (:func:`fastgan.reference.penalty_from_gradients`).

    Returns:
        A 0-dim tensor, float32 for float16 / bfloat16 gradients, else the
        gradients' dtype. Differentiable with respect to ``grads`` to any
        order: the first derivative, :math:`\frac{\phi'(n_i)}{n_i B} g_i`
        (zero where a sample's gradient is exactly zero), is one fused pass;
        higher orders (``create_graph=True`` through the penalty's own
        backward) are computed by torch's autograd on the reference math.
        Multiply by the penalty weight (:math:`\lambda = 10` in WGAN-GP)
        yourself.

    Raises:
        TypeError: ``grads`` is not a floating-point tensor, or ``center`` is
            not a real number.
        ValueError: ``grads`` has no batch dimension or no sample, ``center``
            is not finite, or ``backend`` is unknown.
    """
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
    _check_sample_tensor(grads, "grads")
    center, one_sided = real_number(center, "center"), bool(one_sided)
    if backend == "reference":
        from fastgan import reference

        return reference.penalty_from_gradients(grads, center=center, one_sided=one_sided)
    _library.require_kernel("penalty_from_gradients", grads.device)
    penalty, _ = torch.ops.fastgan.penalty_from_gradients.default(grads, center, one_sided)
    return penalty


MODES = ("interpolate", "real", "fake", "dragan")


def _check_sample_tensor(t: object, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"`{name}` must be a Tensor, got {type(t).__name__}")
    check_float_dtype(t, name)
    if t.dim() < 1 or t.shape[0] == 0:
        raise ValueError(f"`{name}` must have a batch dimension with at least one sample, got shape {tuple(t.shape)}")
    return t


def _check_pair(real: torch.Tensor, fake: torch.Tensor) -> None:
    if fake.shape != real.shape:
        raise ValueError(f"`real` has shape {tuple(real.shape)} but `fake` has {tuple(fake.shape)}")
    if fake.dtype != real.dtype:
        raise TypeError(f"`real` has dtype {real.dtype} but `fake` has {fake.dtype}")
    if fake.device != real.device:
        raise ValueError(f"`real` is on {real.device} but `fake` is on {fake.device}")


def _uniform(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """U[0, 1) samples drawn on the generator's device, in like's dtype and device."""
    device = generator.device if generator is not None else like.device
    u = torch.rand(shape, generator=generator, device=device)
    return u.to(device=like.device, dtype=like.dtype)


def interpolate(
    real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor, *, backend: str = "auto"
) -> torch.Tensor:
    r"""WGAN-GP's interpolates :math:`\hat x_i = \epsilon_i x_i + (1 - \epsilon_i)\tilde x_i`, one pass.

    Args:
        real, fake: ``(B, ...)``, same shape, dtype and device.
        eps: ``(B,)``, one weight per sample, in real's dtype.
        backend: ``"auto"`` (fastgan's kernel) or ``"reference"``.

    Returns:
        ``(B, ...)``; differentiable with respect to all three inputs.
    """
    if backend == "reference":
        from fastgan import reference

        return reference.interpolate(real, fake, eps)
    if backend != "auto":
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
    _library.require_kernel("interpolate", real.device)
    return torch.ops.fastgan.interpolate.default(real, fake, eps)


def penalty_points(
    real: torch.Tensor,
    fake: torch.Tensor | None = None,
    *,
    mode: str = "interpolate",
    generator: torch.Generator | None = None,
    dragan_scale: float = 0.5,
    backend: str = "auto",
) -> torch.Tensor:
    r"""The points :math:`\hat x` a gradient penalty is taken at, detached from any graph.

    - ``"interpolate"`` (WGAN-GP): :math:`\epsilon_i x_i + (1-\epsilon_i)\tilde x_i`,
      :math:`\epsilon_i \sim U[0, 1]` per sample;
    - ``"real"`` (R1): :math:`x`; ``"fake"`` (R2): :math:`\tilde x`;
    - ``"dragan"`` (DRAGAN): :math:`x + (1-\epsilon_i)\, c\,\mathrm{std}(x)\, u`,
      :math:`u \sim U[0,1]` per element, :math:`\epsilon_i \sim U[0,1]` per
      sample, :math:`c` = ``dragan_scale`` (0.5), std over the whole batch.

    Returns:
        A leaf tensor that requires grad, of real's shape, dtype and device.
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}")
    real = _check_sample_tensor(real, "real").detach()
    if fake is not None:
        fake = _check_sample_tensor(fake, "fake").detach()
        _check_pair(real, fake)
    elif mode in ("interpolate", "fake"):
        raise ValueError(f"mode={mode!r} needs `fake`")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"`generator` must be a torch.Generator, got {type(generator).__name__}")
    if mode == "real":
        x_hat = real.clone()
    elif mode == "fake":
        x_hat = fake.clone()
    elif mode == "interpolate":
        eps = _uniform((real.shape[0],), real, generator)
        x_hat = interpolate(real, fake, eps, backend=backend)
    else:
        scale = positive(dragan_scale, "dragan_scale")
        perturbed = real + (scale * real.std()) * _uniform(tuple(real.shape), real, generator)
        eps = _uniform((real.shape[0],), real, generator)
        x_hat = interpolate(real, perturbed, eps, backend=backend)
    return x_hat.requires_grad_()


def _critic_gradients(critic, x_hat: torch.Tensor, scores: torch.Tensor | None = None) -> torch.Tensor:
    """d(sum of critic scores)/dx_hat, with the graph kept for the double backward."""
    if scores is None:
        scores = critic(x_hat)
    _check_scores(scores, x_hat.shape[0])
    (grads,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return grads


def _check_scores(scores: object, batch: int) -> None:
    if not isinstance(scores, torch.Tensor) or scores.dim() < 1 or scores.shape[0] != batch:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(
            f"`critic` must return one score per sample, shape ({batch},) or ({batch}, ...); got {shape}"
        )


def _default_center(center: float | None, mode: str) -> float:
    if center is None:
        return 0.0 if mode in ("real", "fake") else 1.0
    return real_number(center, "center")


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor | None = None,
    *,
    weight: float = 10.0,
    center: float | None = None,
    one_sided: bool = False,
    mode: str = "interpolate",
    generator: torch.Generator | None = None,
    dragan_scale: float = 0.5,
    backend: str = "auto",
) -> torch.Tensor:
    r"""``weight * mean_i phi(||grad D(x_hat_i)||_2)``: WGAN-GP, WGAN-LP, R1, R2, DRAGAN.

    .. math::
        \lambda\,\frac1B\sum_i \phi\big(\|\nabla_{\hat x} D(\hat x_i)\|_2\big),
        \qquad \phi(n) = (n - c)^2 \;\text{or}\; \max(0, n - c)^2

    with the norm per sample over all non-batch dimensions and :math:`\hat x`
    from :func:`penalty_points` (``mode``: ``"interpolate"`` WGAN-GP,
    ``"real"`` R1, ``"fake"`` R2, ``"dragan"``).

    Args:
        critic: a module or function mapping ``(B, ...)`` to one score per
            sample, ``(B,)`` or ``(B, 1)``; the gradient is that of the sum of
            its outputs.
        real, fake: ``(B, ...)`` of any rank (points, images, sequences);
            ``fake`` is needed by ``"interpolate"`` and ``"fake"``. Both are
            detached: no gradient reaches the generator.
        weight: :math:`\lambda` (WGAN-GP: 10; R1 uses :math:`\gamma / 2`), >= 0.
        center: :math:`c`; default 1 for ``"interpolate"`` / ``"dragan"`` and
            0 for ``"real"`` / ``"fake"`` (R1 / R2).
        one_sided: :math:`\max(0, n - c)^2` (WGAN-LP).
        generator: a ``torch.Generator`` for :math:`\epsilon` (and DRAGAN's
            noise): the same seed gives the same penalty.
        dragan_scale: DRAGAN's noise scale :math:`c` (0.5).
        backend: ``"auto"`` (fastgan's kernels) or ``"reference"``.

    Returns:
        A 0-dim tensor (float32 for float16 / bfloat16 inputs, so the norm and
        penalty stay in float32 under autocast), differentiable with respect
        to the critic's parameters: ``loss.backward()`` runs the double
        backward. Computed with grad enabled even inside ``torch.no_grad()``.
        NaN when a penalty point is NaN or infinite, as in
        :func:`mlp_critic_penalty`.

    Raises:
        ValueError: unknown ``mode``, missing ``fake``, shapes that differ,
            ``weight`` < 0, a non-finite ``center``, or a critic that does not
            return one score per sample.
        TypeError: non-floating or mismatched dtypes, or a ``weight``,
            ``center`` or ``dragan_scale`` that is not a real number.
    """
    weight = positive(weight, "weight", allow_zero=True)
    center = _default_center(center, mode)
    with torch.enable_grad():
        x_hat = penalty_points(real, fake, mode=mode, generator=generator, dragan_scale=dragan_scale, backend=backend)
        grads = _critic_gradients(critic, x_hat)
        penalty = penalty_from_gradients(grads, center=center, one_sided=one_sided, backend=backend)
        return penalty * _weight_or_nan(weight, x_hat, penalty.dtype)


class CriticLoss(NamedTuple):
    """The WGAN-GP critic loss and its parts (all 0-dim tensors)."""

    loss: torch.Tensor
    wasserstein: torch.Tensor  #: E[D(real)] - E[D(fake)], the critic's estimate of W1
    penalty: torch.Tensor  #: the weighted penalty actually added (0 on skipped lazy steps)


def wgan_gp_critic_loss(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    weight: float = 10.0,
    center: float = 1.0,
    one_sided: bool = False,
    generator: torch.Generator | None = None,
    arrangement: str = "auto",
    penalty_every: int = 1,
    step: int = 0,
    return_parts: bool = False,
    backend: str = "auto",
) -> torch.Tensor | CriticLoss:
    r"""The WGAN-GP critic loss :math:`E[D(\tilde x)] - E[D(x)] + \lambda\,E[(\|\nabla D(\hat x)\|_2 - c)^2]`.

    Gulrajani et al., Algorithm 1 (:math:`\lambda` = 10, c = 1,
    :math:`\hat x` interpolates with :math:`\epsilon \sim U[0,1]` per sample).
    ``real`` and ``fake`` are detached: the loss never sends gradients into
    the generator.

    Args:
        critic: module or function, ``(B, ...)`` to one score per sample.
        real, fake: ``(B, ...)``, same shape, dtype and device.
        weight, center, one_sided, generator: as in :func:`gradient_penalty`.
        arrangement: how the critic is evaluated. ``"separate"``: three calls
            (real, fake, interpolates); ``"pair"``: one call on
            ``[real; fake]`` and one on the interpolates; ``"joint"``: one
            call on ``[real; fake; interpolates]`` (the double backward then
            runs over all 3B rows); ``"fused"``: :func:`mlp_critic_penalty`,
            the whole evaluation of an MLP critic in one op. ``"auto"`` picks
            ``"separate"`` for a critic with BatchNorm (or one that is not an
            ``nn.Module``), whose outputs depend on what else is in the
            batch; ``"fused"`` for an MLP critic on the CPU; and otherwise
            the arrangement measured fastest on the device
            (:data:`AUTO_ARRANGEMENT`: ``"pair"`` for critics without
            convolutions, ``"separate"`` for convolutional ones); the table
            and the reasons are in :mod:`fastgan.arrangements`. For a critic
            whose forward depends on its input and parameters alone, any
            arrangement gives the same loss and gradients up to rounding;
            ``"fused"`` gives first derivatives only. Under spectral
            normalisation in training mode each critic call runs the power
            iteration, so ``"separate"`` (3 calls) and ``"pair"`` (2) give
            other numbers than ``"joint"`` and ``"fused"`` (1 each, equal up
            to rounding); in evaluation mode all agree.
        penalty_every, step: lazy regularisation (Karras et al., StyleGAN2):
            the penalty is added only when ``step % penalty_every == 0``, with
            its weight multiplied by ``penalty_every``. This changes the
            algorithm (the penalty's gradient arrives in bursts), it is not a
            faster way to compute the same thing; 1 (the default) is WGAN-GP.
        return_parts: also return the Wasserstein estimate and the penalty.
        backend: ``"auto"`` or ``"reference"``.

    Returns:
        The loss (0-dim), or a :class:`CriticLoss` when ``return_parts``.
    """
    weight = positive(weight, "weight", allow_zero=True)
    center = _default_center(center, "interpolate")
    penalty_every = positive_int(penalty_every, "penalty_every")
    step = integer(step, "step")
    real = _check_sample_tensor(real, "real").detach()
    fake = _check_sample_tensor(fake, "fake").detach()
    _check_pair(real, fake)
    mlp = _fusable_mlp(critic, arrangement, backend)
    arrangement = _arrangement(critic, arrangement, real.device, backend, mlp, real)
    with_penalty = weight > 0 and step % penalty_every == 0
    batch = real.shape[0]
    with torch.enable_grad():
        x_hat = None
        if with_penalty:
            x_hat = penalty_points(real, fake, mode="interpolate", generator=generator, backend=backend)
        d_hat = None
        if arrangement == "fused":
            # Scores and (with x_hat) the unweighted penalty in one op.
            d_real, d_fake, fused_penalty = mlp_critic_penalty(
                mlp, real, fake, None if x_hat is None else x_hat.detach(), center=center, one_sided=one_sided
            )
        elif arrangement == "joint" and x_hat is not None:
            scores = critic(torch.cat([real, fake, x_hat]))
            _check_scores(scores, 3 * batch)
            d_real, d_fake, d_hat = scores[:batch], scores[batch : 2 * batch], scores[2 * batch :]
        elif arrangement == "separate":
            d_real, d_fake = critic(real), critic(fake)
            _check_scores(d_real, batch)
            _check_scores(d_fake, batch)
        else:
            scores = critic(torch.cat([real, fake]))
            _check_scores(scores, 2 * batch)
            d_real, d_fake = scores[:batch], scores[batch:]
        wasserstein = d_real.mean() - d_fake.mean()
        if with_penalty:
            if arrangement == "fused":  # NaN at a non-finite point already
                penalty = (weight * penalty_every) * fused_penalty
            else:
                grads = _critic_gradients(critic, x_hat, d_hat)
                unweighted = penalty_from_gradients(grads, center=center, one_sided=one_sided, backend=backend)
                penalty = unweighted * _weight_or_nan(weight * penalty_every, x_hat, unweighted.dtype)
            loss = penalty - wasserstein.to(penalty.dtype)
        else:
            penalty = torch.zeros((), dtype=wasserstein.dtype, device=wasserstein.device)
            loss = -wasserstein
    if return_parts:
        return CriticLoss(loss, wasserstein.detach(), penalty.detach())
    return loss


def _result_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _setup_context(ctx, inputs, output) -> None:
    grads, center, one_sided = inputs
    _, norms = output
    ctx.save_for_backward(grads, norms)
    ctx.center, ctx.one_sided = center, one_sided
    ctx.mark_non_differentiable(norms)


def _backward(ctx, grad_penalty: torch.Tensor, _grad_norms: torch.Tensor):
    grads, norms = ctx.saved_tensors
    if torch.is_grad_enabled() and (grads.requires_grad or grad_penalty.requires_grad):
        # A higher derivative was asked for (create_graph=True): differentiate
        # the reference math with torch's autograd, which can go on.
        from fastgan import reference

        with torch.enable_grad():
            penalty = reference.penalty_from_gradients(grads, center=ctx.center, one_sided=ctx.one_sided)
            (grad_grads,) = torch.autograd.grad(penalty, grads, grad_penalty, create_graph=True)
        return grad_grads, None, None
    grad_grads = torch.ops.fastgan.penalty_from_gradients_backward.default(
        grad_penalty, grads, norms, ctx.center, ctx.one_sided
    )
    return grad_grads, None, None


if _library.LOADED:

    @torch.library.register_fake("fastgan::penalty_from_gradients")
    def _penalty_fake(grads, center, one_sided):
        dtype = _result_dtype(grads.dtype)
        return grads.new_empty((), dtype=dtype), grads.new_empty((grads.shape[0],), dtype=dtype)

    @torch.library.register_fake("fastgan::penalty_from_gradients_backward")
    def _penalty_backward_fake(grad_penalty, grads, norms, center, one_sided):
        return torch.empty_like(grads, memory_format=torch.contiguous_format)

    torch.library.register_autograd(
        "fastgan::penalty_from_gradients", _backward, setup_context=_setup_context
    )

    @torch.library.register_fake("fastgan::interpolate")
    def _interpolate_fake(real, fake, eps):
        return torch.empty_like(real, memory_format=torch.contiguous_format)

    def _setup_interpolate(ctx, inputs, output) -> None:
        real, fake, eps = inputs
        ctx.save_for_backward(real, fake, eps)
        ctx.set_materialize_grads(False)

    def _interpolate_backward(ctx, grad):
        if grad is None:
            return None, None, None
        real, fake, eps = ctx.saved_tensors
        w = eps.reshape((-1,) + (1,) * (real.dim() - 1))
        grad_real = grad * w if ctx.needs_input_grad[0] else None
        grad_fake = grad * (1 - w) if ctx.needs_input_grad[1] else None
        grad_eps = None
        if ctx.needs_input_grad[2]:
            grad_eps = (grad * (real - fake)).flatten(1).sum(1)
        return grad_real, grad_fake, grad_eps

    torch.library.register_autograd(
        "fastgan::interpolate", _interpolate_backward, setup_context=_setup_interpolate
    )

    # On CUDA these ops run fastgan's Triton kernels.
    _library.register_triton("interpolate", "penalty", "interpolate")
    _library.register_triton("penalty_from_gradients", "penalty", "penalty_from_gradients")
    _library.register_triton(
        "penalty_from_gradients_backward", "penalty", "penalty_from_gradients_backward"
    )
