"""fastgan.metrics against NumPy/SciPy implementations and closed forms."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import scipy.stats
import torch
from torch import nn

from fastgan import metrics
from fastgan.metrics import digits

# ----------------------------------------------------------------- mode metrics


def test_mode_metrics_against_an_independent_count(generator):
    centres = metrics.grid_centres(5, 2.0, dtype=torch.float64)
    sigma = 0.05
    kept = torch.randperm(25, generator=generator)[: int(torch.randint(3, 20, (1,), generator=generator))]
    weights = torch.zeros(25, dtype=torch.float64)
    weights[kept] = 1.0
    samples = metrics.sample_mixture(centres, sigma, 3000, weights=weights, generator=generator)
    samples[:100] = torch.rand(100, 2, generator=generator, dtype=torch.float64) * 4 + 6  # junk, off the grid
    got = metrics.mode_metrics(samples, centres, sigma)

    dist = scipy.spatial.distance.cdist(samples.numpy(), centres.numpy())
    nearest, nearest_dist = dist.argmin(1), dist.min(1)
    good = nearest_dist <= 3 * sigma
    counts = np.bincount(nearest[good], minlength=25)
    assert got["mode_counts"].tolist() == counts.tolist()
    assert got["modes_covered"] == len(kept) == int((counts > 0).sum())
    assert got["modes_covered_strict"] == int((counts >= 0.2 * 3000 / 25).sum())
    assert got["high_quality_fraction"] == good.mean()
    want_kl = scipy.stats.entropy(counts / counts.sum(), np.full(25, 1 / 25))
    assert got["reverse_kl"] == pytest.approx(want_kl, rel=1e-12)
    # The 2900 mixture samples are high quality with probability P(chi_2 <= 3) = 1 - e^{-4.5}.
    frac = good[100:].mean()
    p = 1 - math.exp(-4.5)
    assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / 2900)


def test_mode_metrics_options():
    centres = metrics.ring_centres(8, 2.0)
    assert torch.allclose(centres.norm(dim=1), torch.full((8,), 2.0))
    grid = metrics.grid_centres()
    assert sorted(set(grid[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    samples = torch.cat([centres[0].expand(5, 2), centres[1].expand(1, 2)])
    got = metrics.mode_metrics(samples, centres, 0.02, min_count=2)
    assert got["modes_covered"] == 1 and got["high_quality_fraction"] == 1.0
    w = torch.full((8,), 1 / 16)
    w[0] = 9 / 16
    q = torch.tensor([5 / 6, 1 / 6])
    want = float((q * (q / w[:2]).log()).sum())
    assert metrics.mode_metrics(samples, centres, 0.02, weights=w)["reverse_kl"] == pytest.approx(want, rel=1e-6)
    # the strict count: 2,500 samples on the 25-grid, a mode needs 20 high-quality ones
    grid_samples = torch.cat([grid.repeat_interleave(torch.tensor([100] * 23 + [20, 19]), dim=0), torch.full((161, 2), 9.0)])
    strict = metrics.mode_metrics(grid_samples, grid, 0.05)
    assert strict["modes_covered"] == 25 and strict["modes_covered_strict"] == 24
    assert metrics.mode_metrics(grid_samples, grid, 0.05, strict_share=0.5)["modes_covered_strict"] == 23
    with pytest.raises(ValueError, match="strict_share"):
        metrics.mode_metrics(grid_samples, grid, 0.05, strict_share=0.0)
    far = metrics.mode_metrics(samples + 10.0, centres, 0.02)
    assert far["modes_covered"] == 0 and math.isnan(far["reverse_kl"])


def test_mode_metrics_bad_input():
    c = metrics.ring_centres()
    with pytest.raises(ValueError, match="`samples`.*2 dimensions"):
        metrics.mode_metrics(torch.zeros(5), c, 0.1)
    with pytest.raises(ValueError, match="3-dimensional"):
        metrics.mode_metrics(torch.zeros(5, 3), c, 0.1)
    with pytest.raises(ValueError, match="`sigma`"):
        metrics.mode_metrics(torch.zeros(5, 2), c, -1.0)
    with pytest.raises(ValueError, match="`samples` contains NaN"):
        metrics.mode_metrics(torch.full((5, 2), math.nan), c, 0.1)
    with pytest.raises(ValueError, match="`weights`"):
        metrics.mode_metrics(torch.zeros(5, 2), c, 0.1, weights=torch.ones(8))
    with pytest.raises(TypeError, match="`min_count`"):
        metrics.mode_metrics(torch.zeros(5, 2), c, 0.1, min_count=1.5)


# ----------------------------------------------------------------- MMD


def mmd2_numpy(x, y, sigmas, unbiased):
    def k(a, b):
        d2 = ((a - b) ** 2).sum()
        return sum(math.exp(-d2 / (2 * s * s)) for s in sigmas)

    n, m = len(x), len(y)
    if unbiased:
        xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    else:
        xx = sum(k(a, b) for a in x for b in x) / n**2
        yy = sum(k(a, b) for a in y for b in y) / m**2
    xy = sum(k(a, b) for a in x for b in y) / (n * m)
    return xx + yy - 2 * xy


@pytest.mark.parametrize("unbiased", [True, False])
def test_mmd2_matches_numpy_batched(unbiased, generator):
    x = torch.randn(3, 7, 4, generator=generator, dtype=torch.float64)
    y = torch.randn(3, 5, 4, generator=generator, dtype=torch.float64) + 0.5
    sigmas = [0.5, 1.0, 3.0]
    got = metrics.mmd2(x, y, sigmas, unbiased=unbiased)
    assert got.shape == (3,)
    for b in range(3):
        want = mmd2_numpy(x[b].numpy(), y[b].numpy(), sigmas, unbiased)
        assert got[b].item() == pytest.approx(want, rel=1e-10, abs=1e-13)
    assert metrics.mmd2(x[0], y[0], torch.tensor(sigmas), unbiased=unbiased).item() == pytest.approx(got[0].item())


def gaussian_mmd2(mu, s1, s2, sigma, d):
    """Closed-form MMD^2 of N(0, s1^2 I) and N(mu, s2^2 I) under one RBF kernel."""

    def e(var, shift2):
        return (sigma**2 / (sigma**2 + var)) ** (d / 2) * math.exp(-shift2 / (2 * (sigma**2 + var)))

    return e(2 * s1**2, 0.0) + e(2 * s2**2, 0.0) - 2 * e(s1**2 + s2**2, mu @ mu)


def test_unbiased_mmd2_is_unbiased_for_gaussians(generator):
    batches, n, m, d = 400, 20, 30, 2
    mu = np.array([0.7, -0.3])
    s1, s2, sigma = 1.0, 1.3, 1.5
    x = torch.randn(batches, n, d, generator=generator, dtype=torch.float64) * s1
    y = torch.randn(batches, m, d, generator=generator, dtype=torch.float64) * s2 + torch.tensor(mu)
    est = metrics.mmd2(x, y, sigma)
    want = gaussian_mmd2(mu, s1, s2, sigma, d)
    assert abs(est.mean().item() - want) < 5 * est.std().item() / math.sqrt(batches)
    same = metrics.mmd2(x, torch.randn(batches, m, d, generator=generator, dtype=torch.float64) * s1, sigma)
    assert abs(same.mean().item()) < 5 * same.std().item() / math.sqrt(batches)


def test_mmd2_gradient_and_bad_input(generator):
    x = torch.randn(6, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    y = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    (g,) = torch.autograd.grad(metrics.mmd2(x, y, [1.0, 2.0]), x)
    assert bool(torch.isfinite(g).all())
    assert torch.autograd.gradcheck(lambda a: metrics.mmd2(a, y, 1.0), (x,))
    with pytest.raises(ValueError, match="`y` has 1 samples"):
        metrics.mmd2(x, y[:1])
    with pytest.raises(ValueError, match="features"):
        metrics.mmd2(x, y[:, :2])
    with pytest.raises(ValueError, match="`bandwidths`"):
        metrics.mmd2(x, y, [1.0, -2.0])
    with pytest.raises(ValueError, match="`bandwidths` is empty"):
        metrics.mmd2(x, y, [])
    with pytest.raises(TypeError, match="`x`"):
        metrics.mmd2(x.detach().long(), y)


def test_median_bandwidth(generator):
    x = torch.randn(9, 3, generator=generator, dtype=torch.float64)
    y = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    pooled = np.concatenate([x.numpy(), y.numpy()])
    dists = np.sort(scipy.spatial.distance.pdist(pooled))
    # torch.median returns the lower of the two middle values.
    assert metrics.median_bandwidth(x, y) == pytest.approx(dists[(len(dists) - 1) // 2], rel=1e-10)


# ----------------------------------------------------------------- critic estimate


def test_critic_estimate_on_a_linear_critic(generator):
    d = 5
    critic = nn.Linear(d, 1).double()
    real = torch.randn(16, d, generator=generator, dtype=torch.float64) + 1.0
    fake = torch.randn(16, d, generator=generator, dtype=torch.float64)
    got = metrics.critic_estimate(critic, real, fake, generator=generator)
    w = critic.weight.detach()[0]
    assert got["grad_norm_max"] == pytest.approx(w.norm().item(), rel=1e-12)
    assert got["grad_norm_mean"] == pytest.approx(w.norm().item(), rel=1e-12)
    assert got["estimate"] == pytest.approx((w @ (real.mean(0) - fake.mean(0))).item(), rel=1e-10)
    assert got["pair_slope_max"] <= w.norm().item() * (1 + 1e-12)
    assert "w1" not in got
    assert all(p.grad is None for p in critic.parameters())


def test_critic_estimate_below_exact_w1_for_a_1_lipschitz_critic(generator):
    """Kantorovich-Rubinstein: a 1-Lipschitz critic's estimate is at most W_1."""

    def w1(a, b):
        return scipy.stats.wasserstein_distance(a[:, 0].numpy(), b[:, 0].numpy())

    real = torch.randn(32, 1, generator=generator, dtype=torch.float64) + 0.3
    fake = torch.randn(32, 1, generator=generator, dtype=torch.float64)
    tanh = metrics.critic_estimate(torch.tanh, real, fake, w1=w1, generator=generator)
    assert tanh["w1_gap"] >= -1e-12 and tanh["grad_norm_max"] <= 1.0
    # The identity is optimal when every real sample lies above every fake one.
    apart = metrics.critic_estimate(lambda x: x[:, 0], real.abs() + 10, fake, w1=w1)
    assert apart["w1"] == pytest.approx(apart["estimate"], rel=1e-12)
    # A 3-Lipschitz critic overshoots.
    steep = metrics.critic_estimate(lambda x: 3 * x[:, 0], real.abs() + 10, fake, w1=w1)
    assert steep["w1_gap"] < 0 and steep["grad_norm_max"] == pytest.approx(3.0)


