"""Property-based fuzzing of fastgan's public ops (hypothesis).

Every case draws a shape (empty and single-element included), a dtype
(float16, bfloat16, float32, float64, int64), a scale from 1e-30 to 1e30,
optionally a NaN or infinite entry, and a memory layout (contiguous,
non-contiguous or expanded). Each call then either

- matches an independent oracle (SciPy, POT, GeomLoss, torch or a closed
  form computed in float64; POT for every optimal-transport value) within
  the tolerance stated for its dtype, near the agreement measured, or
- raises a ValueError or TypeError whose message names an argument in
  backticks,

and never crashes, hangs (a call past HANG_SECONDS fails; a case past the
deadline too) or returns garbage.

Profiles (environment variable ``FASTGAN_FUZZ``):

- ``ci`` (default): a bounded number of cases per op, the whole file well
  under a minute on two cores;
- ``long``: many more cases, run locally with one command::

      FASTGAN_FUZZ=long pytest tests/test_fuzz.py
"""

from __future__ import annotations

import math
import os
import re
import signal
import threading
import warnings
from datetime import timedelta

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastgan  # noqa: E402
from fastgan import ot as fot  # noqa: E402
from fastgan import reference  # noqa: E402

#: A case that runs longer than this fails (hypothesis's deadline, measured
#: when the case returns; a shared two-core machine needs the headroom).
DEADLINE = timedelta(seconds=20)
#: A call that has not returned after this many seconds is a hang: the
#: watchdog in :func:`outcome` interrupts it and the case fails.
HANG_SECONDS = 60
settings.register_profile(
    "ci", max_examples=100, deadline=DEADLINE, suppress_health_check=[HealthCheck.too_slow], database=None
)
settings.register_profile(
    "long", max_examples=2000, deadline=DEADLINE, suppress_health_check=[HealthCheck.too_slow], database=None
)
PROFILE = settings.get_profile(os.environ.get("FASTGAN_FUZZ", "ci"))

FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: the oracles' distances: the direct differences, never torch.cdist's |x|^2 + |y|^2 - 2 x.y path,
#: which cancels far from the origin (at 1e7 it puts every point within 3e-3 of a centre 0.13 away)
EXACT_CDIST = "donot_use_mm_for_euclid_dist"
DTYPES = (*FLOATS, torch.int64)
SCALES = (1e-30, 1e-8, 1e-3, 1.0, 1e3, 1e8, 1e30)
LAYOUTS = ("contiguous", "transposed", "expanded")
#: relative tolerance of a result in each dtype against a float64 oracle
RTOL = {torch.float16: 4e-3, torch.bfloat16: 3e-2, torch.float32: 2e-5, torch.float64: 1e-10}

NAMED = re.compile(r"`[^`]+`")


class Case:
    """One drawn tensor: values in float64, then cast, with its layout."""

    def __init__(self, data, shape_st, *, dtypes=DTYPES, specials=True):
        self.shape = data.draw(shape_st, label="shape")
        self.dtype = data.draw(st.sampled_from(dtypes), label="dtype")
        self.scale = data.draw(st.sampled_from(SCALES), label="scale")
        self.layout = data.draw(st.sampled_from(LAYOUTS), label="layout")
        self.special = data.draw(st.sampled_from((None, None, float("nan"), float("inf"), -float("inf"))) if specials else st.none(), label="special")
        seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
        g = torch.Generator().manual_seed(seed)
        values = torch.randn(self.shape, dtype=torch.float64, generator=g) * self.scale
        if self.layout == "expanded" and len(self.shape) >= 1 and self.shape[0] > 0:
            values = values[:1].expand(self.shape).clone()
        if self.special is not None and values.numel():
            flat = values.reshape(-1)
            flat[int(torch.randint(0, flat.numel(), (), generator=g))] = self.special
        self.values = values  # float64, the oracle's input (before the cast)
        self.tensor = self._layout(self._cast(values))

    def _cast(self, values):
        if self.dtype == torch.int64:
            return torch.nan_to_num(values).clamp(-1e15, 1e15).round().to(torch.int64)
        return values.to(self.dtype)

    def _layout(self, t):
        if t.dim() >= 2 and self.layout == "transposed":
            return t.transpose(-1, -2).contiguous().transpose(-1, -2)  # same values, non-contiguous
        if self.layout == "expanded" and t.dim() >= 1 and t.shape[0] > 0:
            return t[:1].expand(t.shape)
        return t

    @property
    def as_float64(self) -> torch.Tensor:
        """The values the op actually sees, in float64."""
        return self.tensor.double()

    @property
    def finite(self) -> bool:
        return bool(torch.isfinite(self.as_float64).all())


