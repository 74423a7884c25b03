"""fastgan.penalty_from_gradients against the plain-autograd reference."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import fastgan
from fastgan import reference

SHAPES = [(1, 2), (5, 2), (3, 1), (7, 3, 4, 4), (4, 0), (2, 40000)]


def rand(shape, generator, dtype=torch.float64, scale=1.0):
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("center,one_sided", [(1.0, False), (1.0, True), (0.0, False)])
def test_value_and_gradient_match_reference(shape, center, one_sided, generator):
    g = rand(shape, generator, scale=0.7).requires_grad_()
    p = fastgan.penalty_from_gradients(g, center=center, one_sided=one_sided)
    (dp,) = torch.autograd.grad(p, g)
    g_ref = g.detach().clone().requires_grad_()
    p_ref = reference.penalty_from_gradients(g_ref, center=center, one_sided=one_sided)
    (dp_ref,) = torch.autograd.grad(p_ref, g_ref)
    torch.testing.assert_close(p, p_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(dp, dp_ref, rtol=1e-10, atol=1e-14)


def test_zero_gradient_sample_is_finite(generator):
    g = rand((4, 6), generator)
    g[1] = 0  # a constant critic around that sample
    g.requires_grad_()
    (dp,) = torch.autograd.grad(fastgan.penalty_from_gradients(g), g)
    assert torch.isfinite(dp).all() and bool((dp[1] == 0).all())


@pytest.mark.parametrize("one_sided", [False, True])
def test_gradcheck_and_gradgradcheck(one_sided, generator):
    g = rand((3, 2, 5), generator, scale=0.5).requires_grad_()

    def f(x):
        return fastgan.penalty_from_gradients(x, one_sided=one_sided)

    assert torch.autograd.gradcheck(f, (g,))
    assert torch.autograd.gradgradcheck(f, (g,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_within_torch_own_error(dtype, generator):
    g64 = rand((16, 3, 8, 8), generator, scale=0.1)
    g = g64.to(dtype)
    exact = reference.penalty_from_gradients(g64)
    ours = fastgan.penalty_from_gradients(g)
    torchs = reference.penalty_from_gradients(g)
    assert ours.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    # Error against float64 of the rounded input: within 2x of torch's own.
    err_ours = abs(float(ours) - float(exact))
    err_torch = abs(float(torchs) - float(exact))
    assert err_ours <= 2 * err_torch + 1e-6 * float(exact)


def test_non_contiguous_gradients(generator):
    g = rand((6, 5, 4), generator).transpose(0, 2)[:3]
    g.requires_grad_()
    p = fastgan.penalty_from_gradients(g)
    torch.testing.assert_close(p, reference.penalty_from_gradients(g))
    (dp,) = torch.autograd.grad(p, g)
    (dp_ref,) = torch.autograd.grad(reference.penalty_from_gradients(g), g)
    torch.testing.assert_close(dp, dp_ref)


def test_wgan_gp_chain_matches_reference(generator):
    # The penalty's backward feeds the critic's double backward: parameter
    # gradients must equal those of the plain-autograd penalty.
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    critic = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 1)).double()
    x_hat = rand((16, 2), generator).requires_grad_()

    def param_grads(penalty_fn):
        critic.zero_grad()
        (grads,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
        (10.0 * penalty_fn(grads)).backward()
        # (The output bias does not change the input gradient: no grad.)
        return [p.grad for p in critic.parameters() if p.grad is not None]

    ours = param_grads(fastgan.penalty_from_gradients)
    ref = param_grads(reference.penalty_from_gradients)
    assert len(ours) == len(ref) == 3
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_opcheck(generator):
    g = rand((4, 3), generator, dtype=torch.float32)
    torch.library.opcheck(torch.ops.fastgan.penalty_from_gradients.default, (g, 1.0, False))
    p, n = torch.ops.fastgan.penalty_from_gradients(g, 1.0, True)
    torch.library.opcheck(
        torch.ops.fastgan.penalty_from_gradients_backward.default,
        (torch.ones(()), g, n, 1.0, True),
    )


def test_bad_input():
    with pytest.raises(TypeError, match="grads"):
        fastgan.penalty_from_gradients(torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="grads"):
        fastgan.penalty_from_gradients([[1.0, 2.0]])
    for bad in (torch.zeros(()), torch.zeros(0, 3)):
        with pytest.raises(ValueError, match="grads"):
            fastgan.penalty_from_gradients(bad)
    with pytest.raises(ValueError, match="center"):
        fastgan.penalty_from_gradients(torch.zeros(2, 2), center=math.nan)
    with pytest.raises(ValueError, match="backend"):
        fastgan.penalty_from_gradients(torch.zeros(2, 2), backend="triton")
    # The op checks its own arguments too (LibTorch users call it directly).
    with pytest.raises(ValueError, match="grads"):
        torch.ops.fastgan.penalty_from_gradients(torch.zeros(0, 3), 1.0, False)
