"""The array conventions fastgan.ot shares with POT and SciPy.

POT and SciPy take numpy arrays and Python lists, and answer in the type they
were given (POT's backend rule: numpy in, numpy out; torch in, torch out).
:func:`array_io` gives a function of tensors that behaviour: array arguments
become tensors on the way in and tensors become numpy on the way out, unless
a tensor was passed, in which case nothing is converted back and gradients
flow as usual.

Also here: the warning and error classes that let code written against POT
catch what fastgan raises.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import numbers
import os
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, Union

import numpy as np
import torch

__all__ = [
    "ArrayLike",
    "ConvergenceWarning",
    "ShapeMismatchError",
    "UnequalMassError",
    "UnsupportedMethodError",
    "array_io",
    "check_threads",
    "external_stacklevel",
    "is_sparse",
    "to_numpy",
]

#: What POT-style functions accept for an array argument.
ArrayLike = Union[torch.Tensor, np.ndarray, list, tuple]

F = TypeVar("F", bound=Callable[..., Any])

#: True while a function decorated by :func:`array_io` runs on numpy inputs
#: (what POT's random projections depend on: numpy's generator or torch's).
NUMPY_CALL: contextvars.ContextVar[bool] = contextvars.ContextVar("NUMPY_CALL", default=False)

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ConvergenceWarning(UserWarning, RuntimeWarning):
    """An iterative solver stopped at its iteration cap before its tolerance.

    A ``UserWarning`` (what POT raises, silenced by ``warn=False``) and a
    ``RuntimeWarning`` (what fastgan raised before it followed POT).
    """


class UnsupportedMethodError(NotImplementedError, ValueError):
    """A ``method=`` name that fastgan does not run; the message names the one to use."""


class UnequalMassError(ValueError, AssertionError):
    """Balanced transport between weights of different total mass.

    A ``ValueError`` for fastgan's callers and an ``AssertionError`` for code
    written against POT's ``emd``, which asserts the masses are equal.
    """


class ShapeMismatchError(ValueError, AssertionError):
    """Weights whose length does not match the cost's side.

    A ``ValueError`` for fastgan's callers and an ``AssertionError`` for code
    written against POT's ``emd``, which asserts the dimensions match.
    """


def external_stacklevel() -> int:
    """The ``stacklevel`` of ``warnings.warn`` that points at the first frame outside fastgan."""
    frame = inspect.currentframe()
    level = 0
    while frame is not None:
        if level > 0 and not os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
            return level
        frame = frame.f_back
        level += 1
    return level


def is_sparse(x: object) -> bool:
    """Whether ``x`` is a SciPy sparse matrix / array or a torch sparse tensor."""
    if isinstance(x, torch.Tensor):
        return x.layout != torch.strided
    try:
        import scipy.sparse
    except ImportError:  # pragma: no cover - SciPy is a dependency of the tests only
        return False
    return scipy.sparse.issparse(x)


def _array_to_tensor(x: object, name: str, like: torch.Tensor | None) -> torch.Tensor:
    """A numpy array, list, tuple or number as a tensor (like ``like``'s dtype and device if given)."""
    if isinstance(x, (list, tuple)) and len(x) == 0:
        dtype = like.dtype if like is not None else torch.float64
        return torch.empty(0, dtype=dtype, device=None if like is None else like.device)
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be a Tensor or an array, got {type(x).__name__}") from err
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype not in (np.float32, np.float64):
        raise TypeError(
            f"`{name}` has dtype {arr.dtype}: Cannot cast array data to float32 or float64 (expected real numbers)"
        )
    t = torch.from_numpy(np.ascontiguousarray(arr))
    if like is not None:
        t = t.to(dtype=like.dtype, device=like.device)
    return t


def to_numpy(out: Any) -> Any:
    """Tensors (also inside dicts, lists, tuples) as numpy arrays; 0-d ones as numpy scalars."""
    if isinstance(out, torch.Tensor):
        arr = out.detach().cpu().numpy()
        return arr[()] if arr.ndim == 0 else arr
    if hasattr(out, "map_tensors"):
        return out.map_tensors(to_numpy)
    if isinstance(out, dict):
        return type(out)((k, to_numpy(v)) for k, v in out.items())
    if isinstance(out, list):
        return [to_numpy(v) for v in out]
    if isinstance(out, tuple):
        values = (to_numpy(v) for v in out)
        return type(out)(*values) if hasattr(out, "_fields") else tuple(values)
    return out


def array_io(*names: str) -> Callable[[F], F]:
    """Decorator: the parameters ``names`` (the first one the anchor) take numpy arrays and lists.

    When none of them is a Tensor, the anchor becomes a tensor of its own
    dtype (integers as float64), the others take the anchor's dtype, and the
    result comes back as numpy. When one is a Tensor, the other array
    arguments take its dtype and device and the result stays a tensor.
    Sparse matrices are refused with a TypeError.
    """

    def wrap(fn: F) -> F:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            given = {k: bound.arguments[k] for k in names if bound.arguments.get(k) is not None}
            for k, v in given.items():
                if is_sparse(v):
                    raise TypeError(
                        f"`{k}` is a sparse matrix; fastgan's solvers take dense arrays "
                        f"(pass `{k}.toarray()` or `{k}.to_dense()`)"
                    )
            tensors = [v for v in given.values() if isinstance(v, torch.Tensor)]
            like = tensors[0] if tensors else None
            for k, v in given.items():
                if isinstance(v, torch.Tensor):
                    continue
                if isinstance(v, (np.ndarray, np.generic, list, tuple, numbers.Real)) and not isinstance(v, bool):
                    v = _array_to_tensor(v, k, like)
                    like = v if like is None else like
                    bound.arguments[k] = v
                else:
                    raise TypeError(f"`{k}` must be a Tensor, a numpy array or a list, got {type(v).__name__}")
            token = NUMPY_CALL.set(not tensors)
            try:
                out = fn(*bound.args, **bound.kwargs)
            finally:
                NUMPY_CALL.reset(token)
            return out if tensors else to_numpy(out)

        return inner  # type: ignore[return-value]

    return wrap


def check_threads(numThreads: object) -> None:
    """POT's ``numThreads``: a positive int or ``"max"``. fastgan uses torch's thread
    pool either way; any value but 1 gives POT 0.9.7's DeprecationWarning."""
    if numThreads != "max" and (
        isinstance(numThreads, bool) or not isinstance(numThreads, numbers.Integral) or numThreads < 1
    ):
        raise ValueError(f"`numThreads` must be a positive int or 'max', got {numThreads!r}")
    if numThreads != 1:
        warnings.warn(
            "The 'numThreads' parameter is deprecated (as in POT 0.9.7) and ignored: "
            "fastgan's solvers use torch's thread pool (torch.set_num_threads)",
            DeprecationWarning,
            stacklevel=external_stacklevel(),
        )
