"""fastgan.ot.emd / emd2 / wasserstein against POT, SciPy's LP solver, LP duality and the seed examples."""

from __future__ import annotations

import math

import numpy as np
import ot as pot
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import fastgan
from fastgan import _library, reference
from fastgan.ot import emd, emd2, wasserstein


class OpRecorder(TorchDispatchMode):
    """Records the fastgan ops a call dispatches."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        if name.startswith("fastgan::"):
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


def simplex_weights(n, generator, zeros=0.0):
    w = torch.rand(n, generator=generator, dtype=torch.float64) + 0.05
    if zeros:
        w[torch.rand(n, generator=generator) < zeros] = 0.0
        if w.sum() == 0:
            w[0] = 1.0
    return w / w.sum()


def points(n, generator, d=2):
    return torch.rand(n, d, generator=generator, dtype=torch.float64)


def sq_dist(x, y):
    return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist") ** 2


def check_solution(a, b, M, cost, log, rtol=1e-9):
    """Marginals, <plan, M> = cost, strong duality and dual feasibility, on every problem."""
    plan, u, v = log["plan"], log["u"], log["v"]
    scale = float(M.abs().max()) + 1e-300
    mass = a.sum(-1)
    torch.testing.assert_close(plan.sum(-1), a, rtol=0, atol=1e-12 * float(mass.max()))
    torch.testing.assert_close(plan.sum(-2), b, rtol=0, atol=1e-12 * float(mass.max()))
    assert float(plan.min()) >= 0
    torch.testing.assert_close((plan * M).sum((-2, -1)), cost, rtol=rtol, atol=1e-14)
    dual = (a * u).sum(-1) + (b * v).sum(-1)
    torch.testing.assert_close(dual, cost, rtol=rtol, atol=1e-12 * scale * float(mass.max()))
    slack = M - u[..., :, None] - v[..., None, :]
    assert float(slack.min()) >= -1e-10 * scale
    # Complementary slackness: the plan only uses tight pairs.
    assert float((plan * slack.clamp_min(0)).sum()) <= 1e-10 * scale * float(mass.max())
    assert bool((log["result_code"] == 1).all()) and log["warning"] is None


def pot_cost(a, b, M):
    return pot.emd2(a.numpy(), b.numpy(), M.numpy(), numItermax=10**7)


def test_compiled_kernels_are_the_ones_used(monkeypatch, generator):
    assert _library.has_kernel("emd", "cpu")
    assert torch._C._dispatch_has_kernel_for_dispatch_key("fastgan::emd", "CPU")

    def no_reference(*args, **kwargs):
        raise AssertionError("backend='auto' ran the reference")

    monkeypatch.setattr(reference, "emd_solve", no_reference)
    a, b = simplex_weights(6, generator), simplex_weights(9, generator)
    M = torch.rand(6, 9, generator=generator, dtype=torch.float64)
    with OpRecorder() as rec:
        emd2(a, b, M)
    assert rec.ops == ["fastgan::emd"]
    with OpRecorder() as rec:
        emd2(None, None, torch.rand(3, 8, 8, generator=generator, dtype=torch.float64))
    assert rec.ops == ["fastgan::linear_sum_assignment"]
    with OpRecorder() as rec:
        wasserstein(points(7, generator), points(7, generator))
    assert rec.ops == ["fastgan::linear_sum_assignment"]
    with OpRecorder() as rec:
        wasserstein(points(7, generator), points(5, generator))
    assert rec.ops == ["fastgan::emd"]


CASES = ["uniform_rect", "random_weights", "ties", "duplicates", "zero_weights"]


def make_case(case, n, m, generator):
    if case == "uniform_rect":
        a, b = torch.full((n,), 1.0 / n, dtype=torch.float64), torch.full((m,), 1.0 / m, dtype=torch.float64)
    else:
        zeros = 0.3 if case == "zero_weights" else 0.0
        a, b = simplex_weights(n, generator, zeros), simplex_weights(m, generator, zeros)
    if case == "ties":
        M = torch.randint(0, 3, (n, m), generator=generator).double()
    else:
        x, y = points(n, generator), points(m, generator)
        if case == "duplicates":
            x[1::3] = x[0]
            y[::2] = x[0]
        M = sq_dist(x, y)
    return a, b, M


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("n,m", [(1, 1), (1, 5), (6, 1), (7, 11), (40, 25), (90, 90)])
def test_emd2_matches_pot(case, n, m, generator):
    a, b, M = make_case(case, n, m, generator)
    cost, log = emd2(a, b, M, log=True)
    expected = pot_cost(a, b, M)
    assert float(cost) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    check_solution(a, b, M, cost, log)
    plan = emd(a, b, M)
    torch.testing.assert_close(plan, log["plan"])


@pytest.mark.parametrize("case", CASES)
def test_batched_matches_pot(case, generator):
    problems = [make_case(case, 13, 17, generator) for _ in range(5)]
    a, b, M = (torch.stack(t) for t in zip(*problems))
    cost, log = emd2(a, b, M, log=True)
    assert cost.shape == (5,) and log["plan"].shape == (5, 13, 17)
    for k in range(5):
        assert float(cost[k]) == pytest.approx(pot_cost(a[k], b[k], M[k]), rel=1e-9, abs=1e-15)
    check_solution(a, b, M, cost, log)


def test_general_weights_medium(generator):
    a, b, M = make_case("random_weights", 300, 420, generator)
    cost, log = emd2(a, b, M, log=True)
    assert float(cost) == pytest.approx(pot_cost(a, b, M), rel=1e-9)
    check_solution(a, b, M, cost, log)


@pytest.mark.parametrize("n", [1, 2, 9, 64])
@pytest.mark.parametrize("ties", [False, True])
def test_assignment_fast_path_matches_pot(n, ties, generator):
    x, y = points(n, generator), points(n, generator)
    M = torch.randint(0, 3, (n, n), generator=generator).double() if ties else sq_dist(x, y)
    w = torch.full((n,), 1.0 / n, dtype=torch.float64)
    for a, b in ((None, None), (w, w), (torch.empty(0), None)):
        with OpRecorder() as rec:
            cost, log = emd2(a, b, M, log=True)
        assert rec.ops == ["fastgan::linear_sum_assignment"]
        assert float(cost) == pytest.approx(pot_cost(w, w, M), rel=1e-9, abs=1e-15)
        check_solution(w, w, M, cost, log)
        # The plan is a permutation divided by n.
        assert bool(((log["plan"] == 0) | (log["plan"] == 1.0 / n)).all())
        assert bool((log["plan"] > 0).sum(1).eq(1).all())
    # Uniform weights of another mass scale the plan and the cost, not the duals.
    c3, log3 = emd2(3 * w, 3 * w, M, log=True)
    assert float(c3) == pytest.approx(3 * pot_cost(w, w, M), rel=1e-9, abs=1e-15)
    check_solution(3 * w, 3 * w, M, c3, log3)


def test_assignment_fast_path_batched(generator):
    x = torch.rand(6, 20, 3, generator=generator, dtype=torch.float64)
    y = torch.rand(6, 20, 3, generator=generator, dtype=torch.float64)
    M = sq_dist(x, y)
    cost, log = emd2(None, None, M, log=True)
    w = torch.full((6, 20), 1.0 / 20, dtype=torch.float64)
    for k in range(6):
        assert float(cost[k]) == pytest.approx(pot_cost(w[k], w[k], M[k]), rel=1e-9)
    check_solution(w, w, M, cost, log)


def test_reference_backend_agrees(generator):
    for case in CASES:
        a, b, M = make_case(case, 8, 11, generator)
        cost, log = emd2(a, b, M, log=True, backend="reference")
        assert float(cost) == pytest.approx(pot_cost(a, b, M), rel=1e-9, abs=1e-15)
        check_solution(a, b, M, cost, log, rtol=1e-8)
        torch.testing.assert_close(reference.emd2(a, b, M), cost)
    x, y = points(9, generator), points(9, generator)
    ours = wasserstein(x, y, p=1.0)
    assert float(wasserstein(x, y, p=1.0, backend="reference")) == pytest.approx(float(ours), rel=1e-9)


def test_general_weights_on_every_device(device, generator):
    """General weights on any device: the same plan, cost, duals and gradient
    as on the CPU (on CUDA the network simplex runs on the host's cores)."""
    n, m = 23, 31
    a = torch.rand(n, generator=generator, dtype=torch.float64) + 0.05
    b = torch.rand(m, generator=generator, dtype=torch.float64) + 0.05
    a, b = a / a.sum(), b / b.sum()
    M = torch.rand(n, m, generator=generator, dtype=torch.float64)
    plan, log = emd(a, b, M, log=True)
    Md = M.to(device, copy=True).requires_grad_(True)
    plan_d, log_d = emd(a.to(device), b.to(device), Md, log=True)
    assert plan_d.device == Md.device and log_d["u"].device == Md.device
    torch.testing.assert_close(plan_d.cpu(), plan, rtol=0, atol=0)
    torch.testing.assert_close(log_d["u"].cpu(), log["u"], rtol=0, atol=0)
    cost = emd2(a.to(device), b.to(device), Md)
    assert float(cost.detach()) == pytest.approx(float(pot.emd2(a.numpy(), b.numpy(), M.numpy())), rel=1e-9)
    cost.backward()
    torch.testing.assert_close(Md.grad.cpu(), plan)


def test_emd_reports_its_cuda_implementation():
    """Where the library has CUDA kernels, fastgan::emd takes CUDA tensors
    through the host's network simplex, and says so."""
    ops = _library.compiled_ops()
    if not any("cuda" in d for devices in ops.values() for d in devices):
        pytest.skip("built without CUDA kernels")
    assert "cuda (host)" in ops["emd"]


def test_shovelfuls_example():
    # Seed example: P = (3, 2, 1, 4), Q = (1, 2, 4, 3) on positions 1..4, cost |i - j|: W = 5 units of dirt.
    pos = torch.arange(1.0, 5.0, dtype=torch.float64)
    M = (pos[:, None] - pos[None, :]).abs()
    P = torch.tensor([3.0, 2, 1, 4], dtype=torch.float64)
    Q = torch.tensor([1.0, 2, 4, 3], dtype=torch.float64)
    # The 1-D rule of the seed, as an independent count: W = sum |delta_i|, delta_{i+1} = delta_i + P_i - Q_i.
    delta, rule = 0.0, 0.0
    for p_i, q_i in zip(P.tolist(), Q.tolist()):
        delta += p_i - q_i
        rule += abs(delta)
    assert rule == 5.0
    for backend in ("auto", "reference"):
        assert float(emd2(P, Q, M, backend=backend)) == pytest.approx(5.0, rel=1e-12)
    assert float(wasserstein(pos[:, None], pos[:, None], P, Q, p=1.0)) == pytest.approx(5.0, rel=1e-12)
    # W_1 of the normalised distributions: 5 units of dirt out of 10.
    assert float(wasserstein(pos[:, None], pos[:, None], P / 10, Q / 10, p=1.0)) == pytest.approx(0.5, rel=1e-12)


@pytest.mark.parametrize("theta", [0.0, 0.3, -1.7])
@pytest.mark.parametrize("p", [1.0, 2.0])
def test_parallel_lines_is_theta(theta, p, generator):
    # WGAN Example 1: P_0 = (0, Z), P_theta = (theta, Z), Z ~ U[0, 1], the same Z samples on both sides.
    z = torch.rand(64, 1, generator=generator, dtype=torch.float64)
    x = torch.cat([torch.zeros_like(z), z], 1)
    y = torch.cat([torch.full_like(z, theta), z], 1)
    assert float(wasserstein(x, y, p=p)) == pytest.approx(abs(theta), rel=1e-12, abs=1e-15)
    # Random (equal) weights take the network simplex; the answer is the same.
    w = simplex_weights(64, generator)
    assert float(wasserstein(x, y, w, w, p=p)) == pytest.approx(abs(theta), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0])
