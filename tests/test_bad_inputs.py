"""Regressions for inputs that once gave a wrong answer without a word, or an
error that did not say what was wrong: each case now gives the right result
(checked against an independent oracle) or a ValueError/TypeError naming the
argument."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import fastgan
from fastgan import ot as fot


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, ()).item()))


# ------------------------------------------------------------------ Sinkhorn with large costs


def test_sinkhorn_all_huge_row_matches_pot():
    pot = pytest.importorskip("ot")
    a = torch.full((4,), 0.25, dtype=torch.float64)
    b = torch.full((2,), 0.5, dtype=torch.float64)
    M = torch.tensor([[1e20, 1e20], [0, 1], [1, 0], [0.5, 0.5]], dtype=torch.float64)
    for reg in (1.0, 0.01):
        cost, log = fot.sinkhorn2(a, b, M, reg, log=True)
        expected = pot.sinkhorn2(a.numpy(), b.numpy(), M.numpy(), reg, method="sinkhorn_log")
        assert float(cost) == pytest.approx(float(expected), rel=1e-8)
        assert bool(log["converged"])
        plan = fot.sinkhorn(a, b, M, reg)
        torch.testing.assert_close(plan.sum(1), a, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("exponent", [50, 60, 66])
def test_sinkhorn_row_and_column_shifts_leave_the_plan(backend, exponent, generator):
    """Adding constants (2^50 ~ 1e15 to 2^66 ~ 7e19) to rows and columns of M
    leaves the entropic plan unchanged (closed form); the cost grows by the
    shifts times the marginals. M is on the grid that the shifted values
    represent exactly."""
    pot = pytest.importorskip("ot")
    n, m = 7, 5
    ulp = 2.0 ** (exponent - 52)
    shift, reg = 2.0**exponent, 2 * ulp
    M = torch.randint(0, 8, (n, m), generator=generator).double() * ulp
    a = torch.rand(n, dtype=torch.float64, generator=generator) + 0.1
    a /= a.sum()
    b = torch.rand(m, dtype=torch.float64, generator=generator) + 0.1
    b /= b.sum()
    rows = torch.zeros(n, dtype=torch.float64)
    rows[torch.randint(0, n, (2,), generator=generator)] = shift
    cols = torch.zeros(m, dtype=torch.float64)
    cols[int(torch.randint(0, m, (), generator=generator))] = shift / 2
    shifted = M + rows[:, None] + cols[None, :]
    expected_plan = torch.from_numpy(pot.sinkhorn(a.numpy(), b.numpy(), M.numpy(), reg, method="sinkhorn_log", stopThr=1e-13))
    plan, log = fot.sinkhorn(a, b, shifted, reg, log=True, backend=backend, stopThr=1e-13)
    assert bool(log["converged"])
    torch.testing.assert_close(plan, expected_plan, rtol=1e-9, atol=1e-14)
    cost = fot.sinkhorn2(a, b, shifted, reg, backend=backend, stopThr=1e-13)
    expected = (expected_plan * M).sum() + rows @ a + cols @ b
    # The plan's row sums are a to about stopThr: the shifts weigh that error.
    assert float(cost) == pytest.approx(float(expected), rel=1e-12)


def test_sinkhorn_that_cannot_resolve_its_potentials_says_so(generator):
    M = torch.rand(6, 5, dtype=torch.float64, generator=generator) * 1e16
    with pytest.warns(UserWarning, match="did not converge"):
        _cost, log = fot.sinkhorn2(None, None, M, 1.0, log=True)
    assert not bool(log["converged"])


# ------------------------------------------------------------------ bias_act, fuse_activations_, devices


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("act", ["relu", "lrelu", "elu", "softplus", "tanh", "swish"])
def test_bias_act_passes_nan_as_torch_does(backend, act, generator):
    """NaN stays NaN in the value, and the gradient there is torch's own."""
    torch_act = {
        "relu": torch.relu, "lrelu": lambda v: torch.nn.functional.leaky_relu(v, 0.2),
        "elu": torch.nn.functional.elu, "softplus": torch.nn.functional.softplus,
        "tanh": torch.tanh, "swish": torch.nn.functional.silu,
    }[act]
    x = torch.randn(4, 6, dtype=torch.float64, generator=generator)
    x[1, 2] = float("nan")
    x[3, 0] = float("nan")
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    out = fastgan.nn.functional.bias_act(x1, None, act, gain=1.0, backend=backend)
    expected = torch_act(x2)
    torch.testing.assert_close(out, expected, equal_nan=True, rtol=1e-12, atol=1e-12)
    weights = torch.randn(4, 6, dtype=torch.float64, generator=generator)
    (out * weights).nansum().backward()
    (expected * weights).nansum().backward()
    if act in ("relu", "lrelu"):
        torch.testing.assert_close(x1.grad, x2.grad, equal_nan=True, rtol=1e-12, atol=1e-12)
    else:
        # torch's own elu gradient at NaN is 0 or NaN depending on the lane
        # of its vectorised loop; fastgan's is NaN wherever the input is.
        nan = torch.isnan(x)
        torch.testing.assert_close(x1.grad[~nan], x2.grad[~nan], rtol=1e-12, atol=1e-12)
        if backend == "auto":  # the reference is torch's own activation
            assert bool(torch.isnan(x1.grad[nan]).all())


