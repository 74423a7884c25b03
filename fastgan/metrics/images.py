r"""Classifier-based quality scores of generated images against real ones.

Works with any classifier object that has ``probabilities(x) -> (N, C)`` and
``features(x) -> (N, d)`` and checks its own inputs: :class:`MnistClassifier`
(28x28 images in [0, 1]) and :class:`fastgan.metrics.digits.DigitsClassifier` (8x8
images in [0, 1]).

The Fréchet distance (FD) between two feature sets is the FID formula on Gaussians
fitted to them,

.. math:: \mathrm{FD} = \|\mu_1 - \mu_2\|^2 + \mathrm{tr}\big(\Sigma_1 + \Sigma_2
          - 2 (\Sigma_1^{1/2} \Sigma_2 \Sigma_1^{1/2})^{1/2}\big),

(:func:`fastgan.metrics.scores.frechet_distance_from_features`). Estimated from finite
samples it is positive even between two sets drawn from one distribution, and that bias
grows as the sets shrink. :func:`image_scores` therefore reports a *floor*: ``real`` is
split into two disjoint halves A and B, the floor is FD(A, B), and the fakes are
compared with half A, so FD(fake, A) / FD(A, B) compares like with like when ``fake``
has about as many samples as a half (e.g. 2,500 fakes against 5,000 real images). A
ratio near 1 means the fakes are as close to A as other real images are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch
from torch import Tensor

from fastgan._checks import float_tensor
from fastgan.metrics.scores import frechet_distance_from_features

__all__ = ["RealStatistics", "real_statistics", "image_scores", "meets_image_bar"]


def _apply(method: Callable[[Tensor], Tensor], x: Tensor, name: str) -> Tensor:
    try:
        return method(x)
    except ValueError as err:
        raise ValueError(f"`{name}`: {err}") from err


@dataclass(frozen=True)
class RealStatistics:
    """What :func:`image_scores` needs of the real images, computed once by :func:`real_statistics`.

    ``features_a``: the classifier's features of half A, (M // 2, d) float64;
    ``floor``: FD(A, B); ``real_confident_pct``: the confident share of all of ``real``;
    ``sample_shape``: the trailing shape of one image; ``confident``: the threshold used.
    """

    features_a: Tensor
    floor: float
    real_confident_pct: float
    sample_shape: tuple[int, ...]
    confident: float


def real_statistics(
    classifier: Any, real: Tensor, *, confident: float = 0.9, generator: Optional[torch.Generator] = None
) -> RealStatistics:
    """The real side of :func:`image_scores` (halves, floor, confident share), to reuse across calls.

    ``real`` (M, ...), M >= 4, is split by ``torch.randperm(M, generator=generator)``
    (default: a generator seeded with 0) into half A (the first M // 2) and half B (the next M // 2).
    """
    real = float_tensor(real, "real", min_dims=1)
    if real.shape[0] < 4:
        raise ValueError(f"`real` needs at least 4 images (2 per half), got {real.shape[0]}")
    if not isinstance(confident, (int, float)) or not 0.0 < confident <= 1.0:
        raise ValueError(f"`confident` must lie in (0, 1], got {confident!r}")
    p_real = _apply(classifier.probabilities, real, "real")
    half = real.shape[0] // 2
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    order = torch.randperm(real.shape[0], generator=gen).to(real.device)
    f_a = _apply(classifier.features, real[order[:half]], "real").double()
    f_b = _apply(classifier.features, real[order[half : 2 * half]], "real").double()
    floor = frechet_distance_from_features(f_a, f_b)
    if floor <= 0.0:
        raise ValueError("the two halves of `real` have Fréchet distance 0 (identical features); the floor is undefined")
    return RealStatistics(f_a, floor, 100.0 * float((p_real.max(1).values >= confident).double().mean()),
                          tuple(real.shape[1:]), float(confident))


def image_scores(
    classifier: Any,
    fake: Tensor,
    real: Union[Tensor, RealStatistics],
    *,
    confident: float = 0.9,
    num_classes: int = 10,
    generator: Optional[torch.Generator] = None,
) -> dict[str, Any]:
    """Class coverage, confidence and Fréchet distance of ``fake`` images against ``real`` ones.

    ``fake`` (N, ...) and ``real`` (M, ...) share their trailing shape, one the
    classifier accepts (values in [0, 1] for the fastgan classifiers). ``real`` is split
    by ``torch.randperm(M, generator=generator)`` (default: a generator seeded with 0)
    into half A (the first M // 2 entries) and half B (the next M // 2); ``real`` may
    also be the :class:`RealStatistics` of an earlier :func:`real_statistics` call (with
    the same ``confident``), which scores many fake sets against one real set at the
    cost of the fakes alone. Returns plain Python values:

    - ``class_shares``: per class c < ``num_classes``, the share of fakes whose most
      probable class is c (sums to 1); ``min_class_share``; ``classes_at_5pct``, the
      number of classes with a share >= 0.05;
    - ``confident_pct``: 100 x the share of fakes whose largest class probability is
      >= ``confident``; ``real_confident_pct``: the same on all of ``real``;
    - ``frechet_distance``: FD(fake, A) on the classifier's features;
      ``frechet_floor``: FD(A, B); ``fd_over_floor``: their ratio (see the module
      docstring: give ``fake`` about M // 2 samples);
    - ``n_fake`` (N) and ``n_real_half`` (M // 2).
    """
    fake = float_tensor(fake, "fake", min_dims=1)
    if fake.shape[0] < 2:
        raise ValueError(f"`fake` needs at least 2 images, got {fake.shape[0]}")
    p_fake = _apply(classifier.probabilities, fake, "fake")  # the fakes' own errors first
    if not isinstance(real, RealStatistics):
        real = real_statistics(classifier, real, confident=confident, generator=generator)
    elif real.confident != confident:
        raise ValueError(f"`real` was computed with confident={real.confident}, not {confident}")
    if tuple(fake.shape[1:]) != real.sample_shape:
        raise ValueError(f"`fake` {tuple(fake.shape)} and `real` (N, {', '.join(map(str, real.sample_shape))}) differ in their trailing shape")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive int, got {num_classes!r}")
    if p_fake.dim() != 2 or p_fake.shape[1] != num_classes:
        raise ValueError(f"the classifier gives probabilities of shape {tuple(p_fake.shape)}, not (N, `num_classes`={num_classes})")
    shares = torch.bincount(p_fake.argmax(1).cpu(), minlength=num_classes).double() / fake.shape[0]
    f_fake = _apply(classifier.features, fake, "fake").double()
    fd = frechet_distance_from_features(f_fake, real.features_a)
    floor = real.floor
    half = real.features_a.shape[0]
    return {
        "class_shares": shares.tolist(),
        "min_class_share": float(shares.min()),
        "classes_at_5pct": int((shares >= 0.05).sum()),
        "confident_pct": 100.0 * float((p_fake.max(1).values >= confident).double().mean()),
        "real_confident_pct": real.real_confident_pct,
        "frechet_distance": fd,
        "frechet_floor": floor,
        "fd_over_floor": fd / floor,
        "n_fake": int(fake.shape[0]),
        "n_real_half": half,
    }


def meets_image_bar(
    scores: dict[str, Any],
    *,
    min_share: float = 0.05,
    min_confident_pct: float = 75.0,
    max_fd_ratio: float = 15.0,
) -> bool:
    """The quality bar of the image recipes, on the output of :func:`image_scores`.

    True when every class gets a share >= ``min_share`` of the fakes (no mode dropped),
    at least ``min_confident_pct`` % of the fakes are classified confidently (they look
    like some digit), and FD(fake, A) <= ``max_fd_ratio`` x FD(A, B) (the fakes'
    feature statistics are near the real ones, relative to the sampling floor).
    """
    missing = {"min_class_share", "confident_pct", "fd_over_floor"} - set(scores)
    if missing:
        raise ValueError(f"`scores` lacks {sorted(missing)}; pass the dict returned by image_scores")
    return bool(
        scores["min_class_share"] >= min_share
        and scores["confident_pct"] >= min_confident_pct
        and scores["fd_over_floor"] <= max_fd_ratio
    )
