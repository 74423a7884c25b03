"""Optimal transport: exact (general weights, assignment, 1-D, sliced) and entropic (Sinkhorn); POT's, SciPy's and GeomLoss's conventions."""

from fastgan.ot.assignment import Assignment, linear_sum_assignment
from fastgan.ot.emd import emd, emd2, wasserstein
from fastgan.ot._compat import ConvergenceWarning, ShapeMismatchError, UnequalMassError, UnsupportedMethodError
from fastgan.ot.samples_loss import SamplesLoss
from fastgan.ot.one_d import sliced_wasserstein, sliced_wasserstein_distance, wasserstein_1d
from fastgan.ot.sinkhorn import SinkhornLog, sinkhorn, sinkhorn2, sinkhorn_divergence, sinkhorn_log

__all__ = [
    "Assignment",
    "ConvergenceWarning",
    "SamplesLoss",
    "ShapeMismatchError",
    "SinkhornLog",
    "UnequalMassError",
    "UnsupportedMethodError",
    "emd",
    "emd2",
    "linear_sum_assignment",
    "sinkhorn",
    "sinkhorn2",
    "sinkhorn_divergence",
    "sinkhorn_log",
    "sliced_wasserstein",
    "sliced_wasserstein_distance",
    "wasserstein",
    "wasserstein_1d",
]