def test_wasserstein_matches_pot(p, generator):
    x, y = points(30, generator, d=3), points(23, generator, d=3)
    a, b = simplex_weights(30, generator), simplex_weights(23, generator)
    dist = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")
    expected = pot_cost(a, b, dist**p) ** (1 / p)
    assert float(wasserstein(x, y, a, b, p=p)) == pytest.approx(expected, rel=1e-9)
    xb = torch.stack([x[:23], y])
    yb = torch.stack([y, y])
    batched = wasserstein(xb, yb, p=p)
    w = np.full(23, 1 / 23)
    assert float(batched[0]) == pytest.approx(pot.emd2(w, w, (dist[:23] ** p).numpy()) ** (1 / p), rel=1e-9)
    assert float(batched[1]) == 0.0


def test_gradcheck_cost_matrix(generator):
    a, b = simplex_weights(4, generator), simplex_weights(5, generator)
    M = torch.rand(4, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda M: emd2(a, b, M), (M,))
    Ms = torch.rand(5, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda M: emd2(None, None, M), (Ms,))  # assignment path
    Mb = torch.rand(3, 4, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda M: emd2(a, b, M), (Mb,))
    (g,) = torch.autograd.grad(emd2(a, b, M), M)
    torch.testing.assert_close(g, emd(a, b, M.detach()))


