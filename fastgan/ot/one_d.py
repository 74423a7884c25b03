r"""Exact 1-D optimal transport, and sliced Wasserstein on top of it.

In one dimension the optimal coupling is monotone: with quantile functions
:math:`F_u^{-1}, F_v^{-1}`,

.. math:: W_p^p(u, v) = \int_0^1 |F_u^{-1}(t) - F_v^{-1}(t)|^p \, dt,

a sum over the merged breakpoints of the two cumulative weight sequences
(the "shovelfuls" rule of the WGAN seed: :math:`W_1 = \sum_i |\delta_i|`
with :math:`\delta_{i+1} = \delta_i + P_i - Q_i` on a common grid).
fastgan's kernel sorts each side and walks the breakpoints once, problems
in parallel, accumulating in float64, and returns the gradients from the
same walk.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections import namedtuple
from collections.abc import Callable

import numpy as np
import torch

from fastgan import _library
from fastgan._tensors import check_float_dtype, positive, positive_int
from fastgan.ot._checks import check_clouds, check_finite, check_weights, power_of_two_scale, root
from fastgan.ot._compat import NUMPY_CALL, ArrayLike, array_io

__all__ = ["sliced_wasserstein", "sliced_wasserstein_distance", "wasserstein_1d"]

BACKENDS = ("auto", "reference")


def _as_problems(values: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Size]:
    """(n, *batch) -> (B, n), and the batch shape."""
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"`{name}` must be a Tensor, got {type(values).__name__}")
    check_float_dtype(values, name)
    if values.dim() < 1 or values.shape[0] == 0:
        raise ValueError(f"`{name}` must have at least one sample along dim 0, got shape {tuple(values.shape)}")
    batch = values.shape[1:]
    return values.reshape(values.shape[0], -1).T, batch


def _check_reference_input(u, v, wu, wv) -> None:
    """The checks fastgan's kernel makes while it reads the data, for the reference path."""
    check_finite(u, "u_values")
    check_finite(v, "v_values")
    if wu is not None:
        check_weights(wu, wv, ("u_weights", "v_weights"))


