"""fastgan.ot as a drop-in for POT: the same calls, on fresh inputs, give POT's results.

Each test takes one of POT's documented conventions (numpy in and out,
keyword names and defaults, log keys, several target histograms, weight
broadcasting, seeding, warnings, gradients of the torch backend) and runs
the real POT next to fastgan.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import torch

import fastgan.ot as fot

ot = pytest.importorskip("ot")
scipy_sparse = pytest.importorskip("scipy.sparse")

PAIRS = [
    (fot.emd, ot.emd),
    (fot.emd2, ot.emd2),
    (fot.sinkhorn, ot.sinkhorn),
    (fot.sinkhorn2, ot.sinkhorn2),
    (fot.wasserstein_1d, ot.wasserstein_1d),
    (fot.sliced_wasserstein_distance, ot.sliced_wasserstein_distance),
]


def problem(rng, n, m, d=2):
    """Random weights (n,), (m,) summing to one and a squared-distance cost (n, m)."""
    x, y = rng.normal(size=(n, d)), rng.normal(size=(m, d)) + 0.5
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    M = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return a / a.sum(), b / b.sum(), M


#: Defaults fastgan keeps on purpose: sinkhorn2 warns on non-convergence by default.
DELIBERATE_DEFAULTS = {("sinkhorn2", "warn"): True}


@pytest.mark.parametrize("ours,theirs", PAIRS, ids=lambda f: f.__name__)
def test_signature_keeps_pot_names_order_and_defaults(ours, theirs):
    """Every parameter of POT's function is accepted at the same position with the same default."""
    pot_params = [p for p in inspect.signature(theirs).parameters.values() if p.kind != p.VAR_KEYWORD]
    our_params = list(inspect.signature(ours).parameters.values())
    for i, p in enumerate(pot_params):
        assert our_params[i].name == p.name
        expected = DELIBERATE_DEFAULTS.get((ours.__name__, p.name), p.default)
        assert our_params[i].default == expected or (
            p.default is inspect.Parameter.empty and our_params[i].default is inspect.Parameter.empty
        )


def test_numpy_and_lists_in_numpy_out(rng):
    n, m = rng.integers(3, 12, size=2)
    a, b, M = problem(rng, n, m)
    checks = [
        (fot.emd(a, b, M), ot.emd(a, b, M)),
        (fot.emd2(a, b, M), ot.emd2(a, b, M)),
        (fot.emd2(list(a), list(b), M.tolist()), ot.emd2(list(a), list(b), M.tolist())),
        (fot.sinkhorn(a, b, M, 0.5), ot.sinkhorn(a, b, M, 0.5)),
        (fot.sinkhorn2(a, b, M, 0.5), ot.sinkhorn2(a, b, M, 0.5)),
        (fot.wasserstein_1d(M[:, 0], M[0], a, b), ot.wasserstein_1d(M[:, 0], M[0], a, b)),
    ]
    for ours, theirs in checks:
        assert isinstance(ours, (np.ndarray, np.floating))
        assert np.shape(ours) == np.shape(theirs)
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-13)
    # float32 arrays stay float32, as POT keeps the input's dtype.
    plan32 = fot.emd(a.astype(np.float32), b.astype(np.float32), M.astype(np.float32))
    assert plan32.dtype == ot.emd(a.astype(np.float32), b.astype(np.float32), M.astype(np.float32)).dtype


def test_emd_takes_empty_lists_as_uniform(rng):
    n, m = rng.integers(2, 10, size=2)
    _, _, M = problem(rng, n, m)
    np.testing.assert_allclose(fot.emd([], [], M), ot.emd([], [], M), atol=1e-15)
    np.testing.assert_allclose(fot.emd2([], [], M), ot.emd2([], [], M), rtol=1e-12)
    np.testing.assert_allclose(fot.sinkhorn2([], [], M, 1.0), ot.sinkhorn2([], [], M, 1.0), rtol=1e-9)


