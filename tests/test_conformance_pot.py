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
    with pytest.warns(DeprecationWarning, match="numThreads"):
        ours, olog = fot.emd(a, b, M, **kw)
    with pytest.warns(DeprecationWarning, match="numThreads"):
        theirs, tlog = ot.emd(a, b, M, **kw)
    np.testing.assert_allclose(ours, theirs, atol=1e-14)
    with pytest.warns(DeprecationWarning, match="numThreads"):
        ours, olog = fot.emd2(a, b, M, processes=1, log=True, return_matrix=True, numThreads="max")
    with pytest.warns(DeprecationWarning, match="numThreads"):
        theirs, tlog = ot.emd2(a, b, M, processes=1, log=True, return_matrix=True, numThreads="max")
    np.testing.assert_allclose(olog["G"], tlog["G"], atol=1e-14)


def test_sinkhorn_methods(rng):
    """'sinkhorn' and 'sinkhorn_log' run POT's iteration and stopping rule; the stabilised,
    epsilon-scaling and greenkhorn methods give POT's converged plan; screenkhorn is refused by name."""
    n, m = rng.integers(3, 12, size=2)
    a, b, M = problem(rng, n, m)
    for method in ("sinkhorn", "sinkhorn_log"):
        ours, olog = fot.sinkhorn(a, b, M, 0.3, method=method, log=True)
        theirs, tlog = ot.sinkhorn(a, b, M, 0.3, method=method, log=True)
        np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-15)
        assert olog["niter"] == tlog["niter"]
    # POT's other solvers of the same problem: fastgan runs the log-domain
    # solver to the call's stopThr and says so; the plans agree to the
    # tolerance both reach (POT's greenkhorn stops on the L1 error of both marginals).
    reference, _ = ot.sinkhorn(a, b, M, 0.3, method="sinkhorn_log", stopThr=1e-13, numItermax=10**5, log=True)
    for method, kw in (
        ("sinkhorn_stabilized", dict(tau=1e3)),
        ("sinkhorn_epsilon_scaling", dict(epsilon0=1e4, numInnerItermax=50)),
        ("greenkhorn", {}),
    ):
        ours, olog = fot.sinkhorn(a, b, M, 0.3, method=method, stopThr=1e-12, numItermax=10**5, log=True, **kw)
        theirs = ot.sinkhorn(a, b, M, 0.3, method=method, stopThr=1e-12, numItermax=10**5, **kw)
        assert olog["solver"] == "sinkhorn_log" and bool(olog["converged"])
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)
    with pytest.raises(TypeError, match="tau"):
        fot.sinkhorn(a, b, M, 0.3, method="greenkhorn", tau=1.0)
    with pytest.raises(NotImplementedError, match="sinkhorn_log"):
        fot.sinkhorn2(a, b, M, 0.3, method="screenkhorn")
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


def test_reg_zero_is_refused(rng):
    """Deliberately not POT: reg=0 (POT returns a NaN or zero plan with a warning) is an error naming reg."""
    a, b, M = problem(rng, 4, 5)
    with pytest.raises(ValueError, match="reg"):
        fot.sinkhorn(a, b, M, 0.0)


def sparse_problem(rng, n, m, k=2):
    """A random cost with k edges per row and per column plus the staircase of the
    north-west-corner plan between uniform weights (so a plan on the edges exists),
    as SciPy COO, and its mask."""
    M = rng.random((n, m))
    mask = np.zeros((n, m), dtype=bool)
    i = j = 0
    left_a, left_b = m, n  # uniform masses 1/n and 1/m, in units of 1/(n m)
    while i < n and j < m:
        mask[i, j] = True
        shipped = min(left_a, left_b)
        left_a, left_b = left_a - shipped, left_b - shipped
        if left_a == 0:
            i, left_a = i + 1, m
        if left_b == 0:
            j, left_b = j + 1, n
    for i in range(n):
        mask[i, rng.choice(m, k, replace=False)] = True
    for j in range(m):
        mask[rng.choice(n, k, replace=False), j] = True
    return scipy_sparse.coo_array(M * mask), mask


def test_sparse_costs_match_pot(rng):
    """A sparse M's missing entries are absent edges: the same cost and plan as POT's sparse solver."""
    n, m = (int(v) for v in rng.integers(20, 60, size=2))
    Ms, mask = sparse_problem(rng, n, m)
    a, b = np.full(n, 1 / n), np.full(m, 1 / m)
    G, log = fot.emd(a, b, Ms, log=True)
    G_pot, log_pot = ot.emd(a, b, Ms, log=True)
    assert scipy_sparse.issparse(G)
    np.testing.assert_allclose(log["cost"], log_pot["cost"], rtol=1e-12)
    dense = G.toarray()
    assert not dense[~mask].any()
    np.testing.assert_allclose(dense.sum(1), a, atol=1e-15)
    np.testing.assert_allclose(dense.sum(0), b, atol=1e-15)
    np.testing.assert_allclose(fot.emd2(a, b, Ms), ot.emd2(a, b, Ms), rtol=1e-12)
    # torch sparse: the gradient of the cost is the plan on M's entries
    Mt = torch.sparse_coo_tensor(np.vstack([Ms.row, Ms.col]), Ms.data, (n, m)).coalesce().requires_grad_()
    cost = fot.emd2(torch.tensor(a), torch.tensor(b), Mt)
    cost.backward()
    plan = fot.emd(torch.tensor(a), torch.tensor(b), Mt.detach())
    assert plan.layout == torch.sparse_coo
    idx = Mt.grad.coalesce().indices()
    np.testing.assert_allclose(Mt.grad.coalesce().values(), plan.to_dense()[idx[0], idx[1]], atol=1e-15)
    np.testing.assert_allclose(float(cost), log_pot["cost"], rtol=1e-12)
    # no plan avoids the absent edges: an error, not a plan on them
    one_edge = scipy_sparse.coo_array((np.ones(1), ([0], [0])), shape=(2, 2))
    with pytest.raises(ValueError, match="infeasible"):
        fot.emd2(np.full(2, 0.5), np.full(2, 0.5), one_edge)


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