def test_critic_estimate_bad_input():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="same shape"):
        metrics.critic_estimate(torch.tanh, x, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="one output per sample"):
        metrics.critic_estimate(lambda a: a, x, x)
    with pytest.raises(TypeError, match="`critic`"):
        metrics.critic_estimate(3, x, x)
    with pytest.raises(TypeError, match="`w1`"):
        metrics.critic_estimate(lambda a: a.sum(1), x, x, w1=1.0)


# ----------------------------------------------------------------- birthday paradox


def test_collision_probability_is_the_birthday_problem():
    def exact(s, n):
        no_repeat = Fraction(1)
        for i in range(s):
            no_repeat *= Fraction(n - i, n)
        return float(1 - no_repeat)

    assert metrics.collision_probability(22, 365) < 0.5 < metrics.collision_probability(23, 365)
    for s, n in ((2, 10), (10, 100), (40, 365), (5, 5), (7, 5)):
        assert metrics.collision_probability(s, n) == pytest.approx(exact(s, n), rel=1e-12)


def test_birthday_support_on_a_uniform_distribution(generator):
    k, n = 60, 2000
    points = torch.randn(k, 3, generator=generator, dtype=torch.float64) * 10
    samples = points[torch.randint(0, k, (n,), generator=generator)]
    samples += 1e-4 * torch.randn(samples.shape, generator=generator, dtype=torch.float64)
    trials = 1000
    got = metrics.birthday_support(samples, threshold=1e-2, trials=trials, generator=generator)
    sizes = got["collision_sizes"]
    assert sizes.shape == (trials,) and bool(torch.isfinite(sizes).all())
    # The per-trial collision sizes follow the birthday distribution of k points.
    for s in (4, 9, 14):
        frac = (sizes <= s).double().mean().item()
        p = metrics.collision_probability(s, k)
        assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / trials) + 0.03
    assert 0.6 * k <= got["support_uniform"] <= 1.6 * k
    assert got["support"] == got["batch_size"] ** 2
    assert (sizes <= got["batch_size"]).double().mean() >= 0.5 > (sizes <= got["batch_size"] - 1).double().mean()