def test_gradcheck_weights(generator):
    # Only mass-preserving changes of a and b are defined (b is scaled to a's
    # mass): check along a sum-zero parametrisation, a + t - mean(t).
    a, b = simplex_weights(4, generator), simplex_weights(6, generator)
    M = torch.rand(4, 6, generator=generator, dtype=torch.float64)
    t = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    s = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: emd2(a + t - t.mean(), b, M), (t,))
    assert torch.autograd.gradcheck(lambda s: emd2(a, b + s - s.mean(), M), (s,))
    # And the gradients themselves are POT's: u - mean(u), v - mean(v).
    ar, br = a.clone().requires_grad_(), b.clone().requires_grad_()
    ga, gb = torch.autograd.grad(emd2(ar, br, M), (ar, br))
    _, log = pot.emd2(a.numpy(), b.numpy(), M.numpy(), log=True)
    np.testing.assert_allclose(ga.numpy(), log["u"] - log["u"].mean(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gb.numpy(), log["v"] - log["v"].mean(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0])
def test_gradcheck_wasserstein_points(p, generator):
    x = torch.rand(5, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    y = torch.rand(4, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    a, b = simplex_weights(5, generator), simplex_weights(4, generator)
    assert torch.autograd.gradcheck(lambda x, y: wasserstein(x, y, a, b, p=p), (x, y))
    y5 = torch.rand(2, 5, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    x5 = torch.rand(2, 5, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: wasserstein(x, y, p=p), (x5, y5))  # assignment path


def test_float32(generator):
    a, b, M = make_case("random_weights", 50, 70, generator)
    cost, log = emd2(a.float(), b.float(), M.float(), log=True)
    assert cost.dtype == torch.float32 and log["plan"].dtype == torch.float32 and log["u"].dtype == torch.float32
    expected = pot_cost(a.float().double(), b.float().double(), M.float().double())
    assert float(cost) == pytest.approx(expected, rel=1e-6)
    x, y = points(32, generator).float(), points(32, generator).float()
    w = wasserstein(x, y)
    assert w.dtype == torch.float32
    expected = pot_cost(torch.full((32,), 1 / 32, dtype=torch.float64), torch.full((32,), 1 / 32, dtype=torch.float64), sq_dist(x.double(), y.double())) ** 0.5
    assert float(w) == pytest.approx(expected, rel=1e-5)


def test_non_contiguous_and_broadcast_weights(generator):
    a, b, M = make_case("random_weights", 9, 12, generator)
    Mt = M.T.contiguous().T
    assert not Mt.is_contiguous()
    torch.testing.assert_close(emd2(a, b, Mt), emd2(a, b, M))
    Mb = torch.stack([M, M.flip(0)])
    costs = emd2(a, b, Mb)  # (n,) weights shared by the batch
    torch.testing.assert_close(costs[0], emd2(a, b, M))
    assert float(costs[1]) == pytest.approx(pot_cost(a, b, M.flip(0)), rel=1e-9)


def test_empty_batch_and_opcheck(generator):
    assert emd2(None, None, torch.zeros(0, 3, 4, dtype=torch.float64)).shape == (0,)
    assert emd(None, None, torch.zeros(0, 3, 3)).shape == (0, 3, 3)
    a = torch.rand(2, 3, generator=generator, dtype=torch.float64)
    b = torch.rand(2, 4, generator=generator, dtype=torch.float64)
    b = b / b.sum(1, keepdim=True) * a.sum(1, keepdim=True)
    M = torch.rand(2, 3, 4, generator=generator, dtype=torch.float64)
    torch.library.opcheck(torch.ops.fastgan.emd.default, (a, b, M, 1000))
    torch.library.opcheck(torch.ops.fastgan.emd.default, (a.float(), b.float(), M.float(), 1000))
    torch.library.opcheck(torch.ops.fastgan.emd.default, (a[:0], b[:0], M[:0], 1000))


def test_iteration_cap_warns(generator):
    a, b, M = make_case("random_weights", 60, 60, generator)
    with pytest.warns(UserWarning, match="numItermax"):
        cost, log = emd2(a, b, M, numItermax=3, log=True)
    assert int(log["result_code"]) == 3 and "numItermax" in log["warning"]
    # The plan is the simplex's current one: what it has not moved yet is missing.
    assert bool((log["plan"].sum(1) <= a + 1e-15).all())


def test_zero_weight_duals_are_tight_and_feasible(generator):
    a, b, M = make_case("random_weights", 10, 12, generator)
    a[3] = 0.0
    b[[0, 5]] = 0.0
    a, b = a / a.sum(), b / b.sum()
    cost, log = emd2(a, b, M, log=True)
    check_solution(a, b, M, cost, log)
    slack = M - log["u"][:, None] - log["v"][None, :]
    # The largest feasible dual: some constraint is tight on every zero-weight row and column.
    assert float(slack[3].min()) == pytest.approx(0.0, abs=1e-12)
    assert float(slack[:, 0].min()) == pytest.approx(0.0, abs=1e-12)


def test_bad_input(generator):
    a, b, M = make_case("random_weights", 4, 5, generator)
    with pytest.raises(ValueError, match="mass"):
        emd2(a, b * 1.01, M)
    with pytest.raises(ValueError, match="mass"):
        emd2(a.float(), (b * 1.001).float(), M.float())
    emd2(a.float(), (b * (1 + 1e-7)).float(), M.float())  # float32 rounding is not a mismatch
    with pytest.raises(ValueError, match="`a`.*negative"):
        emd2(torch.tensor([0.5, 0.6, -0.1, 0.0], dtype=torch.float64), b, M)
    with pytest.raises(ValueError, match="`b`.*NaN"):
        emd2(a, torch.full((5,), float("nan"), dtype=torch.float64), M)
    for bad in (float("nan"), float("inf")):
        Mb = M.clone()
        Mb[1, 2] = bad
        with pytest.raises(ValueError, match="`M`.*NaN or infinite"):
            emd2(a, b, Mb)
        with pytest.raises(ValueError, match="`M`.*NaN or infinite"):
            emd2(None, None, Mb[:, :4])  # assignment path
        x = points(4, generator)
        x[0, 0] = bad
        with pytest.raises(ValueError, match="`x`"):
            wasserstein(x, points(4, generator))
    with pytest.raises(ValueError, match="`a`.*shape"):
        emd2(a[:3], b, M)
    with pytest.raises(ValueError, match="`b`.*shape"):
        emd2(a, torch.ones(2, 5, dtype=torch.float64) / 5, M)
    with pytest.raises(ValueError, match="`M`"):
        emd2(a, b, M[0])
    with pytest.raises(ValueError, match="`M` is empty"):
        emd2(None, None, torch.zeros(0, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="`x` needs at least one point"):
        wasserstein(torch.zeros(0, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="`x`.*`y`"):
        wasserstein(points(3, generator), points(3, generator, d=3))
    with pytest.raises(ValueError, match="`p`"):
        wasserstein(points(3, generator), points(3, generator), p=0.5)
    with pytest.raises(ValueError, match="zero total mass"):
        emd2(torch.zeros(4, dtype=torch.float64), torch.zeros(5, dtype=torch.float64), M)
    with pytest.raises(TypeError, match="`M`"):
        emd2(None, None, torch.ones(3, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="`M`"):
        emd2(None, None, torch.ones(3, 3, dtype=torch.float16))
    with pytest.raises(ValueError, match="backend"):
        emd2(a, b, M, backend="gpu")
    with pytest.raises(ValueError, match="numItermax"):
        emd2(a, b, M, numItermax=0)
    # The kernel checks its inputs too (direct torch.ops callers).
    op = torch.ops.fastgan.emd.default
    with pytest.raises(ValueError, match="`a`"):
        op(-a[None], b[None], M[None], 100)
    with pytest.raises(ValueError, match="unequal mass"):
        op(a[None], 2 * b[None], M[None], 100)
    with pytest.raises(ValueError, match="`b` must have shape"):
        op(a[None], b[None, :4], M[None], 100)
    with pytest.raises(TypeError, match="`a`"):
        op(a[None].float(), b[None], M[None], 100)


# ------------------------------------------------------------------ the rescaling rule


def test_power_of_two_scale_is_the_documented_rule(generator):
    """unit_scale, and per problem power_of_two_scale: s = 1 where m^q is in
    [2^-20, 2^20] (or m is 0 / not finite), else the power of two with m / s in
    [1, 2), checked against math.frexp."""
    from fastgan.ot._checks import UNIT_BAND, power_of_two_scale, unit_scale

    exponents = torch.rand(64, generator=generator, dtype=torch.float64) * 240 - 120
    mags = torch.exp2(exponents) * torch.where(torch.rand(64, generator=generator) < 0.5, -1.0, 1.0).double()
    mags = torch.cat((mags, torch.tensor([0.0, 2.0**20, 2.0**-20, 2.0**21, float("inf"), float("nan")], dtype=torch.float64)))
    for degree in (1.0, 2.0, 3.5):
        t = torch.zeros(len(mags), 3, 2, dtype=torch.float64)
        t[:, 1, 0] = mags
        s = power_of_two_scale(t, degree=degree)
        assert s.shape == (len(mags), 1, 1)
        for m, got in zip(mags.tolist(), s.flatten().tolist()):
            m = abs(m)
            assert unit_scale(m, degree) == got  # per problem, the one rule
            if m == 0 or not math.isfinite(m) or abs(math.log2(m) * degree) <= UNIT_BAND:
                assert got == 1.0, (m, degree)
            else:
                mantissa, e = math.frexp(m)
                assert got == 2.0 ** (e - 1) and 1 <= m / got < 2, (m, degree, got)
    # several inputs: the larger magnitude decides; dims=all gives one scale for the batch
    x = torch.full((2, 3, 2), 2.0**30, dtype=torch.float64)
    y = torch.full((2, 4, 2), 2.0**40 * 1.5, dtype=torch.float64)
    assert power_of_two_scale(x, y).flatten().tolist() == [2.0**40, 2.0**40]
    assert power_of_two_scale(x, y, dims=(0, 1, 2)).shape == (1, 1, 1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("uniform", [True, False])
def test_emd_far_from_unit_scale_is_the_unit_answer_times_the_scale(generator, dtype, uniform):
    """emd's rescaling is lossless: at 2^k the plan is the same and the cost and
    duals are exactly 2^k times the unit-scale ones; at 1e-30 .. 1e30 POT agrees."""
    n = 9
    a = None if uniform else simplex_weights(n, generator).to(dtype)
    b = None if uniform else simplex_weights(n + (0 if uniform else 2), generator).to(dtype)
    M = sq_dist(points(n, generator), points(n + (0 if uniform else 2), generator)).to(dtype)
    plan1, log1 = emd(a, b, M, log=True)
    cost1 = emd2(a, b, M)
    for k in (-100, -40, 30, 100) if dtype == torch.float32 else (-1000, -100, 30, 100, 1000):
        s = 2.0**k
        plan, log = emd(a, b, M * s, log=True)
        torch.testing.assert_close(plan, plan1, rtol=0, atol=0)
        assert float(emd2(a, b, M * s)) == float(cost1) * s, k
        for key in ("u", "v", "cost"):
            torch.testing.assert_close(log[key], log1[key] * s, rtol=0, atol=0)
    an = np.full(n, 1 / n) if uniform else a.double().numpy()
    bn = np.full(M.shape[1], 1 / M.shape[1]) if uniform else b.double().numpy()
    for scale in (1e-30, 1e-8, 1e8, 1e30):
        Ms = M.double() * scale
        want = pot.emd2(an, bn, Ms.numpy(), numItermax=10**6)
        got = float(emd2(a if a is None else a.double(), b if b is None else b.double(), Ms))
        assert got == pytest.approx(want, rel=1e-12), scale


def test_wasserstein_far_from_unit_scale_is_the_unit_answer_times_the_scale(generator):
    """W_p is homogeneous of degree 1 in the points: exact at 2^k, POT at 1e-30 .. 1e30."""
    x, y = points(12, generator, d=3), points(10, generator, d=3)
    a, b = simplex_weights(12, generator), simplex_weights(10, generator)
    for p in (1.0, 2.0, 7.0):
        w1 = float(wasserstein(x, y, a, b, p=p))
        for k in (-900, -100, -20, 25, 100, 900):
            s = 2.0**k
            assert float(wasserstein(x * s, y * s, a, b, p=p)) == pytest.approx(w1 * s, rel=1e-14, abs=0), (p, k)
    for scale in (1e-30, 1e30):
        xs, ys = (x * scale).numpy(), (y * scale).numpy()
        want = pot.emd2(a.numpy(), b.numpy(), pot.dist(xs, ys)) ** 0.5
        assert float(wasserstein(x * scale, y * scale, a, b, p=2)) == pytest.approx(want, rel=1e-12), scale