class Hang(BaseException):
    """Raised by the watchdog in a call that did not return within HANG_SECONDS."""


def _watchdog(signum, frame):
    raise Hang(f"the call did not return within {HANG_SECONDS} s")


def outcome(call):
    """(result, None) or (None, error) for a ValueError/TypeError naming an argument.

    A call that runs past HANG_SECONDS is interrupted (SIGALRM, main thread)
    and fails the case as a hang."""
    watch = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if watch:
        previous = signal.signal(signal.SIGALRM, _watchdog)
        signal.alarm(HANG_SECONDS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return call(), None
    except (ValueError, TypeError) as err:
        assert NAMED.search(str(err)), f"error without the argument's name: {type(err).__name__}: {err}"
        return None, err
    except Hang as err:
        pytest.fail(f"hang: {err}")
    finally:
        if watch:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, *, atol: float = 0.0):
    expected = expected.to(torch.float64)
    actual = actual.detach().to(torch.float64)
    rtol = RTOL.get(dtype, 1e-10)
    if dtype in FLOATS:
        # The kernels' exp flushes results below the normal range to 0, which
        # reaches a few hundred times the smallest normal in swish(-700).
        tiny = torch.finfo(dtype).smallest_normal
        atol = max(atol, tiny * (1024 if dtype in (torch.float32, torch.float64) else 1))
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


