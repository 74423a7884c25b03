"""fastgan.metrics.sample_distances / wasserstein_distance against POT and closed forms."""

from __future__ import annotations

import numpy as np
import ot as pot
import pytest
import torch

import fastgan
from fastgan.metrics import critic_estimate, sample_distances, wasserstein_distance


def _pot_wp(x: torch.Tensor, y: torch.Tensor, p: float) -> float:
    xs, ys = x.reshape(x.shape[0], -1).double().numpy(), y.reshape(y.shape[0], -1).double().numpy()
    M = pot.dist(xs, ys, metric="euclidean") ** p
    return float(pot.emd2(np.full(len(xs), 1 / len(xs)), np.full(len(ys), 1 / len(ys)), M)) ** (1 / p)


@pytest.mark.parametrize("n,m", [(40, 40), (37, 53)])
def test_exact_distances_match_pot(n, m, generator):
    x = torch.randn(n, 3, 2, generator=generator, dtype=torch.float64)  # flattened to 6 features
    y = torch.randn(m, 3, 2, generator=generator, dtype=torch.float64) + 0.5
    got = sample_distances(x, y, ["w1", "w2", "sliced", "mmd2"], generator=generator)
    assert got["w1"] == pytest.approx(_pot_wp(x, y, 1.0), rel=1e-9)
    assert got["w2"] == pytest.approx(_pot_wp(x, y, 2.0), rel=1e-9)
    # Projections are 1-Lipschitz: sliced W_2 never exceeds W_2.
    assert 0 < got["sliced"] <= got["w2"] + 1e-12
    assert float(wasserstein_distance(x, y, p=1.0)) == pytest.approx(got["w1"], rel=1e-12)
    xs, ys = x.reshape(n, -1), y.reshape(m, -1)
    bw = fastgan.metrics.median_bandwidth(xs, ys)
    k = lambda a, b: torch.exp(-torch.cdist(a, b).square() / (2 * bw**2))  # noqa: E731
    kxx, kyy = k(xs, xs), k(ys, ys)
    expected = (
        (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        - 2 * k(xs, ys).mean()
    )
    assert got["mmd2"] == pytest.approx(float(expected), rel=1e-9, abs=1e-12)


def test_translated_samples_have_w_equal_to_the_shift(generator):
    """W_p between a sample set and its translate by t is |t| (the identity pairing is optimal)."""
    x = torch.randn(64, 2, generator=generator, dtype=torch.float64)
    shift = torch.tensor([0.3, -0.4], dtype=torch.float64)
    got = sample_distances(x + shift, x, ["w1", "w2"])
    assert got["w1"] == pytest.approx(0.5, rel=1e-9)
    assert got["w2"] == pytest.approx(0.5, rel=1e-9)


def test_critic_estimate_with_exact_w1(generator):
    """A 1-Lipschitz linear critic's estimate never exceeds the exact W_1 between the batches."""
    real = torch.randn(32, 2, generator=generator, dtype=torch.float64) + 2.0
    fake = torch.randn(32, 2, generator=generator, dtype=torch.float64)
    direction = torch.tensor([0.6, 0.8], dtype=torch.float64)
    result = critic_estimate(lambda x: x @ direction, real, fake, w1="exact", generator=generator)
    assert result["w1"] == pytest.approx(_pot_wp(real, fake, 1.0), rel=1e-9)
    assert result["w1_gap"] >= -1e-12
    with pytest.raises(TypeError, match="exact"):
        critic_estimate(lambda x: x @ direction, real, fake, w1="sinkhorn")


def test_bad_input():
    with pytest.raises(ValueError, match="unknown distances"):
        sample_distances(torch.randn(5, 2), torch.randn(5, 2), ["w3"])
    with pytest.raises(ValueError, match="features"):
        sample_distances(torch.randn(5, 2), torch.randn(5, 3), ["w1"])
    with pytest.raises(TypeError, match="generated"):
        sample_distances(np.zeros((5, 2)), torch.randn(5, 2), ["w1"])


def test_sinkhorn_monitor_matches_geomloss(generator):
    geomloss = pytest.importorskip("geomloss")
    x = torch.randn(50, 2, generator=generator, dtype=torch.float64)
    y = torch.randn(70, 2, generator=generator, dtype=torch.float64) + 1.0
    expected = geomloss.SamplesLoss("sinkhorn", p=2, blur=0.05, backend="tensorized")(x, y)
    got = sample_distances(x, y, ["sinkhorn"])["sinkhorn"]
    assert got == pytest.approx(float(expected), rel=1e-5)
