r"""POT's Sinkhorn ``method=`` names, and how fastgan runs each of them.

Every method POT offers for the balanced entropic problem

.. math:: \min_{\pi 1 = a,\ \pi^\top 1 = b} \langle \pi, M \rangle + \text{reg}\,\mathrm{KL}(\pi \,\|\, a b^\top)

computes the same plan once converged; they differ in how they get there.
fastgan runs all of them with one solver, the log-domain Sinkhorn iteration
(no overflow at any ``reg``), each with the call's tolerance ``stopThr`` on
the column-marginal error :math:`\|\pi^\top 1 - b\|_2` and an iteration
budget of at least the work POT's method may do:

==========================  ====================================================
method                      iteration cap of the log-domain solver
==========================  ====================================================
``sinkhorn``, ``sinkhorn_log``, ``log``, ``sinkhorn_stabilized``  ``numItermax``
``sinkhorn_epsilon_scaling``  ``numItermax * numInnerItermax`` (POT: ``numItermax`` outer steps of up to ``numInnerItermax`` iterations)
``greenkhorn``              ``numItermax`` (POT: ``numItermax`` single row or column updates, n + m of which make one iteration)
==========================  ====================================================

The method-specific options of POT's stabilised and epsilon-scaling solvers
(``tau``, ``epsilon0``, ``print_period``) steer the absorption of large
scalings and the schedule of regularisations on the way to the same plan;
the log-domain iteration needs neither, so they are checked (positive
numbers) and have no effect. The log says which solver ran (``solver``).
"""

from __future__ import annotations

import numbers
from typing import Any

import torch

from fastgan.ot._compat import UnsupportedMethodError

__all__ = ["LOG_SOLVER", "resolve_method", "warm_potentials"]

#: The solver every accepted method runs (recorded in the log as ``solver``).
LOG_SOLVER = "sinkhorn_log"

#: The options each method takes besides POT's common ones.
OPTIONS: dict[str, tuple[str, ...]] = {
    "sinkhorn": (),
    "sinkhorn_log": (),
    "log": (),
    "sinkhorn_stabilized": ("tau", "print_period"),
    "sinkhorn_epsilon_scaling": ("tau", "print_period", "epsilon0", "numInnerItermax"),
    "greenkhorn": (),
}

#: POT methods for other problems, refused with the function to use.
NOT_OFFERED = {
    "screenkhorn": "method='sinkhorn_log' (screenkhorn approximates the plan; fastgan solves it to stopThr)",
}


def resolve_method(method: object, numItermax: int, options: dict[str, Any]) -> int:
    """Checks ``method`` and its ``options``; returns the log-domain solver's iteration cap.

    Raises TypeError for a non-string method or an option the method does
    not take (naming it), :class:`UnsupportedMethodError` for an unknown
    method, ValueError for a non-positive option."""
    if not isinstance(method, str):
        raise TypeError(f"`method` must be a str, got {type(method).__name__}")
    name = method.lower()
    if name not in OPTIONS:
        hint = NOT_OFFERED.get(name)
        if hint is not None:
            raise UnsupportedMethodError(f"`method`={method!r} is not offered by fastgan; use {hint}")
        raise UnsupportedMethodError(f"`method` must be one of {tuple(OPTIONS)}, got {method!r}")
    unknown = sorted(set(options) - set(OPTIONS[name]))
    if unknown:
        raise TypeError(
            f"`{unknown[0]}` is not an option of method={method!r} (unexpected: {unknown}); "
            f"it takes {list(OPTIONS[name]) or 'none besides the common ones'}"
        )
    for key, value in options.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
            raise ValueError(f"`{key}` must be a positive number, got {value!r}")
    if name == "sinkhorn_epsilon_scaling":
        inner = options.get("numInnerItermax", 100)
        if not isinstance(inner, numbers.Integral):
            raise TypeError(f"`numInnerItermax` must be an int, got {type(inner).__name__}")
        return numItermax * int(inner)
    return numItermax


def warm_potentials(warmstart: object, M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    r"""POT's ``warmstart``: the initial log scalings ``(log u, log v)``, shapes
    ``(n,)`` / ``(m,)`` or ``(B, n)`` / ``(B, m)``, as ``(B, n)``, ``(B, m)`` in
    M's dtype (M is ``(B, n, m)``); None for a cold start.

    Starting the log-domain iteration from them is starting it from zero on
    :math:`M' = M - \text{reg}(\log u \oplus \log v)` and adding them back to
    the scalings it returns: the same iterates (the solver does that)."""
    if warmstart is None:
        return None
    if not isinstance(warmstart, (tuple, list)) or len(warmstart) != 2:
        raise TypeError(f"`warmstart` must be None or a pair (log u, log v), got {type(warmstart).__name__}")
    out = []
    for w, size, name in zip(warmstart, M.shape[1:], ("warmstart[0]", "warmstart[1]")):
        w = torch.as_tensor(w.detach() if isinstance(w, torch.Tensor) else w, dtype=M.dtype, device=M.device)
        if w.shape not in ((size,), (M.shape[0], size)):
            raise ValueError(f"`{name}` must have shape ({size},) or ({M.shape[0]}, {size}), got {tuple(w.shape)}")
        if not bool(torch.isfinite(w).all()):
            raise ValueError(f"`{name}` contains NaN or infinite values")
        out.append(w.expand(M.shape[0], size))
    return out[0], out[1]