@array_io("u_values", "v_values", "u_weights", "v_weights")
def wasserstein_1d(
    u_values: ArrayLike,
    v_values: ArrayLike,
    u_weights: ArrayLike | None = None,
    v_weights: ArrayLike | None = None,
    p: float = 1.0,
    require_sort: bool = True,
    return_plans: bool = False,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    r"""Exact :math:`W_p^p` between two 1-D empirical distributions, POT's ``ot.wasserstein_1d``.

    .. math:: W_p^p = \int_0^1 |F_u^{-1}(t) - F_v^{-1}(t)|^p \, dt

    Like POT, this is the distance raised to the power p (take ``** (1 / p)``
    for :math:`W_p`; for p = 1 it is ``scipy.stats.wasserstein_distance``).

    Args:
        u_values: ``(n,)`` or ``(n, ...)``: samples along dim 0, batched over
            the trailing dimensions (POT's layout); float32 or float64.
        v_values: ``(m,)`` or ``(m, ...)`` with the same trailing shape.
            numpy arrays and lists give numpy results, tensors give tensors.
        u_weights, v_weights: non-negative weights shaped like the values,
            or with fewer (leading) dimensions, repeated over the others as
            POT does (``(n,)`` weights with ``(n, k)`` values); None means uniform. Each problem's two masses must agree
            (relative difference at most about 1e-6, looser for float32 and
            many atoms); they need not be 1.
        p: the ground-cost exponent, >= 1.
        require_sort: accepted for POT compatibility; fastgan always sorts.
        return_plans: False; True also returns the optimal plans (a list,
            one sparse (n, m) matrix per problem); ``"coo_tuple"`` returns
            them as ``PlanTuple(data, rows, cols)`` (see :func:`monotone_plans`).
        backend: ``"auto"`` (fastgan's op: the C++ kernel on the CPU; on
            CUDA, torch's sort, cumsum and searchsorted kernels with the
            same gradients) or ``"reference"`` (the pure-PyTorch reference
            with torch's autograd; runs on any device).

    Returns:
        ``W_p^p`` of shape ``u_values.shape[1:]``, in the values' dtype.
        Differentiable once with respect to values and weights (the
        gradients come from the same pass; where two breakpoints coincide,
        the derivative with respect to a weight is one-sided).

    Raises:
        ValueError: empty inputs, mismatched batch shapes, weights that are
            negative or of unequal mass, NaN / Inf, or p < 1.
        TypeError: non-floating inputs.
    """
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
    if return_plans not in (False, True, "coo_tuple"):
        raise ValueError(f"`return_plans` must be False, True or 'coo_tuple', got {return_plans!r}")
    p = positive(p, "p")
    if p < 1:
        raise ValueError(f"`p` must be >= 1, got {p}")
    u, batch = _as_problems(u_values, "u_values")
    v, v_batch = _as_problems(v_values, "v_values")
    if batch != v_batch:
        raise ValueError(
            f"`u_values` {tuple(u_values.shape)} and `v_values` {tuple(v_values.shape)} must share their trailing (batch) shape"
        )
    if v.dtype != u.dtype:
        raise TypeError(f"`u_values` has dtype {u.dtype} but `v_values` has {v.dtype}")
    if u.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"`u_values` has dtype {u.dtype}; expected float32 or float64")
    n, m = u.shape[1], v.shape[1]
    weights = []
    for w, values, count, name in ((u_weights, u_values, n, "u_weights"), (v_weights, v_values, m, "v_weights")):
        if w is None:
            weights.append(None)
            continue
        if not isinstance(w, torch.Tensor):
            raise TypeError(f"`{name}` must be a Tensor, got {type(w).__name__}")
        if w.dim() < values.dim() and w.shape == values.shape[: w.dim()]:
            w = w.reshape(*w.shape, *([1] * (values.dim() - w.dim()))).expand(values.shape)
        if w.shape != values.shape:
            raise ValueError(f"`{name}` has shape {tuple(w.shape)} but its values have {tuple(values.shape)}")
        if w.dtype != u.dtype or w.device != u.device:
            raise TypeError(f"`{name}` must have the values' dtype and device ({u.dtype}, {u.device})")
        weights.append(w.reshape(count, -1).T)
    wu, wv = weights
    if (wu is None) != (wv is None):
        wu = torch.full_like(u, 1.0 / n) if wu is None else wu
        wv = torch.full_like(v, 1.0 / m) if wv is None else wv
    if backend == "reference":
        from fastgan import reference

        _check_reference_input(u, v, wu, wv)
        cost = reference.wasserstein_1d(
            u.T, v.T, None if wu is None else wu.T, None if wv is None else wv.T, p
        )
    else:
        _library.require_kernel("wasserstein_1d", u.device)
        with_grad = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (u, v, wu, wv)
        )
        cost = torch.ops.fastgan.wasserstein_1d.default(u, v, wu, wv, p, with_grad)[0]
    if return_plans is not False:
        return cost.reshape(batch), monotone_plans(u, v, wu, wv, coo_tuple=return_plans == "coo_tuple")
    return cost.reshape(batch)


PlanTuple = namedtuple("PlanTuple", ["data", "rows", "cols"])


def monotone_plans(u, v, wu, wv, *, coo_tuple: bool) -> list:
    r"""The optimal (monotone) plans of 1-D problems u (B, n), v (B, m), as POT returns them.

    Over the merged cumulative masses :math:`q_1 \le \dots \le q_{n+m}`,
    segment k carries mass :math:`q_k - q_{k-1}` from the atom of u whose
    cumulative mass first reaches :math:`q_k` to the same atom of v: one
    entry per segment (some zero), indices into the unsorted inputs. A list
    of B sparse (n, m) matrices (SciPy ``coo_array`` for numpy calls, torch
    sparse COO for tensors), or of ``PlanTuple(data, rows, cols)``.
    """
    with torch.no_grad():
        n, m = u.shape[1], v.shape[1]
        wu = torch.full_like(u, 1.0 / n) if wu is None else wu.detach()
        wv = torch.full_like(v, 1.0 / m) if wv is None else wv.detach()
        order_u = torch.sort(u.detach(), dim=1, stable=True).indices
        order_v = torch.sort(v.detach(), dim=1, stable=True).indices
        cum_u = torch.cumsum(wu.gather(1, order_u), 1)
        cum_v = torch.cumsum(wv.gather(1, order_v), 1)
        qs = torch.sort(torch.cat((cum_u, cum_v), 1), 1).values
        rows = order_u.gather(1, torch.searchsorted(cum_u, qs).clamp(max=n - 1))
        cols = order_v.gather(1, torch.searchsorted(cum_v, qs).clamp(max=m - 1))
        delta = torch.diff(qs, dim=1, prepend=torch.zeros_like(qs[:, :1]))
    plans = []
    for k in range(delta.shape[0]):
        if coo_tuple:
            plans.append(PlanTuple(delta[k], rows[k], cols[k]))
        elif NUMPY_CALL.get():
            import scipy.sparse

            plans.append(scipy.sparse.coo_array((delta[k].numpy(), (rows[k].numpy(), cols[k].numpy())), shape=(n, m)))
        else:
            plans.append(torch.sparse_coo_tensor(torch.stack((rows[k], cols[k])), delta[k], (n, m)))
    return plans