def test_fuse_activations_swaps_only_what_it_reproduces(generator):
    from torch import nn

    kept = [
        nn.Softplus(beta=1, threshold=5), nn.Softplus(beta=2), nn.Softplus(threshold=30),
    ]
    hooked = nn.ReLU()
    hooked.register_forward_hook(lambda m, i, o: o * 2)
    kept.append(hooked)
    extra = nn.Tanh()
    extra.scale = 3.0  # an attribute the fused op knows nothing of
    kept.append(extra)

    class MyReLU(nn.ReLU):
        def forward(self, x):
            return super().forward(x) - 1

    kept.append(MyReLU())
    swapped = [nn.ReLU(inplace=True), nn.LeakyReLU(0.1), nn.ELU(0.5), nn.Softplus(), nn.SiLU()]
    x = torch.randn(5, 8, dtype=torch.float64, generator=generator) * 8
    for module in kept + swapped:
        expected = module(x.clone())
        model = fastgan.nn.fuse_activations_(nn.Sequential(module))
        assert (type(model[0]) is type(module)) == (module in kept or module is hooked)
        torch.testing.assert_close(model(x.clone()), expected, rtol=1e-12, atol=1e-8)


def test_a_meta_tensor_among_real_ones_is_an_error(generator):
    x = torch.randn(3, 4, generator=generator)
    with pytest.raises(ValueError, match="`bias` on meta"):
        fastgan.nn.functional.bias_act(x, torch.zeros(4, device="meta"))
    with pytest.raises(ValueError, match="`x` on meta"):
        fastgan.nn.functional.bias_act(x.to("meta"), torch.zeros(4))
    p = torch.randn(6, generator=generator) * 3
    before = p.clone()
    with pytest.raises(ValueError, match="`parameters` mixes meta"):
        fastgan.clip_parameters_([p, torch.zeros(3, device="meta")], 1.0)
    assert torch.equal(p, before)  # nothing clipped half-way
    # all on meta is a shape-only call, as before
    assert fastgan.clip_parameters_([torch.zeros(3, device="meta")], 1.0).device.type == "meta"


@pytest.mark.parametrize("bad", [np.zeros((2, 3)), [[0.0, 1.0]], None, "x"])
def test_bias_act_names_a_non_tensor(bad):
    with pytest.raises(TypeError, match="`x` must be a Tensor"):
        fastgan.nn.functional.bias_act(bad)
    with pytest.raises(TypeError, match="`bias` must be a Tensor or None"):
        fastgan.nn.functional.bias_act(torch.zeros(2, 3), bad if bad is not None else "b")


# ------------------------------------------------------------------ mlp_critic_penalty


def _mlp_critic(generator):
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (), generator=generator)))
    return torch.nn.Sequential(
        torch.nn.Linear(3, 16), torch.nn.LeakyReLU(0.2), torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)
    ).double()


def _autograd_penalty(critic, x_hat, center):
    x = x_hat.clone().requires_grad_()
    (g,) = torch.autograd.grad(critic(x).sum(), x)
    return ((g.norm(dim=1) - center) ** 2).mean()


