"""Classifier-based sample scores: Inception-Score-style score and Fréchet distance.

Both are defined here on what a classifier produces (class probabilities, features),
independent of the network: :mod:`fastgan.metrics.digits` applies them with a small
classifier of the 8x8 digits; Inception-based IS / FID are the same formulas on
Inception-v3 outputs (use torch-fidelity for those: fastgan does not ship Inception).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastgan._checks import float_tensor, positive_int

__all__ = ["inception_score", "gaussian_statistics", "frechet_distance", "frechet_distance_from_features"]


def inception_score(probs: Tensor, *, splits: int = 1) -> tuple[float, float]:
    r"""Inception-Score-style score from class probabilities p(y|x), shape (N, C).

    :math:`\mathrm{IS} = \exp\big(E_x\, KL(p(y|x) \,\|\, p(y))\big)` with the marginal
    :math:`p(y) = E_x\, p(y|x)`, between 1 (every sample gets the same class
    distribution) and C (confident, evenly spread over the classes). As in the original
    protocol the N samples are cut into ``splits`` consecutive groups, the score is
    computed on each, and the mean and (population) standard deviation are returned.
    """
    p = float_tensor(probs, "probs", dims=2).double()
    splits = positive_int(splits, "splits")
    n = p.shape[0]
    if n < splits:
        raise ValueError(f"`probs` has {n} rows, fewer than `splits`={splits}")
    if bool((p < 0).any()) or (p.sum(1) - 1).abs().max().item() > 1e-4:
        raise ValueError("`probs` rows must be probability vectors (non-negative, summing to 1)")
    scores = []
    for part in p.tensor_split(splits):
        marginal = part.mean(0, keepdim=True)
        kl = (torch.special.xlogy(part, part) - torch.special.xlogy(part, marginal)).sum(1)
        scores.append(kl.mean().exp())
    s = torch.stack(scores)
    return float(s.mean()), float(s.std(unbiased=False)) if splits > 1 else 0.0


def gaussian_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (d,) and unbiased covariance (d, d) of ``features`` (N, d), N >= 2, in float64."""
    f = float_tensor(features, "features", dims=2).double()
    if f.shape[0] < 2:
        raise ValueError(f"`features` needs at least 2 rows for a covariance, got {f.shape[0]}")
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(a: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh(a)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def _check_covariance(c: Tensor, name: str, d: int) -> Tensor:
    c = float_tensor(c, name, dims=2).double()
    if c.shape != (d, d):
        raise ValueError(f"`{name}` must have shape ({d}, {d}), got {tuple(c.shape)}")
    scale = c.abs().max().clamp_min(1e-300)
    if ((c - c.T).abs().max() / scale).item() > 1e-6:
        raise ValueError(f"`{name}` is not symmetric")
    if torch.linalg.eigvalsh(c).min().item() < -1e-6 * scale.item():
        raise ValueError(f"`{name}` is not positive semi-definite")
    return c


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    r"""Fréchet (2-Wasserstein squared) distance between N(mu1, sigma1) and N(mu2, sigma2).

    .. math:: \|\mu_1 - \mu_2\|^2 + \mathrm{tr}\big(\Sigma_1 + \Sigma_2
              - 2 (\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2})^{1/2}\big)

    The trace term equals tr((Sigma1 Sigma2)^{1/2}) of the FID formula; the symmetric
    form is computed with two symmetric eigendecompositions in float64, so it stays
    real and accurate for singular covariances (no complex parts to discard as with a
    general matrix square root).
    """
    m1 = float_tensor(mu1, "mu1", dims=1).double()
    m2 = float_tensor(mu2, "mu2", dims=1).double()
    d = m1.shape[0]
    if m2.shape[0] != d:
        raise ValueError(f"`mu1` has {d} entries and `mu2` has {m2.shape[0]}")
    s1 = _check_covariance(sigma1, "sigma1", d)
    s2 = _check_covariance(sigma2, "sigma2", d).to(s1.device)
    root1 = _psd_sqrt(s1)
    middle = root1 @ s2 @ root1
    cross = torch.linalg.eigvalsh(0.5 * (middle + middle.T)).clamp_min(0).sqrt().sum()
    value = (m1 - m2.to(m1.device)).square().sum() + s1.trace() + s2.trace() - 2.0 * cross
    return max(float(value), 0.0)


def frechet_distance_from_features(features_a: Tensor, features_b: Tensor) -> float:
    """:func:`frechet_distance` between Gaussians fitted to two feature sets (N, d), (M, d)."""
    mu_a, cov_a = gaussian_statistics(features_a)
    mu_b, cov_b = gaussian_statistics(features_b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(
            f"`features_a` has {mu_a.shape[0]} features and `features_b` has {mu_b.shape[0]}"
        )
    return frechet_distance(mu_a, cov_a, mu_b, cov_b)
