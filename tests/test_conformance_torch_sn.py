"""fastgan.nn.spectral_norm as a drop-in for torch.nn.utils.parametrizations.spectral_norm.

The behaviours torch's own parametrization tests check, run on torch's
function and on fastgan's side by side with fresh random weights and
inputs: structure and state_dict keys, the numbers in training and
evaluation, state_dicts loading across, stacked parametrizations,
removal, gradients through repeated forwards, ``dim``, complex weights.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import fastgan.nn as fnn

torch_sn = torch.nn.utils.parametrizations.spectral_norm

LAYERS = {
    "linear": lambda: nn.Linear(5, 7, dtype=torch.float64),
    "conv2d": lambda: nn.Conv2d(3, 4, 3, dtype=torch.float64),
    "conv_transpose2d": lambda: nn.ConvTranspose2d(3, 4, 3, dtype=torch.float64),
    "embedding": lambda: nn.Embedding(6, 4, dtype=torch.float64),
}
INPUTS = {
    "linear": lambda g: torch.randn(3, 5, generator=g, dtype=torch.float64),
    "conv2d": lambda g: torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64),
    "conv_transpose2d": lambda g: torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64),
    "embedding": lambda g: torch.randint(0, 6, (5,), generator=g),
}


def twins(make, seed: int, *applies):
    """The same module normalised by torch and by fastgan from the same random state.

    ``applies`` are (name, kwargs) pairs, applied in order."""
    torch.manual_seed(seed)
    base = make()
    out = []
    for sn in (torch_sn, fnn.spectral_norm):
        module = copy.deepcopy(base)
        torch.manual_seed(seed + 1)
        for name, kwargs in applies:
            sn(module, name, **kwargs)
        out.append(module)
    return out


def seed_of(generator) -> int:
    return int(torch.randint(0, 2**31, (1,), generator=generator))


@pytest.mark.parametrize("kind", list(LAYERS))
def test_structure_buffers_and_state_dict_keys(kind, generator):
    theirs, ours = twins(LAYERS[kind], seed_of(generator), ("weight", {}))
    assert set(ours.state_dict()) == set(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        assert ours.state_dict()[key].shape == value.shape
    sn = ours.parametrizations.weight[0]
    assert "_u" in sn._buffers and "_v" in sn._buffers and "weight" not in ours._parameters
    assert "original" in ours.parametrizations.weight._parameters


@pytest.mark.parametrize("kind", list(LAYERS))
def test_same_numbers_in_training_and_evaluation(kind, generator):
    theirs, ours = twins(LAYERS[kind], seed_of(generator), ("weight", {"n_power_iterations": 2}))
    x = INPUTS[kind](generator)
    for mode in ("train", "train", "train", "eval", "eval", "train"):
        theirs.train(mode == "train")
        ours.train(mode == "train")
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-12, atol=1e-12)
        for buf in ("_u", "_v"):
            torch.testing.assert_close(
                getattr(ours.parametrizations.weight[0], buf), getattr(theirs.parametrizations.weight[0], buf),
                rtol=1e-12, atol=1e-12,
            )


def test_state_dicts_load_across(generator):
    x = INPUTS["linear"](generator)
    theirs, ours = twins(LAYERS["linear"], seed_of(generator), ("weight", {}))
    for _ in range(3):
        theirs(x)
    ours.load_state_dict(theirs.state_dict())
    theirs.eval(), ours.eval()
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-12, atol=1e-12)
    other, _ = twins(LAYERS["linear"], seed_of(generator) + 7, ("weight", {}))
    other.load_state_dict(ours.state_dict())
    other.eval()
    torch.testing.assert_close(other(x), ours(x), rtol=1e-12, atol=1e-12)


def test_stacked_parametrizations(generator):
    """Spectral norm twice on the weight, once on the bias, and on top of another parametrization."""
    x = INPUTS["linear"](generator)
    stack = (("weight", {}), ("weight", {}), ("bias", {}))
    theirs, ours = twins(LAYERS["linear"], seed_of(generator), *stack)
    assert len(ours.parametrizations.weight) == len(theirs.parametrizations.weight) == 2
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-12, atol=1e-12)

    class Symmetric(nn.Module):
        def forward(self, w):
            return (w + w.T) / 2

    seed = seed_of(generator)
    results = []
    for sn in (torch_sn, fnn.spectral_norm):
        torch.manual_seed(seed)
        m = nn.Linear(6, 6, dtype=torch.float64)
        parametrize.register_parametrization(m, "weight", Symmetric())
        sn(m)
        results.append(m(torch.eye(6, dtype=torch.float64)))
    torch.testing.assert_close(results[1], results[0], rtol=1e-12, atol=1e-12)
    # Removing the bias's leaves the weight's.
    parametrize.remove_parametrizations(ours, "bias")
    assert "bias" in ours._parameters and parametrize.is_parametrized(ours, "weight")


def test_removal_keeps_the_normalised_weight(generator):
    x = INPUTS["conv2d"](generator)
    theirs, ours = twins(LAYERS["conv2d"], seed_of(generator), ("weight", {}))
    for module in (theirs, ours):
        for _ in range(3):
            module(x)
        module.eval()
        before = module(x).detach()
        parametrize.remove_parametrizations(module, "weight")
        assert not parametrize.is_parametrized(module)
        torch.testing.assert_close(module(x), before, rtol=0, atol=0)
    torch.testing.assert_close(ours.weight, theirs.weight, rtol=1e-12, atol=1e-12)


def test_gradients_through_repeated_forwards_in_both_modes(generator):
    """As torch's test: u, v reset before each evaluation, training and eval forwards mixed; gradcheck."""
    _, ours = twins(LAYERS["linear"], seed_of(generator), ("weight", {}))
    sn = ours.parametrizations.weight[0]
    saved_u, saved_v = sn._u.clone(), sn._v.clone()

    def fn(inp):
        sn._u.data.copy_(saved_u)
        sn._v.data.copy_(saved_v)
        outs = []
        for mode in (True, False, True, False):
            ours.train(mode)
            outs.append(ours(inp))
        return sum(outs)

    assert torch.autograd.gradcheck(fn, (INPUTS["linear"](generator).requires_grad_(),))
    ours.eval()
    assert torch.autograd.gradcheck(lambda w: ours(INPUTS["linear"](torch.Generator().manual_seed(0))),
                                    (ours.parametrizations.weight.original,))


@pytest.mark.parametrize("dim", [0, 1, 2, 3])
def test_dim_argument(dim, generator):
    x = INPUTS["conv2d"](generator)
    theirs, ours = twins(LAYERS["conv2d"], seed_of(generator), ("weight", {"dim": dim}))
    assert ours.parametrizations.weight[0]._u.shape == theirs.parametrizations.weight[0]._u.shape
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_complex_weights(dtype, generator):
    theirs, ours = twins(lambda: nn.Linear(4, 3, dtype=dtype), seed_of(generator), ("weight", {}))
    x = torch.randn(2, 4, dtype=dtype, generator=generator)
    tol = 1e-5 if dtype == torch.complex64 else 1e-12
    for mode in (True, True, False):
        theirs.train(mode), ours.train(mode)
        torch.testing.assert_close(ours(x), theirs(x), rtol=tol, atol=tol)
    ours(x).abs().sum().backward()
    assert ours.parametrizations.weight.original.grad is not None
