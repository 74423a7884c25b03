"""Training loops for GAN, WGAN, WGAN-GP, SN-GAN, LSGAN and f-GAN on fastgan's kernels.

``fastgan.train(...)`` / :class:`Trainer` from Python, ``fastgan train`` (or
``python -m fastgan train``) from the command line.
"""

from fastgan.train.data import DataSource, make_data
from fastgan.train.presets import ALGOS, Config, preset
from fastgan.train.trainer import Trainer, TrainingDiverged, exact_w1, train

__all__ = ["ALGOS", "Config", "DataSource", "Trainer", "TrainingDiverged", "exact_w1", "make_data", "preset", "train"]

import sys as _sys
import types as _types


class _CallableModule(_types.ModuleType):
    """Lets ``fastgan.train(...)`` run :func:`train` while ``fastgan.train`` stays this subpackage."""

    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
del _sys, _types