def test_mlp_critic_penalty_refuses_a_non_finite_center(generator):
    critic = _mlp_critic(generator)
    x = torch.randn(5, 3, dtype=torch.float64, generator=generator)
    for center in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="`center` must be finite"):
            fastgan.mlp_critic_penalty(critic, x, x, x, center=center)
    center = float(torch.rand((), generator=generator)) * 2
    penalty = fastgan.mlp_critic_penalty(critic, x, x, x, center=center)[2]
    torch.testing.assert_close(penalty, _autograd_penalty(critic, x, center), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_mlp_critic_penalty_at_a_non_finite_point_is_nan(bad, generator):
    critic = _mlp_critic(generator)
    x = torch.randn(5, 3, dtype=torch.float64, generator=generator)
    x_hat = x.clone()
    x_hat[int(torch.randint(0, 5, (), generator=generator)), 1] = bad
    d_real, _d_fake, penalty = fastgan.mlp_critic_penalty(critic, x, x, x_hat)
    torch.testing.assert_close(d_real, critic(x), rtol=1e-12, atol=1e-12)
    assert torch.isnan(penalty)


@pytest.mark.parametrize("bad", [np.zeros((2, 3)), [[0.0, 1.0, 2.0]], "x"])
def test_mlp_critic_penalty_names_a_non_tensor(bad, generator):
    critic = _mlp_critic(generator)
    x = torch.randn(2, 3, dtype=torch.float64, generator=generator)
    for name, args in (("real", (bad, x, x)), ("fake", (x, bad, x)), ("x_hat", (x, x, bad))):
        with pytest.raises(TypeError, match=f"`{name}` must be a Tensor"):
            fastgan.mlp_critic_penalty(critic, *args)
    with pytest.raises(ValueError, match="`x_hat` on meta"):
        fastgan.mlp_critic_penalty(critic, x, x, x.to("meta"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_every_penalty_entry_point_is_nan_at_a_non_finite_point(bad, generator):
    """Autograd's gradient of a piecewise-linear critic at a NaN point is finite (a NaN
    fails every ``x > 0`` test): every entry point makes the penalty NaN instead, and
    on the same points made finite each one matches plain autograd."""
    critic = _mlp_critic(generator)
    real, fake = (torch.randn(5, 3, dtype=torch.float64, generator=generator) for _ in range(2))
    row = int(torch.randint(0, 5, (), generator=generator))
    bad_real = real.clone()
    bad_real[row, 1] = bad
    ones = torch.ones(5, dtype=torch.float64)  # x_hat = real
    for points, is_bad in ((bad_real, True), (real, False)):
        expected = _autograd_penalty(critic, points, 0.0)
        got = {
            "mlp_critic_penalty": fastgan.mlp_critic_penalty(critic, real, fake, points, center=0.0)[2],
            "gradient_penalty": fastgan.gradient_penalty(critic, points, mode="real", weight=1.0),
            "gradient_penalty (reference)": fastgan.gradient_penalty(critic, points, mode="real", weight=1.0, backend="reference"),
            "gradient_penalty (fake)": fastgan.gradient_penalty(critic, real, points, mode="fake", weight=1.0),
        }
        for arrangement in ("separate", "pair", "joint", "fused"):
            # eps = 1: x_hat = real, the (bad) points, while real and fake are finite.
            with torch.random.fork_rng():
                parts = _penalty_with_eps(critic, points, fake, ones, arrangement)
            got[f"wgan_gp_critic_loss ({arrangement})"] = parts.penalty
        for name, value in got.items():
            if is_bad:
                assert torch.isnan(value), name
            else:
                torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12, msg=name)
        if is_bad:
            assert torch.isfinite(expected)  # what autograd alone gives


def _penalty_with_eps(critic, real, fake, eps, arrangement):
    """wgan_gp_critic_loss's parts with the interpolation weights fixed to ``eps``."""
    from unittest import mock

    with mock.patch("fastgan.penalty._uniform", lambda shape, like, generator: eps.to(like.dtype)):
        return fastgan.wgan_gp_critic_loss(critic, real, fake, weight=1.0, center=0.0, arrangement=arrangement, return_parts=True)


# ------------------------------------------------------------------ numeric arguments are named


def _critic3():
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LeakyReLU(0.2), torch.nn.Linear(4, 1)).double()


_X = torch.ones(4, 3, dtype=torch.float64)

#: Every numeric argument of the public ops in fastgan/*.py and fastgan/nn/:
#: (the call with the argument set to ``bad``, the argument's name).
NUMERIC_ARGUMENTS = {
    "penalty_from_gradients(center)": (lambda b: fastgan.penalty_from_gradients(_X, center=b), "center"),
    "gradient_penalty(weight)": (lambda b: fastgan.gradient_penalty(_critic3(), _X, _X, weight=b), "weight"),
    "gradient_penalty(center)": (lambda b: fastgan.gradient_penalty(_critic3(), _X, _X, center=b), "center"),
    "gradient_penalty(dragan_scale)": (
        lambda b: fastgan.gradient_penalty(_critic3(), _X, mode="dragan", dragan_scale=b), "dragan_scale"),
    "wgan_gp_critic_loss(weight)": (lambda b: fastgan.wgan_gp_critic_loss(_critic3(), _X, _X, weight=b), "weight"),
    "wgan_gp_critic_loss(center)": (lambda b: fastgan.wgan_gp_critic_loss(_critic3(), _X, _X, center=b), "center"),
    "wgan_gp_critic_loss(penalty_every)": (
        lambda b: fastgan.wgan_gp_critic_loss(_critic3(), _X, _X, penalty_every=b), "penalty_every"),
    "wgan_gp_critic_loss(step)": (lambda b: fastgan.wgan_gp_critic_loss(_critic3(), _X, _X, step=b), "step"),
    "mlp_critic_penalty(center)": (lambda b: fastgan.mlp_critic_penalty(_critic3(), _X, _X, _X, center=b), "center"),
    "clip_parameters_(clip_value)": (lambda b: fastgan.clip_parameters_(torch.nn.Linear(3, 3), b), "clip_value"),
    "bias_act(alpha)": (lambda b: fastgan.nn.functional.bias_act(_X, None, "lrelu", alpha=b), "alpha"),
    "bias_act(gain)": (lambda b: fastgan.nn.functional.bias_act(_X, None, "lrelu", gain=b), "gain"),
    "bias_act(dim)": (lambda b: fastgan.nn.functional.bias_act(_X, torch.zeros(3, dtype=torch.float64), dim=b), "dim"),
    "dropout(p)": (lambda b: fastgan.nn.dropout(_X, b), "p"),
    "Dropout(p)": (lambda b: fastgan.nn.Dropout(b)(_X), "p"),
    "BiasAct(channels)": (lambda b: fastgan.nn.BiasAct("lrelu", b), "channels"),
    "BiasAct(alpha)": (lambda b: fastgan.nn.BiasAct("lrelu", 3, alpha=b), "alpha"),
    "BiasAct(gain)": (lambda b: fastgan.nn.BiasAct("lrelu", 3, gain=b), "gain"),
    "BiasAct(dim)": (lambda b: fastgan.nn.BiasAct("lrelu", 3, dim=b), "dim"),
    "BiasAct(bias_init)": (lambda b: fastgan.nn.BiasAct("lrelu", 3, bias_init=b), "bias_init"),
    "FusedLeakyReLU(channels)": (lambda b: fastgan.nn.FusedLeakyReLU(b), "channels"),
    "FusedLeakyReLU(negative_slope)": (lambda b: fastgan.nn.FusedLeakyReLU(3, negative_slope=b), "negative_slope"),
    "FusedLeakyReLU(scale)": (lambda b: fastgan.nn.FusedLeakyReLU(3, scale=b), "scale"),
    "spectral_norm(n_power_iterations)": (
        lambda b: fastgan.nn.spectral_norm(torch.nn.Linear(3, 3), n_power_iterations=b), "n_power_iterations"),
    "spectral_norm(eps)": (lambda b: fastgan.nn.spectral_norm(torch.nn.Linear(3, 3), eps=b), "eps"),
    "spectral_norm_all(eps)": (lambda b: fastgan.nn.spectral_norm_all(_critic3(), eps=b), "eps"),
    "kl(dim)": (lambda b: fastgan.divergences.kl(torch.full((3,), 1 / 3), torch.full((3,), 1 / 3), dim=b), "dim"),
    "lsgan(a)": (lambda b: fastgan.losses.get("lsgan", a=b), "a"),
}


@pytest.mark.parametrize("bad", ["1", "x", [1.0], complex(1, 1), torch.ones(2)], ids=repr)
@pytest.mark.parametrize("call", list(NUMERIC_ARGUMENTS))
def test_a_numeric_argument_of_the_wrong_type_is_named(call, bad):
    fn, name = NUMERIC_ARGUMENTS[call]
    with pytest.raises(TypeError, match=f"`{name}` must be"):
        fn(bad)


@pytest.mark.parametrize("call", [c for c in NUMERIC_ARGUMENTS if c.split("(")[1][:-1] in ("center", "alpha", "gain", "scale", "negative_slope", "bias_init", "weight", "clip_value", "a")])
def test_a_non_finite_real_argument_is_named(call):
    fn, name = NUMERIC_ARGUMENTS[call]
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match=f"`{name}` must be"):
            fn(bad)