def test_birthday_support_extremes(generator):
    same = torch.ones(50, 4)
    got = metrics.birthday_support(same, trials=10, generator=generator)
    assert got["batch_size"] == 2 and got["support"] == 4
    distinct = torch.arange(40.0)[:, None]
    none = metrics.birthday_support(distinct, threshold=0.5, trials=10, generator=generator)
    assert none["batch_size"] is None and none["support"] == math.inf
    with pytest.raises(ValueError, match="`samples`"):
        metrics.birthday_support(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="`threshold`"):
        metrics.birthday_support(same, threshold=-1.0)
    with pytest.raises(ValueError, match="`trials`"):
        metrics.birthday_support(same, trials=0)


# ----------------------------------------------------------------- Fréchet and IS formulas


def random_spd(generator, d, rank=None):
    a = torch.randn(d, rank or d, generator=generator, dtype=torch.float64)
    return a @ a.T


def test_frechet_distance_matches_scipy_sqrtm(generator):
    d = 6
    mu1, mu2 = (torch.randn(d, generator=generator, dtype=torch.float64) for _ in range(2))
    s1, s2 = random_spd(generator, d), random_spd(generator, d)
    root = scipy.linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    want = float(((mu1 - mu2) ** 2).sum() + np.trace(s1.numpy() + s2.numpy() - 2 * root))
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-8)