def shapes(min_dims=1, max_dims=2, max_side=6, min_side=0):
    return st.lists(st.integers(min_side, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


# ------------------------------------------------------------------ elementwise and training ops


@PROFILE
@given(st.data())
def test_bias_act(data):
    case = Case(data, shapes(2, 3))
    act = data.draw(st.sampled_from(("linear", "relu", "lrelu", "tanh", "sigmoid", "elu", "selu", "softplus", "swish")))
    with_bias = data.draw(st.booleans())
    x = case.tensor
    bias = None
    if with_bias and x.shape[1] > 0:
        bias = torch.linspace(-1, 1, x.shape[1], dtype=torch.float64).to(x.dtype if x.dtype in FLOATS else torch.float32)
    result, err = outcome(lambda: fastgan.nn.functional.bias_act(x, bias, act))
    if case.dtype not in FLOATS:
        assert err is not None and isinstance(err, TypeError)
        return
    assert err is None, err
    expected = reference.bias_act(x.double(), None if bias is None else bias.double(), act, *fastgan.nn.functional.resolve(act, None, None), 1)
    assert result.dtype == x.dtype and result.shape == x.shape
    # half precision rounds its intermediates: one ulp of the output's scale
    atol = 0.0 if case.dtype == torch.float64 else float(torch.finfo(case.dtype).eps) * 4
    finite = torch.isfinite(expected.to(case.dtype).double())
    assert_close(result[finite], expected[finite], case.dtype, atol=atol)
    assert torch.equal(torch.isnan(result.double())[finite], torch.zeros_like(finite[finite]))


@PROFILE
@given(st.data())
def test_dropout(data):
    case = Case(data, shapes(0, 3))
    p = data.draw(st.sampled_from((0.0, 0.3, 0.5, 0.999, 1.0)), label="p")
    x = case.tensor
    result, err = outcome(lambda: fastgan.nn.dropout(x, p))
    if case.dtype not in FLOATS:
        assert isinstance(err, TypeError)
        return
    assert err is None, err
    assert result.shape == x.shape and result.dtype == x.dtype
    # torch's dropout: x times 0 or times 1 / (1 - p) in x's dtype (NaN where x is NaN or infinite and dropped).
    dropped = x * torch.zeros((), dtype=x.dtype)
    kept = x * torch.tensor(1 / (1 - p) if p < 1 else 0.0, dtype=x.dtype)
    same = lambda a, b: (a == b) | (torch.isnan(a) & torch.isnan(b))  # noqa: E731
    assert bool((same(result, dropped) | same(result, kept)).all())
    if p == 1.0:
        assert bool(same(result, dropped).all())


@PROFILE
@given(st.data())
def test_clip_parameters(data):
    count = data.draw(st.integers(0, 3))
    cases = [Case(data, shapes(0, 2)) for _ in range(count)]
    c = data.draw(st.sampled_from((1e-30, 0.01, 1.0, 1e30)))
    tensors = [case.tensor.clone() if case.layout != "expanded" else case.tensor.contiguous() for case in cases]
    expected = [t.clone() for t in tensors]
    result, err = outcome(lambda: fastgan.clip_parameters_(tensors, c))
    if any(case.dtype not in FLOATS for case in cases):
        assert isinstance(err, TypeError)
        return
    assert err is None, err
    changed = 0
    for t, e in zip(tensors, expected):
        # torch's loop, clamp_(-c, c), with c rounded to the tensor's dtype
        e64 = e.double()
        changed += int(((e64.abs() > torch.tensor(c, dtype=torch.float64).to(e.dtype).double()) & ~torch.isnan(e64)).sum())
        # (clamped in float64: torch's half clamp_ refuses a c beyond its range)
        torch.testing.assert_close(t, e.double().clamp(-c, c).to(e.dtype), rtol=0, atol=0, equal_nan=True)
    assert int(result) == changed


@PROFILE
@given(st.data())
def test_penalty_from_gradients(data):
    case = Case(data, shapes(1, 3))
    center = data.draw(st.sampled_from((0.0, 1.0, 2.5)))
    result, err = outcome(lambda: fastgan.penalty_from_gradients(case.tensor, center=center))
    if case.dtype not in FLOATS or case.shape[0] == 0:
        assert err is not None
        return
    assert err is None, err
    g = case.as_float64.reshape(case.shape[0], -1)
    expected = ((g.norm(dim=1) - center) ** 2).mean()
    assert_close(result, expected.to(result.dtype), case.dtype, atol=1e-30)  # half precision: a float32 result


@PROFILE
@given(st.data())
def test_mlp_critic_scores_match_the_module(data):
    """fastgan.mlp_critic_scores against calling the critic (torch's Linear and LeakyReLU, autograd), values and gradients."""
    case = Case(data, shapes(1, 3, max_side=5))
    dtype = case.dtype if case.dtype in (torch.float32, torch.float64) else torch.float32
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1), label="critic seed"))
    layers = []
    for i, (fan_in, fan_out) in enumerate(((3, 8), (8, 8), (8, 1))):
        linear = torch.nn.Linear(fan_in, fan_out, dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(fan_out, fan_in, generator=g))
            linear.bias.copy_(torch.randn(fan_out, generator=g))
        layers += [linear] if i == 2 else [linear, torch.nn.LeakyReLU(0.2)]
    critic = torch.nn.Sequential(*layers)
    parameters = data.draw(st.booleans(), label="parameters")
    x = case.tensor.detach().requires_grad_(case.dtype in FLOATS)
    result, err = outcome(lambda: fastgan.mlp_critic_scores(critic, x, parameters=parameters))
    if not (case.dtype == dtype and len(case.shape) == 2 and case.shape[1] == 3):
        assert err is not None
        return
    assert err is None, err
    params = list(critic.parameters())
    gx, *ours = torch.autograd.grad(result.sum(), [x, *params], allow_unused=True)
    x_ref = case.tensor.detach().requires_grad_(True)
    expected = critic(x_ref)
    (gx_ref,) = torch.autograd.grad(expected.sum(), x_ref, retain_graph=True)
    theirs = torch.autograd.grad(expected.sum(), params)
    # the same products in the same dtype: rounding of sums of up to 8 terms of the inputs' scale
    scale = max(case.scale, 1.0) * (1e-5 if dtype == torch.float32 else 1e-12)
    assert result.shape == expected.shape and result.dtype == dtype
    assert_close(result, expected, dtype, atol=scale)
    assert_close(gx, gx_ref, dtype, atol=1e-5 if dtype == torch.float32 else 1e-12)
    if parameters:
        for a, b in zip(ours, theirs):
            assert_close(a, b, dtype, atol=scale * 10)
    else:  # the node does not reach the critic's parameters
        assert all(a is None for a in ours)