def test_center_none_takes_the_default_where_documented_and_is_named_elsewhere():
    x = torch.randn(4, 3, dtype=torch.float64)
    critic = _critic3()
    # gradient_penalty: None is the mode's default center (1 for interpolates).
    g = torch.Generator().manual_seed(0)
    assert fastgan.gradient_penalty(critic, x, x, center=None, generator=g).equal(
        fastgan.gradient_penalty(critic, x, x, center=1.0, generator=torch.Generator().manual_seed(0)))
    for fn in (lambda: fastgan.penalty_from_gradients(x, center=None), lambda: fastgan.mlp_critic_penalty(critic, x, x, x, center=None)):
        with pytest.raises(TypeError, match="`center` must be a real number, got NoneType"):
            fn()


# ------------------------------------------------------------------ spectral_norm_all and devices


@pytest.mark.parametrize("first", ["linear", "conv"])
def test_spectral_norm_all_names_the_devices_of_a_meta_input(first, generator):
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (), generator=generator)))
    if first == "linear":
        model, shape = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)), (2, 3)
    else:
        model, shape = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(2, 1)), (2, 1, 3, 3)
    fastgan.nn.spectral_norm_all(model).eval()
    x = torch.randn(shape, generator=generator)
    before = model(x)
    with pytest.raises(ValueError, match="`input` on meta, `weight` on cpu"):
        model(torch.empty(shape, device="meta"))
    # The failed call leaves nothing behind: the next one gives the same numbers.
    assert all(m.parametrizations.weight[0]._group_state is None for m in model if hasattr(m, "parametrizations"))
    assert model(x).equal(before)


