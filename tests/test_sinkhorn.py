"""Entropic OT: fastgan.ot.sinkhorn / sinkhorn2 against POT, sinkhorn_divergence against GeomLoss.

References are independent libraries (POT's ``sinkhorn_log`` and ``emd2``,
GeomLoss's tensorized ``SamplesLoss``) and finite differences, on fresh
random inputs.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import fastgan
from fastgan import _library, reference
from fastgan.ot import sinkhorn, sinkhorn2, sinkhorn_divergence
from fastgan.reference.sinkhorn import point_cost

ot = pytest.importorskip("ot")
geomloss = pytest.importorskip("geomloss")

ROOT = Path(__file__).resolve().parents[1]
sinkhorn_module = importlib.import_module("fastgan.ot.sinkhorn")


def histogram(n, generator, batch=(), dtype=torch.float64):
    w = torch.rand((*batch, n), generator=generator, dtype=torch.float64) + 0.05
    return (w / w.sum(-1, keepdim=True)).to(dtype)


def clouds(generator, n, m, d=2, batch=(), dtype=torch.float64, shift=0.5):
    x = torch.randn((*batch, n, d), generator=generator, dtype=torch.float64)
    y = torch.randn((*batch, m, d), generator=generator, dtype=torch.float64) * 0.8 + shift
    return x.to(dtype), y.to(dtype)


def sq_cost(x, y):
    return torch.cdist(x, y) ** 2


class OpRecorder(TorchDispatchMode):
    """Records every op that reaches a backend kernel."""

    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


# ---------------------------------------------------------------- POT's sinkhorn_log


@pytest.mark.parametrize("n,m", [(1, 1), (7, 5), (40, 33), (130, 90)])
@pytest.mark.parametrize("reg_scale", [1.0, 0.1, 0.02])
def test_sinkhorn2_matches_pot(n, m, reg_scale, generator):
    x, y = clouds(generator, n, m)
    M = sq_cost(x, y)
    a, b = histogram(n, generator), histogram(m, generator)
    reg = reg_scale * float(M.mean()) if n * m > 1 else reg_scale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # POT warns when it hits numItermax; so do we
        expected, pot_log = ot.sinkhorn2(
            a.numpy(), b.numpy(), M.numpy(), reg, method="sinkhorn_log", stopThr=1e-9, numItermax=1000, log=True
        )
        cost, log = sinkhorn2(a, b, M, reg, tol=1e-9, max_iter=1000, log=True)
    assert cost.dtype == torch.float64 and cost.shape == ()
    assert abs(float(cost) - float(expected)) <= 1e-6 * abs(float(expected)) + 1e-15
    assert int(log["niter"]) == pot_log["niter"]
    torch.testing.assert_close(log["log_u"], torch.from_numpy(np.asarray(pot_log["log_u"])), rtol=1e-6, atol=1e-6)


def test_sinkhorn_plan_and_batch_match_pot(generator):
    batch, n, m = 3, 25, 31
    x, y = clouds(generator, n, m, batch=(batch,))
    M = sq_cost(x, y)
    a, b = histogram(n, generator, (batch,)), histogram(m, generator, (batch,))
    reg = 0.05 * float(M.mean())
    # room to converge: about 1 problem in 900 of this kind needs more than the default 1,000 iterations
    # (the slowest of 900 measured took 1,820)
    iters = 20_000
    plan, log = sinkhorn(a, b, M, reg, log=True, numItermax=iters)
    costs = sinkhorn2(a, b, M, reg, numItermax=iters)
    assert plan.shape == (batch, n, m) and costs.shape == (batch,)
    for k in range(batch):
        ref_plan = ot.sinkhorn(a[k].numpy(), b[k].numpy(), M[k].numpy(), reg, method="sinkhorn_log", stopThr=1e-9, numItermax=iters)
        torch.testing.assert_close(plan[k], torch.from_numpy(ref_plan), rtol=1e-6, atol=1e-12)
        ref_cost = ot.sinkhorn2(a[k].numpy(), b[k].numpy(), M[k].numpy(), reg, method="sinkhorn_log", stopThr=1e-9, numItermax=iters)
        assert abs(float(costs[k]) - float(ref_cost)) <= 1e-6 * abs(float(ref_cost))
    assert bool(log["converged"].all())
    # Marginals: rows exact (last update), columns within tol.
    torch.testing.assert_close(plan.sum(2), a, rtol=1e-9, atol=1e-12)
    assert float((plan.sum(1) - b).norm(dim=1).max()) < 1e-9


def test_problems_of_a_batch_stop_on_their_own(generator):
    n = 20
    x, y = clouds(generator, n, n, batch=(2,))
    M = sq_cost(x, y)
    # the second problem needs more iterations at the same reg: x20 took 3.6x to 376x as many in 150
    # random problems (x5 was not always slower)
    M[1] = M[1] * 20
    a, b = histogram(n, generator, (2,)), histogram(n, generator, (2,))
    _, log = sinkhorn2(a, b, M, 0.5, log=True, max_iter=100_000)
    solo = [int(sinkhorn2(a[k], b[k], M[k], 0.5, log=True, max_iter=100_000)[1]["niter"]) for k in range(2)]
    assert bool(log["converged"].all())
    assert log["niter"].tolist() == solo and solo[0] < solo[1]


def test_uniform_weights_by_default_and_reference_backend(generator):
    x, y = clouds(generator, 12, 9)
    M = sq_cost(x, y)
    ours = sinkhorn2(None, None, M, 0.3)
    uniform = sinkhorn2(torch.full((12,), 1 / 12, dtype=M.dtype), torch.full((9,), 1 / 9, dtype=M.dtype), M, 0.3)
    ref = sinkhorn2([], [], M, 0.3, backend="reference")
    expected = ot.sinkhorn2([], [], M.numpy(), 0.3, method="sinkhorn_log")
    for value in (ours, uniform, ref):
        assert abs(float(value) - float(expected)) <= 1e-6 * float(expected)


@pytest.mark.filterwarnings("ignore:sinkhorn did not converge")
def test_small_reg_approaches_exact_emd(generator):
    n, m = 12, 15
    x, y = torch.rand(n, 2, generator=generator, dtype=torch.float64), torch.rand(m, 2, generator=generator, dtype=torch.float64)
    M = torch.cdist(x, y)
    M = M / M.max()
    a, b = histogram(n, generator), histogram(m, generator)
    exact = float(ot.emd2(a.numpy(), b.numpy(), M.numpy()))
    gaps = []
    for reg in (1e-1, 1e-2, 1e-3):
        cost = float(sinkhorn2(a, b, M, reg, max_iter=50_000))
        plan = sinkhorn(a, b, M, reg, max_iter=50_000)
        assert abs(float((plan * M).sum()) - cost) <= 1e-12
        gaps.append(cost - exact)
        # <pi_eps, M> - EMD <= eps * (log n + log m) (entropy of the plan bounds the gap);
        # below EMD only by what the marginals still miss (a plan whose marginals are off by
        # delta in L1 is within delta of a feasible one, so its cost within delta * max M).
        delta = float((plan.sum(1) - a).abs().sum() + (plan.sum(0) - b).abs().sum())
        assert -delta * float(M.max()) - 1e-9 <= gaps[-1] <= reg * math.log(n * m) + 1e-9
    assert gaps[0] > gaps[1] > gaps[2]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tiny_reg_is_finite(dtype, generator):
    n = 30
    x, y = clouds(generator, n, n)
    M = sq_cost(x, y)
    a, b = histogram(n, generator), histogram(n, generator)
    reg = 1e-4 * float(M.max())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan, log = sinkhorn(a.to(dtype), b.to(dtype), M.to(dtype), reg, max_iter=200, log=True)
        cost = sinkhorn2(a.to(dtype), b.to(dtype), M.to(dtype), reg, max_iter=200)
        div = sinkhorn_divergence(x.to(dtype), y.to(dtype), blur=1e-2 * math.sqrt(float(M.max())))
    assert bool(torch.isfinite(plan).all()) and bool(torch.isfinite(log["log_u"]).all())
    assert math.isfinite(float(cost)) and math.isfinite(float(div))


def test_float32_reports_non_convergence_and_agrees_with_float64(generator):
    n = 40
    x, y = clouds(generator, n, n)
    M = sq_cost(x, y)
    a, b = histogram(n, generator), histogram(n, generator)
    reg = 1e-3 * float(M.max())
    with pytest.warns(RuntimeWarning, match="did not converge"):
        _, log = sinkhorn2(a.float(), b.float(), M.float(), reg, max_iter=30, log=True)
    assert not bool(log["converged"]) and int(log["niter"]) == 29
    # With room to converge, float32 stops at its own tolerance (no warning)
    # and agrees with float64 to float32's resolution. Room: the slowest of 300
    # problems of this kind took 3,290 iterations (one in 300 needs over 1,000).
    reg = 0.05 * float(M.mean())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c32, log32 = sinkhorn2(a.float(), b.float(), M.float(), reg, log=True, max_iter=50_000)
    c64 = sinkhorn2(a, b, M, reg, max_iter=50_000)
    assert bool(log32["converged"])
    assert abs(float(c32) - float(c64)) <= 1e-4 * float(c64)


# ---------------------------------------------------------------- GeomLoss's divergence


def geomloss_value_and_grads(x, y, a, b, p, blur, scaling, debias):
    loss = geomloss.SamplesLoss("sinkhorn", p=p, blur=blur, scaling=scaling, debias=debias, backend="tensorized")
    leaves = [t.detach().clone().requires_grad_() for t in (x, y, a, b)]
    value = loss(leaves[2], leaves[0], leaves[3], leaves[1])
    return value.detach(), torch.autograd.grad(value.sum(), leaves)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("debias", [True, False])
@pytest.mark.parametrize("batch,n,m,d", [((), 60, 45, 2), ((), 17, 17, 5), ((3,), 33, 20, 3), ((1,), 1, 4, 2)])
def test_divergence_matches_geomloss(p, debias, batch, n, m, d, generator):
    x, y = clouds(generator, n, m, d, batch)
    a, b = histogram(n, generator, batch), histogram(m, generator, batch)
    blur, scaling = 0.05, 0.5
    expected, expected_grads = geomloss_value_and_grads(x, y, a, b, p, blur, scaling, debias)
    leaves = [t.clone().requires_grad_() for t in (x, y, a, b)]
    value = sinkhorn_divergence(*leaves, p=p, blur=blur, scaling=scaling, debias=debias)
    grads = torch.autograd.grad(value.sum(), leaves)
    assert value.shape == expected.shape
    torch.testing.assert_close(value.detach(), expected, rtol=1e-10, atol=1e-12)
    for ours, theirs, name in zip(grads, expected_grads, "xyab"):
        scale = float(theirs.abs().max()) + 1e-12
        assert float((ours - theirs).abs().max()) <= 1e-9 * scale, name


# Unbalanced OT (reach). GeomLoss's value is (rho + eps/2) T (see
# fastgan.reference.sinkhorn.points_cost); its autograd differentiates that
# expression, while the derivative of the unbalanced cost at fixed potentials
# carries (rho + eps) (Sejourne et al. 2019, Prop. 12; GeomLoss's
# UnbalancedWeight.backward says so but autograd never calls it). So the
# values must agree and the gradients must agree after that rescaling; the
# finite-difference test below checks which one is the derivative.


def unbalanced_inputs(generator, batch, n, m, d):
    x, y = clouds(generator, n, m, d, batch)
    a, b = histogram(n, generator, batch), 1.4 * histogram(m, generator, batch)  # unequal masses
    return x, y, a, b


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("debias", [True, False])
@pytest.mark.parametrize("reach", [0.3, 1.5])
@pytest.mark.parametrize("batch,n,m,d", [((), 50, 35, 2), ((2,), 21, 30, 3)])
def test_unbalanced_divergence_matches_geomloss(p, debias, reach, batch, n, m, d, generator):
    x, y, a, b = unbalanced_inputs(generator, batch, n, m, d)
    blur, scaling = 0.05, 0.5
    loss = geomloss.SamplesLoss(
        "sinkhorn", p=p, blur=blur, scaling=scaling, debias=debias, reach=reach, backend="tensorized"
    )
    theirs = [t.clone().requires_grad_() for t in (x, y, a, b)]
    expected = loss(theirs[2], theirs[0], theirs[3], theirs[1])
    expected_grads = torch.autograd.grad(expected.sum(), theirs)
    rho, eps = reach**p, blur**p
    ratio = (rho + eps) / (rho + eps / 2)
    wanted = [ratio * expected_grads[0], ratio * expected_grads[1]]
    if debias:
        wanted += [ratio * expected_grads[2], ratio * expected_grads[3]]
    else:  # d/da_i of the mass terms of the cost as well: -eps / 2
        wanted += [ratio * expected_grads[2] - eps / 2, ratio * expected_grads[3] - eps / 2]
    for backend in ("auto", "reference"):
        leaves = [t.clone().requires_grad_() for t in (x, y, a, b)]
        value = sinkhorn_divergence(*leaves, p=p, blur=blur, scaling=scaling, debias=debias, reach=reach, backend=backend)
        grads = torch.autograd.grad(value.sum(), leaves)
        torch.testing.assert_close(value.detach(), expected.detach(), rtol=1e-9, atol=1e-12)
        for ours, want, name in zip(grads, wanted, "xyab"):
            scale = float(want.abs().max()) + 1e-12
            assert float((ours - want).abs().max()) <= 1e-8 * scale, (backend, name)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("debias", [True, False])
def test_unbalanced_divergence_gradcheck(p, debias, generator):
    n, m = 5, 6
    x, y = clouds(generator, n, m, batch=(2,))
    wa = torch.rand(2, n, generator=generator, dtype=torch.float64) + 0.2
    wb = torch.rand(2, m, generator=generator, dtype=torch.float64) + 0.2

    # Converged potentials: the envelope gradient is the exact derivative,
    # with respect to the unnormalised weights too (masses differ freely).
    def f(x, y, wa, wb):
        return sinkhorn_divergence(
            x, y, wa, wb, p=p, blur=0.7, tol=1e-14, max_iter=20_000, diameter=4.0, reach=0.8, debias=debias
        )

    inputs = tuple(t.clone().requires_grad_() for t in (x, y, wa, wb))
    assert torch.autograd.gradcheck(f, inputs, atol=1e-7, rtol=1e-5)


def test_unbalanced_limits(generator):
    x, y = clouds(generator, 30, 25, batch=(2,))
    a, b = histogram(30, generator, (2,)), histogram(25, generator, (2,))
    # rho -> infinity: the balanced divergence (the damping and the cost's
    # expansion differ from it by O(eps / rho) and O(f / rho)).
    balanced = sinkhorn_divergence(x, y, a, b)
    torch.testing.assert_close(sinkhorn_divergence(x, y, a, b, reach=1e4), balanced, rtol=1e-5, atol=0)
    # Two clusters far apart: balanced OT pays the squared distance; the
    # unbalanced one destroys both masses instead (no plan: e^{-f/rho} = 0),
    # so OT_eps,rho = (rho + eps/2)(mass(a) + mass(b)), and the debiased
    # divergence is smaller by the self terms.
    far = y + 100.0
    assert float(sinkhorn_divergence(x, far, a, b).min()) > 4000
    rho, eps = 0.5**2, 0.05**2
    raw = sinkhorn_divergence(x, far, a, 1.3 * b, reach=0.5, debias=False)
    torch.testing.assert_close(raw, torch.full_like(raw, (rho + eps / 2) * 2.3), rtol=1e-12, atol=0)
    debiased = sinkhorn_divergence(x, far, a, 1.3 * b, reach=0.5)
    assert bool((debiased > 0).all()) and bool((debiased < raw).all())


@pytest.mark.parametrize("blur,scaling", [(0.2, 0.7), (0.01, 0.9)])
def test_divergence_schedules_match_geomloss(blur, scaling, generator):
    x, y = clouds(generator, 30, 40)
    a, b = histogram(30, generator), histogram(40, generator)
    expected, _ = geomloss_value_and_grads(x, y, a, b, 2, blur, scaling, True)
    torch.testing.assert_close(sinkhorn_divergence(x, y, a, b, blur=blur, scaling=scaling), expected, rtol=1e-10, atol=1e-12)


def test_divergence_uniform_weights_float32_and_reference(generator):
    x, y = clouds(generator, 50, 70, batch=(2,))
    loss = geomloss.SamplesLoss("sinkhorn", p=2, blur=0.05, backend="tensorized")
    expected = loss(x, y)
    torch.testing.assert_close(sinkhorn_divergence(x, y), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(sinkhorn_divergence(x, y, backend="reference"), expected, rtol=1e-10, atol=1e-12)
    # float32: within a few float32 roundings of the float64 value per iteration.
    ours32 = sinkhorn_divergence(x.float(), y.float())
    assert ours32.dtype == torch.float32
    torch.testing.assert_close(ours32.double(), expected, rtol=2e-4, atol=1e-5)


def test_divergence_with_tol_converges_per_problem(generator):
    x, y = clouds(generator, 25, 25, batch=(2,))
    y[0] = x[0]  # identical clouds settle long before the other problem
    a, b = histogram(25, generator, (2,)), histogram(25, generator, (2,))
    b[0] = a[0]
    eps_list = sinkhorn_module.epsilon_schedule(2, 6.0, 0.3, 0.5)
    out = torch.ops.fastgan.sinkhorn_points(x, y, a, b, 2, eps_list, True, 1e-12, 5000)
    n_iter = out[5]
    assert int(n_iter[0]) < int(n_iter[1]) < 5000 and int(n_iter[0]) >= len(eps_list)
    # Converged: the value no longer depends on the last few iterations and
    # matches the reference run to the same tolerance.
    ref = reference.sinkhorn_points(x, y, a, b, 2, eps_list, True, 1e-12, 5000)
    torch.testing.assert_close(out[0], ref, rtol=1e-9, atol=1e-12)
    assert abs(float(out[0][0])) < 1e-10  # S_eps(a, a) = 0
    public = sinkhorn_divergence(x, y, a, b, blur=0.3, tol=1e-12, max_iter=5000, diameter=6.0)
    torch.testing.assert_close(public, out[0])


@pytest.mark.parametrize("p", [1, 2])
def test_divergence_gradcheck(p, generator):
    n, m = 5, 6
    x, y = clouds(generator, n, m, batch=(2,))
    wa = torch.rand(2, n, generator=generator, dtype=torch.float64) + 0.2
    wb = torch.rand(2, m, generator=generator, dtype=torch.float64) + 0.2

    # Converged potentials (tol): the envelope gradient is the exact derivative.
    def f(x, y, wa, wb):
        a, b = wa / wa.sum(1, keepdim=True), wb / wb.sum(1, keepdim=True)
        return sinkhorn_divergence(x, y, a, b, p=p, blur=0.7, tol=1e-14, max_iter=20_000, diameter=4.0)

    inputs = tuple(t.clone().requires_grad_() for t in (x, y, wa, wb))
    assert torch.autograd.gradcheck(f, inputs, atol=1e-7, rtol=1e-5)


def test_double_backward_is_refused(generator):
    x, y = clouds(generator, 4, 4)
    x.requires_grad_()
    (g,) = torch.autograd.grad(sinkhorn_divergence(x, y), x, create_graph=False)
    assert g.shape == x.shape
    with pytest.raises(RuntimeError, match="differentiable once"):
        torch.autograd.grad(sinkhorn_divergence(x, y), x, create_graph=True)


def test_non_contiguous_inputs(generator):
    x, y = clouds(generator, 3, 3, d=20, batch=(2,))
    xt, yt = x.transpose(1, 2), y.transpose(1, 2)  # (2, 20, 3): 20 points in 3-D, strided
    a, b = histogram(20, generator, (2,)), histogram(20, generator, (2,))
    torch.testing.assert_close(
        sinkhorn_divergence(xt, yt, a, b), sinkhorn_divergence(xt.contiguous(), yt.contiguous(), a, b)
    )
    M = sq_cost(xt, yt)
    torch.testing.assert_close(sinkhorn2(a, b, M.transpose(1, 2), 0.5), sinkhorn2(a, b, M.transpose(1, 2).contiguous(), 0.5))


def test_empty_batch_and_single_point():
    x = torch.zeros(0, 3, 2, dtype=torch.float64)
    assert sinkhorn_divergence(x, x).shape == (0,)
    assert sinkhorn2(None, None, torch.zeros(0, 2, 3, dtype=torch.float64), 1.0).shape == (0,)
    one = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    other = torch.tensor([[1.5, 1.0]], dtype=torch.float64)
    # One point each: the plan is a single mass, OT_eps = C, OT(a, a) = C(x, x) = 0.
    torch.testing.assert_close(sinkhorn_divergence(one, other), torch.tensor(2.5, dtype=torch.float64))
    torch.testing.assert_close(sinkhorn2(None, None, torch.full((1, 1), 3.0, dtype=torch.float64), 0.1), torch.tensor(3.0, dtype=torch.float64))


# ---------------------------------------------------------------- bad input


def test_bad_input_sinkhorn(generator):
    M = sq_cost(*clouds(generator, 5, 4))
    a, b = histogram(5, generator), histogram(4, generator)
    with pytest.raises(ValueError, match="unequal mass"):
        sinkhorn2(a, 2 * b, M, 0.1)
    with pytest.raises(ValueError, match="`a` has negative"):
        bad = a.clone()
        bad[0], bad[1] = -0.1, bad[1] + 0.1 + bad[0]
        sinkhorn2(bad, b, M, 0.1)
    for reg in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="`reg`"):
            sinkhorn2(a, b, M, reg)
    bad = M.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="`M` contains NaN"):
        sinkhorn2(a, b, bad, 0.1)
    bad[1, 2] = float("inf")
    with pytest.raises(ValueError, match="`M` contains NaN"):
        sinkhorn(a, b, bad, 0.1)
    with pytest.raises(ValueError, match="`a` contains NaN"):
        sinkhorn2(torch.full_like(a, float("nan")), b, M, 0.1)
    with pytest.raises(ValueError, match="`a` must have shape"):
        sinkhorn2(histogram(6, generator), b, M, 0.1)
    with pytest.raises(ValueError, match="`b` must have shape"):
        sinkhorn2(a, histogram(4, generator, (2,)), M, 0.1)
    with pytest.raises(ValueError, match="`M` must have shape"):
        sinkhorn2(a, b, M[0], 0.1)
    with pytest.raises(TypeError, match="`M` has dtype"):
        sinkhorn2(a, b, M.long(), 0.1)
    with pytest.raises(TypeError, match="`a` must have the dtype"):
        sinkhorn2(a.float(), b, M, 0.1)
    with pytest.raises(ValueError, match="`method`"):
        sinkhorn2(a, b, M, 0.1, method="screenkhorn")
    with pytest.raises(ValueError, match="`max_iter`"):
        sinkhorn2(a, b, M, 0.1, max_iter=0)


def test_bad_input_divergence(generator):
    x, y = clouds(generator, 5, 4)
    a, b = histogram(5, generator), histogram(4, generator)
    with pytest.raises(ValueError, match="unequal mass"):
        sinkhorn_divergence(x, y, a, 1.5 * b)
    with pytest.raises(ValueError, match="`b` has negative"):
        bad = b.clone()
        bad[0], bad[1] = -0.1, bad[1] + 0.1 + bad[0]
        sinkhorn_divergence(x, y, a, bad)
    bad = x.clone()
    bad[2, 1] = float("inf")
    with pytest.raises(ValueError, match="`x` contains NaN"):
        sinkhorn_divergence(bad, y)
    with pytest.raises(ValueError, match="must share"):
        sinkhorn_divergence(x, y[:, :1])
    with pytest.raises(ValueError, match="must share"):
        sinkhorn_divergence(x.unsqueeze(0), y)
    with pytest.raises(ValueError, match="`a` must have shape"):
        sinkhorn_divergence(x, y, histogram(4, generator), b)
    with pytest.raises(ValueError, match="`p`"):
        sinkhorn_divergence(x, y, p=3)
    for name in ("blur", "scaling"):
        with pytest.raises(ValueError, match=f"`{name}`"):
            sinkhorn_divergence(x, y, **{name: 0.0})
    with pytest.raises(ValueError, match="`scaling`"):
        sinkhorn_divergence(x, y, scaling=1.5)
    for reach in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="`reach`"):
            sinkhorn_divergence(x, y, reach=reach)
    with pytest.raises(TypeError, match="`y` has"):
        sinkhorn_divergence(x, y.float())
    with pytest.raises(ValueError, match="`x` must have shape"):
        sinkhorn_divergence(x[0], y)


def test_kernels_check_their_arguments(generator):
    x, y = clouds(generator, 5, 4, batch=(1,))
    a, b = histogram(5, generator, (1,)), histogram(4, generator, (1,))
    with pytest.raises(ValueError, match="`p` must be 1 or 2"):
        torch.ops.fastgan.sinkhorn_points(x, y, a, b, 3, [1.0], True, -1.0, 10)
    with pytest.raises(ValueError, match="`a` has negative"):
        torch.ops.fastgan.sinkhorn_points(x, y, -a, b, 2, [1.0], True, -1.0, 10)
    with pytest.raises(ValueError, match="`eps_list`"):
        torch.ops.fastgan.sinkhorn_points(x, y, a, b, 2, [1.0, 0.0], True, -1.0, 10)
    with pytest.raises(ValueError, match="`b` must have shape"):
        torch.ops.fastgan.sinkhorn_points(x, y, a, a, 2, [1.0], True, -1.0, 10)
    for rho in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="`rho`"):
            torch.ops.fastgan.sinkhorn_points(x, y, a, b, 2, [1.0], True, -1.0, 10, rho)
        out = torch.ops.fastgan.sinkhorn_points(x, y, a, b, 2, [1.0], True, -1.0, 10)
        with pytest.raises(ValueError, match="`rho`"):
            torch.ops.fastgan.sinkhorn_points_backward(b.new_ones(1), x, y, a, b, *out[1:5], 2, 1.0, rho)
    # rho = inf is balanced transport.
    balanced = torch.ops.fastgan.sinkhorn_points(x, y, a, b, 2, [1.0], True, -1.0, 10)
    torch.testing.assert_close(
        torch.ops.fastgan.sinkhorn_points(x, y, a, b, 2, [1.0], True, -1.0, 10, float("inf"))[0], balanced[0]
    )
    with pytest.raises(ValueError, match="`reg`"):
        torch.ops.fastgan.sinkhorn_log(a, b, sq_cost(x, y), 0.0, 10, 1e-9)
    with pytest.raises(TypeError, match="`h` has dtype"):
        torch.ops.fastgan.sinkhorn_softmin(x, y, b.float(), 0.1, 2)


# ---------------------------------------------------------------- the compiled kernels


def test_compiled_cpu_kernels_are_the_ones_used(generator):
    for op in ("sinkhorn_log", "sinkhorn_softmin", "sinkhorn_points", "sinkhorn_points_backward"):
        assert _library.has_kernel(op, "cpu"), op
    x, y = clouds(generator, 6, 7)
    x.requires_grad_()
    M = sq_cost(x.detach(), y)
    with OpRecorder() as rec:
        sinkhorn_divergence(x, y).backward()
        sinkhorn2(None, None, M, 0.5)
    assert {"fastgan.sinkhorn_points", "fastgan.sinkhorn_points_backward", "fastgan.sinkhorn_log"} <= rec.ops


def test_softmin_matches_logsumexp(generator):
    x, y = clouds(generator, 9, 700, d=3, batch=(2,))  # more than one tile of columns
    h = torch.randn(2, 700, generator=generator, dtype=torch.float64)
    for p in (1, 2):
        C = point_cost(x, y, p)
        expected = -0.1 * torch.logsumexp(h.unsqueeze(1) - C / 0.1, dim=2)
        torch.testing.assert_close(torch.ops.fastgan.sinkhorn_softmin(x, y, h, 0.1, p), expected, rtol=1e-13, atol=1e-13)
    # A huge spread of h: the running maximum keeps it finite.
    h[:, ::3] = -1e5
    h[:, 1] = 800.0
    C = point_cost(x, y, 2)
    expected = -0.01 * torch.logsumexp(h.unsqueeze(1) - C / 0.01, dim=2)
    torch.testing.assert_close(torch.ops.fastgan.sinkhorn_softmin(x, y, h, 0.01, 2), expected, rtol=1e-13, atol=1e-12)


def test_opcheck(generator):
    x, y = clouds(generator, 6, 5, batch=(2,))
    a, b = histogram(6, generator, (2,)), histogram(5, generator, (2,))
    eps_list = [4.0, 1.0, 0.25]
    M = sq_cost(x, y)
    h = torch.randn(2, 5, generator=generator, dtype=torch.float64)
    torch.library.opcheck(torch.ops.fastgan.sinkhorn_log.default, (a, b, M, 0.5, 100, 1e-9))
    torch.library.opcheck(torch.ops.fastgan.sinkhorn_softmin.default, (x, y, h, 0.3, 2))
    for debias in (True, False):
        args = (x.clone().requires_grad_(), y.clone().requires_grad_(), a.clone().requires_grad_(), b, 2, eps_list, debias, -1.0, 10)
        torch.library.opcheck(torch.ops.fastgan.sinkhorn_points.default, args)
        out = torch.ops.fastgan.sinkhorn_points(x, y, a, b, 1, eps_list, debias, -1.0, 10)
        grad = torch.rand(2, generator=generator, dtype=torch.float64)
        torch.library.opcheck(
            torch.ops.fastgan.sinkhorn_points_backward.default, (grad, x, y, a, b, *out[1:5], 1, eps_list[-1])
        )
        # Unbalanced (rho).
        torch.library.opcheck(torch.ops.fastgan.sinkhorn_points.default, (*args, 0.7))
        out = torch.ops.fastgan.sinkhorn_points(x, y, a, b, 2, eps_list, debias, -1.0, 10, 0.7)
        torch.library.opcheck(
            torch.ops.fastgan.sinkhorn_points_backward.default, (grad, x, y, a, b, *out[1:5], 2, eps_list[-1], 0.7)
        )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_triton_kernels_match_cpu_kernels(triton_device, dtype, generator):
    from fastgan.kernels import sinkhorn as kernel

    x, y = clouds(generator, 11, 70, d=3, batch=(2,), dtype=dtype)
    a, b = histogram(11, generator, (2,), dtype), histogram(70, generator, (2,), dtype)
    h = torch.randn(2, 70, generator=generator, dtype=torch.float64).to(dtype)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    dev = triton_device
    for p in (1, 2):
        ours = kernel.sinkhorn_softmin(x.to(dev), y.to(dev), h.to(dev), 0.2, p).cpu()
        torch.testing.assert_close(ours, torch.ops.fastgan.sinkhorn_softmin(x, y, h, 0.2, p), **tol)
    eps_list = sinkhorn_module.epsilon_schedule(2, 5.0, 0.3, 0.5)
    tri = kernel.sinkhorn_points(*(t.to(dev) for t in (x, y, a, b)), 2, eps_list, True, -1.0, 100)
    cpu = torch.ops.fastgan.sinkhorn_points(x, y, a, b, 2, eps_list, True, -1.0, 100)
    for t, c in zip(tri, cpu):
        torch.testing.assert_close(t.cpu(), c, **tol)
    grad = torch.rand(2, generator=generator, dtype=torch.float64).to(dtype)
    gt = kernel.sinkhorn_points_backward(grad.to(dev), *(t.to(dev) for t in (x, y, a, b)), *tri[1:5], 2, eps_list[-1])
    gc = torch.ops.fastgan.sinkhorn_points_backward(grad, x, y, a, b, *cpu[1:5], 2, eps_list[-1])
    for t, c in zip(gt, gc):
        torch.testing.assert_close(t.cpu(), c, **tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_triton_sinkhorn_log_matches_cpu_kernel(triton_device, dtype, generator):
    """POT's iterations on an explicit cost: the same iteration counts, stops,
    marginal errors, scalings and costs as the C++ kernel, each problem of a
    batch stopping on its own (one runs to max_iter), a zero weight included."""
    from fastgan.kernels import sinkhorn as kernel

    n, m = 37, 70  # more than one tile of rows and of columns
    x, y = clouds(generator, n, m, batch=(3,))
    M = sq_cost(x, y)
    M[0] *= 0.5  # fast
    M[1] *= 2.5  # slower
    M[2] *= 40.0  # runs to max_iter
    a, b = histogram(n, generator, (3,)), histogram(m, generator, (3,))
    a[0, 5] = 0.0
    a[0] /= a[0].sum()
    M, a, b = M.to(dtype), a.to(dtype), b.to(dtype)
    tol, max_iter = (1e-7, 61) if dtype == torch.float64 else (1e-4, 61)
    cpu = torch.ops.fastgan.sinkhorn_log(a, b, M, 1.0, max_iter, tol)
    dev = triton_device
    tri = kernel.sinkhorn_log(a.to(dev), b.to(dev), M.to(dev), 1.0, max_iter, tol)
    assert tri[3].cpu().tolist() == cpu[3].tolist() and tri[5].cpu().tolist() == cpu[5].tolist()
    assert cpu[5][0] and not cpu[5][2] and len(set(cpu[3].tolist())) > 1
    # float32: rounding of terms as large as M / reg (the third problem's), over the iterations.
    close = dict(rtol=1e-11, atol=1e-11) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-6 * float(M.max()))
    for t, c in zip(tri, cpu):
        torch.testing.assert_close(t.cpu(), c, **close)
    # And POT, problem by problem (float64).
    if dtype == torch.float64:
        for k in range(3):
            expected = ot.sinkhorn2(a[k].numpy(), b[k].numpy(), M[k].numpy(), 1.0, method="sinkhorn_log", numItermax=max_iter, stopThr=tol)
            assert abs(float(tri[2][k]) - float(expected)) <= 1e-9 * abs(float(expected))
    with pytest.raises(ValueError, match="`M` contains NaN"):
        bad = M.clone()
        bad[0, 1, 2] = float("nan")
        kernel.sinkhorn_log(a.to(dev), b.to(dev), bad.to(dev), 1.0, max_iter, tol)


@pytest.mark.parametrize(
    "n,m,d,batch", [(1, 5, 2, 3), (3, 70, 1, 7), (16, 9, 3, 5), (17, 4, 2, 2), (3, 20, 40, 5), (40, 30, 37, 2)]
)
def test_triton_small_problems_and_wide_points(triton_device, n, m, d, batch, generator):
    """Problems of at most BLOCK_N / 2 rows are packed several to a program
    (each row gathers its own problem's columns); a batch that does not
    fill the last program, and n = 17 (one problem per program), included.
    Points wider than MAX_BLOCK_D features spread the gradient over several
    programs per row block (d = 40, 37: three chunks, the last one partial)."""
    from fastgan.kernels import sinkhorn as kernel

    x, y = clouds(generator, n, m, d, batch=(batch,))
    h = torch.randn(batch, m, generator=generator, dtype=torch.float64)
    f = torch.randn(batch, n, generator=generator, dtype=torch.float64)
    scale = torch.rand(batch, n, generator=generator, dtype=torch.float64)
    dev = triton_device
    for p in (1, 2):
        ours = kernel.sinkhorn_softmin(x.to(dev), y.to(dev), h.to(dev), 0.3, p).cpu()
        C = point_cost(x, y, p)
        expected = -0.3 * torch.logsumexp(h.unsqueeze(1) - C / 0.3, dim=2)
        torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
        # The envelope rows: grad_i = scale_i sum_j w_ij dC/dx(x_i, y_j), w_ij = exp(h_j - C_ij/eps + f_i/eps).
        grad = torch.zeros_like(x)
        kernel._envelope(x.to(dev), y.to(dev), h.to(dev), f.to(dev), scale.to(dev), grad_dev := grad.to(dev), 0.3, -1.0, p)
        w = torch.exp(h.unsqueeze(1) - C / 0.3 + f.unsqueeze(2) / 0.3)
        diff = x.unsqueeze(2) - y.unsqueeze(1)
        dC = diff if p == 2 else torch.where((diff**2).sum(-1, keepdim=True) > 1e-8, diff / C.unsqueeze(-1), 0.0)
        expected_grad = -scale.unsqueeze(-1) * (w.unsqueeze(-1) * dC).sum(2)
        torch.testing.assert_close(grad_dev.cpu(), expected_grad, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("debias", [True, False])
def test_triton_unbalanced_matches_cpu_kernels(triton_device, debias, generator):
    from fastgan.kernels import sinkhorn as kernel

    x, y = clouds(generator, 9, 14, d=2, batch=(2,))
    a, b = histogram(9, generator, (2,)), 0.7 * histogram(14, generator, (2,))
    eps_list = sinkhorn_module.epsilon_schedule(1, 5.0, 0.3, 0.5)
    rho = 0.6
    dev = triton_device
    tri = kernel.sinkhorn_points(*(t.to(dev) for t in (x, y, a, b)), 1, eps_list, debias, -1.0, 100, rho)
    cpu = torch.ops.fastgan.sinkhorn_points(x, y, a, b, 1, eps_list, debias, -1.0, 100, rho)
    for t, c in zip(tri, cpu):
        torch.testing.assert_close(t.cpu(), c, rtol=1e-12, atol=1e-12)
    grad = torch.rand(2, generator=generator, dtype=torch.float64)
    gt = kernel.sinkhorn_points_backward(grad.to(dev), *(t.to(dev) for t in (x, y, a, b)), *tri[1:5], 1, eps_list[-1], rho)
    gc = torch.ops.fastgan.sinkhorn_points_backward(grad, x, y, a, b, *cpu[1:5], 1, eps_list[-1], rho)
    for t, c in zip(gt, gc):
        torch.testing.assert_close(t.cpu(), c, rtol=1e-12, atol=1e-12)


def test_triton_points_per_problem_convergence(triton_device, generator):
    """With a tolerance, each problem of a batch stops on its own (the Triton
    path drops converged problems from its launches): same iteration counts,
    potentials and values as the C++ kernel."""
    from fastgan.kernels import sinkhorn as kernel

    x, y = clouds(generator, 9, 13, batch=(4,))
    x = x * torch.tensor([0.2, 1.0, 3.0, 0.5], dtype=torch.float64)[:, None, None]
    a, b = histogram(9, generator, (4,), torch.float64), histogram(13, generator, (4,), torch.float64)
    eps_list = sinkhorn_module.epsilon_schedule(2, 6.0, 0.5, 0.5)
    # Few iterations (the interpreter is slow): some problems stop early, some at max_iter.
    for debias in (True, False):
        cpu = torch.ops.fastgan.sinkhorn_points(x, y, a, b, 2, eps_list, debias, 1e-4, 60)
        tri = kernel.sinkhorn_points(*(t.to(triton_device) for t in (x, y, a, b)), 2, eps_list, debias, 1e-4, 60)
        assert len(set(cpu[5].tolist())) > 1, "the problems should converge at different iterations"
        assert tri[5].cpu().tolist() == cpu[5].tolist()
        for t, c in zip(tri, cpu):
            torch.testing.assert_close(t.cpu(), c, rtol=1e-12, atol=1e-12)


@pytest.mark.cuda
def test_cuda_sinkhorn2_matches_cpu(device, generator):
    if device.type != "cuda":
        pytest.skip("the CUDA path (Triton kernels) needs a GPU")
    x, y = clouds(generator, 300, 200, batch=(4,))
    M = sq_cost(x, y)
    M[1:] *= torch.tensor([2.0, 5.0, 30.0], dtype=M.dtype)[:, None, None]
    a, b = histogram(300, generator, (4,)), histogram(200, generator, (4,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the last problem does not converge
        cost, log = sinkhorn2(a.to(device), b.to(device), M.to(device), 0.5, log=True, max_iter=200)
        expected, elog = sinkhorn2(a, b, M, 0.5, log=True, max_iter=200)
    assert log["niter"].cpu().tolist() == elog["niter"].tolist()
    assert log["converged"].cpu().tolist() == elog["converged"].tolist()
    torch.testing.assert_close(cost.cpu(), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(log["log_u"].cpu(), elog["log_u"], rtol=1e-9, atol=1e-9)


@pytest.mark.cuda
def test_cuda_divergence_matches_cpu(device, generator):
    if device.type != "cuda":
        pytest.skip("the CUDA path (Triton kernels) needs a GPU")
    x, y = clouds(generator, 300, 200, batch=(3,))
    xc = x.to(device).requires_grad_()
    value = sinkhorn_divergence(xc, y.to(device))
    (g,) = torch.autograd.grad(value.sum(), xc)
    x.requires_grad_()
    expected = sinkhorn_divergence(x, y)
    (ge,) = torch.autograd.grad(expected.sum(), x)
    torch.testing.assert_close(value.cpu(), expected.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g.cpu(), ge, rtol=1e-8, atol=1e-12)


def test_sinkhorn2_gradients_are_the_derivative_of_the_cost(generator):
    """Implicit derivatives of <plan, M> against central / one-sided differences, with zero
    weights (the conditional plans keep the adjoint defined there) and a batch."""
    B, n, m = 2, 6, 7
    a, b = histogram(n, generator, (B,)), histogram(m, generator, (B,))
    a[:, 1], b[:, 4] = 0, 0
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    M = torch.rand(B, n, m, generator=generator, dtype=torch.float64)

    def cost(M_, a_, b_):
        return sinkhorn2(a_, b_, M_, 0.3, stopThr=1e-15, numItermax=100_000).sum()

    leaves = [t.clone().requires_grad_() for t in (M, a, b)]
    gM, ga, gb = torch.autograd.grad(cost(*leaves), leaves)
    h = 1e-6
    E = torch.randn(B, n, m, generator=generator, dtype=torch.float64)
    fd = (cost(M + h * E, a, b) - cost(M - h * E, a, b)) / (2 * h)
    assert float(fd) == pytest.approx(float((gM * E).sum()), rel=1e-6, abs=1e-9)
    def one_sided(f, h=1e-5):  # second-order one-sided difference: error O(h^2), not O(h)
        return (-3 * f(0.0) + 4 * f(h) - f(2 * h)) / (2 * h)

    da = torch.zeros(B, n, dtype=torch.float64)
    da[:, 1], da[:, 0] = 1, -1  # mass into the zero weight: one-sided
    fd = one_sided(lambda t: cost(M, a + t * da, b))
    assert float(fd) == pytest.approx(float((ga * da).sum()), rel=1e-6, abs=1e-9)
    db = torch.zeros(B, m, dtype=torch.float64)
    db[:, 4], db[:, 2] = 1, -1
    fd = one_sided(lambda t: cost(M, a, b + t * db))
    assert float(fd) == pytest.approx(float((gb * db).sum()), rel=1e-6, abs=1e-9)
    with pytest.raises(RuntimeError):  # once differentiable: an error, not zeros
        g = torch.autograd.grad(cost(*leaves), leaves[0], create_graph=True)[0]
        torch.autograd.grad(g.sum(), leaves[0])


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_divergence_far_from_unit_scale_is_the_unit_answer_times_the_scale(generator, p, dtype):
    """fastgan.ot's rescaling rule (power_of_two_scale, degree p) for points from
    1e-300 to 1e300: S(s x, s y; blur s) = s^p S(x, y; blur), the unit answer being
    GeomLoss's; exact at powers of two for p = 2 (p = 1's smoothing of |x - y| at
    1e-4 is not homogeneous: a few 1e-4 relative)."""
    x, y = clouds(generator, 15, 11, d=3)
    loss = geomloss.SamplesLoss("sinkhorn", p=p, blur=0.3, scaling=0.5, backend="tensorized")
    unit = float(sinkhorn_divergence(x, y, p=p, blur=0.3))
    assert unit == pytest.approx(float(loss(x, y)), rel=1e-9)
    top = 29 if dtype == torch.float32 else 299  # s^p and s^-p within the dtype's range
    scales = [10.0 ** (e / p) for e in (-top, -10, 10, top)] + [2.0 ** (-90 // p), 2.0 ** (90 // p)]
    rel = {(torch.float64, 2): 1e-12, (torch.float64, 1): 5e-4, (torch.float32, 2): 1e-4, (torch.float32, 1): 5e-4}[dtype, p]
    at_unit = []
    for scale in scales:
        xs, ys = (x * scale).to(dtype), (y * scale).to(dtype)
        got = float(sinkhorn_divergence(xs, ys, p=p, blur=0.3 * scale))
        assert got == pytest.approx(unit * scale**p, rel=rel), scale
        if math.log2(scale).is_integer():
            at_unit.append(got / scale**p)
    # two powers of two outside the band bring the points to the same unit-scale
    # problem (max |x| / s in [1, 2)): the same solve, the same value exactly
    assert at_unit[0] == at_unit[1]
