"""fastgan.divergences against SciPy, POT, NumPy and the closed forms of the GAN theory."""

from __future__ import annotations

import math
import sys

import numpy as np
import ot
import pytest
import scipy.spatial.distance
import scipy.stats
import torch

import fastgan
from fastgan import divergences as dv
from fastgan import losses

LOG2 = math.log(2.0)


def histograms(generator, shape, zeros=0.0):
    """Random histograms along the last dim; a fraction ``zeros`` of masses set to 0."""
    w = torch.rand(shape, generator=generator, dtype=torch.float64)
    if zeros:
        w = torch.where(torch.rand(shape, generator=generator, dtype=torch.float64) < zeros, 0.0, w)
        w[..., 0] += 0.1  # never an all-zero histogram
    return w / w.sum(-1, keepdim=True)


def test_kl_js_tv_match_scipy_batched(generator):
    p = histograms(generator, (4, 9), zeros=0.3)
    q = histograms(generator, (4, 9))  # full support: KL(P||Q) finite
    kl, js, js2, tv = dv.kl(p, q), dv.js(p, q), dv.js(p, q, halved=False), dv.tv(p, q)
    assert kl.shape == js.shape == tv.shape == (4,)
    for i in range(4):
        pi, qi = p[i].numpy(), q[i].numpy()
        want_js = scipy.spatial.distance.jensenshannon(pi, qi) ** 2
        assert kl[i].item() == pytest.approx(scipy.stats.entropy(pi, qi), rel=1e-12, abs=1e-15)
        assert js[i].item() == pytest.approx(want_js, rel=1e-10, abs=1e-15)
        assert js2[i].item() == pytest.approx(2 * want_js, rel=1e-10, abs=1e-15)
        assert tv[i].item() == pytest.approx(0.5 * np.abs(pi - qi).sum(), rel=1e-12)
    assert bool((js <= LOG2).all()) and bool((tv <= 1).all())


def test_kl_infinite_without_support_and_zero_on_itself(generator):
    p = histograms(generator, (6,))
    q = p.clone()
    q[2] = 0
    q /= q.sum()
    assert dv.kl(p, q).item() == math.inf == scipy.stats.entropy(p.numpy(), q.numpy())
    assert math.isfinite(dv.kl(q, p).item())
    for f in (dv.kl, dv.js, dv.tv, dv.wasserstein):
        assert f(p, p).item() == pytest.approx(0.0, abs=1e-15)


def test_disjoint_supports_reach_the_bounds():
    p = torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=torch.float64)
    q = torch.tensor([0.0, 0.0, 0.25, 0.75], dtype=torch.float64)
    assert dv.js(p, q).item() == pytest.approx(LOG2, rel=1e-15)
    assert dv.js(p, q, halved=False).item() == pytest.approx(2 * LOG2, rel=1e-15)
    assert dv.tv(p, q).item() == 1.0
    assert dv.kl(p, q).item() == math.inf


def test_broadcasting_dim_and_normalize(generator):
    p = histograms(generator, (3, 5))
    q = histograms(generator, (5,))
    got = dv.js(p, q)
    want = torch.stack([dv.js(p[i], q) for i in range(3)])
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(dv.kl(p.T, q[:, None], dim=0), dv.kl(p, q))
    counts = torch.randint(1, 20, (3, 5), generator=generator).double()
    torch.testing.assert_close(
        dv.tv(counts, q, normalize=True), dv.tv(counts / counts.sum(-1, keepdim=True), q)
    )


def test_float32_histograms_pass_the_sum_check(generator):
    p = histograms(generator, (2, 1000)).float()
    q = histograms(generator, (2, 1000)).float()
    p = p / p.sum(-1, keepdim=True)
    q = q / q.sum(-1, keepdim=True)
    torch.testing.assert_close(dv.js(p, q).double(), dv.js(p.double(), q.double()), rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------- Wasserstein


def test_wasserstein_matches_scipy_and_pot(generator):
    n = 12
    p = histograms(generator, (3, n), zeros=0.3)
    q = histograms(generator, (3, n), zeros=0.3)
    x = torch.sort(torch.randn(n, generator=generator, dtype=torch.float64) * 3).values
    got = dv.wasserstein(p, q, x)
    for i in range(3):
        want_scipy = scipy.stats.wasserstein_distance(x.numpy(), x.numpy(), p[i].numpy(), q[i].numpy())
        want_pot = ot.wasserstein_1d(x.numpy(), x.numpy(), p[i].numpy(), q[i].numpy(), p=1)
        assert got[i].item() == pytest.approx(want_scipy, rel=1e-10, abs=1e-14)
        assert got[i].item() == pytest.approx(float(want_pot), rel=1e-10, abs=1e-14)
    # A support per batch element, and the default unit spacing.
    xs = torch.sort(torch.rand(3, n, generator=generator, dtype=torch.float64), dim=-1).values
    per_row = dv.wasserstein(p, q, xs)
    for i in range(3):
        assert per_row[i].item() == pytest.approx(dv.wasserstein(p[i], q[i], xs[i]).item(), rel=1e-14)
    unit = torch.arange(n, dtype=torch.float64)
    torch.testing.assert_close(dv.wasserstein(p, q), dv.wasserstein(p, q, unit))


def test_wasserstein_shovelfuls():
    # Moving all mass one bin over costs one shovelful per unit of mass and distance.
    p = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    for j, x in ((1, 1.0), (2, 2.0)):
        q = torch.zeros(3, dtype=torch.float64)
        q[j] = 1.0
        assert dv.wasserstein(p, q).item() == x
    x = torch.tensor([0.0, 0.5, 3.0], dtype=torch.float64)
    q = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)
    assert dv.wasserstein(p, q, x).item() == pytest.approx(0.5 * 0.5 + 0.5 * 3.0)