def _images(data):
    """(B, C, H, W) with a wrong channel count and empty images now and then."""
    return data.draw(
        st.tuples(st.integers(0, 3), st.sampled_from((1, 1, 1, 2)), st.integers(0, 7), st.integers(0, 7)), label="images"
    )


@PROFILE
@given(st.data())
def test_single_channel_convs_match_torch(data):
    """fastgan.nn's one-channel convolution and transposed convolution, forward and input gradient."""
    transposed = data.draw(st.booleans(), label="transposed")
    out_channels = data.draw(st.integers(1, 3), label="channels")
    kernel = data.draw(st.tuples(st.integers(1, 4), st.integers(1, 4)), label="kernel")
    stride = data.draw(st.sampled_from((1, 2, 3, (1, 2), 0)), label="stride")
    padding = data.draw(st.sampled_from((0, 1, 2, (0, 1), -1)), label="padding")
    b, c, h, w = _images(data)
    shape = (b, out_channels * c if transposed else c, h, w)
    case = Case(data, st.just(shape), dtypes=(torch.float32, torch.float64, torch.int64))
    x = case.tensor.detach().requires_grad_(case.dtype in FLOATS)  # its layout kept: contiguous, transposed or expanded
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1), label="weight seed"))
    weight64 = torch.randn(out_channels, 1, *kernel, dtype=torch.float64, generator=g)
    weight = weight64.to(case.dtype) if case.dtype in FLOATS else weight64.float()
    fn = fastgan.nn.conv_transpose2d_single_channel if transposed else fastgan.nn.conv2d_single_channel
    oracle = torch.nn.functional.conv_transpose2d if transposed else torch.nn.functional.conv2d
    result, err = outcome(lambda: fn(x, weight, None, stride, padding))
    s, p = (stride, stride) if isinstance(stride, int) else stride, (padding, padding) if isinstance(padding, int) else padding
    if transposed:
        fits = all((n - 1) * ss - 2 * pp + k > 0 for n, ss, pp, k in zip((h, w), s, p, kernel))
    else:
        fits = all(n + 2 * pp >= k for n, pp, k in zip((h, w), p, kernel))
    valid = case.dtype in FLOATS and c == 1 and min(h, w) >= 1 and min(s) >= 1 and min(p) >= 0 and fits
    if not valid:
        assert err is not None
        return
    assert err is None, err
    x64 = case.as_float64.detach().requires_grad_(True)
    expected = oracle(x64, weight64.to(case.dtype).double(), None, s, p)
    assert result.shape == expected.shape and result.dtype == case.dtype
    # a sum of k_h k_w (times channels) products: tolerance on the scale of the terms
    terms = oracle(x64.detach().abs(), weight64.abs(), None, s, p)
    atol = float(terms[torch.isfinite(terms)].max()) * (1e-6 if case.dtype == torch.float32 else 1e-13) if terms.numel() and torch.isfinite(terms).any() else 0.0
    finite = torch.isfinite(expected)
    assert_close(result.detach()[finite], expected.detach()[finite], case.dtype, atol=atol)
    if result.numel():
        (gx,) = torch.autograd.grad(result.sum(), x)
        (gx64,) = torch.autograd.grad(expected.sum(), x64)
        scale = float(weight64.abs().sum()) * out_channels
        assert_close(gx, gx64, case.dtype, atol=scale * (1e-6 if case.dtype == torch.float32 else 1e-13))


# ------------------------------------------------------------------ optimal transport


@PROFILE
@given(st.data())
def test_wasserstein_1d(data):
    stats = pytest.importorskip("scipy.stats")
    u = Case(data, shapes(1, 1), dtypes=(torch.float32, torch.float64, torch.float16, torch.int64))
    v = Case(data, shapes(1, 1), dtypes=(u.dtype,))
    result, err = outcome(lambda: fot.wasserstein_1d(u.tensor, v.tensor, p=1))
    valid = u.dtype in (torch.float32, torch.float64) and u.shape[0] and v.shape[0] and u.finite and v.finite
    if not valid:
        assert err is not None
        return
    assert err is None, err
    expected = stats.wasserstein_distance(u.as_float64.numpy(), v.as_float64.numpy())
    assert_close(result, torch.tensor(expected).to(u.dtype), u.dtype, atol=1e-300)