def test_frechet_distance_closed_forms(generator):
    a = torch.rand(4, generator=generator, dtype=torch.float64) * 3
    b = torch.rand(4, generator=generator, dtype=torch.float64) * 3
    a[-1] = b[-1] = 0.0  # singular covariances
    mu1 = torch.randn(4, generator=generator, dtype=torch.float64)
    mu2 = torch.randn(4, generator=generator, dtype=torch.float64)
    want = ((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()
    got = metrics.frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b))
    assert got == pytest.approx(want.item(), rel=1e-10, abs=1e-12)
    # Rotating both Gaussians together changes nothing. The rotation leaves the
    # zero eigenvalue at rounding size (about 1e-16 of the largest), and a
    # matrix square root turns that into about 1e-8: the tolerance allows for it.
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=generator, dtype=torch.float64))
    rotated = metrics.frechet_distance(q @ mu1, q @ torch.diag(a) @ q.T, q @ mu2, q @ torch.diag(b) @ q.T)
    assert rotated == pytest.approx(want.item(), rel=1e-6, abs=1e-7)
    s = random_spd(generator, 4, rank=2)
    assert metrics.frechet_distance(mu1, s, mu1, s) == pytest.approx(0.0, abs=1e-10)


def test_frechet_from_features_and_bad_input(generator):
    f = torch.randn(50, 3, generator=generator, dtype=torch.float64)
    g = torch.randn(40, 3, generator=generator, dtype=torch.float64) * 2 + 1
    want = metrics.frechet_distance(
        torch.tensor(f.numpy().mean(0)), torch.tensor(np.cov(f.numpy(), rowvar=False)),
        torch.tensor(g.numpy().mean(0)), torch.tensor(np.cov(g.numpy(), rowvar=False)),
    )
    assert metrics.frechet_distance_from_features(f, g) == pytest.approx(want, rel=1e-12)
    eye = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="`sigma2` is not positive semi-definite"):
        metrics.frechet_distance(f[0], eye, f[1], -eye)
    with pytest.raises(ValueError, match="`sigma1` is not symmetric"):
        metrics.frechet_distance(f[0], torch.triu(torch.ones(3, 3, dtype=torch.float64)), f[1], eye)
    with pytest.raises(ValueError, match="`mu2`"):
        metrics.frechet_distance(f[0], eye, f[0, :2], eye)
    with pytest.raises(ValueError, match="features"):
        metrics.frechet_distance_from_features(f, g[:, :2])


@pytest.mark.parametrize("splits", [1, 3])
def test_inception_score_matches_numpy(splits, generator):
    logits = torch.randn(30, 10, generator=generator, dtype=torch.float64) * 3
    p = logits.softmax(-1)
    scores = []
    for part in np.array_split(p.numpy(), splits):
        marginal = part.mean(0, keepdims=True)
        scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(marginal)), 1))))
    mean, std = metrics.inception_score(p, splits=splits)
    assert mean == pytest.approx(np.mean(scores), rel=1e-12)
    assert std == pytest.approx(np.std(scores), rel=1e-9, abs=1e-15)
    one_hot = torch.eye(10, dtype=torch.float64).repeat(3, 1)
    assert metrics.inception_score(one_hot)[0] == pytest.approx(10.0, rel=1e-12)
    with pytest.raises(ValueError, match="`probs` rows"):
        metrics.inception_score(p * 2)
    with pytest.raises(ValueError, match="`splits`"):
        metrics.inception_score(p[:2], splits=3)


