"""Pure-PyTorch references of every fastgan op.

Each function has the same signature and contract as the public op it
mirrors. They are the test oracle, the benchmark baseline and what
``backend="reference"`` runs.
"""

from fastgan.reference.clip import clip_parameters_
from fastgan.reference.penalty import penalty_from_gradients

__all__ = ["clip_parameters_", "penalty_from_gradients"]