# ----------------------------------------------------------------- optimal discriminator


def test_optimal_discriminator_and_virtual_training_criterion(generator):
    p_r = histograms(generator, (5, 8), zeros=0.2)
    p_g = histograms(generator, (5, 8), zeros=0.2)
    d = dv.optimal_discriminator(p_r, p_g)
    both_zero = (p_r + p_g) == 0
    torch.testing.assert_close(d[~both_zero], (p_r / (p_r + p_g))[~both_zero])
    assert bool((d[both_zero] == 0.5).all())
    c = dv.minimax_value(p_r, p_g)
    torch.testing.assert_close(c, -math.log(4) + 2 * dv.js(p_r, p_g), rtol=1e-12, atol=1e-14)
    # D* maximises V(D, G) for the fixed generator.
    for _ in range(10):
        other = (d + 0.2 * torch.randn(d.shape, generator=generator, dtype=torch.float64)).clamp(1e-6, 1 - 1e-6)
        assert bool((dv.minimax_value(p_r, p_g, other) <= c + 1e-12).all())
    # Equal distributions: C(G) = -log 4, the global minimum.
    assert dv.minimax_value(p_r, p_r).tolist() == pytest.approx([-math.log(4)] * 5, rel=1e-12)


def test_minimax_loss_at_the_optimal_discriminator_is_log4_minus_2js(generator):
    """The minimax critic loss on samples, at logits of D*, equals -C(G)."""
    n = 5
    a = torch.randint(1, 8, (n,), generator=generator)
    b = torch.randint(1, 8, (n,), generator=generator)
    p_r, p_g = a.double() / a.sum(), b.double() / b.sum()
    logits = torch.logit(dv.optimal_discriminator(p_r, p_g))
    where = torch.arange(n)
    loss = losses.get("minimax").critic(logits[where.repeat_interleave(a)], logits[where.repeat_interleave(b)])
    assert loss.item() == pytest.approx(math.log(4) - 2 * dv.js(p_r, p_g).item(), rel=1e-12)


# ----------------------------------------------------------------- parallel lines


def test_parallel_lines_closed_form():
    thetas = torch.tensor([-1.0, -0.25, 0.0, 1e-9, 0.7], dtype=torch.float64)
    r = dv.parallel_lines(thetas)
    assert r.wasserstein.tolist() == [1.0, 0.25, 0.0, 1e-9, 0.7]
    assert r.js.tolist() == [LOG2, LOG2, 0.0, LOG2, LOG2]
    assert r.kl.tolist() == [math.inf, math.inf, 0.0, math.inf, math.inf]
    assert r.tv.tolist() == [1.0, 1.0, 0.0, 1.0, 1.0]
    s = dv.parallel_lines(-0.5)
    assert (s.wasserstein.item(), s.js.item(), s.kl.item(), s.tv.item()) == (0.5, LOG2, math.inf, 1.0)


@pytest.mark.parametrize("theta", [-0.8, -0.1, 0.0, 0.3, 2.5])
def test_parallel_lines_from_discretised_marginals(theta, generator):
    """The segments discretised on a grid in y: W_1 = |theta|, JS flat at log 2.

    Each segment becomes points (x, y_j) with equal weights; distributions are
    histograms over the union of both point sets, ordered by x. Since both segments
    share the y-grid the 2-D optimal plan moves every point horizontally, so W_1 is the
    1-D distance between the x-marginals.
    """
    m = int(torch.randint(3, 9, (1,), generator=generator))
    if theta == 0:
        p0 = pt = torch.full((m,), 1.0 / m, dtype=torch.float64)
        x = torch.zeros(m, dtype=torch.float64)
    else:
        left, right = sorted([0.0, theta])
        x = torch.tensor([left] * m + [right] * m, dtype=torch.float64)
        first = torch.cat([torch.full((m,), 1.0 / m, dtype=torch.float64), torch.zeros(m, dtype=torch.float64)])
        p0, pt = (first, first.flip(0)) if left == 0.0 else (first.flip(0), first)
    want = dv.parallel_lines(theta)
    assert dv.wasserstein(p0, pt, x).item() == pytest.approx(want.wasserstein.item(), rel=1e-14)
    assert dv.js(p0, pt).item() == pytest.approx(want.js.item(), rel=1e-14, abs=0)
    assert dv.tv(p0, pt).item() == pytest.approx(want.tv.item(), rel=1e-14)
    assert dv.kl(pt, p0).item() == want.kl.item()