# ------------------------------------------------------------------ Wasserstein distances at any scale


def test_sliced_wasserstein_of_equal_clouds_has_zero_gradient(generator):
    x = torch.randn(12, 3, dtype=torch.float64, generator=generator).requires_grad_()
    for value in (fot.sliced_wasserstein(x, x), fot.sliced_wasserstein_distance(x, x, seed=3)):
        (grad,) = torch.autograd.grad(value, x)
        assert float(value.detach()) == 0.0
        assert torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_distances_are_homogeneous_at_extreme_scales(dtype, scale, generator):
    """W(s x, s y) = s W(x, y): the distance at 1e+-30 against the unit-scale
    float64 one (POT's exact EMD for ot.wasserstein, the same directions for
    the sliced distance), value and gradient."""
    pot = pytest.importorskip("ot")
    x = torch.randn(9, 3, dtype=torch.float64, generator=generator)
    y = torch.randn(7, 3, dtype=torch.float64, generator=generator) + 0.5
    M = torch.cdist(x, y).square().numpy()
    expected = np.sqrt(pot.emd2(np.full(9, 1 / 9), np.full(7, 1 / 7), M))
    eps = 1e-5 if dtype == torch.float32 else 1e-12
    xs = (x * scale).to(dtype).requires_grad_()
    w = fot.wasserstein(xs, (y * scale).to(dtype))
    assert torch.isfinite(w) and float(w) / scale == pytest.approx(float(expected), rel=eps)
    theta = torch.randn(3, 16, dtype=torch.float64, generator=generator)
    theta /= theta.norm(dim=0)
    unit = fot.sliced_wasserstein_distance(x, y, projections=theta)
    sw = fot.sliced_wasserstein_distance(xs, (y * scale).to(dtype), projections=theta.to(dtype))
    assert torch.isfinite(sw) and float(sw) / scale == pytest.approx(float(unit), rel=eps)
    (grad,) = torch.autograd.grad(sw, xs)
    x64 = x.clone().requires_grad_()
    (unit_grad,) = torch.autograd.grad(fot.sliced_wasserstein_distance(x64, y, projections=theta), x64)
    torch.testing.assert_close(grad.double(), unit_grad, rtol=10 * eps, atol=10 * eps * float(unit_grad.abs().max()))


