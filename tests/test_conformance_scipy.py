"""fastgan.ot.linear_sum_assignment as a drop-in for SciPy's, on fresh inputs, against the real SciPy."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import fastgan.ot as fot

scipy_optimize = pytest.importorskip("scipy.optimize")
scipy_lsa = scipy_optimize.linear_sum_assignment


def shapes(rng):
    n = int(rng.integers(1, 40))
    return [(n, n), (n, n + int(rng.integers(1, 10))), (n + int(rng.integers(1, 10)), n)]


def test_keyword_names_are_scipys(rng):
    cost = rng.normal(size=(5, 7))
    ours = fot.linear_sum_assignment(cost_matrix=cost, maximize=True)
    theirs = scipy_lsa(cost_matrix=cost, maximize=True)
    np.testing.assert_array_equal(ours[1], theirs[1])
    assert [p.name for p in inspect.signature(fot.linear_sum_assignment).parameters.values()] == [
        "cost_matrix",
        "maximize",
    ]


@pytest.mark.parametrize("maximize", [False, True])
def test_unpacks_to_scipys_indices_numpy_in_numpy_out(rng, maximize):
    """Continuous random costs have one optimal assignment: the indices are SciPy's."""
    for shape in shapes(rng):
        cost = rng.normal(size=shape)
        row_ind, col_ind = fot.linear_sum_assignment(cost, maximize=maximize)
        r, c = scipy_lsa(cost, maximize=maximize)
        for ours, theirs in ((row_ind, r), (col_ind, c)):
            assert isinstance(ours, np.ndarray) and ours.dtype == theirs.dtype
            np.testing.assert_array_equal(ours, theirs)


def test_richer_result_stays_available_as_attributes(rng):
    cost = rng.random(size=(int(rng.integers(2, 30)),) * 2)
    result = fot.linear_sum_assignment(cost)
    r, c = scipy_lsa(cost)
    assert len(result) == 2
    assert result.cost == pytest.approx(cost[r, c].sum(), rel=1e-12)
    assert abs(result.duality_gap) <= 1e-12 * cost.shape[0]
    assert (result.u[:, None] + result.v[None, :] - cost).max() <= 1e-12


def test_lists_integers_and_booleans_are_read_as_scipy_reads_them(rng):
    ints = rng.integers(0, 1000, size=(7, 9))  # distinct enough: compare costs, not indices
    for cost in (ints, ints.tolist(), ints > 500):
        r, c = fot.linear_sum_assignment(cost)
        rs, cs = scipy_lsa(cost)
        arr = np.asarray(cost, dtype=np.float64)
        assert arr[r, c].sum() == arr[rs, cs].sum()


@pytest.mark.parametrize("maximize", [False, True])
def test_infinite_entries_are_forbidden_pairs(rng, maximize):
    n, m = int(rng.integers(2, 25)), int(rng.integers(25, 30))
    cost = rng.normal(size=(n, m))
    keep = rng.permutation(m)[:n]  # a feasible assignment survives
    forbidden = rng.random((n, m)) < 0.6
    forbidden[np.arange(n), keep] = False
    cost[forbidden] = -np.inf if maximize else np.inf
    r, c = fot.linear_sum_assignment(cost, maximize=maximize)
    rs, cs = scipy_lsa(cost, maximize=maximize)
    np.testing.assert_array_equal(c, cs)
    assert not forbidden[r, c].any()


def test_infeasible_matrix_raises_scipys_value_error(rng):
    n = int(rng.integers(2, 10))
    cost = rng.random((n, n))
    cost[int(rng.integers(n)), :] = np.inf  # a row with no allowed column
    for lsa in (scipy_lsa, fot.linear_sum_assignment):
        with pytest.raises(ValueError, match="cost matrix is infeasible"):
            lsa(cost)


def test_nan_and_the_wrong_infinity_are_invalid(rng):
    cost = rng.random((4, 4))
    for bad, maximize in ((np.nan, False), (-np.inf, False), (np.inf, True)):
        c = cost.copy()
        c[1, 2] = bad
        for lsa in (scipy_lsa, fot.linear_sum_assignment):
            with pytest.raises(ValueError, match="invalid numeric entries"):
                lsa(c, maximize=maximize)


def test_bad_shapes_and_dtypes_give_scipys_messages(rng):
    """SciPy's phrases, so that code matching SciPy's errors keeps working."""
    n = int(rng.integers(1, 6))
    for lsa in (scipy_lsa, fot.linear_sum_assignment):
        with pytest.raises(ValueError, match="expected a matrix"):
            lsa(rng.random(n))
        with pytest.raises(TypeError, match="Cannot cast array data"):
            lsa(rng.random((n, n)).astype(str))
    with pytest.raises(ValueError, match="`cost_matrix`"):
        fot.linear_sum_assignment(rng.random((1, 1, n, n)))


@pytest.mark.parametrize("shape", [(0, 0), (0, 3), (3, 0)])
def test_empty_matrices_give_empty_indices(shape):
    for ours, theirs in zip(fot.linear_sum_assignment(np.zeros(shape)), scipy_lsa(np.zeros(shape))):
        assert ours.shape == theirs.shape == (0,) and ours.dtype == theirs.dtype


def test_ties_give_an_optimal_assignment_not_necessarily_scipys(rng):
    """Deliberately not SciPy's indices on ties (documented): the cost is SciPy's, the assignment valid."""
    n = int(rng.integers(2, 30))
    for cost in (np.full((n, n), 2.5), rng.integers(0, 3, size=(n, n)).astype(float)):
        r, c = fot.linear_sum_assignment(cost)
        rs, cs = scipy_lsa(cost)
        assert sorted(c.tolist()) == list(range(n))
        assert cost[r, c].sum() == cost[rs, cs].sum()


def test_torch_in_torch_out_and_batches(rng):
    """fastgan's extension: tensors stay tensors, and (B, n, m) solves every problem."""
    cost = torch.tensor(rng.normal(size=(int(rng.integers(1, 6)), 12, 15)))
    result = fot.linear_sum_assignment(cost)
    assert isinstance(result.col_ind, torch.Tensor) and result.col_ind.shape == cost.shape[:2]
    for k in range(cost.shape[0]):
        np.testing.assert_array_equal(result.col_ind[k].numpy(), scipy_lsa(cost[k].numpy())[1])