def test_torch_in_torch_out_with_emd2_gradients(rng):
    """POT's torch backend: grad in M is the plan, in a and b the centred duals (general weights)."""
    n, m = rng.integers(3, 12, size=2)
    grads = []
    for lib in (fot, ot):
        a, b, M = (torch.tensor(t, requires_grad=True) for t in problem(np.random.default_rng(7), n, m))
        cost = lib.emd2(a, b, M)
        assert isinstance(cost, torch.Tensor)
        grads.append((cost.detach(), *torch.autograd.grad(cost, (a, b, M))))
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_emd2_weight_gradients_on_degenerate_problems_are_optimal_duals(rng):
    """Deliberately not POT's numbers: uniform weights with n = m (an assignment) have many optimal
    duals; fastgan's gradient in (a, b) is one of them, centred as POT's: dual feasible, with the
    cost POT computes (so a subgradient of the convex cost, as POT's is)."""
    n = int(rng.integers(4, 16))
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    M = torch.tensor(((x[:, None] - y[None]) ** 2).sum(-1))
    w = torch.full((n,), 1.0 / n, dtype=torch.float64)
    a, b = w.clone().requires_grad_(), w.clone().requires_grad_()
    cost = fot.emd2(a, b, M)
    ga, gb = torch.autograd.grad(cost, (a, b))
    cost = cost.detach()
    assert float(cost) == pytest.approx(float(ot.emd2(w.numpy(), w.numpy(), M.numpy())), rel=1e-12)
    assert abs(float(ga.sum())) < 1e-12 and abs(float(gb.sum())) < 1e-12
    shift = (float(cost) - float(w @ ga) - float(w @ gb)) / (2 * float(w.sum()))
    u, v = ga + shift, gb + shift  # the duals: a.u + b.v = cost
    assert float((u[:, None] + v[None, :] - M).max()) <= 1e-12 * float(M.abs().max())


def test_keyword_names(rng):
    """POT's keywords: numItermax, stopThr, verbose, log, warn, numThreads, check_marginals, return_matrix."""
    n, m = rng.integers(3, 10, size=2)
    a, b, M = problem(rng, n, m)
    kw = dict(numItermax=500, stopThr=1e-11, verbose=False, log=True, warn=False)
    (ours, olog), (theirs, tlog) = fot.sinkhorn2(a, b, M, 0.7, **kw), ot.sinkhorn2(a, b, M, 0.7, **kw)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    assert olog["niter"] == tlog["niter"]
    kw = dict(numItermax=10**6, log=True, numThreads=2, check_marginals=True)
    (ours, olog), (theirs, tlog) = fot.emd(a, b, M, **kw), ot.emd(a, b, M, **kw)
    np.testing.assert_allclose(ours, theirs, atol=1e-14)
    ours, olog = fot.emd2(a, b, M, processes=1, log=True, return_matrix=True, numThreads="max")
    theirs, tlog = ot.emd2(a, b, M, processes=1, log=True, return_matrix=True, numThreads="max")
    np.testing.assert_allclose(olog["G"], tlog["G"], atol=1e-14)


def test_sinkhorn_methods(rng):
    """'sinkhorn' and 'sinkhorn_log' run POT's iteration and stopping rule; the others are refused by name."""
    n, m = rng.integers(3, 12, size=2)
    a, b, M = problem(rng, n, m)
    for method in ("sinkhorn", "sinkhorn_log"):
        ours, olog = fot.sinkhorn(a, b, M, 0.3, method=method, log=True)
        theirs, tlog = ot.sinkhorn(a, b, M, 0.3, method=method, log=True)
        np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-15)
        assert olog["niter"] == tlog["niter"]
    for method in ("sinkhorn_stabilized", "sinkhorn_epsilon_scaling", "greenkhorn", "screenkhorn"):
        with pytest.raises(NotImplementedError, match="sinkhorn_log"):
            fot.sinkhorn2(a, b, M, 0.3, method=method)
    with pytest.raises(ValueError, match="method"):
        fot.sinkhorn(a, b, M, 0.3, method="no_such_method")