def test_distances_name_bad_points_and_weights():
    x = torch.zeros(4, 2)
    cases = [
        (lambda: fot.sliced_wasserstein(x.long(), x.long()), TypeError, "`x` has dtype torch.int64"),
        (lambda: fot.sliced_wasserstein(x, x, torch.ones(5) / 5), ValueError, "`a` must have shape \\(4,\\)"),
        (lambda: fot.sliced_wasserstein(x, x, None, torch.ones(3) / 3), ValueError, "`b` must have shape"),
        (lambda: fot.sliced_wasserstein(x, x.double()), TypeError, "`x` has dtype torch.float32 but `y`"),
        (lambda: fot.sliced_wasserstein(x[:0], x), ValueError, "`x` needs at least one point"),
        (lambda: fot.sliced_wasserstein_distance(x, x[:, :0]), ValueError, "`X_t` needs at least one point"),
        (lambda: fot.wasserstein(x.half(), x.half()), TypeError, "`x` has dtype torch.float16"),
        (lambda: fot.wasserstein(x, x.bfloat16()), TypeError, "`y` has dtype torch.bfloat16"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


# ------------------------------------------------------------------ metrics far from the origin


def test_mode_metrics_far_from_the_origin_match_scipy(generator):
    """grid25 shifted by 1e4 in float32: the counts of a direct-difference
    nearest-centre search in float64 (SciPy)."""
    from scipy.spatial.distance import cdist

    from fastgan.metrics import grid_centres, mode_metrics, sample_mixture

    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (), generator=generator)))
    centres = grid_centres() + 1e4
    samples = sample_mixture(centres, 0.05, 2000)
    result = mode_metrics(samples, centres, 0.05)
    dist = cdist(samples.double().numpy(), centres.double().numpy())
    nearest = dist.argmin(1)
    good = dist.min(1) <= 3 * 0.05
    expected = np.bincount(nearest[good], minlength=25)
    assert result["mode_counts"].tolist() == expected.tolist()
    assert result["modes_covered"] == 25


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mmd2_is_translation_and_scale_invariant(dtype, generator):
    """MMD^2 with bandwidth s sigma of (s x + t, s y + t) is MMD^2(x, y) with sigma."""
    from fastgan.metrics import mmd2

    x = torch.randn(40, 2, dtype=torch.float64, generator=generator)
    y = torch.randn(30, 2, dtype=torch.float64, generator=generator) * 0.8 + 0.3
    expected = mmd2(x, y, [0.5, 1.0])
    # points exactly representable after the shift: no rounding of the input itself
    x, y = (x * 64).round() / 64, (y * 64).round() / 64
    expected = mmd2(x, y, [0.5, 1.0])
    shifted = mmd2((x + 1e4).to(dtype), (y + 1e4).to(dtype), [0.5, 1.0])
    tol = 2e-4 if dtype == torch.float32 else 1e-12
    assert float(shifted) == pytest.approx(float(expected), rel=tol, abs=tol * 1e-2)
    big = mmd2((x * 1e20).to(dtype), (y * 1e20).to(dtype), [0.5e20, 1e20])
    assert float(big) == pytest.approx(float(expected), rel=tol, abs=tol * 1e-2)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_mmd2_refuses_non_finite_samples(bad, generator):
    from fastgan.metrics import mmd2

    x = torch.randn(5, 2, generator=generator)
    y = torch.randn(6, 2, generator=generator)
    x_bad = x.clone()
    x_bad[2, 1] = bad
    with pytest.raises(ValueError, match="`x` contains"):
        mmd2(x_bad, y)
    with pytest.raises(ValueError, match="`y` contains"):
        mmd2(y, x_bad)


def test_sinkhorn_never_drops_a_gradient_silently(generator):
    """sinkhorn2 carries the gradient of a cost built from points (checked
    against finite differences); sinkhorn, whose plan has none, refuses
    inputs that require grad."""
    x = torch.randn(5, 2, dtype=torch.float64, generator=generator).requires_grad_()
    y = torch.randn(4, 2, dtype=torch.float64, generator=generator)

    def cost(points):
        return fot.sinkhorn2(None, None, torch.cdist(points, y).square(), 0.5, stopThr=1e-14, numItermax=10000)

    torch.autograd.gradcheck(cost, (x,), eps=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="`M` requires grad"):
        fot.sinkhorn(None, None, torch.cdist(x, y).square(), 0.5)
    with torch.no_grad():
        fot.sinkhorn(None, None, torch.cdist(x, y).square(), 0.5)


