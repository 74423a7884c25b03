"""fastgan.train.optim.FusedAdamStep: exactly torch's Adam(fused=True).step(), or that step itself."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from fastgan.train import Trainer, preset
from fastgan.train.optim import FusedAdamStep


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))


def _run(model, opt, update, steps: int, seed: int):
    torch.manual_seed(seed)
    for i in range(steps):
        for g in opt.param_groups:
            g["lr"] *= 0.9  # a schedule, as the trainer's linear decay changes lr every step
        x = torch.randn(32, 3)
        if update is None:
            opt.zero_grad(set_to_none=True)
        else:
            update.zero_grad()
        model(x).square().mean().backward()
        opt.step() if update is None else update.step()


@pytest.mark.parametrize("kwargs", [{}, {"betas": (0.0, 0.9), "weight_decay": 1e-2, "eps": 1e-6}])
def test_fused_step_equals_torch_step_bit_for_bit(kwargs):
    ours, theirs = _model(1), _model(1)
    opt_ours = torch.optim.Adam(ours.parameters(), lr=1e-2, fused=True, **kwargs)
    opt_theirs = torch.optim.Adam(theirs.parameters(), lr=1e-2, fused=True, **kwargs)
    update = FusedAdamStep(opt_ours)
    assert update.fast
    _run(ours, opt_ours, update, 12, seed=7)
    _run(theirs, opt_theirs, None, 12, seed=7)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
    sa, sb = opt_ours.state_dict(), opt_theirs.state_dict()
    for k in sa["state"]:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(sa["state"][k][name], sb["state"][k][name])


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: torch.optim.RMSprop(ps, lr=1e-3),
        lambda ps: torch.optim.Adam(ps, lr=1e-3),  # not fused
        lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True, amsgrad=True),
        lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True, maximize=True),
        lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True),
    ],
)
def test_other_optimizers_run_their_own_step(make):
    ours, theirs = _model(2), _model(2)
    opt_ours, opt_theirs = make(ours.parameters()), make(theirs.parameters())
    update = FusedAdamStep(opt_ours)
    assert not update.fast
    _run(ours, opt_ours, update, 5, seed=3)
    _run(theirs, opt_theirs, None, 5, seed=3)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)


def test_hooks_and_added_groups_go_through_the_optimizer():
    model = _model(3)
    extra = nn.Parameter(torch.ones(2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
    update = FusedAdamStep(opt)
    calls = []
    handle = opt.register_step_post_hook(lambda *_: calls.append(1))
    _run(model, opt, update, 3, seed=4)
    assert len(calls) == 3  # every step ran the optimizer's own step, hooks included
    handle.remove()
    opt.add_param_group({"params": [extra]})
    before = extra.detach().clone()
    extra.grad = torch.ones(2)
    model(torch.randn(4, 3)).sum().backward()
    update.step()
    assert not torch.equal(extra, before)  # the added group was updated too


def test_trainer_trajectory_is_the_optimizers_own(monkeypatch):
    cfg = preset("wgan-gp", data="grid25", steps=30, progress=False, seed=5, threads=1)
    fast = Trainer(copy.deepcopy(cfg))
    fast.train_steps(30)
    assert fast._update(fast.opt_D).fast and fast._update(fast.opt_G).fast
    monkeypatch.setattr(FusedAdamStep, "step", lambda self: self.optimizer.step())
    slow = Trainer(copy.deepcopy(cfg))
    slow.train_steps(30)
    for a, b in zip([*fast.G.parameters(), *fast.D.parameters()], [*slow.G.parameters(), *slow.D.parameters()]):
        assert torch.equal(a, b)
