"""Exact 1-D optimal transport in plain PyTorch (sort, cumulative weights, searchsorted)."""

from __future__ import annotations

import torch


def _quantiles(qs: torch.Tensor, cum: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The quantile function of (values, cum) at qs; all sorted along dim 0."""
    idx = torch.searchsorted(cum.movedim(0, -1).contiguous(), qs.movedim(0, -1).contiguous()).movedim(-1, 0)
    idx = idx.clamp_max(values.shape[0] - 1)
    return torch.gather(values, 0, idx)


def wasserstein_1d(
    u_values: torch.Tensor,
    v_values: torch.Tensor,
    u_weights: torch.Tensor | None = None,
    v_weights: torch.Tensor | None = None,
    p: float = 1.0,
) -> torch.Tensor:
    r""":math:`W_p^p = \int_0^1 |F_u^{-1}(t) - F_v^{-1}(t)|^p dt` between (n, ...) and (m, ...) samples.

    Batched over the trailing dimensions; uniform weights where None.
    Differentiable through torch's autograd (values and weights).
    """
    n, m = u_values.shape[0], v_values.shape[0]
    if u_weights is None:
        u_weights = torch.full_like(u_values, 1.0 / n)
    if v_weights is None:
        v_weights = torch.full_like(v_values, 1.0 / m)
    u_sorted, u_order = torch.sort(u_values, dim=0, stable=True)
    v_sorted, v_order = torch.sort(v_values, dim=0, stable=True)
    u_cum = torch.cumsum(torch.gather(u_weights, 0, u_order), 0)
    v_cum = torch.cumsum(torch.gather(v_weights, 0, v_order), 0)
    qs = torch.sort(torch.cat([u_cum, v_cum], 0), 0).values
    diff = (_quantiles(qs, u_cum, u_sorted) - _quantiles(qs, v_cum, v_sorted)).abs()
    deltas = torch.diff(qs, dim=0, prepend=torch.zeros_like(qs[:1]))
    return torch.sum(deltas * (diff if p == 1 else diff.pow(p)), 0)