def clouds(data, dtypes=DTYPES):
    n = data.draw(st.integers(0, 5))
    m = data.draw(st.integers(0, 5))
    d = data.draw(st.integers(0, 3))
    x = Case(data, st.just((n, d)), dtypes=dtypes)
    y = Case(data, st.just((m, d)), dtypes=(x.dtype,))
    valid = x.dtype in (torch.float32, torch.float64) and n and m and d and x.finite and y.finite
    return x, y, bool(valid)


#: Float64 OT checks against POT: the squared distance at unit scale (the
#: clouds divided by their largest |coordinate|), absolute error in units of
#: the dtype's eps. Measured over 1,500 cases of these distributions
#: (float32 / float64, scales 1e-30 to 1e30, n, m, d up to 5; docs/conformance.md):
#: at most 8 eps for ot.wasserstein, 6 for the sliced distance.
OT_EPS = 32


def assert_squared_close(result: torch.Tensor, expected_unit_sq: float, unit: float, dtype: torch.dtype) -> None:
    """W^2 / unit^2 of ``result`` against POT's ``expected_unit_sq`` within OT_EPS eps of ``dtype``."""
    got = (float(result) / unit) ** 2
    tol = OT_EPS * float(torch.finfo(dtype).eps)
    assert abs(got - expected_unit_sq) <= tol, (got, expected_unit_sq, tol)


@PROFILE
@given(st.data())
def test_wasserstein_matches_pot(data):
    pot = pytest.importorskip("ot")
    x, y, valid = clouds(data)
    result, err = outcome(lambda: fot.wasserstein(x.tensor, y.tensor))
    if not valid:
        assert err is not None
        return
    assert err is None, err
    xs, ys = x.as_float64, y.as_float64
    unit = float(torch.cat([xs, ys]).abs().max()) or 1.0
    M = (torch.cdist(xs / unit, ys / unit, compute_mode=EXACT_CDIST) ** 2).numpy()
    n, m = M.shape
    expected = float(pot.emd2(np.full(n, 1 / n), np.full(m, 1 / m), M))
    assert torch.isfinite(result) and result.dtype == x.tensor.dtype
    assert_squared_close(result, expected, unit, x.dtype)


@PROFILE
@given(st.data())
def test_sliced_wasserstein_matches_pot(data):
    pot = pytest.importorskip("ot")
    x, y, valid = clouds(data)
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 1000)))
    d = x.shape[1]
    theta = torch.randn(max(d, 1), 8, generator=g, dtype=torch.float64)
    theta /= theta.norm(dim=0)
    theta = theta.to(x.tensor.dtype) if x.dtype in FLOATS else theta
    result, err = outcome(lambda: fot.sliced_wasserstein_distance(x.tensor, y.tensor, projections=theta))
    if not valid:
        assert err is not None
        return
    assert err is None, err
    xs, ys = x.as_float64, y.as_float64
    unit = float(torch.cat([xs, ys]).abs().max()) or 1.0
    expected = pot.sliced_wasserstein_distance((xs / unit).numpy(), (ys / unit).numpy(), projections=theta.double().numpy())
    assert torch.isfinite(result)
    assert_squared_close(result, float(expected) ** 2, unit, x.dtype)


#: sinkhorn2 against POT's "sinkhorn_log" on the same float64 values: absolute
#: error in units of eps * max|M| (measured: 18 in float64, 66 in float32
#: against POT in float64). With reg drawn as 1 or 10
#: times the scale, M being N(0, 1) times the scale) both always converge within POT's default 1000
#: iterations, and must; with 0.05 times the scale some cases cannot
#: (contraction ~ tanh(range(M) / 4 reg)). Measured share of valid cases in
#: which both converge, all regs: 78% (ci profile) and 79% of 358 (long); required: MIN_CONVERGED.
SINKHORN_EPS = {torch.float32: 256, torch.float64: 64}
MIN_CONVERGED = 0.6
_sinkhorn_cases: list[bool] = []