def test_metrics_run_on_every_device(device, generator):
    centres = metrics.grid_centres(3, 2.0, dtype=torch.float64)
    samples = metrics.sample_mixture(centres, 0.05, 200, generator=generator)
    cpu = metrics.mode_metrics(samples, centres, 0.05)
    dev = metrics.mode_metrics(samples.to(device), centres.to(device), 0.05)
    assert dev["mode_counts"].tolist() == cpu["mode_counts"].tolist()
    x = torch.randn(2, 8, 3, generator=generator, dtype=torch.float64)
    y = torch.randn(2, 6, 3, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(metrics.mmd2(x.to(device), y.to(device), [1.0, 2.0]).cpu(), metrics.mmd2(x, y, [1.0, 2.0]))
    critic = nn.Linear(3, 1).double()
    got = metrics.critic_estimate(critic.to(device), x[0].to(device), x[1, :8].to(device), generator=generator)
    assert got["grad_norm_max"] == pytest.approx(critic.weight.norm().item(), rel=1e-10)
    same = torch.zeros(30, 2, device=device)
    assert metrics.birthday_support(same, trials=5, generator=generator)["batch_size"] == 2
    mu, cov = torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64)
    assert metrics.frechet_distance(mu.to(device), cov.to(device), (mu + 1).to(device), cov.to(device)) == pytest.approx(3.0)


# ----------------------------------------------------------------- digits classifier


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    pytest.importorskip("sklearn")
    return tmp_path_factory.mktemp("fastgan-cache")


@pytest.fixture(scope="session")
def classifier(digits_dir):
    return metrics.digits_classifier(directory=digits_dir)


def test_digits_classifier_is_accurate_cached_and_deterministic(classifier, digits_dir):
    assert classifier.test_accuracy > 0.93
    x, y = digits.load_digits("test")
    acc = (classifier.probabilities(x).argmax(-1) == y).double().mean().item()
    assert acc == pytest.approx(classifier.test_accuracy)
    path = digits._file(digits_dir).resolve()
    assert path.exists()
    assert metrics.digits_classifier(directory=digits_dir) is classifier  # memory
    digits._loaded.pop(path)
    from_disk = metrics.digits_classifier(directory=digits_dir)
    retrained = metrics.digits_classifier(directory=digits_dir, retrain=True)
    for a, b, c in zip(classifier.parameters(), from_disk.parameters(), retrained.parameters()):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert not any(p.requires_grad for p in from_disk.parameters())
    digits._loaded[path] = classifier


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTGAN_CACHE", str(tmp_path / "a"))
    assert digits.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("FASTGAN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert digits.cache_dir() == tmp_path / "b" / "fastgan"


def test_unreadable_cache_is_replaced(digits_dir, tmp_path, classifier):
    path = digits._file(tmp_path)
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        model = metrics.digits_classifier(directory=tmp_path)
    for a, b in zip(model.parameters(), classifier.parameters()):
        assert torch.equal(a, b)


def test_digits_scores(classifier):
    test_x, test_y = digits.load_digits("test")
    train_x, _ = digits.load_digits("train")
    real_is, _ = metrics.digits_inception_score(test_x, classifier=classifier)
    assert 8.0 < real_is <= 10.0
    probs = classifier.probabilities(test_x).double().numpy()
    marginal = probs.mean(0)
    want = math.exp(np.mean(np.sum(probs * (np.log(probs) - np.log(marginal)), 1)))
    assert real_is == pytest.approx(want, rel=1e-10)
    one_class, _ = metrics.digits_inception_score(test_x[test_y == 3], classifier=classifier)
    assert one_class < 1.5
    assert metrics.digits_inception_score(test_x[:1].repeat(20, 1, 1), classifier=classifier)[0] == pytest.approx(1.0)

    gen = torch.Generator().manual_seed(0)
    noise = torch.rand(300, 8, 8, generator=gen)
    fd_real = metrics.digits_frechet_distance(test_x, train_x, classifier=classifier)
    fd_noise = metrics.digits_frechet_distance(test_x, noise, classifier=classifier)
    assert 0 <= fd_real < 0.2 * fd_noise
    assert metrics.digits_frechet_distance(test_x, test_x, classifier=classifier) == pytest.approx(0.0, abs=1e-6)
    # Layouts (N, 1, 8, 8) and (N, 64) are the same images.
    f = classifier.features(test_x)
    torch.testing.assert_close(classifier.features(test_x[:, None]), f)
    torch.testing.assert_close(classifier.features(test_x.reshape(-1, 64)), f)


def test_digits_bad_input(classifier):
    with pytest.raises(ValueError, match="`images`.*\\[0, 1\\]"):
        classifier.features(torch.full((3, 8, 8), 16.0))
    with pytest.raises(ValueError, match="`images` must have shape"):
        classifier.features(torch.zeros(3, 28, 28))
    with pytest.raises(ValueError, match="`images_b`"):
        metrics.digits_frechet_distance(torch.zeros(5, 64), torch.zeros(5, 63), classifier=classifier)
    with pytest.raises(ValueError, match="`split`"):
        digits.load_digits("validation")