@pytest.mark.parametrize("scale", [1e20, 1e-20])
def test_sinkhorn_divergence_is_homogeneous_at_extreme_scales(scale, generator):
    """S(s x, s y; blur s) = s^2 S(x, y; blur), value and gradient."""
    x = torch.randn(10, 2, dtype=torch.float64, generator=generator)
    y = torch.randn(8, 2, dtype=torch.float64, generator=generator) + 1
    x1 = x.clone().requires_grad_()
    unit = fot.sinkhorn_divergence(x1, y, blur=0.1)
    (unit_grad,) = torch.autograd.grad(unit, x1)
    xs = (x * scale).requires_grad_()
    scaled = fot.sinkhorn_divergence(xs, y * scale, blur=0.1 * scale)
    (grad,) = torch.autograd.grad(scaled, xs)
    assert float(scaled) / scale**2 == pytest.approx(float(unit), rel=1e-12)
    torch.testing.assert_close(grad / scale, unit_grad, rtol=1e-10, atol=1e-14)


def test_sinkhorn_divergence_names_what_it_cannot_do(generator):
    x = torch.randn(6, 2, generator=generator) * 1e20
    with pytest.raises(ValueError, match="exceeds the range of torch.float32"):
        fot.sinkhorn_divergence(x, x + 1e20, blur=1e19)
    with pytest.raises(ValueError, match="`x` must have at least one feature"):
        fot.sinkhorn_divergence(torch.zeros(3, 0), torch.zeros(3, 0))


# ------------------------------------------------------------------ layouts, 1-D finiteness


def test_sparse_tensors_are_named(generator):
    M = torch.rand(3, 3, dtype=torch.float64, generator=generator).to_sparse()
    x = torch.rand(4, 2, dtype=torch.float64, generator=generator).to_sparse()
    calls = {
        "M": [lambda: fot.sinkhorn2(None, None, M, 0.1)],  # emd / emd2 take sparse M (absent edges)
        "cost_matrix": [lambda: fot.linear_sum_assignment(M)],
        "x": [
            lambda: fot.wasserstein(x, x.to_dense()), lambda: fot.sliced_wasserstein(x, x.to_dense()),
            lambda: fot.sinkhorn_divergence(x, x.to_dense()), lambda: fastgan.nn.functional.bias_act(x),
        ],
        "parameters\\[0\\]": [lambda: fastgan.clip_parameters_([x], 1.0)],
        "grads": [lambda: fastgan.penalty_from_gradients(x)],
    }
    for name, fns in calls.items():
        for fn in fns:
            with pytest.raises(TypeError, match=f"`{name}` is a sparse"):
                fn()


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_wasserstein_1d_takes_finite_values_near_the_float64_max(backend, generator):
    """Values near 1e308 are finite: W_1 = scale * W_1(unit values) (closed form:
    homogeneity), not "NaN or infinite"."""
    u = torch.rand(7, dtype=torch.float64, generator=generator)
    v = torch.rand(5, dtype=torch.float64, generator=generator)
    scale = 2.0**1023
    expected = fot.wasserstein_1d(u, v, p=1, backend=backend) * scale
    assert float(fot.wasserstein_1d(u * scale, v * scale, p=1, backend=backend)) == pytest.approx(float(expected), rel=1e-12)
    for bad in (float("nan"), float("inf")):
        u_bad = u.clone()
        u_bad[3] = bad
        with pytest.raises(ValueError, match="u_values"):
            fot.wasserstein_1d(u_bad, v, backend=backend)


# ------------------------------------------------------------------ the command line


def _cli_error(argv, capsys) -> str:
    from fastgan.train.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code != 0
    return str(info.value.code) + capsys.readouterr().err


@pytest.mark.parametrize("command", ["sample", "eval"])
@pytest.mark.parametrize("n", ["-5", "0", "x"])
def test_cli_sample_count_must_be_positive(command, n, tmp_path, capsys):
    err = _cli_error([command, "--run", str(tmp_path), "-n", n], capsys)
    assert "expected a positive integer" in err


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "is damaged \\(the file is empty\\)"), (b"garbage\x00\x01" * 10, "is damaged"), ("dict", "lacks G, D"),
     ("list", "holds a list")],
)
def test_cli_names_a_checkpoint_that_is_not_one(content, reason, tmp_path, capsys):
    path = tmp_path / "checkpoint.pt"
    if content == "dict":
        torch.save({"config": {}, "step": 3}, path)
    elif content == "list":
        torch.save([1, 2], path)
    else:
        path.write_bytes(content)
    for command in ("sample", "eval"):
        err = _cli_error([command, "--run", str(tmp_path)], capsys)
        assert str(path) in err and "not a fastgan checkpoint" in err
        import re

        assert re.search(reason, err)


def test_cli_refuses_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    err = _cli_error(["train", "--steps", "1", "--out", str(blocker / "run"), "--no-progress"], capsys)
    assert "cannot write to the run directory" in err
    err = _cli_error(["train", "--steps", "1", "--model", "nosuch", "--out", str(tmp_path / "r1"), "--no-progress"], capsys)
    assert "unknown `model`='nosuch'" in err
    err = _cli_error(["train", "--steps", "1", "--batch-size", "2000000000", "--out", str(tmp_path / "r2")], capsys)
    assert "--batch-size 2000000000 cannot fit" in err


def test_image_folder_names_a_truncated_file(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    from fastgan.train.data import image_folder

    Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "a.png")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "b.png")
    data = (tmp_path / "b.png").read_bytes()
    (tmp_path / "b.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot read .*b.png"):
        image_folder(tmp_path, size=8)


# ------------------------------------------------------------------ wgan_gp_critic_loss "auto"


@pytest.mark.parametrize("dtype, shape", [(torch.bfloat16, (6, 3)), (torch.float16, (6, 3)), (torch.float64, (6, 1, 3))])
def test_wgan_gp_auto_picks_a_path_that_takes_the_input(dtype, shape, generator):
    """An MLP critic in half precision, or 3-D samples: "auto" gives what
    arrangement="pair" gives (not an error from the fused op)."""
    critic = _mlp_critic(generator).to(dtype)
    real = torch.randn(shape, generator=generator).to(dtype)
    fake = torch.randn(shape, generator=generator).to(dtype)
    seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
    auto = fastgan.wgan_gp_critic_loss(critic, real, fake, generator=torch.Generator().manual_seed(seed))
    pair = fastgan.wgan_gp_critic_loss(
        critic, real, fake, arrangement="pair", generator=torch.Generator().manual_seed(seed)
    )
    torch.testing.assert_close(auto, pair, rtol=0, atol=0)


def test_info_says_what_bias_act_runs_on_cuda_by_default(monkeypatch):
    from fastgan import _library, info

    monkeypatch.setattr(_library, "compiled_ops", lambda: {"bias_act": ["cpu", "cuda (triton)"], "clip_": ["cpu", "cuda"]})
    ops = info.report()["ops (kernels)"]
    assert ops["clip_"] == ["cpu", "cuda"]
    assert ops["bias_act"][0] == "cpu" and "by default torch's activations" in ops["bias_act"][1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n, m", [(4, 3), (4, 4)])
def test_emd2_with_costs_near_the_dtype_max(dtype, n, m, generator):
    """The plan of M / 2^k is the plan of M (closed form): POT on the scaled
    cost, multiplied back, against emd2 on costs up to 0.95 of the maximum."""
    pot = pytest.importorskip("ot")
    top = torch.finfo(dtype).max * 0.95
    M = (torch.rand(n, m, dtype=torch.float64, generator=generator) * top).to(dtype)
    cost, log = fot.emd2(None, None, M, log=True)
    expected = pot.emd2(np.full(n, 1 / n), np.full(m, 1 / m), (M.double() / 2.0**64).numpy()) * 2.0**64
    assert int(log["result_code"]) == 1 and log["warning"] is None
    assert float(cost) == pytest.approx(expected, rel=1e-6 if dtype == torch.float32 else 1e-12)


def test_sinkhorn_divergence_refuses_an_eps_its_dtype_cannot_hold(generator):
    """blur^p below float32's smallest normal used to give NaN."""
    x = torch.randn(3, 1, generator=generator) * 1e-30
    y = torch.randn(2, 1, generator=generator) * 1e-3
    with pytest.raises(ValueError, match="`blur`\\^p = .* leaves the range of torch.float32"):
        fot.sinkhorn_divergence(x, y, blur=5e-32)
    value = fot.sinkhorn_divergence(x.double(), y.double(), blur=5e-32, max_iter=100000)
    assert torch.isfinite(value)
