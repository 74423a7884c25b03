"""The trainer's optimizer steps without ``Optimizer.step``'s per-call Python work.

A 2-D GAN iteration runs two Adam updates of a few small tensors each; torch's
``Adam(fused=True).step()`` spends most of its time around the one fused kernel
(hooks, profiler records, grouping the tensors by device and dtype, the step
counters' bookkeeping): 0.2-0.3 ms a call on one CPU core against a 5 ms
iteration. :class:`FusedAdamStep` calls the same kernel (``torch._fused_adam_``)
on the optimizer's own state tensors, so the parameters, the state and
``state_dict()`` are exactly those of ``optimizer.step()``.
"""

from __future__ import annotations

import torch
from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks

__all__ = ["FusedAdamStep"]

# Adam's options that change the update; the fast path takes only these values.
_PLAIN = {"amsgrad": False, "maximize": False, "capturable": False, "differentiable": False, "decoupled_weight_decay": False}


class FusedAdamStep:
    """``optimizer.step()`` and ``optimizer.zero_grad(set_to_none=True)`` for a fused Adam.

    The fast path runs when the optimizer is a ``torch.optim.Adam(fused=True)`` with one
    parameter group on one device and dtype, without amsgrad, maximize, capturable,
    differentiable or decoupled weight decay, no step hooks are registered, every
    parameter has a gradient and its state exists (after the first step). Then it is
    torch's own update: the step counters incremented, then one ``torch._fused_adam_``
    with the group's lr, betas, eps and weight decay read at each call. Any other case
    calls ``optimizer.step()`` itself; the result is the same either way.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self._gather()

    def _gather(self) -> None:
        """The parameters and whether the fast path applies, read from the optimizer's groups."""
        opt = self.optimizer
        groups = opt.param_groups
        self.params: list[torch.Tensor] = [p for g in groups for p in g["params"]]
        self._sizes = [len(g["params"]) for g in groups]
        group = groups[0] if groups else {}
        self.fast = (
            type(opt) is torch.optim.Adam
            and len(groups) == 1
            and bool(group.get("fused"))
            and all(group.get(k, v) == v for k, v in _PLAIN.items())
            and len({(p.device, p.dtype) for p in self.params}) == 1
        )

    def _current(self) -> list[torch.Tensor]:
        """The parameters, gathered again when groups or parameters were added since."""
        if [len(g["params"]) for g in self.optimizer.param_groups] != self._sizes:
            self._gather()
        return self.params

    def zero_grad(self) -> None:
        """Every parameter's gradient to None (``zero_grad(set_to_none=True)``)."""
        for p in self._current():
            p.grad = None

    def step(self) -> None:
        """One Adam update of every parameter."""
        opt = self.optimizer
        params = self._current()
        hooks = opt._optimizer_step_pre_hooks or opt._optimizer_step_post_hooks
        if not self.fast or hooks or _global_optimizer_pre_hooks or _global_optimizer_post_hooks:
            opt.step()
            return
        states = [opt.state.get(p) for p in params]
        if any(not s for s in states) or any(p.grad is None for p in params):
            opt.step()  # the first step creates the state
            return
        group = opt.param_groups[0]
        beta1, beta2 = group["betas"]
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            steps,
            amsgrad=False,
            lr=group["lr"],
            beta1=float(beta1),
            beta2=float(beta2),
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )
