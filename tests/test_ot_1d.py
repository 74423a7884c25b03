"""fastgan.ot.wasserstein_1d and sliced_wasserstein against SciPy, POT and closed forms."""

from __future__ import annotations

import numpy as np
import ot as pot
import pytest
import scipy.stats
import torch

import fastgan
from fastgan import reference
from fastgan.ot import sliced_wasserstein, wasserstein_1d


def rand(shape, generator, dtype=torch.float64):
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


def weights(shape, generator, dtype=torch.float64):
    w = torch.rand(shape, generator=generator, dtype=torch.float64) + 0.05
    return (w / w.sum(0, keepdim=True)).to(dtype)


@pytest.mark.parametrize("n,m", [(1, 1), (1, 7), (5, 5), (13, 29), (200, 150)])
def test_p1_matches_scipy(n, m, generator):
    u, v = rand(n, generator), rand(m, generator)
    wu, wv = weights(n, generator), weights(m, generator)
    ours = wasserstein_1d(u, v)
    torch.testing.assert_close(ours, torch.tensor(scipy.stats.wasserstein_distance(u, v), dtype=torch.float64), rtol=1e-12, atol=1e-14)
    ours_w = wasserstein_1d(u, v, wu, wv)
    ref = scipy.stats.wasserstein_distance(u, v, wu, wv)
    torch.testing.assert_close(ours_w, torch.tensor(ref, dtype=torch.float64), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 3.0])
def test_batched_general_p_matches_pot_and_reference(p, generator):
    u, v = rand((40, 3, 4), generator), rand((25, 3, 4), generator)
    wu, wv = weights((40, 3, 4), generator), weights((25, 3, 4), generator)
    # Ties and duplicates.
    u[5:9] = u[4]
    v[3] = u[0]
    for args in ((u, v), (u, v, wu, wv)):
        ours = wasserstein_1d(*args, p=p)
        assert ours.shape == (3, 4)
        # (POT's NumPy backend takes one trailing batch dimension.)
        pot_value = pot.wasserstein_1d(*[a.reshape(a.shape[0], -1).numpy() for a in args], p=p)
        np.testing.assert_allclose(ours.reshape(-1).numpy(), pot_value, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(ours, reference.wasserstein_1d(*args, p=p), rtol=1e-10, atol=1e-13)


def test_shovelfuls_example():
    # Seed example: P = (3, 2, 1, 4), Q = (1, 2, 4, 3) on a grid of unit spacing: W = 5.
    grid = torch.arange(4, dtype=torch.float64)
    P = torch.tensor([3.0, 2, 1, 4], dtype=torch.float64)
    Q = torch.tensor([1.0, 2, 4, 3], dtype=torch.float64)
    assert float(wasserstein_1d(grid, grid, P, Q)) == pytest.approx(5.0, rel=1e-12)


def test_parallel_lines_is_theta(generator):
    # WGAN Example 1 projected on the first axis: P_0 = (0, Z), P_theta = (theta, Z).
    for theta in (0.0, 0.3, -1.7):
        z = torch.rand(64, 1, generator=generator, dtype=torch.float64)
        x = torch.cat([torch.zeros_like(z), z], 1)
        y = torch.cat([torch.full_like(z, theta), z], 1)
        assert float(wasserstein_1d(x[:, 0], y[:, 0])) == pytest.approx(abs(theta), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("p", [1.0, 2.0, 2.5])
def test_gradients_match_reference_autograd(p, generator):
    u, v = rand((30, 2), generator), rand((20, 2), generator)
    wu, wv = weights((30, 2), generator), weights((20, 2), generator)
    ins = [t.clone().requires_grad_() for t in (u, v, wu, wv)]
    ref_ins = [t.clone().requires_grad_() for t in (u, v, wu, wv)]
    upstream = rand((2,), generator)
    ours = torch.autograd.grad(wasserstein_1d(*ins, p=p), ins, upstream)
    ref = torch.autograd.grad(reference.wasserstein_1d(*ref_ins, p=p), ref_ins, upstream)
    for a, b in zip(ours[:2], ref[:2]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    # Weight gradients: only their mass-preserving part is determined by the
    # distance (the weights of one problem sum to a fixed mass): compare along
    # random directions that keep both masses.
    for a, b in zip(ours[2:], ref[2:]):
        d = rand(a.shape, generator)
        d = d - d.mean(0, keepdim=True)
        torch.testing.assert_close((a * d).sum(0), (b * d).sum(0), rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("p", [1.0, 2.0, 1.5])
def test_torch_ops_implementation_matches_the_cpu_kernel(p, generator):
    """fastgan::wasserstein_1d's CUDA implementation (torch's sort / cumsum /
    searchsorted) returns what the C++ kernel returns, gradients included,
    with the same constant fixed in the weights' gradients."""
    from fastgan.ot.one_d import _wasserstein_1d_torch_ops

    for n, m in [(1, 1), (7, 5), (16, 16), (3, 11)]:
        u, v = rand((4, n), generator), rand((4, m), generator)
        wu, wv = weights((n, 4), generator).T.contiguous(), weights((m, 4), generator).T.contiguous()
        for w in ((wu, wv), (None, None)):
            ours = torch.ops.fastgan.wasserstein_1d.default(u, v, *w, p, True)
            # As the dispatcher runs it on CUDA: below the Autograd key.
            with torch._C._AutoDispatchBelowAutograd():
                composed = _wasserstein_1d_torch_ops(u, v, *w, p, True)
            for a, b in zip(ours, composed):
                torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)
            cost = _wasserstein_1d_torch_ops(u, v, *w, p, False)
            torch.testing.assert_close(cost[0], ours[0], rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="unequal mass"):
        _wasserstein_1d_torch_ops(u, v, wu * 2, wv, p, False)


def test_on_device_matches_cpu(device, generator):
    u, v = rand((6, 3), generator), rand((4, 3), generator)
    wu, wv = weights((6, 3), generator), weights((4, 3), generator)
    ins = [t.clone().requires_grad_() for t in (u, v, wu, wv)]
    dev_ins = [t.to(device).requires_grad_() for t in (u, v, wu, wv)]
    expected = torch.autograd.grad(wasserstein_1d(*ins, p=2.0).sum(), ins)
    got = torch.autograd.grad(wasserstein_1d(*dev_ins, p=2.0).sum(), dev_ins)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a.cpu(), b)


def test_value_gradient_matches_finite_differences(generator):
    u, v = rand(12, generator), rand(9, generator)
    u.requires_grad_()
    (g,) = torch.autograd.grad(wasserstein_1d(u, v, p=2.0), u)
    h = 1e-6
    for i in range(3):
        e = torch.zeros_like(u)
        e[i] = h
        fd = (wasserstein_1d(u.detach() + e, v, p=2.0) - wasserstein_1d(u.detach() - e, v, p=2.0)) / (2 * h)
        assert float(g[i]) == pytest.approx(float(fd), rel=1e-6, abs=1e-9)


def test_double_backward_is_refused(generator):
    u = rand(5, generator).requires_grad_()
    with pytest.raises(RuntimeError, match="once"):
        torch.autograd.grad(wasserstein_1d(u, rand(4, generator), p=2.0), u, create_graph=True)


def test_float32(generator):
    u, v = rand(1000, generator, torch.float32), rand(800, generator, torch.float32)
    ours = wasserstein_1d(u, v, p=2.0)
    assert ours.dtype == torch.float32
    exact = pot.wasserstein_1d(u.double().numpy(), v.double().numpy(), p=2.0)
    assert float(ours) == pytest.approx(exact, rel=1e-5)


def test_sliced_wasserstein(generator):
    x, y = rand((50, 3), generator), rand((40, 3), generator) + 1.0
    seed = int(torch.randint(0, 2**31, (1,), generator=generator))
    ours = sliced_wasserstein(x, y, n_projections=64, generator=torch.Generator().manual_seed(seed))
    theta = torch.randn(3, 64, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    expected = pot.wasserstein_1d((x @ theta).numpy(), (y @ theta).numpy(), p=2).mean() ** 0.5
    assert float(ours) == pytest.approx(float(expected), rel=1e-10)
    x40 = x[:40]
    batched = sliced_wasserstein(
        torch.stack([x40, x40]), torch.stack([y, x40]), n_projections=8, generator=torch.Generator().manual_seed(seed)
    )
    assert batched.shape == (2,) and float(batched[1]) == pytest.approx(0.0, abs=1e-12)
    xr = x.clone().requires_grad_()
    sliced_wasserstein(xr, y, generator=torch.Generator().manual_seed(seed)).backward()
    assert torch.isfinite(xr.grad).all() and float(xr.grad.abs().sum()) > 0


def test_opcheck(generator):
    u, v = rand((3, 6), generator), rand((3, 4), generator)
    wu, wv = weights((6, 3), generator).T.contiguous(), weights((4, 3), generator).T.contiguous()
    for args in ((u, v, None, None, 2.0, False), (u, v, wu, wv, 1.0, True)):
        torch.library.opcheck(torch.ops.fastgan.wasserstein_1d.default, args)


def test_bad_input(generator):
    u, v = rand(5, generator), rand(4, generator)
    with pytest.raises(ValueError, match="mass"):
        wasserstein_1d(u, v, torch.full((5,), 0.2, dtype=torch.float64), torch.full((4,), 0.3, dtype=torch.float64))
    with pytest.raises(ValueError, match="negative"):
        wasserstein_1d(u, v, torch.tensor([0.5, 0.5, 0.2, -0.2, 0.0], dtype=torch.float64), torch.full((4,), 0.25, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        wasserstein_1d(torch.tensor([0.0, float("nan")], dtype=torch.float64), v)
    with pytest.raises(ValueError, match="u_values"):
        wasserstein_1d(torch.zeros(0, dtype=torch.float64), v)
    with pytest.raises(ValueError, match="trailing"):
        wasserstein_1d(rand((5, 2), generator), rand((4, 3), generator))
    with pytest.raises(ValueError, match="p"):
        wasserstein_1d(u, v, p=0.5)
    with pytest.raises(TypeError, match="u_values"):
        wasserstein_1d(torch.arange(5), v)
    with pytest.raises(ValueError, match="shape"):
        wasserstein_1d(u, v, torch.full((4,), 0.25, dtype=torch.float64), None)


# ---------------------------------------------------------------------------
# Exact assignment

from scipy.optimize import linear_sum_assignment as scipy_lsa  # noqa: E402

from fastgan.ot import Assignment, linear_sum_assignment  # noqa: E402


def check_certificate(cost: torch.Tensor, result) -> None:
    """Dual feasibility (u_i + v_j <= C_ij) and a zero duality gap."""
    c = cost.double()
    slack = c - result.u[..., :, None] - result.v[..., None, :]
    scale = float(c.abs().max()) + 1.0
    assert float(slack.min()) >= -1e-9 * scale
    assert float(result.duality_gap.abs().max()) <= 1e-9 * scale * c.shape[-2]


@pytest.mark.parametrize("n,m", [(1, 1), (1, 4), (7, 7), (13, 20), (60, 60)])
def test_assignment_matches_scipy(n, m, generator):
    cost = torch.rand(n, m, generator=generator, dtype=torch.float64)
    result = linear_sum_assignment(cost)
    r, c = scipy_lsa(cost.numpy())
    assert float(result.cost) == pytest.approx(float(cost.numpy()[r, c].sum()), rel=1e-12)
    assert result.row_ind.tolist() == list(range(n))
    assert len(set(result.col_ind.tolist())) == n
    torch.testing.assert_close(cost[result.row_ind, result.col_ind].sum(), result.cost)
    check_certificate(cost, result)


@pytest.mark.parametrize("kind", ["points", "integers", "constant", "wide"])
@pytest.mark.parametrize("n", [5, 37, 150])
def test_assignment_square_problems_match_scipy(kind, n, generator):
    """Square problems take the row-reduction start and the vector row scans
    (sizes not a multiple of four exercise the scalar tail)."""
    if kind == "points":
        x = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        y = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        cost = torch.cdist(x, y) ** 2
    elif kind == "integers":
        cost = torch.randint(0, 3, (n, n), generator=generator).double()  # many ties
    elif kind == "constant":
        cost = torch.full((n, n), 2.5, dtype=torch.float64)
    else:
        cost = (torch.rand(n, n, generator=generator, dtype=torch.float64) - 0.5) * 1e8
    for dtype in (torch.float64, torch.float32):
        c = cost.to(dtype)
        result = linear_sum_assignment(c)
        r, col = scipy_lsa(c.double().numpy())
        assert float(result.cost) == pytest.approx(float(c.double().numpy()[r, col].sum()), rel=1e-12, abs=1e-9)
        assert sorted(result.col_ind.tolist()) == list(range(n))
        check_certificate(c, result)


@pytest.mark.parametrize("kind", ["points", "integers", "wide"])
def test_single_large_problem_splits_its_row_scans(kind, generator):
    """One problem with m >= 1024 shares each search step's row scan among the
    threads; the result equals the one-thread search of the same problem (a
    batch of two solves each problem on one thread) bit for bit, and SciPy's cost."""
    n, m = (700, 1300) if kind == "wide" else (1100, 1100)
    if kind == "integers":
        cost = torch.randint(0, 4, (n, m), generator=generator).double()  # ties at every step
    else:
        x = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        y = torch.rand(m, 2, generator=generator, dtype=torch.float64)
        cost = torch.cdist(x, y) ** 2
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for c in (cost.float(), cost):  # float64 last: `single` is checked against SciPy below
            single = linear_sum_assignment(c)
            pair = linear_sum_assignment(torch.stack([c, c]))
            for k in range(2):
                assert torch.equal(single.col_ind, pair.col_ind[k])
                assert torch.equal(single.u, pair.u[k]) and torch.equal(single.v, pair.v[k])
            check_certificate(c, single)
    finally:
        torch.set_num_threads(threads)
    r, c = scipy_lsa(cost.numpy())
    assert float(single.cost) == pytest.approx(float(cost.numpy()[r, c].sum()), rel=1e-12)


def test_assignment_ties_integers_transposed_and_maximize(generator):
    cost = torch.randint(0, 4, (9, 6), generator=generator).double()  # many ties, n > m
    result = linear_sum_assignment(cost)
    r, c = scipy_lsa(cost.numpy())
    assert float(result.cost) == pytest.approx(float(cost.numpy()[r, c].sum()))
    assert result.row_ind.shape == (6,)
    torch.testing.assert_close(cost[result.row_ind, result.col_ind].sum(), result.cost)
    best = linear_sum_assignment(cost, maximize=True)
    r, c = scipy_lsa(cost.numpy(), maximize=True)
    assert float(best.cost) == pytest.approx(float(cost.numpy()[r, c].sum()))


def test_assignment_batched_float32_and_emd(generator):
    x = torch.rand(5, 32, 2, generator=generator, dtype=torch.float64)
    y = torch.rand(5, 32, 2, generator=generator, dtype=torch.float64)
    cost = torch.cdist(x, y) ** 2
    result = linear_sum_assignment(cost.float())
    assert result.col_ind.shape == (5, 32)
    for b in range(5):
        r, c = scipy_lsa(cost[b].float().numpy())
        expected = float(cost[b].float().double().numpy()[r, c].sum())
        assert float(result.cost[b]) == pytest.approx(expected, rel=1e-9)
        # The exact EMD between equal-size uniform minibatches is the assignment cost / n.
        emd = pot.emd2(np.full(32, 1 / 32), np.full(32, 1 / 32), cost[b].float().double().numpy())
        assert float(result.cost[b]) / 32 == pytest.approx(emd, rel=1e-9)
    check_certificate(cost.float(), result)


def test_triton_assignment_kernel(triton_device, generator):
    """The CUDA kernel (Triton) solves every problem of a batch exactly, with a dual certificate."""
    from fastgan.kernels import assignment as kernel

    shapes = [(3, 6, 6), (2, 5, 11), (2, 1, 1)]
    for (batch, n, m), kind in zip(shapes, ["uniform", "ties", "signed"]):
        if kind == "uniform":
            cost = torch.rand(batch, n, m, generator=generator, dtype=torch.float64)
        elif kind == "ties":
            cost = torch.randint(0, 3, (batch, n, m), generator=generator).double()
        else:
            cost = (torch.rand(batch, n, m, generator=generator) - 0.5) * 1e3
        cost = cost.to(triton_device)
        cols, u, v = kernel.linear_sum_assignment(cost)
        c = cost.double().cpu()
        cols, u, v = cols.cpu(), u.cpu(), v.cpu()
        for b in range(batch):
            r, col = scipy_lsa(c[b].numpy())
            expected = float(c[b].numpy()[r, col].sum())
            assert sorted(set(cols[b].tolist())) == sorted(cols[b].tolist())
            assert float(c[b][torch.arange(n), cols[b]].sum()) == pytest.approx(expected, rel=1e-12, abs=1e-9)
        slack = c - u[..., :, None] - v[..., None, :]
        assert float(slack.min()) >= -1e-9 * (float(c.abs().max()) + 1)
        gap = torch.gather(c, 2, cols.unsqueeze(2)).squeeze(2).sum(1) - u.sum(1) - torch.gather(v, 1, cols).sum(1)
        assert float(gap.abs().max()) <= 1e-9 * (float(c.abs().max()) + 1) * n
    with pytest.raises(ValueError, match="problem 1"):
        bad = torch.rand(2, 3, 3, dtype=torch.float64)
        bad[1, 0, 2] = float("inf")
        kernel.linear_sum_assignment(bad.to(triton_device))
    with pytest.raises(ValueError, match="n <= m"):
        kernel.linear_sum_assignment(torch.rand(1, 4, 3).to(triton_device))


def test_assignment_on_device_matches_cpu(device, generator):
    cost = torch.rand(4, 9, 9, generator=generator, dtype=torch.float64)
    expected = linear_sum_assignment(cost)
    result = linear_sum_assignment(cost.to(device))
    torch.testing.assert_close(result.cost.cpu(), expected.cost)
    check_certificate(cost, result.map_tensors(lambda t: t.cpu()))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_assignment_large_batch_on_gpu_matches_cpu(generator):
    """More problems than multiprocessors: several programs share each one, and
    their warps drift apart (a race between lanes shows up only then)."""
    count = 4 * torch.cuda.get_device_properties(0).multi_processor_count
    x, y = (torch.rand(count, 128, 2, generator=generator, dtype=torch.float64) for _ in range(2))
    cost = torch.cdist(x, y).square()
    result = linear_sum_assignment(cost.cuda())
    expected = linear_sum_assignment(cost)
    torch.testing.assert_close(result.cost.cpu(), expected.cost, rtol=1e-12, atol=1e-12)
    check_certificate(cost, result.map_tensors(lambda t: t.cpu()))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_single_large_problem_on_gpu_is_solved_on_the_host(generator):
    """A single large problem on CUDA goes to the C++ kernel on the host: the
    same duals and columns as solving it on the CPU, returned on the GPU."""
    from fastgan.kernels import assignment as kernel

    n = 300
    assert kernel.solved_on_host(1, n, n) and not kernel.solved_on_host(1, 128, 128)
    x, y = (torch.rand(n, 2, generator=generator, dtype=torch.float64) for _ in range(2))
    cost = torch.cdist(x, y).square()
    result = linear_sum_assignment(cost.cuda())
    expected = linear_sum_assignment(cost)
    assert result.col_ind.is_cuda and result.u.is_cuda
    assert torch.equal(result.col_ind.cpu(), expected.col_ind)
    assert torch.equal(result.u.cpu(), expected.u) and torch.equal(result.v.cpu(), expected.v)


def test_assignment_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        linear_sum_assignment(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="cost"):
        linear_sum_assignment(torch.zeros(3))
    with pytest.raises(TypeError, match="cost"):
        linear_sum_assignment(torch.zeros(2, 2, dtype=torch.int64))
    torch.library.opcheck(torch.ops.fastgan.linear_sum_assignment.default, (torch.rand(2, 3, 4),))