@settings(parent=PROFILE, max_examples=3 * PROFILE.max_examples)
@given(st.data())
def _sinkhorn2_case(data):
    pot = pytest.importorskip("ot")
    case = Case(data, shapes(2, 2, max_side=5))
    reg = data.draw(st.sampled_from((0.05, 1.0, 10.0))) * (case.scale if case.finite else 1.0)
    auto, err = outcome(lambda: fot.sinkhorn2(None, None, case.tensor, reg, log=True))
    valid = case.dtype in (torch.float32, torch.float64) and min(case.shape) > 0 and case.finite
    if not valid:
        assert err is not None
        return
    assert err is None, err
    value, log = auto
    # M is N(0, 1) times the scale: reg of 1 or 10 times the scale always converges (measured)
    M = case.as_float64.numpy()
    n, m = M.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected, pot_log = pot.sinkhorn2(np.full(n, 1 / n), np.full(m, 1 / m), M, reg, method="sinkhorn_log", log=True)
    both = bool(log["converged"]) and int(pot_log["niter"]) < 999
    _sinkhorn_cases.append(both)
    if reg >= case.scale:
        assert both, f"reg = {reg:.3g} >= max|M| / 10 and Sinkhorn did not converge (fastgan: {bool(log['converged'])})"
    if both:
        scale = float(np.abs(M).max()) or 1.0
        tol = SINKHORN_EPS[case.dtype] * float(torch.finfo(case.dtype).eps) * scale
        assert abs(float(value) - float(expected)) <= tol, (float(value), float(expected), tol)


def test_sinkhorn2_matches_pot():
    """Every case where both converge agrees with POT; and most valid cases converge
    (a run where few do would otherwise check little)."""
    _sinkhorn_cases.clear()
    _sinkhorn2_case()
    if len(_sinkhorn_cases) >= 20:
        share = sum(_sinkhorn_cases) / len(_sinkhorn_cases)
        assert share >= MIN_CONVERGED, f"only {share:.0%} of {len(_sinkhorn_cases)} valid cases converged"


# ------------------------------------------------------------------ metrics


@PROFILE
@given(st.data())
def test_mmd2_matches_a_closed_form(data):
    x, y, valid = clouds(data)
    bandwidth = data.draw(st.sampled_from((1e-3, 1.0, 1e3)))
    result, err = outcome(lambda: fastgan.metrics.mmd2(x.tensor, y.tensor, bandwidth, unbiased=False))
    floats = x.dtype in FLOATS
    if not (floats and x.shape[0] and y.shape[0] and x.finite and y.finite):
        assert err is not None
        return
    assert err is None, err
    xs, ys = x.as_float64, y.as_float64

    def k(a, b):
        return torch.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * bandwidth**2))

    expected = k(xs, xs).mean() + k(ys, ys).mean() - 2 * k(xs, ys).mean()
    assert_close(result, expected.to(x.dtype), x.dtype, atol=float(torch.finfo(x.tensor.dtype).eps) * 16)


@PROFILE
@given(st.data())
def test_sinkhorn_divergence_matches_geomloss(data):
    geomloss = pytest.importorskip("geomloss")
    x, y, valid = clouds(data)
    blur = data.draw(st.sampled_from((0.05, 0.5))) * (max(x.scale, 1e-30) if valid else 1.0)
    result, err = outcome(lambda: fot.sinkhorn_divergence(x.tensor, y.tensor, blur=blur))
    if not valid:
        assert err is not None
        return
    if err is not None:  # the only refusals of valid points: values beyond the dtype's range
        assert re.search("exceeds the range|leaves the range", str(err)), err
        return
    xs, ys = x.as_float64, y.as_float64
    unit = float(torch.cat([xs, ys]).abs().max()) or 1.0
    loss = geomloss.SamplesLoss("sinkhorn", p=2, blur=blur / unit, backend="tensorized")
    try:
        expected = loss(xs / unit, ys / unit) * unit**2  # S is homogeneous: GeomLoss at unit scale
    except ValueError:  # GeomLoss's numpy schedule for blur ~1e-23 of the diameter
        hypothesis.reject()
    assert_close(result, expected.to(x.dtype), x.dtype, atol=1e-6 * unit**2)


