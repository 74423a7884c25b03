"""Exact optimal transport: general weights (EMD), 1-D and sliced Wasserstein, exact assignment (POT's and SciPy's conventions)."""

from fastgan.ot.assignment import Assignment, linear_sum_assignment
from fastgan.ot.emd import emd, emd2, wasserstein
from fastgan.ot.one_d import sliced_wasserstein, wasserstein_1d

__all__ = [
    "Assignment",
    "emd",
    "emd2",
    "linear_sum_assignment",
    "sliced_wasserstein",
    "wasserstein",
    "wasserstein_1d",
]