def _sliced(x, y, a, b, theta, p: float, backend: str, names: tuple[str, ...]):
    """(the sliced distance, W_p^p of every projection): ``(...)`` and ``(..., P)``.

    Solved on the clouds divided by a power of two (exact), so that the
    projected costs stay finite at any finite scale; the costs are returned
    at the clouds' own scale."""
    for w, cloud, name in ((a, x, names[2]), (b, y, names[3])):
        if w is None:
            continue
        if not isinstance(w, torch.Tensor):
            raise TypeError(f"`{name}` must be a Tensor or None, got {type(w).__name__}")
        if tuple(w.shape) != tuple(cloud.shape[:-1]):
            raise ValueError(f"`{name}` must have shape {tuple(cloud.shape[:-1])} (one weight a point), got {tuple(w.shape)}")
    scale = power_of_two_scale(x, y, degree=p)
    costs = _projected_costs(x / scale, y / scale, a, b, theta, p, backend)
    s = scale[..., 0]
    return root(costs.mean(-1), p) * s[..., 0], costs * s.pow(p)


def _projected_costs(x, y, a, b, theta, p: float, backend: str) -> torch.Tensor:
    """:math:`W_p^p` of every projection: ``(..., P)`` for directions ``theta`` ``(d, P)``."""
    # (..., n, P) -> (n, ..., P): samples first, as wasserstein_1d takes them.
    xp = torch.movedim(x @ theta, -2, 0)
    yp = torch.movedim(y @ theta, -2, 0)

    def weights(w, proj):
        if w is None:
            return None
        return torch.movedim(w, -1, 0).unsqueeze(-1).expand(proj.shape)

    return wasserstein_1d(xp, yp, weights(a, xp), weights(b, yp), p=p, backend=backend)


def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    *,
    n_projections: int = 128,
    p: float = 2.0,
    generator: torch.Generator | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    r"""Sliced Wasserstein distance :math:`\big(E_\theta[W_p^p(\theta^\top x, \theta^\top y)]\big)^{1/p}`.

    :math:`\theta` uniform on the unit sphere (``n_projections`` draws from
    ``generator``), each projected problem solved exactly by
    :func:`wasserstein_1d`. (POT's signature and seeding:
    :func:`sliced_wasserstein_distance`.)

    Args:
        x: ``(n, d)`` or batched ``(B, n, d)``; y: ``(m, d)`` / ``(B, m, d)``.
        a, b: weights ``(n,)`` / ``(B, n)`` and ``(m,)`` / ``(B, m)``, or None (uniform).

    Returns:
        ``()`` or ``(B,)``; differentiable with respect to x, y (and weights).
    """
    n_projections = positive_int(n_projections, "n_projections")
    check_clouds(x, y, ("x", "y"))
    device = generator.device if generator is not None else x.device
    theta = torch.randn(x.shape[-1], n_projections, generator=generator, device=device, dtype=x.dtype)
    theta = (theta / torch.linalg.vector_norm(theta, dim=0, keepdim=True)).to(x.device)
    return _sliced(x, y, a, b, theta, p, backend, ("x", "y", "a", "b"))[0]