# ------------------------------------------------------------------ metrics and the command line


@PROFILE
@given(st.data())
def test_mode_metrics_matches_float64(data):
    n = data.draw(st.integers(0, 40))
    x = Case(data, st.just((n, 2)))
    k = data.draw(st.integers(1, 9))
    offset = data.draw(st.sampled_from((0.0, 1e4, -1e7)))  # far from the origin: no cancellation allowed
    sigma = data.draw(st.sampled_from((1e-3, 0.05, 1.0)))
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    centres = torch.randn(k, 2, dtype=torch.float64, generator=g) * 4 + offset
    pick = torch.randint(0, k, (n,), generator=g)
    # samples near the centres (at the drawn scale) in the drawn dtype, layout and specials
    samples = (centres[pick] + x.as_float64.nan_to_num(0.0).clamp(-1e6, 1e6) * sigma * 2).to(x.tensor.dtype)
    samples[~torch.isfinite(x.as_float64)] = x.as_float64[~torch.isfinite(x.as_float64)].to(x.tensor.dtype)
    result, err = outcome(lambda: fastgan.metrics.mode_metrics(samples, centres.float(), sigma))
    finite = bool(torch.isfinite(samples.double()).all()) if samples.dtype != torch.int64 else True
    if not (n and finite and samples.dtype in FLOATS):
        assert err is not None
        return
    assert err is None, err
    d = torch.cdist(samples.double(), centres.float().double(), compute_mode=EXACT_CDIST)
    nearest = d.min(dim=1).values
    thr = 3 * sigma
    strict, loose = int((nearest < thr * (1 - 1e-4)).sum()), int((nearest <= thr * (1 + 1e-4)).sum())
    n_good = round(result["high_quality_fraction"] * n)
    assert strict <= n_good <= loose, (strict, n_good, loose)
    assert int(result["mode_counts"].sum()) == n_good and 0 <= result["modes_covered"] <= k


BAD = ["0", "-3", "nan", "inf", "1e40", "abc", "", "0.5"]
#: values per option: bad ones, small valid ones, and sizes that cannot fit in memory where the
#: command must say so at once (a valid but huge --steps or -n would just run long)
CLI_VALUES = {
    "--steps": BAD + ["1", "2"], "--batch-size": BAD + ["4", "2000000000"], "--width": BAD + ["2", "2000000000"],
    "--lr": BAD + ["1e-3"], "--n-critic": BAD + ["2"], "--ema": BAD + ["0.9", "1.5"], "--model": ["mlp", "dcgan", "nosuch"],
    "--eval-samples": BAD + ["10"], "--gp-weight": BAD + ["1"], "-n": BAD + ["5"],
}


@settings(parent=PROFILE, max_examples=max(10, PROFILE.max_examples // 5))
@given(data=st.data())
def test_command_line_never_crashes(tmp_path_factory, data):
    """Every command either runs or exits with a message (argparse's, or one starting 'fastgan:')."""
    from fastgan.train.cli import main

    out = tmp_path_factory.mktemp("run")
    argv = ["train", "--out", str(out), "--no-progress", "--steps", "1", "--width", "4", "--depth", "1",
            "--batch-size", "8", "--eval-samples", "50", "--data", data.draw(st.sampled_from(["grid25", "ring8", "nosuch"]))]
    for option in data.draw(st.lists(st.sampled_from(["--steps", "--batch-size", "--width", "--lr", "--n-critic",
                                                      "--ema", "--model", "--eval-samples", "--gp-weight"]),
                                     max_size=2, unique=True)):
        argv += [option, data.draw(st.sampled_from(CLI_VALUES[option]))]
    command = data.draw(st.sampled_from(["train", "sample", "eval"]))
    if command != "train":
        argv = [command, "--run", str(out), "-n", data.draw(st.sampled_from(CLI_VALUES["-n"]))]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = main(argv)
        assert code in (0, 2)
    except SystemExit as e:
        assert e.code == 2 or (isinstance(e.code, str) and e.code.startswith("fastgan: ")), e.code