def test_log_keys_and_values(rng):
    n, m = rng.integers(3, 12, size=2)
    a, b, M = problem(rng, n, m)
    for method in ("sinkhorn", "sinkhorn_log"):
        _, olog = fot.sinkhorn2(a, b, M, 0.4, method=method, log=True)
        _, tlog = ot.sinkhorn2(a, b, M, 0.4, method=method, log=True)
        assert set(tlog) <= set(olog)
        for key in set(tlog) - {"err", "niter"}:
            np.testing.assert_allclose(olog[key], tlog[key], rtol=1e-8)
        assert olog["niter"] == tlog["niter"]
        np.testing.assert_allclose(olog["err"][-1], tlog["err"][-1], rtol=1e-3, atol=1e-15)
    _, olog = fot.emd(a, b, M, log=True)
    _, tlog = ot.emd(a, b, M, log=True)
    assert set(tlog) <= set(olog)
    for key in ("cost", "u", "v"):
        np.testing.assert_allclose(olog[key], tlog[key], rtol=1e-10, atol=1e-12)
    assert olog["warning"] == tlog["warning"] and olog["result_code"] == tlog["result_code"]


def test_several_target_histograms(rng):
    n, m, k = rng.integers(3, 10), rng.integers(3, 10), rng.integers(2, 5)
    a, _, M = problem(rng, n, m)
    b = rng.random((m, k)) + 0.1
    b /= b.sum(0)
    for ours, theirs in (
        (fot.sinkhorn2(a, b, M, 0.5), ot.sinkhorn2(a, b, M, 0.5)),
        (fot.sinkhorn(a, b, M, 0.5), ot.sinkhorn(a, b, M, 0.5)),
        (fot.emd2(a, b, M), ot.emd2(a, b, M)),
    ):
        assert np.shape(ours) == (k,)
        np.testing.assert_allclose(ours, theirs, rtol=1e-8)
    _, olog = fot.sinkhorn2(a, b, M, 0.5, log=True)
    _, tlog = ot.sinkhorn2(a, b, M, 0.5, log=True)
    np.testing.assert_allclose(olog["u"], tlog["u"], rtol=1e-6)


def test_wasserstein_1d_weights_broadcast_over_values(rng):
    """(n,) weights with (n, k) values, as POT repeats them."""
    n, m, k = rng.integers(2, 20), rng.integers(2, 20), rng.integers(1, 5)
    u, v = rng.normal(size=(n, k)), rng.normal(size=(m, k))
    wu, wv = rng.random(n) + 0.1, rng.random(m) + 0.1
    wu, wv = wu / wu.sum(), wv / wv.sum()
    for p in (1, 2):
        np.testing.assert_allclose(
            fot.wasserstein_1d(u, v, wu, wv, p=p), ot.wasserstein_1d(u, v, wu, wv, p=p), rtol=1e-10, atol=1e-14
        )
    ours = fot.wasserstein_1d(torch.tensor(u), torch.tensor(v), torch.tensor(wu), torch.tensor(wv))
    theirs = ot.wasserstein_1d(torch.tensor(u), torch.tensor(v), torch.tensor(wu), torch.tensor(wv))
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-14)