def test_several_targets_wrong_lengths_plans_and_scaler(rng):
    """emd2 with b (m, k) and a log: POT's list of [cost, log]; a weight of the wrong
    length: POT's AssertionError (and a ValueError); wasserstein_1d's plans and the
    sliced scaler as POT's."""
    n, m, k = (int(v) for v in rng.integers(3, 12, size=3))
    a, _, M = problem(rng, n, m)
    b = rng.random((m, k)) + 0.1
    b /= b.sum(0)
    ours = fot.emd2(a, b, M, log=True, return_matrix=True)
    theirs = ot.emd2(a, b, M, log=True, return_matrix=True)
    assert len(ours) == len(theirs) == k
    for (c1, l1), (c2, l2) in zip(ours, theirs):
        np.testing.assert_allclose(c1, c2, rtol=1e-12)
        np.testing.assert_allclose(l1["G"] * M, l2["G"] * M, atol=1e-14)
    for lib in (fot, ot):
        with pytest.raises(AssertionError):
            lib.emd(np.full(n + 1, 1 / (n + 1)), None, M)
    with pytest.raises(ValueError, match="`a` must have shape"):
        fot.emd2(np.full(n + 1, 1 / (n + 1)), None, M)
    # the monotone plans of 1-D problems
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2))
    wa, wb = rng.random((n, 2)) + 0.1, rng.random((m, 2)) + 0.1
    wa, wb = wa / wa.sum(0), wb / wb.sum(0)
    for mode in (True, "coo_tuple"):
        c1, p1 = fot.wasserstein_1d(x, y, wa, wb, p=2, return_plans=mode)
        c2, p2 = ot.wasserstein_1d(x, y, wa, wb, p=2, return_plans=mode)
        np.testing.assert_allclose(c1, c2, rtol=1e-12)
        for q1, q2, col in zip(p1, p2, range(2)):
            if mode is True:
                d1, d2 = q1.toarray(), q2.toarray()
            else:
                d1 = scipy_sparse.coo_array((q1.data, (q1.rows, q1.cols)), shape=(n, m)).toarray()
                d2 = scipy_sparse.coo_array((q2.data, (q2.rows, q2.cols)), shape=(n, m)).toarray()
            np.testing.assert_allclose(d1, d2, atol=1e-15)
            exact = ot.emd(wa[:, col].copy(), wb[:, col].copy(), ot.dist(x[:, col:col + 1], y[:, col:col + 1]))
            np.testing.assert_allclose(d1, exact, atol=1e-12)
    # a scaler fitted on numpy arrays sees the numpy arrays
    X_s, X_t = rng.normal(size=(n, 3)) * 100, rng.normal(size=(m, 3))
    P = ot.sliced.get_random_projections(3, 20, seed=0)
    scaler = ot.utils.DataScaler(norm="standard").fit([X_s, X_t])
    np.testing.assert_allclose(
        fot.sliced_wasserstein_distance(X_s, X_t, projections=P, scaler=scaler),
        ot.sliced_wasserstein_distance(X_s, X_t, projections=P, scaler=scaler),
        rtol=1e-12,
    )
    with pytest.raises(ValueError, match="scaler must be"):
        fot.sliced_wasserstein_distance(X_s, X_t, scaler=42)
    with pytest.raises(TypeError, match="scaler"):
        fot.sliced_wasserstein_distance(X_s, X_t, scaler=42)
    np.testing.assert_allclose(fot.sinkhorn_log(a, np.full(m, 1 / m), M, 0.5),
                               ot.bregman.sinkhorn_log(a, np.full(m, 1 / m), M, 0.5), rtol=1e-8, atol=1e-15)


def test_warmstart_gives_pots_iterates(rng):
    """A warm start (log u, log v) starts the iteration where POT starts it: the same
    iterates (niter, log scalings) and plan, also with few iterations, unconverged."""
    n, m = (int(v) for v in rng.integers(3, 12, size=2))
    a, b, M = problem(rng, n, m)
    warm = (rng.normal(size=n), rng.normal(size=m))
    for method in ("sinkhorn", "sinkhorn_log"):
        for iters in (3, 1000):
            kw = dict(method=method, numItermax=iters, log=True, warn=False, warmstart=warm)
            (ours, olog), (theirs, tlog) = fot.sinkhorn(a, b, M, 0.4, **kw), ot.sinkhorn(a, b, M, 0.4, **kw)
            np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-15)
            assert olog["niter"] == tlog["niter"]
            for key in ("u", "v") if method == "sinkhorn" else ("log_u", "log_v"):
                np.testing.assert_allclose(olog[key], tlog[key], rtol=1e-9)
    cost = fot.sinkhorn2(torch.tensor(a), torch.tensor(b), torch.tensor(M), 0.4, warmstart=warm)
    np.testing.assert_allclose(float(cost), ot.sinkhorn2(a, b, M, 0.4, warmstart=warm), rtol=1e-9)
    with pytest.raises(ValueError, match=r"`warmstart\[0\]` must have shape"):
        fot.sinkhorn(a, b, M, 0.4, warmstart=(np.zeros(n + 1), np.zeros(m)))
