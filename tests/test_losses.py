"""fastgan.losses against hand-written formulas, the f-GAN theory, SciPy and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.spatial.distance
import scipy.stats
import torch

from fastgan import losses

DIVERGENCES = ["kl", "reverse_kl", "pearson", "hellinger", "js", "gan"]
# Losses whose values and gradients stay finite for any finite critic output.
BOUNDED_GROWTH = [
    ("minimax", {}),
    ("ns", {}),
    ("wgan", {}),
    ("hinge", {}),
    ("lsgan", {}),
    ("lsgan", {"a": -1.0, "b": 1.0, "c": 0.0}),
    ("relativistic", {"variant": "sgan"}),
    ("relativistic", {"variant": "lsgan"}),
    ("relativistic", {"variant": "hinge"}),
    ("fgan_gan", {}),
    ("fgan_gan", {"saturating": True}),
    ("fgan_js", {}),
    ("fgan_js", {"saturating": True}),
    ("fgan_pearson", {}),
    ("fgan_pearson", {"saturating": True}),
]
EXPONENTIAL = [(f"fgan_{d}", {"saturating": s}) for d in ("kl", "reverse_kl", "hellinger") for s in (False, True)]
ALL_LOSSES = BOUNDED_GROWTH + EXPONENTIAL


def outputs(generator, n, scale=2.0):
    return torch.randn(n, generator=generator, dtype=torch.float64) * scale


# ----------------------------------------------------------------- hand-computed values

def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def mean(xs):
    return sum(xs) / len(xs)


def hand_losses(name, kw, real, fake):
    """(critic, generator) from the textbook definitions, in plain Python floats."""
    mr, mf = mean(real), mean(fake)
    if name in ("minimax", "ns"):
        critic = -(mean([math.log(sig(r)) for r in real]) + mean([math.log(1 - sig(f)) for f in fake]))
        if name == "minimax":
            return critic, mean([math.log(1 - sig(f)) for f in fake])
        return critic, -mean([math.log(sig(f)) for f in fake])
    if name == "wgan":
        return mf - mr, -mf
    if name == "hinge":
        return mean([max(0.0, 1 - r) for r in real]) + mean([max(0.0, 1 + f) for f in fake]), -mf
    if name == "lsgan":
        a, b, c = kw.get("a", 0.0), kw.get("b", 1.0), kw.get("c", 1.0)
        critic = 0.5 * mean([(r - b) ** 2 for r in real]) + 0.5 * mean([(f - a) ** 2 for f in fake])
        return critic, 0.5 * mean([(f - c) ** 2 for f in fake])
    if name == "relativistic":
        cr = [r - mf for r in real]
        cf = [f - mr for f in fake]
        v = kw["variant"]
        if v == "sgan":
            critic = -mean([math.log(sig(x)) for x in cr]) - mean([math.log(1 - sig(x)) for x in cf])
            gen = -mean([math.log(sig(x)) for x in cf]) - mean([math.log(1 - sig(x)) for x in cr])
        elif v == "lsgan":
            critic = mean([(x - 1) ** 2 for x in cr]) + mean([(x + 1) ** 2 for x in cf])
            gen = mean([(x - 1) ** 2 for x in cf]) + mean([(x + 1) ** 2 for x in cr])
        else:
            critic = mean([max(0, 1 - x) for x in cr]) + mean([max(0, 1 + x) for x in cf])
            gen = mean([max(0, 1 - x) for x in cf]) + mean([max(0, 1 + x) for x in cr])
        return critic, gen
    # f-GAN, from the printed table: g_f and f* as separate functions.
    div = name.removeprefix("fgan_")
    g, fstar = {
        "kl": (lambda v: v, lambda t: math.exp(t - 1)),
        "reverse_kl": (lambda v: -math.exp(-v), lambda t: -1 - math.log(-t)),
        "pearson": (lambda v: v, lambda t: t * t / 4 + t),
        "hellinger": (lambda v: 1 - math.exp(-v), lambda t: t / (1 - t)),
        "js": (lambda v: math.log(2) - math.log(1 + math.exp(-v)), lambda t: -math.log(2 - math.exp(t))),
        "gan": (lambda v: -math.log(1 + math.exp(-v)), lambda t: -math.log(1 - math.exp(t))),
    }[div]
    bound = mean([g(r) for r in real]) - mean([fstar(g(f)) for f in fake])
    if kw.get("saturating", False):
        gen = -mean([fstar(g(f)) for f in fake])
    else:
        gen = -mean([g(f) for f in fake])
    return -bound, gen


@pytest.mark.parametrize("name,kw", ALL_LOSSES, ids=lambda x: str(x))
def test_matches_hand_computed(name, kw, generator):
    real = outputs(generator, 5, scale=1.5)
    fake = outputs(generator, 3, scale=1.5)
    loss = losses.get(name, **kw)
    want_c, want_g = hand_losses(name, kw, real.tolist(), fake.tolist())
    got_c = loss.critic(real, fake)
    got_g = loss.generator(fake, real)
    assert got_c.shape == () and got_g.shape == ()
    assert got_c.item() == pytest.approx(want_c, rel=1e-12, abs=1e-12)
    assert got_g.item() == pytest.approx(want_g, rel=1e-12, abs=1e-12)


def test_named_values_on_a_tiny_input():
    real = torch.tensor([0.0, 2.0], dtype=torch.float64)
    fake = torch.tensor([-1.0], dtype=torch.float64)
    # WGAN: E fake - E real = -1 - 1; hinge: (relu(1) + relu(-1))/2 + relu(0) = 0.5.
    assert losses.get("wgan").critic(real, fake).item() == -2.0
    assert losses.get("hinge").critic(real, fake).item() == 0.5
    # LSGAN 0-1: 0.5*((0-1)^2 + (2-1)^2)/2 + 0.5*(-1-0)^2 = 1.0; generator 0.5*(-1-1)^2 = 2.
    ls = losses.get("lsgan")
    assert ls.critic(real, fake).item() == 1.0 and ls.generator(fake).item() == 2.0
    # Minimax at logits 0: D = 1/2 everywhere contributes log 2 per term.
    zero = torch.zeros(3, dtype=torch.float64)
    assert losses.get("minimax").critic(zero, zero).item() == pytest.approx(2 * math.log(2), rel=1e-15)


# ----------------------------------------------------------------- the f-GAN table


@pytest.mark.parametrize("div", DIVERGENCES)
def test_table_is_self_consistent(div, generator):
    d = losses.f_divergence(div)
    v = outputs(generator, 50, scale=2.0)
    t = d.activation(v)
    assert bool(d.in_domain(t).all())
    torch.testing.assert_close(d.activation_inverse(t), v, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(d.conjugate_of_activation(v), d.conjugate(t), rtol=1e-10, atol=1e-12)
    # f(1) = D_f(P||P): 0, except for the GAN row (2 JS - log 4 = -log 4 at P = Q).
    one = torch.ones((), dtype=torch.float64)
    assert d.f(one).item() == pytest.approx(-math.log(4) if div == "gan" else 0.0, abs=1e-15)
    p = torch.rand(5, generator=generator, dtype=torch.float64) + 0.1
    p /= p.sum()
    assert d.divergence(p, p).item() == pytest.approx(d.f(one).item(), abs=1e-14)
    # f'(1) is the threshold.
    h = 1e-6
    slope = (d.f(one + h) - d.f(one - h)).item() / (2 * h)
    assert slope == pytest.approx(d.threshold, abs=1e-6)


@pytest.mark.parametrize("div", DIVERGENCES)
def test_conjugate_is_the_fenchel_conjugate(div, generator):
    """f*(t) = sup_u (u t - f(u)), the supremum found numerically by SciPy."""
    d = losses.f_divergence(div)
    for v in outputs(generator, 6, scale=1.0).tolist():
        t = d.activation(torch.tensor(v, dtype=torch.float64)).item()

        def neg(log_u, t=t):
            u = math.exp(log_u)
            return -(u * t - d.f(torch.tensor(u, dtype=torch.float64)).item())

        res = scipy.optimize.minimize_scalar(neg, bounds=(-30, 30), method="bounded", options={"xatol": 1e-12})
        sup = -res.fun
        table = d.conjugate(torch.tensor(t, dtype=torch.float64)).item()
        if div == "pearson" and t < -2:
            # The table's t^2/4 + t conjugates (u - 1)^2 over all real u; over u >= 0
            # the supremum is -1 (at u = 0). The table value is larger, so the bound
            # E_P[T] - E_Q[f*(T)] stays a valid lower bound.
            assert sup == pytest.approx(-1.0, abs=1e-9) and table >= sup
        else:
            assert sup == pytest.approx(table, rel=1e-7, abs=1e-9)


def random_histogram(generator, n, counts_max=None):
    if counts_max is None:
        w = torch.rand(n, generator=generator, dtype=torch.float64) + 0.05
        return w / w.sum()
    return torch.randint(1, counts_max + 1, (n,), generator=generator)


def reference_divergence(div, p, q):
    p, q = p.numpy(), q.numpy()
    js2 = scipy.spatial.distance.jensenshannon(p, q) ** 2  # standard (halved) JS
    return {
        "kl": scipy.stats.entropy(p, q),
        "reverse_kl": scipy.stats.entropy(q, p),
        "pearson": float(np.sum((p - q) ** 2 / q)),
        "hellinger": float(np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)),
        "js": 2 * js2,
        "gan": 2 * js2 - math.log(4),
    }[div]


@pytest.mark.parametrize("div", DIVERGENCES)
def test_divergence_matches_scipy_and_the_generator_function(div, generator):
    d = losses.f_divergence(div)
    p, q = random_histogram(generator, 7), random_histogram(generator, 7)
    want = reference_divergence(div, p, q)
    assert d.divergence(p, q).item() == pytest.approx(want, rel=1e-10, abs=1e-13)
    assert (q * d.f(p / q)).sum().item() == pytest.approx(want, rel=1e-10, abs=1e-13)


@pytest.mark.parametrize("div", DIVERGENCES)
def test_variational_bound_is_below_the_divergence_and_tight_at_the_optimal_critic(div, generator):
    d = losses.f_divergence(div)
    loss = losses.get("fgan", divergence=div)
    n = 6
    a = random_histogram(generator, n, counts_max=9)  # real counts per support point
    b = random_histogram(generator, n, counts_max=9)  # fake counts
    p, q = a.double() / a.sum(), b.double() / b.sum()
    where = torch.arange(n)
    # Samples: support point i repeated a_i (real) or b_i (fake) times, so batch means
    # are exact expectations under P and Q.
    real_idx, fake_idx = where.repeat_interleave(a), where.repeat_interleave(b)
    truth = reference_divergence(div, p, q)

    v_star = d.activation_inverse(d.optimal_critic(p, q))
    tight = loss.estimate(v_star[real_idx], v_star[fake_idx]).item()
    assert tight == pytest.approx(truth, rel=1e-9, abs=1e-12)

    for _ in range(20):
        v = v_star + torch.randn(n, generator=generator, dtype=torch.float64)
        bound = loss.estimate(v[real_idx], v[fake_idx]).item()
        assert bound <= truth + 1e-12


def test_gan_divergence_losses_are_minimax_and_non_saturating(generator):
    real, fake = outputs(generator, 8), outputs(generator, 5)
    fgan = losses.get("fgan_gan")
    torch.testing.assert_close(fgan.critic(real, fake), losses.get("minimax").critic(real, fake))
    torch.testing.assert_close(fgan.generator(fake), losses.get("ns").generator(fake))
    torch.testing.assert_close(
        losses.get("fgan_gan", saturating=True).generator(fake), losses.get("minimax").generator(fake)
    )


# ----------------------------------------------------------------- large outputs


def grads(loss, real, fake):
    real = real.clone().requires_grad_()
    fake = fake.clone().requires_grad_()
    c = loss.critic(real, fake)
    gc = torch.autograd.grad(c, (real, fake))
    fake2 = fake.detach().clone().requires_grad_()
    real2 = real.detach().clone().requires_grad_()
    g = loss.generator(fake2, real2)
    gg = torch.autograd.grad(g, (fake2, real2), allow_unused=True)
    return [c, g, *gc, *(x for x in gg if x is not None)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name,kw", BOUNDED_GROWTH, ids=lambda x: str(x))
def test_finite_for_huge_outputs(name, kw, dtype):
    loss = losses.get(name, **kw)
    big = torch.tensor([1e4, -1e4, 3e3, -7e3], dtype=dtype)
    for real, fake in ((big, -big), (-big, big), (big, big.flip(0))):
        for t in grads(loss, real, fake):
            assert bool(torch.isfinite(t).all()), (name, kw, t)


@pytest.mark.parametrize("name,kw", EXPONENTIAL, ids=lambda x: str(x))
def test_exponential_losses_critic_finite_when_right_and_never_nan(name, kw):
    """exp-based f-GAN losses overflow by construction, but never to NaN."""
    loss = losses.get(name, **kw)
    big = torch.full((3,), 1e4)
    real = big.clone().requires_grad_()
    fake = (-big).requires_grad_()
    c = loss.critic(real, fake)  # real scored high, fake low: the critic term is finite
    for t in (c, *torch.autograd.grad(c, (real, fake))):
        assert bool(torch.isfinite(t).all()), (name, kw, t)
    for r, f in ((big, -big), (-big, big), (big, big)):
        for t in grads(loss, r, f):
            assert not bool(torch.isnan(t).any()), (name, kw, t)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_keeps_dtype(dtype, generator):
    real, fake = outputs(generator, 16).to(dtype), outputs(generator, 16).to(dtype)
    for name, kw in ALL_LOSSES:
        loss = losses.get(name, **kw)
        c = loss.critic(real, fake)
        assert c.dtype == dtype
        want = loss.critic(real.double(), fake.double())
        assert abs(c.double() - want).item() <= 0.05 * max(1.0, abs(want.item()))


# ----------------------------------------------------------------- registry and bad input


def test_registry():
    assert isinstance(losses.get("wgan"), losses.Wasserstein)
    assert isinstance(losses.get("NS"), losses.NonSaturating)
    assert isinstance(losses.get("fgan-reverse-kl"), losses.FGAN)
    assert losses.get("fgan_js").divergence is losses.F_DIVERGENCES["js"]
    ls = losses.get("lsgan", a=-1, b=1, c=0)
    assert (ls.a, ls.b, ls.c) == (-1.0, 1.0, 0.0)
    inst = losses.Hinge()
    assert losses.get(inst) is inst
    names = losses.available()
    for required in ("minimax", "ns", "wgan", "hinge", "lsgan", "relativistic", "fgan"):
        assert required in names
    assert {f"fgan_{d}" for d in DIVERGENCES} <= set(names)
    assert [n for n in names if losses.get(n).generator_needs_real] == ["relativistic"]
    with pytest.raises(ValueError, match="wgan-gp"):
        losses.get("wgan-gp")
    with pytest.raises(TypeError, match="options"):
        losses.get(inst, a=1)
    with pytest.raises(ValueError, match="already registered"):
        losses.register("wgan", losses.Wasserstein)


def test_register_custom_loss():
    class Scaled(losses.Wasserstein):
        name = "scaled_wgan_for_test"

    losses.register(Scaled.name, Scaled)
    try:
        assert isinstance(losses.get("scaled-wgan-for-test"), Scaled)
    finally:
        losses._REGISTRY.pop(Scaled.name)


def test_bad_input_names_the_argument():
    loss = losses.get("ns")
    ok = torch.zeros(3)
    with pytest.raises(TypeError, match="real_out"):
        loss.critic(torch.zeros(3, dtype=torch.int64), ok)
    with pytest.raises(TypeError, match="fake_out"):
        loss.critic(ok, [0.0, 1.0])
    with pytest.raises(ValueError, match="fake_out"):
        loss.critic(ok, torch.zeros(0))
    with pytest.raises(ValueError, match="fake_out"):
        loss.generator(torch.zeros(2, 0))
    with pytest.raises(ValueError, match="real_out"):
        losses.get("relativistic").generator(ok)
    with pytest.raises(ValueError, match="variant"):
        losses.get("relativistic", variant="wgan")
    with pytest.raises(ValueError, match="`a` and `b`"):
        losses.get("lsgan", a=1.0, b=1.0)
    with pytest.raises(ValueError, match="`c`"):
        losses.get("lsgan", c=math.inf)
    with pytest.raises(ValueError, match="divergence"):
        losses.get("fgan", divergence="renyi")
    with pytest.raises(TypeError, match="saturating"):
        losses.get("fgan", saturating="yes")


def test_generator_ignores_real_where_not_needed(generator):
    fake = outputs(generator, 4)
    for name, kw in ALL_LOSSES:
        loss = losses.get(name, **kw)
        if not loss.generator_needs_real:
            torch.testing.assert_close(loss.generator(fake), loss.generator(fake, outputs(generator, 9)))


def test_same_values_on_every_device(device, generator):
    real, fake = outputs(generator, 9), outputs(generator, 4)
    for name, kw in ALL_LOSSES:
        loss = losses.get(name, **kw)
        for got, want in (
            (loss.critic(real.to(device), fake.to(device)), loss.critic(real, fake)),
            (loss.generator(fake.to(device), real.to(device)), loss.generator(fake, real)),
        ):
            assert got.device.type == device.type
            torch.testing.assert_close(got.cpu(), want)