def test_sliced_wasserstein_distance_signature_seed_and_log(rng):
    """The same seed draws POT's directions, for numpy (RandomState) and torch inputs."""
    n, m, d = rng.integers(5, 30), rng.integers(5, 30), rng.integers(2, 6)
    X, Y = rng.normal(size=(n, d)), rng.normal(size=(m, d)) + 1
    a = rng.random(n) + 0.1
    a /= a.sum()
    seed = int(rng.integers(0, 2**31))
    np.testing.assert_allclose(
        fot.sliced_wasserstein_distance(X, Y, seed=seed), ot.sliced_wasserstein_distance(X, Y, seed=seed), rtol=1e-10
    )
    np.testing.assert_allclose(
        fot.sliced_wasserstein_distance(X, Y, a=a, p=1, n_projections=20, seed=np.random.RandomState(seed)),
        ot.sliced_wasserstein_distance(X, Y, a=a, p=1, n_projections=20, seed=np.random.RandomState(seed)),
        rtol=1e-10,
    )
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    torch.testing.assert_close(
        fot.sliced_wasserstein_distance(Xt, Yt, seed=seed), ot.sliced_wasserstein_distance(Xt, Yt, seed=seed),
        rtol=1e-10, atol=0,
    )
    value, olog = fot.sliced_wasserstein_distance(X, Y, seed=seed, log=True)
    _, tlog = ot.sliced_wasserstein_distance(X, Y, seed=seed, log=True)
    assert set(olog) == set(tlog)
    np.testing.assert_allclose(olog["projected_emds"], tlog["projected_emds"], rtol=1e-10)
    np.testing.assert_allclose(
        fot.sliced_wasserstein_distance(X, Y, projections=tlog["projections"]), value, rtol=1e-12
    )


def test_non_convergence_is_a_user_warning_silenced_by_warn_false(rng):
    n, m = rng.integers(5, 12, size=2)
    a, b, M = problem(rng, n, m)
    reg = 0.01 * float(M.mean())
    for lib in (fot, ot):
        for solve in (lib.sinkhorn, lib.sinkhorn2):
            with pytest.warns(UserWarning, match="(?i)did not converge"):
                solve(a, b, M, reg, method="sinkhorn_log", numItermax=3, warn=True)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                solve(a, b, M, reg, method="sinkhorn_log", numItermax=3, warn=False)
    with pytest.warns(UserWarning, match="did not converge"):  # fastgan's sinkhorn2 warns by default
        fot.sinkhorn2(a, b, M, reg, numItermax=3)


def test_unequal_masses_raise_pots_assertion(rng):
    a, b, M = problem(rng, 4, 5)
    for lib in (fot, ot):
        with pytest.raises(AssertionError):
            lib.emd(a, 1.5 * b, M)
    # check_marginals=False: b is scaled to a's mass, as POT does.
    np.testing.assert_allclose(
        fot.emd(a, 1.5 * b, M, check_marginals=False), ot.emd(a, 1.5 * b, M, check_marginals=False), atol=1e-14
    )


def test_reg_zero_and_sparse_costs_are_refused(rng):
    """Deliberately not POT: reg=0 (POT returns a zero plan with a warning) and sparse M are refused."""
    a, b, M = problem(rng, 4, 5)
    with pytest.raises(ValueError, match="reg"):
        fot.sinkhorn(a, b, M, 0.0)
    with pytest.raises(TypeError, match="sparse"):
        fot.emd(a, b, scipy_sparse.csr_matrix(M))


def test_sinkhorn2_gradients_match_pots_torch_backend(rng):
    """Gradients in M, in a and b (centred: only mass-preserving changes are defined), and through M to the points."""
    n, m = rng.integers(3, 15, size=2)
    reg = float(rng.uniform(0.3, 2.0))
    base = [torch.tensor(t) for t in problem(rng, n, m)]
    x0 = torch.tensor(rng.normal(size=(n, 3)))
    y0 = torch.tensor(rng.normal(size=(m, 3)))
    results = []
    for lib in (fot, ot):
        a, b = (t.clone().requires_grad_() for t in base[:2])
        x = x0.clone().requires_grad_()
        M = torch.cdist(x, y0) ** 2
        M.retain_grad()
        cost = lib.sinkhorn2(a, b, M, reg, stopThr=1e-14, numItermax=100_000)
        cost.backward()
        results.append((cost.detach(), M.grad, a.grad - a.grad.mean(), b.grad - b.grad.mean(), x.grad))
    for ours, theirs in zip(*results):
        torch.testing.assert_close(ours, theirs, rtol=1e-7, atol=1e-9)