def test_plot_parallel_lines(tmp_path):
    pytest.importorskip("matplotlib")
    path = dv.plot_parallel_lines(tmp_path / "parallel-lines.png", thetas=[-1.0, 0.0, 0.5, 1.0])
    assert path.exists() and path.stat().st_size > 1000


def test_plot_without_matplotlib_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        dv.plot_parallel_lines(tmp_path / "x.png")


def test_same_values_on_every_device(device, generator):
    p, q = histograms(generator, (3, 10), zeros=0.2), histograms(generator, (3, 10))
    x = torch.sort(torch.randn(10, generator=generator, dtype=torch.float64)).values
    for f in (dv.kl, dv.js, dv.tv, dv.wasserstein, dv.minimax_value):
        got = f(p.to(device), q.to(device))
        assert got.device.type == device.type
        torch.testing.assert_close(got.cpu(), f(p, q))
    torch.testing.assert_close(dv.wasserstein(p.to(device), q.to(device), x.to(device)).cpu(), dv.wasserstein(p, q, x))


def test_empty_batch(generator):
    assert dv.kl(torch.zeros(0, 4), torch.full((4,), 0.25)).shape == (0,)


# ----------------------------------------------------------------- bad input


def test_bad_input_names_the_argument():
    p = torch.tensor([0.25, 0.75], dtype=torch.float64)
    with pytest.raises(ValueError, match="`q`.*negative"):
        dv.kl(p, torch.tensor([1.5, -0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="`p`.*NaN"):
        dv.js(torch.tensor([math.nan, 1.0]), p)
    with pytest.raises(ValueError, match="`q` does not sum to 1"):
        dv.tv(p, torch.tensor([0.5, 0.6], dtype=torch.float64))
    with pytest.raises(TypeError, match="`p`.*float"):
        dv.kl(torch.tensor([0, 1]), p)
    with pytest.raises(TypeError, match="`q`"):
        dv.kl(p, [0.5, 0.5])
    with pytest.raises(ValueError, match="different sizes"):
        dv.kl(p, torch.full((3,), 1 / 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="do not broadcast"):
        dv.kl(p.expand(3, 2), p.expand(4, 2))
    with pytest.raises(ValueError, match="`dim`"):
        dv.kl(p, p, dim=2)
    with pytest.raises(ValueError, match="`support`.*sorted"):
        dv.wasserstein(p, p, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="`support` has 3"):
        dv.wasserstein(p, p, torch.zeros(3))
    with pytest.raises(ValueError, match="`p` has a histogram with zero total"):
        dv.kl(torch.zeros(2), p, normalize=True)
    with pytest.raises(ValueError, match="`p_g`.*negative"):
        dv.optimal_discriminator(p, -p)
    with pytest.raises(ValueError, match="`discriminator`"):
        dv.minimax_value(p, p, torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="`theta`"):
        dv.parallel_lines(math.nan)
    with pytest.raises(TypeError, match="`theta`"):
        dv.parallel_lines("1")


@pytest.mark.parametrize("theta", [0.0, 0.5, -1.3])
def test_parallel_lines_exact_emd_between_samples_is_theta(theta, generator):
    # WGAN Example 1 on samples: P_0 = (0, Z), P_theta = (theta, Z), the same
    # draws of Z on both lines. The exact EMD (Euclidean ground cost) between
    # the two empirical measures is |theta|, while the JS between the
    # histograms of the first coordinate stays log 2 for every theta != 0.
    n = 64
    z = torch.rand(n, 1, generator=generator, dtype=torch.float64)
    x = torch.cat([torch.zeros_like(z), z], 1)
    y = torch.cat([torch.full_like(z, theta), z], 1)
    emd = fastgan.ot.linear_sum_assignment(torch.cdist(x, y)).cost / n
    assert float(emd) == pytest.approx(abs(theta), rel=1e-12, abs=1e-15)
    assert float(emd) == pytest.approx(float(dv.parallel_lines(theta).wasserstein), abs=1e-12)
