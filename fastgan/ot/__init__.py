"""Exact optimal transport: 1-D Wasserstein and sliced Wasserstein (POT's names and conventions)."""

from fastgan.ot.one_d import sliced_wasserstein, wasserstein_1d

__all__ = ["sliced_wasserstein", "wasserstein_1d"]
