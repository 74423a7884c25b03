"""fastgan.mlp_critic_scores: an MLP critic's scores in one node, against calling the critic (autograd)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import fastgan
from test_penalty import piecewise_linear_mlp, rand, seeded

pytestmark = pytest.mark.skipif(not fastgan._library.LOADED, reason="fastgan's compiled library is not built")

TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("depth", [0, 1, 3])
@pytest.mark.parametrize("act", ["lrelu", "relu", "linear", "fused-lrelu"])
@pytest.mark.parametrize("parameters", [True, False])
def test_scores_and_gradients_match_autograd(dtype, depth, act, parameters, generator):
    seeded(generator)
    theirs = piecewise_linear_mlp(depth, act.replace("fused-", ""), flat=depth != 1, dtype=dtype)
    ours = copy.deepcopy(theirs)
    if act.startswith("fused-"):
        ours = fastgan.nn.fuse_activations_(ours)
    x = rand((9, 3), generator, dtype)
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    weight = rand((9,), generator, dtype)  # every score weighs differently in the loss

    scores = fastgan.mlp_critic_scores(ours, x_ours, parameters=parameters)
    (weight * scores.reshape(-1)).sum().backward()
    if not parameters:
        for p in theirs.parameters():
            p.requires_grad_(False)
    ref = theirs(x_theirs)
    (weight * ref.reshape(-1)).sum().backward()

    assert scores.shape == ref.shape
    torch.testing.assert_close(scores, ref.detach(), **TOL[dtype])
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, **TOL[dtype])
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        if parameters:
            torch.testing.assert_close(a.grad, b.grad, **TOL[dtype], msg=lambda m: f"{name}: {m}")
        else:
            assert a.grad is None, name


def test_gradient_to_the_input_only_or_to_the_parameters_only(generator):
    """Either side of the node alone: a detached input (a critic step) or frozen weights (a generator step)."""
    seeded(generator)
    critic = piecewise_linear_mlp(2, "lrelu", flat=True)
    ref = copy.deepcopy(critic)
    x = rand((6, 3), generator)
    fastgan.mlp_critic_scores(critic, x).square().sum().backward()
    ref(x).square().sum().backward()
    for a, b in zip(critic.parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-13)
    # parameters=False leaves a node whose only input is x: nothing to differentiate without it.
    assert not fastgan.mlp_critic_scores(critic, x, parameters=False).requires_grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_generator_steps_under_spectral_norm_match_the_model(dtype, generator):
    """Grouped spectral norm: five generator-like steps (x moves, the critic's u and v iterate) as calling the model."""
    seeded(generator)
    base = piecewise_linear_mlp(3, "lrelu", flat=True, dtype=dtype)
    ours, theirs = fastgan.nn.spectral_norm_all(copy.deepcopy(base)), fastgan.nn.spectral_norm_all(copy.deepcopy(base))
    theirs.load_state_dict(ours.state_dict())
    for p in theirs.parameters():
        p.requires_grad_(False)
    x_ours, x_theirs = (rand((8, 3), generator, dtype).requires_grad_() for _ in range(2))
    with torch.no_grad():
        x_theirs.copy_(x_ours)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    for _ in range(5):
        loss = -fastgan.mlp_critic_scores(ours, x_ours, parameters=False).mean()
        ref = -theirs(x_theirs).mean()
        torch.testing.assert_close(loss, ref, **tol)
        (g_ours,) = torch.autograd.grad(loss, x_ours)
        (g_theirs,) = torch.autograd.grad(ref, x_theirs)
        torch.testing.assert_close(g_ours, g_theirs, **tol)
        with torch.no_grad():
            x_ours -= 0.5 * g_ours
            x_theirs -= 0.5 * g_theirs
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        torch.testing.assert_close(a, b, **tol, msg=lambda m: f"{name}: {m}")  # u and v: one iteration per call


def test_parameter_gradients_keep_the_parameters_strides():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(2, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
    for layer in critic[0], critic[2]:
        w = layer.weight.detach()
        layer.weight = nn.Parameter(torch.empty_strided(w.shape, (1, w.shape[0])).copy_(w))
    fastgan.mlp_critic_scores(critic, torch.randn(16, 2)).mean().backward()
    for name, p in critic.named_parameters():
        assert p.grad.stride() == p.stride(), name


def test_strided_and_empty_inputs(generator):
    seeded(generator)
    critic = piecewise_linear_mlp(2, "lrelu", flat=False)
    wide = rand((3, 10), generator).requires_grad_()
    x = wide.t()[:, :3]  # (10, 3), strides (1, 10)
    scores = fastgan.mlp_critic_scores(critic, x)
    scores.sum().backward()
    grad = wide.grad.clone()
    wide.grad = None
    critic(wide.t()[:, :3]).sum().backward()
    torch.testing.assert_close(scores, critic(x).detach(), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(grad, wide.grad, rtol=1e-12, atol=1e-13)
    critic.zero_grad(set_to_none=True)
    empty = rand((0, 3), generator).requires_grad_()
    out = fastgan.mlp_critic_scores(critic, empty)
    assert out.shape == (0, 1)
    out.sum().backward()
    assert empty.grad.shape == (0, 3)
    assert all(p.grad is not None and not p.grad.any() for p in critic.parameters())  # no rows: zero gradients


def test_bad_input(generator):
    critic = piecewise_linear_mlp(1, "lrelu", flat=True)
    x = rand((4, 3), generator)
    with pytest.raises(ValueError, match="`critic` must be an nn.Sequential"):
        fastgan.mlp_critic_scores(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)), x)
    with pytest.raises(TypeError, match="`x` must be a Tensor"):
        fastgan.mlp_critic_scores(critic, x.tolist())
    with pytest.raises(ValueError, match=r"mlp_critic_scores: `x` must have shape \(N, 3\)"):
        fastgan.mlp_critic_scores(critic, x[:, :2])
    with pytest.raises(TypeError, match="`x` is Float"):
        fastgan.mlp_critic_scores(critic, x.float())
    layers = fastgan.mlp_critic_layers(critic)
    with pytest.raises(ValueError, match="mlp_critic_scores: `alphas` must have one slope per hidden layer"):
        torch.ops.fastgan.mlp_critic_scores(x, layers.weights, layers.biases, [])
    scores = fastgan.mlp_critic_scores(critic, x.clone().requires_grad_())
    with pytest.raises(RuntimeError, match="mlp_critic_scores: derivatives of order 2"):
        torch.autograd.grad(scores.sum(), list(critic.parameters()), create_graph=True)


def test_opcheck(generator):
    critic = piecewise_linear_mlp(2, "lrelu", flat=True, dtype=torch.float32)
    layers = fastgan.mlp_critic_layers(critic)
    x = rand((5, 3), generator, torch.float32).requires_grad_()
    torch.library.opcheck(torch.ops.fastgan.mlp_critic_scores.default, (x, layers.weights, layers.biases, layers.alphas))


@pytest.mark.parametrize("op", ["scores", "penalty"])
def test_negative_and_steep_slopes(op, generator):
    """Slopes below 0 and above 1 (the activation's sign no longer tells the slope's side) in both ops."""
    seeded(generator)
    theirs = nn.Sequential(nn.Linear(3, 6), nn.LeakyReLU(-0.3), nn.Linear(6, 6), nn.LeakyReLU(1.5), nn.Linear(6, 1)).double()
    ours = copy.deepcopy(theirs)
    x = rand((7, 3), generator)
    if op == "scores":
        x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
        fastgan.mlp_critic_scores(ours, x_ours).square().sum().backward()
        theirs(x_theirs).square().sum().backward()
        torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-12, atol=1e-13)
    else:
        x_hat = rand((5, 3), generator)
        d_real, d_fake, penalty = fastgan.mlp_critic_penalty(ours, x, x + 1, x_hat)
        (d_real.square().sum() - d_fake.sum() + penalty).backward()
        h = x_hat.clone().requires_grad_()
        (g,) = torch.autograd.grad(theirs(h).sum(), h, create_graph=True)
        (theirs(x).square().sum() - theirs(x + 1).sum() + ((g.norm(dim=1) - 1) ** 2).mean()).backward()
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-13, msg=lambda m: f"{name}: {m}")