def _pot_projections(d: int, count: int, seed: object, like: torch.Tensor) -> torch.Tensor:
    """Directions ``(d, count)`` drawn as POT draws them: numpy's RandomState
    for numpy inputs, a torch generator on the inputs' device for tensors."""
    if NUMPY_CALL.get():
        if isinstance(seed, np.random.RandomState):
            draws = seed.randn(d, count)
        elif seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
            draws = np.random.RandomState(seed).randn(d, count)
        else:
            raise TypeError(f"`seed` must be None, an int or a numpy RandomState, got {type(seed).__name__}")
        theta = torch.from_numpy(draws).to(like.dtype)
    else:
        if isinstance(seed, torch.Generator):
            generator = seed
        elif seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
            generator = None if seed is None else torch.Generator(like.device).manual_seed(int(seed))
        else:
            raise TypeError(f"`seed` must be None, an int or a torch.Generator, got {type(seed).__name__}")
        theta = torch.randn((d, count), dtype=like.dtype, generator=generator, device=like.device)
    return theta / torch.sqrt((theta**2).sum(0, keepdim=True))


def _scaler_first(fn: Callable) -> Callable:
    """Applies ``scaler`` to ``X_s`` and ``X_t`` before anything else, as POT does:
    the scaler sees the arrays as the caller passed them (a POT ``DataScaler``
    fitted on numpy arrays takes numpy arrays)."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def inner(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        scaler = bound.arguments.get("scaler")
        if scaler is not None:
            transform = scaler.transform if hasattr(scaler, "transform") else scaler
            if not callable(transform):
                raise ScalerError(
                    "scaler must be None, a callable or an object with .transform "
                    f"(the `scaler` argument), got {type(scaler).__name__}"
                )
            bound.arguments["X_s"] = transform(bound.arguments["X_s"])
            bound.arguments["X_t"] = transform(bound.arguments["X_t"])
            bound.arguments["scaler"] = None
        return fn(*bound.args, **bound.kwargs)

    return inner


class ScalerError(TypeError, ValueError):
    """A ``scaler`` that is neither callable nor has ``.transform`` (POT raises ValueError)."""


@_scaler_first
@array_io("X_s", "X_t", "a", "b", "projections")
def sliced_wasserstein_distance(
    X_s: ArrayLike,
    X_t: ArrayLike,
    a: ArrayLike | None = None,
    b: ArrayLike | None = None,
    n_projections: int = 50,
    p: float = 2,
    projections: ArrayLike | None = None,
    seed: int | np.random.RandomState | torch.Generator | None = None,
    log: bool = False,
    scaler: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    backend: str = "auto",
):
    r"""POT's ``ot.sliced_wasserstein_distance``: :math:`\big(\tfrac1P \sum_k W_p^p(\theta_k^\top X_s, \theta_k^\top X_t)\big)^{1/p}`.

    Args:
        X_s: ``(n, d)`` (or fastgan's batch ``(B, n, d)``); X_t: ``(m, d)`` / ``(B, m, d)``.
            numpy arrays give numpy results, tensors give tensors.
        a, b: weights ``(n,)``, ``(m,)`` (None: uniform).
        n_projections: P, the number of random directions (POT's default 50).
        p: the ground-cost exponent, >= 1.
        projections: ``(d, P)`` directions to use instead of random ones
            (``n_projections`` and ``seed`` are then unused).
        seed: None, an int, or a generator: with numpy inputs the directions
            are ``RandomState(seed).randn(d, P)`` normalised (a RandomState
            is used as it is), with tensors ``torch.randn`` from a generator
            seeded with ``seed`` on the inputs' device (a torch.Generator is
            used as it is): the same directions as POT draws for the same seed.
        log: also return ``{"projections": (d, P), "projected_emds": (..., P)}``.
        scaler: None, an object with ``.transform`` or a callable, applied to
            both clouds first, as they were passed (POT's preprocessing);
            anything else is a TypeError that is also POT's ValueError.
        backend: as in :func:`wasserstein_1d`.

    Returns:
        ``()`` (or ``(B,)``), and the log. Differentiable once with respect
        to the points and weights.
    """
    check_clouds(X_s, X_t, ("X_s", "X_t"))
    if projections is None:
        n_projections = positive_int(n_projections, "n_projections")
        projections = _pot_projections(X_s.shape[-1], n_projections, seed, X_s)
    elif projections.dim() != 2 or projections.shape[0] != X_s.shape[-1]:
        raise ValueError(f"`projections` must have shape ({X_s.shape[-1]}, P), got {tuple(projections.shape)}")
    value, costs = _sliced(X_s, X_t, a, b, projections, p, backend, ("X_s", "X_t", "a", "b"))
    return (value, {"projections": projections, "projected_emds": costs}) if log else value


def _result_fake(u, v, wu, wv, p, with_grad):
    cost = u.new_empty(u.shape[:1])
    if not with_grad:
        return cost, *(u.new_empty((0,)) for _ in range(4))
    gw = (u.new_empty(u.shape), v.new_empty(v.shape)) if wu is not None else (u.new_empty((0,)), u.new_empty((0,)))
    return cost, u.new_empty(u.shape), v.new_empty(v.shape), *gw


def _setup_context(ctx, inputs, output) -> None:
    u, v, wu, wv, p, with_grad = inputs
    cost, gu, gv, gwu, gwv = output
    ctx.with_grad = with_grad
    ctx.has_weights = wu is not None
    ctx.save_for_backward(gu, gv, gwu, gwv)
    ctx.mark_non_differentiable(gu, gv, gwu, gwv)


def _backward(ctx, grad_cost, *_):
    if not ctx.with_grad:
        raise RuntimeError(
            "fastgan::wasserstein_1d was called without with_grad=True, so it holds no gradients; "
            "call fastgan.ot.wasserstein_1d with inputs that require grad"
        )
    if torch.is_grad_enabled():
        raise RuntimeError("fastgan.ot.wasserstein_1d is differentiable once; create_graph=True is not supported")
    gu, gv, gwu, gwv = ctx.saved_tensors
    scale = grad_cost.unsqueeze(1)
    grads = [gu * scale, gv * scale]
    grads += [gwu * scale, gwv * scale] if ctx.has_weights else [None, None]
    return (*grads, None, None)


def _wasserstein_1d_torch_ops(u, v, wu, wv, p, with_grad):
    """``fastgan::wasserstein_1d`` composed of torch's kernels (its CUDA implementation).

    Same contract as the C++ kernel: u (B, n), v (B, m), weights of the same
    shapes or both None; returns the costs (B,) and, when ``with_grad``, the
    gradients of each problem's cost with respect to u, v and the weights
    (empty tensors for those not computed). Sorting, cumulative masses and
    the merged quantile walk are torch's sort, cumsum and searchsorted.
    """
    from fastgan import reference

    _check_reference_input(u, v, wu, wv)
    empty = u.new_empty((0,))
    if not with_grad:
        with torch.no_grad():
            cost = reference.wasserstein_1d(u.T, v.T, None if wu is None else wu.T, None if wv is None else wv.T, p)
        return cost, empty, empty, empty, empty
    leaves = [t.detach().requires_grad_() for t in (u, v) + ((wu, wv) if wu is not None else ())]
    with _library.autograd_inside_op():
        weights = (leaves[2].T, leaves[3].T) if wu is not None else (None, None)
        cost = reference.wasserstein_1d(leaves[0].T, leaves[1].T, *weights, p)
        # Problems are independent: the gradient of the sum is each problem's own.
        grads = list(torch.autograd.grad(cost.sum(), leaves))
    if wu is None:
        return cost.detach(), grads[0], grads[1], empty, empty
    # The masses are equal, so the last breakpoints of both sides coincide
    # and the weights' gradients are defined up to one constant per side
    # (any shift keeps the directional derivative along mass-preserving
    # changes). Fix it as the C++ kernel does: moving a side's last
    # breakpoint extends the segment of the two largest atoms.
    last_u = torch.sort(u, dim=1, stable=True).indices[:, -1:]
    last_v = torch.sort(v, dim=1, stable=True).indices[:, -1:]
    d_last = (u.gather(1, last_u) - v.gather(1, last_v)).abs()
    c_last = d_last if p == 1 else d_last.pow(p)
    grads[2] = grads[2] + (c_last - grads[2].gather(1, last_u))
    grads[3] = grads[3] + (c_last - grads[3].gather(1, last_v))
    return (cost.detach(), *grads)


if _library.LOADED:
    _library.register_torch_ops_cuda("wasserstein_1d", _wasserstein_1d_torch_ops)
    torch.library.register_fake("fastgan::wasserstein_1d")(_result_fake)
    torch.library.register_autograd("fastgan::wasserstein_1d", _backward, setup_context=_setup_context)
