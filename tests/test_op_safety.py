"""Every registered op called directly with tensors its wrappers never pass.

``torch.ops.fastgan.*`` is public (LibTorch users, graphs that torch.compile
traced), so each op checks every tensor it reads through a raw pointer:
expanded and strided tensors are either read correctly (compared with an
independent oracle, fastgan.reference or torch) or refused with a
ValueError / TypeError naming the argument; offsets and indices out of range,
those near 2**63 included, and tables of the wrong length are refused; empty
tensors give empty results. docs/op-audit.md lists what each kernel assumes
and where it is checked. The ops whose CUDA implementation is a Triton
kernel are also checked through that kernel (under the Triton interpreter on
CPU tensors when no GPU is visible).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import torch

from fastgan import reference

ops = torch.ops.fastgan
F64 = torch.float64
# Offsets and indices that do not fit a state of a few dozen entries; the
# ones near 2**63 wrap around when added to a layer's size.
HUGE = [2**62, 2**63 - 1, 2**63 - 3, -(2**63)]


def strided(t: torch.Tensor) -> torch.Tensor:
    """``t``'s values in a tensor of stride 2 along its last dimension, NaN in the gaps."""
    poison = torch.full_like(t, math.nan) if t.is_floating_point() else torch.zeros_like(t)
    out = torch.stack([t, poison], dim=-1).select(-1, 0)
    assert not out.is_contiguous() or t.numel() <= 1
    return out


def expanded_rows(t: torch.Tensor) -> torch.Tensor:
    """``t``'s first row repeated along dimension 0 without memory of its own."""
    return t[:1].expand(t.shape)


def randn(generator, *shape, dtype=F64, device="cpu"):
    return torch.randn(shape, generator=generator, dtype=dtype).to(device)


# ---------------------------------------------------------------- spectral norm

H, K = 4, 6  # layer 0: a (4, 6) weight; layer 1: (1, 4)


class SnProblem:
    """Two layers, their power-iteration state, and a call of each state-reading op."""

    def __init__(self, generator, device):
        self.w0 = randn(generator, H, K, device=device)
        self.w1 = randn(generator, 1, H, device=device)
        self.b0, self.b1 = randn(generator, H, device=device), randn(generator, 1, device=device)
        us = [randn(generator, H, device=device), randn(generator, 1, device=device)]
        vs = [randn(generator, K, device=device), randn(generator, H, device=device)]
        self.state = ops.spectral_norm_power_iteration([self.w0, self.w1], us, vs, [0, 0], 3, 1e-12)
        assert self.state.shape == (2 + H + K + 1 + H,)
        self.grad = randn(generator, H, K, device=device)
        self.x = randn(generator, 3, K, device=device)
        self.x_hat = randn(generator, 2, K, device=device)

    # Each takes (state, index, offset) for layer 0 (index 0, offset 2).
    def scale(self, state, index=0, offset=2):
        return ops.spectral_norm_scale(self.w0, state, index, offset, 0)

    def scale_backward(self, state, index=0, offset=2):
        return ops.spectral_norm_scale_backward(self.grad, self.w0, state, index, offset, 0)

    def linear(self, state, index=0, offset=2):
        return ops.spectral_norm_linear(self.x, self.w0, self.b0, state, index, offset)

    def mlp_critic_penalty(self, state, index=0, offset=2):
        return ops.mlp_critic_penalty(
            self.x, self.x[:2], self.x_hat, [self.w0, self.w1], [self.b0, self.b1], [0.2], 1.0, False,
            state, [index, 1], [offset, 2 + H + K],
        )

    def mlp_critic_scores(self, state, index=0, offset=2):
        return ops.mlp_critic_scores(self.x, [self.w0, self.w1], [self.b0, self.b1], [0.2], state, [index, 1], [offset, 2 + H + K])


SN_OPS = ["scale", "scale_backward", "linear", "mlp_critic_penalty", "mlp_critic_scores"]
STATE_NAME = {"mlp_critic_penalty": "sn_state", "mlp_critic_scores": "sn_state"}


def sn_oracles(p: SnProblem):
    """Independent values of the five ops on the valid state (torch autograd for the critic)."""
    st = p.state
    sigma0, sigma1 = st[0], st[1]
    u, v = st[2 : 2 + H], st[2 + H : 2 + H + K]
    w0n, w1n = p.w0 / sigma0, p.w1 / sigma1
    coef = (p.grad * p.w0).sum() / sigma0**2
    x_hat = p.x_hat.clone().requires_grad_()

    def critic(x):
        return torch.nn.functional.leaky_relu(x @ w0n.T + p.b0, 0.2) @ w1n.T + p.b1

    (g,) = torch.autograd.grad(critic(x_hat).sum(), x_hat)
    penalty = ((g.norm(dim=1) - 1.0) ** 2).mean()
    return {
        "scale": w0n,
        "scale_backward": p.grad / sigma0 - coef * torch.outer(u, v),
        "linear": p.x @ w0n.T + p.b0,
        "mlp_critic_penalty": (critic(p.x).view(-1), critic(p.x[:2]).view(-1), penalty),
        "mlp_critic_scores": critic(p.x).view(-1).detach(),
    }


@pytest.mark.parametrize("op", SN_OPS)
def test_spectral_norm_ops_on_a_valid_state(op, device, generator):
    p = SnProblem(generator, device)
    torch.testing.assert_close(getattr(p, op)(p.state), sn_oracles(p)[op])


@pytest.mark.parametrize("op", SN_OPS)
@pytest.mark.parametrize("layout", ["expanded", "strided", "column"])
def test_spectral_norm_ops_refuse_a_state_they_cannot_index(op, layout, device, generator):
    p = SnProblem(generator, device)
    state = {
        # The faults of issue 22: an expanded state read past its one
        # element, a strided one read as if contiguous (a wrong sigma).
        "expanded": torch.ones(1, dtype=F64, device=device).expand(40),
        "strided": strided(p.state),
        "column": torch.stack([p.state, 2 * p.state, 3 * p.state], dim=1)[:, 0],
    }[layout]
    name = STATE_NAME.get(op, "state")
    with pytest.raises(ValueError, match=f"`{name}` must be contiguous"):
        getattr(p, op)(state)


@pytest.mark.parametrize("op", SN_OPS)
def test_spectral_norm_ops_refuse_offsets_and_indices_out_of_range(op, device, generator):
    p = SnProblem(generator, device)
    size = p.state.numel()
    bad_offsets = [-1, size - (H + K) + 1, size, *HUGE]
    for offset in bad_offsets:
        with pytest.raises(ValueError, match="do not fit a state"):
            getattr(p, op)(p.state, offset=offset)
    for index in [-1, size, *HUGE]:
        with pytest.raises(ValueError, match="do not fit a state"):
            getattr(p, op)(p.state, index=index)
    # The last offset that fits is accepted (the bound is inclusive).
    getattr(p, op)(p.state, offset=size - (H + K))


@pytest.mark.parametrize("op", SN_OPS)
def test_spectral_norm_ops_refuse_a_state_of_the_wrong_kind(op, device, generator):
    p = SnProblem(generator, device)
    name = STATE_NAME.get(op, "state")
    with pytest.raises(TypeError, match=f"`{name}` must be the float64 tensor"):
        getattr(p, op)(p.state.float())
    with pytest.raises(ValueError, match=f"`{name}` must be the 1-D tensor"):
        getattr(p, op)(p.state[None])
    with pytest.raises(ValueError, match="do not fit a state of 0 entries"):
        getattr(p, op)(p.state[:0])


def test_spectral_norm_scale_of_empty_weights(device, generator):
    state = randn(generator, 8, device=device)
    for shape in [(0, 5), (3, 0), (2, 0, 4)]:
        w = torch.empty(shape, dtype=F64, device=device)
        assert ops.spectral_norm_scale(w, state, 0, 1, 0).shape == shape
        g = torch.empty(shape, dtype=F64, device=device)
        assert ops.spectral_norm_scale_backward(g, w, state, 0, 1, 0).shape == shape
    # An empty weight's other sizes are not bounded by its element count:
    # their product (the number of v entries) must not overflow.
    w = torch.empty((2**31, 0, 2**31, 4), dtype=F64, device=device)
    with pytest.raises(ValueError, match="column count overflows int64"):
        ops.spectral_norm_scale(w, state, 0, 1, 1)


def test_spectral_norm_scale_backward_checks_grad(device, generator):
    p = SnProblem(generator, device)
    with pytest.raises(ValueError, match="`grad` must have the shape of `weight`"):
        ops.spectral_norm_scale_backward(p.grad[:, :3], p.w0, p.state, 0, 2, 0)
    with pytest.raises(TypeError, match="`grad` has dtype Float"):
        ops.spectral_norm_scale_backward(p.grad.float(), p.w0, p.state, 0, 2, 0)
    # A strided grad and weight are read correctly.
    expected = sn_oracles(p)["scale_backward"]
    got = ops.spectral_norm_scale_backward(strided(p.grad), strided(p.w0), p.state, 0, 2, 0)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(ops.spectral_norm_scale(strided(p.w0), p.state, 0, 2, 0), sn_oracles(p)["scale"])


def test_power_iteration_refuses_buffers_it_cannot_update(device, generator):
    w = randn(generator, 3, 3, device=device)
    u, v = randn(generator, 3, device=device), randn(generator, 3, device=device)
    with pytest.raises(ValueError, match=r"`us\[0\]` has internally overlapping memory"):
        ops.spectral_norm_power_iteration([w], [torch.ones(1, dtype=F64, device=device).expand(3)], [v], [0], 1, 1e-12)
    with pytest.raises(ValueError, match=r"`vs\[0\]` has internally overlapping memory"):
        ops.spectral_norm_power_iteration([w], [u], [torch.ones(1, dtype=F64, device=device).expand(3)], [0], 1, 1e-12)
    with pytest.raises(ValueError, match=r"`us\[0\]` and `vs\[0\]` share memory"):
        ops.spectral_norm_power_iteration([w], [u], [u], [0], 1, 1e-12)
    with pytest.raises(IndexError, match=r"dim 2 is out of range for `weights\[0\]`"):
        ops.spectral_norm_power_iteration([w], [u], [v], [2], 1, 1e-12)
    with pytest.raises(ValueError, match="one entry per layer"):
        ops.spectral_norm_power_iteration([w, w], [u], [v], [0, 0], 1, 1e-12)


def test_power_iteration_updates_strided_buffers_in_place(device, generator):
    w = randn(generator, 5, 2, 3, device=device)
    u, v = strided(randn(generator, 2, device=device)), strided(randn(generator, 15, device=device))
    u_ref, v_ref = u.clone(), v.clone()
    sigmas = reference.spectral_norm_power_iteration([w], [u_ref], [v_ref], [1], 2, 1e-12)
    state = ops.spectral_norm_power_iteration([w], [u], [v], [1], 2, 1e-12)
    torch.testing.assert_close(state[0], sigmas[0])
    torch.testing.assert_close(u, u_ref)
    torch.testing.assert_close(v, v_ref)


def test_mlp_critic_penalty_checks_its_tables(device, generator):
    p = SnProblem(generator, device)
    args = (p.x, p.x[:2], p.x_hat, [p.w0, p.w1], [p.b0, p.b1])
    with pytest.raises(ValueError, match="`sn_indices` and `sn_offsets` must have one entry per layer"):
        ops.mlp_critic_penalty(*args, [0.2], 1.0, False, p.state, [0], [2, 12])
    with pytest.raises(ValueError, match="`alphas` must have one slope per hidden layer"):
        ops.mlp_critic_penalty(*args, [0.2, 0.2], 1.0, False)
    with pytest.raises(ValueError, match="`biases` must have one entry per layer"):
        ops.mlp_critic_penalty(*args[:4], [p.b0], [0.2], 1.0, False)
    with pytest.raises(ValueError, match=r"`sn_offsets\[1\]` = 13 do not fit"):
        ops.mlp_critic_penalty(*args, [0.2], 1.0, False, p.state, [0, 1], [2, 13])
    with pytest.raises(ValueError, match=r"weights\[0\] must have shape \(out, in\)"):
        ops.mlp_critic_penalty(p.x, p.x, p.x, [p.w0[0], p.w1], [p.b0, p.b1], [0.2], 1.0, False)
    with pytest.raises(ValueError, match=r"biases\[0\] must have shape \(4,\)"):
        ops.mlp_critic_penalty(*args[:4], [p.b0[:3], p.b1], [0.2], 1.0, False)


def test_mlp_critic_penalty_reads_strided_inputs(device, generator):
    p = SnProblem(generator, device)
    expected = sn_oracles(p)["mlp_critic_penalty"]
    got = ops.mlp_critic_penalty(
        strided(p.x), strided(p.x[:2]), strided(p.x_hat), [strided(p.w0), p.w1.t().contiguous().t()],
        [strided(p.b0), p.b1], [0.2], 1.0, False, p.state, [0, 1], [2, 2 + H + K],
    )
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)
    got = ops.mlp_critic_scores(
        strided(p.x), [strided(p.w0), p.w1.t().contiguous().t()], [strided(p.b0), p.b1], [0.2], p.state, [0, 1], [2, 2 + H + K]
    )
    torch.testing.assert_close(got, sn_oracles(p)["mlp_critic_scores"])


# ---------------------------------------------------------------- gradient penalty


@pytest.mark.parametrize("layout", ["strided", "expanded"])
def test_penalty_ops_read_any_layout(layout, device, generator):
    grads = randn(generator, 5, 3, 4, device=device)
    grads = strided(grads) if layout == "strided" else expanded_rows(grads)
    penalty, norms = ops.penalty_from_gradients(grads, 1.0, False)
    g = grads.clone().requires_grad_()
    expected = reference.penalty_from_gradients(g, center=1.0)
    torch.testing.assert_close(penalty, expected.detach())
    torch.testing.assert_close(norms, grads.flatten(1).norm(dim=1))
    grad_penalty = torch.tensor(0.7, dtype=F64, device=device)
    (expected_grad,) = torch.autograd.grad(expected, g, grad_penalty)
    got = ops.penalty_from_gradients_backward(grad_penalty.expand(()), grads, strided(norms), 1.0, False)
    torch.testing.assert_close(got, expected_grad)
    real, fake = randn(generator, 5, 3, device=device), randn(generator, 5, 3, device=device)
    eps = torch.rand(1, generator=generator, dtype=F64).to(device).expand(5)
    torch.testing.assert_close(
        ops.interpolate(strided(real), real.t().contiguous().t(), eps),
        reference.interpolate(real, real, eps),
    )
    torch.testing.assert_close(ops.interpolate(real, strided(fake), strided(eps.contiguous())), reference.interpolate(real, fake, eps))


def test_penalty_ops_refuse_bad_arguments(device, generator):
    grads = randn(generator, 5, 3, device=device)
    norms = grads.norm(dim=1)
    one = torch.ones((), dtype=F64, device=device)
    bwd = ops.penalty_from_gradients_backward
    with pytest.raises(ValueError, match=r"`norms` must have shape \(5,\)"):
        bwd(one, grads, norms[:4], 1.0, False)
    with pytest.raises(TypeError, match="`norms` has dtype Long"):
        bwd(one, grads, norms.long(), 1.0, False)
    with pytest.raises(ValueError, match="`grad_penalty` must hold one element"):
        bwd(one.expand(2), grads, norms, 1.0, False)
    with pytest.raises(ValueError, match="`grads` must have a batch dimension with at least one sample"):
        ops.penalty_from_gradients(grads[:0], 1.0, False)
    with pytest.raises(ValueError, match=r"`eps` must have shape \(5,\)"):
        ops.interpolate(grads, grads, norms[:4])
    with pytest.raises(TypeError, match="must share one dtype"):
        ops.interpolate(grads, grads, norms.float())
    # Samples without elements: zero norms, the penalty center^2.
    penalty, norms = ops.penalty_from_gradients(grads[:, :0], 1.0, False)
    assert float(penalty) == 1.0 and bool((norms == 0).all())


# ---------------------------------------------------------------- bias_act


@pytest.mark.parametrize("act", ["lrelu", "tanh"])
def test_bias_act_reads_any_layout(act, device, generator):
    x = randn(generator, 3, 4, 5, device=device)
    bias = randn(generator, 4, device=device)
    grad = randn(generator, 3, 4, 5, device=device)
    for xs, bs, gs in [
        (strided(x), strided(bias), strided(grad)),
        (expanded_rows(x), bias, expanded_rows(grad)),
        (x.transpose(0, 2).contiguous().transpose(0, 2), bias.expand(4), grad),
    ]:
        expected = reference.bias_act(xs, bs, act, 0.2, 1.4, dim=1)
        torch.testing.assert_close(ops.bias_act(xs, bs, act, 0.2, 1.4, 1), expected)
        expected_grad = reference.bias_act_grad(gs, xs, bs, act, 0.2, 1.4, 1, 1)
        torch.testing.assert_close(ops.bias_act_grad(gs, xs, bs, act, 0.2, 1.4, 1, 1), expected_grad)
    empty = x[:0]
    assert ops.bias_act(empty, bias, act, 0.2, 1.0, 1).shape == empty.shape


def test_bias_act_refuses_bad_arguments(device, generator):
    x, bias = randn(generator, 3, 4, device=device), randn(generator, 4, device=device)
    with pytest.raises(ValueError, match=r"`bias` must have shape \(4,\)"):
        ops.bias_act(x, bias[:3], "relu", 0.2, 1.0, 1)
    with pytest.raises(IndexError, match="`dim`=2 is out of range"):
        ops.bias_act(x, bias, "relu", 0.2, 1.0, 2)
    with pytest.raises(ValueError, match="`grad` has shape"):
        ops.bias_act_grad(x[:2], x, bias, "relu", 0.2, 1.0, 1, 1)
    with pytest.raises(ValueError, match="`order` must be 1 to 3"):
        ops.bias_act_grad(x, x, bias, "relu", 0.2, 1.0, 1, 4)


# ---------------------------------------------------------------- clip_


def test_clip_updates_strided_tensors_and_refuses_expanded_ones(device, generator):
    base = randn(generator, 4, 6, device=device)
    gaps = base[:, 1::2].clone()
    t = base[:, ::2]
    expected, changed = t.clamp(-0.5, 0.5), int((t.abs() > 0.5).sum())
    count = ops.clip_([t, randn(generator, 0, device=device)], 0.5)
    torch.testing.assert_close(t, expected)
    assert int(count) == changed
    assert torch.equal(base[:, 1::2], gaps)  # the elements between are untouched
    with pytest.raises(ValueError, match=r"`tensors\[1\]` has internally overlapping memory"):
        ops.clip_([t, torch.zeros(1, device=device).expand(3)], 0.5)


# ---------------------------------------------------------------- optimal transport


def test_wasserstein_1d_reads_any_layout(device, generator):
    u, v = randn(generator, 3, 7, device=device), randn(generator, 3, 5, device=device)
    wu = torch.rand(1, 7, generator=generator, dtype=F64).to(device)
    wv = torch.rand(3, 5, generator=generator, dtype=F64).to(device)
    wu_n, wv_n = (wu / wu.sum(1, keepdim=True)).expand(3, 7), wv / wv.sum(1, keepdim=True)
    cost = ops.wasserstein_1d(strided(u), v.t().contiguous().t(), wu_n, strided(wv_n), 2.0, False)[0]
    expected = reference.wasserstein_1d(u.t(), v.t(), wu_n.t(), wv_n.t(), p=2.0)
    torch.testing.assert_close(cost, expected)
    with pytest.raises(ValueError, match="`v_weights` has shape"):
        ops.wasserstein_1d(u, v, wu_n, wv_n[:, :4], 2.0, False)
    with pytest.raises(ValueError, match="give both `u_weights` and `v_weights`"):
        ops.wasserstein_1d(u, v, wu_n, None, 2.0, False)


def test_linear_sum_assignment_reads_any_layout(device, generator):
    cost = randn(generator, 2, 6, 4, device=device).transpose(1, 2)  # (2, 4, 6), not contiguous
    cols, u, v = ops.linear_sum_assignment(cost)
    for b in range(2):
        rows, expected_cols = scipy.optimize.linear_sum_assignment(cost[b].cpu().numpy())
        got = cost[b].cpu()[torch.arange(4), cols[b].cpu()].sum()
        assert math.isclose(float(got), float(cost[b].cpu().numpy()[rows, expected_cols].sum()), rel_tol=1e-12)
    cols, u, v = ops.linear_sum_assignment(cost[:, :0])
    assert cols.shape == (2, 0) and v.shape == (2, 6)
    with pytest.raises(ValueError, match="n <= m"):
        ops.linear_sum_assignment(cost.transpose(1, 2))


def test_emd_reads_any_layout(device, generator):
    M = torch.rand(2, 6, 5, generator=generator, dtype=F64).to(device).transpose(1, 2)  # (2, 5, 6)
    a = torch.full((1, 5), 0.2, dtype=F64, device=device).expand(2, 5)
    b = torch.rand(2, 6, generator=generator, dtype=F64).to(device)
    b = b / b.sum(1, keepdim=True)
    plan, u, v, cost, status = ops.emd(a, strided(b), M, 0)
    torch.testing.assert_close(cost.cpu(), reference.emd2(a.cpu(), b.cpu(), M.cpu()))
    assert bool((status == 1).all())
    with pytest.raises(ValueError, match=r"`a` must have shape \(B, n\) = \(2, 5\)"):
        ops.emd(a[:, :4], b, M, 0)
    with pytest.raises(TypeError, match="`b` has dtype Float"):
        ops.emd(a, b.float(), M, 0)


def test_sinkhorn_log_reads_any_layout(device, generator):
    M = torch.rand(2, 6, 5, generator=generator, dtype=F64).to(device).transpose(1, 2)
    a = torch.full((1, 5), 0.2, dtype=F64, device=device).expand(2, 5)
    b = torch.full((2, 6), 1 / 6, dtype=F64, device=device)
    got = ops.sinkhorn_log(a, strided(b), M, 0.5, 1000, 1e-12)
    expected = reference.sinkhorn_log(a, b, M.contiguous(), 0.5, 1000, 1e-12)
    for g, e in zip(got[:3], expected[:3]):
        torch.testing.assert_close(g, e)
    with pytest.raises(ValueError, match=r"`b` must have shape \[2, 6\]"):
        ops.sinkhorn_log(a, b[:, :5], M, 0.5, 1000, 1e-12)


def softmin_oracle(x, y, h, eps, p):
    cost = torch.cdist(x, y) ** p / p
    return -eps * torch.logsumexp(h[:, None, :] - cost / eps, dim=2)


@pytest.mark.parametrize("p", [1, 2])
def test_sinkhorn_softmin_reads_any_layout(p, device, generator):
    x, y = randn(generator, 2, 5, 3, device=device), randn(generator, 2, 7, 3, device=device)
    h = randn(generator, 1, 7, device=device).expand(2, 7)
    got = ops.sinkhorn_softmin(strided(x), y.transpose(1, 2).contiguous().transpose(1, 2), h, 0.3, p)
    torch.testing.assert_close(got, softmin_oracle(x, y, h, 0.3, p))
    with pytest.raises(ValueError, match=r"`h` must have shape \[2, 7\]"):
        ops.sinkhorn_softmin(x, y, h[:, :6], 0.3, p)
    with pytest.raises(ValueError, match="`y` has no points"):
        ops.sinkhorn_softmin(x, y[:, :0], h[:, :0], 0.3, p)
    assert ops.sinkhorn_softmin(x[:, :0], y, h, 0.3, p).shape == (2, 0)


def points_problem(generator, device):
    x, y = randn(generator, 2, 5, 3, device=device), randn(generator, 2, 4, 3, device=device)
    a = torch.full((1, 5), 0.2, dtype=F64, device=device).expand(2, 5)
    b = torch.rand(2, 4, generator=generator, dtype=F64).to(device) + 0.1
    return x, y, a, b / b.sum(1, keepdim=True)


def test_sinkhorn_points_and_backward_read_any_layout(device, generator):
    x, y, a, b = points_problem(generator, device)
    eps_list = [1.0, 0.5]
    out = ops.sinkhorn_points(strided(x), y, a, strided(b), 2, eps_list, True, 1e-13, 5000)
    xr, yr = x.clone().requires_grad_(), y.clone().requires_grad_()
    expected = reference.sinkhorn_points(xr, yr, a, b, 2, eps_list, True, 1e-13, 5000)
    torch.testing.assert_close(out[0], expected.detach())
    grad_cost = torch.tensor([0.3, -1.2], dtype=F64, device=device)
    gx_ref, gy_ref = torch.autograd.grad(expected, (xr, yr), grad_cost)
    cost, f, g, faa, gbb, _ = out
    gx, gy = ops.sinkhorn_points_backward(
        grad_cost, strided(x), y.transpose(1, 2).contiguous().transpose(1, 2), a, b,
        strided(f), g, faa, gbb, 2, eps_list[-1],
    )
    torch.testing.assert_close(gx, gx_ref)
    torch.testing.assert_close(gy, gy_ref)


def test_sinkhorn_points_and_backward_refuse_bad_arguments(device, generator):
    x, y, a, b = points_problem(generator, device)
    out = ops.sinkhorn_points(x, y, a, b, 2, [0.5], True, -1.0, 3)
    cost, f, g, faa, gbb, _ = out
    with pytest.raises(ValueError, match=r"`b` must have shape \[2, 4\]"):
        ops.sinkhorn_points(x, y, a, b[:, :3], 2, [0.5], True, -1.0, 3)
    with pytest.raises(ValueError, match="`eps_list` is empty"):
        ops.sinkhorn_points(x, y, a, b, 2, [], True, -1.0, 3)
    bwd = ops.sinkhorn_points_backward
    with pytest.raises(ValueError, match=r"`f` must have shape \[2, 2, 5\]"):
        bwd(cost, x, y, a, b, f[:1], g, faa, gbb, 2, 0.5)
    with pytest.raises(ValueError, match=r"`grad_cost` must have shape \[2\]"):
        bwd(cost[:1], x, y, a, b, f, g, faa, gbb, 2, 0.5)
    with pytest.raises(ValueError, match="`f_aa` is empty"):
        bwd(cost, x, y, a, b, f, g, faa[:0], gbb, 2, 0.5)
    with pytest.raises(TypeError, match="`g` has dtype Float"):
        bwd(cost, x, y, a, b, f, g.float(), faa, gbb, 2, 0.5)


# ---------------------------------------------------------------- Triton kernels


@pytest.fixture
def kernels(triton_device):
    """fastgan.kernels, importable (the Triton interpreter on the CPU when no GPU is visible)."""
    import fastgan.kernels.bias_act
    import fastgan.kernels.penalty
    import fastgan.kernels.sinkhorn

    return fastgan.kernels


def test_triton_kernels_read_any_layout(kernels, triton_device, generator):
    device = triton_device
    grads = expanded_rows(randn(generator, 4, 3, device=device))
    penalty, norms = kernels.penalty.penalty_from_gradients(strided(grads), 1.0, False)
    torch.testing.assert_close(penalty, reference.penalty_from_gradients(grads, center=1.0))
    real, eps = randn(generator, 4, 3, device=device), torch.rand(4, generator=generator, dtype=F64).to(device)
    torch.testing.assert_close(
        kernels.penalty.interpolate(strided(real), grads, strided(eps)), reference.interpolate(real, grads, eps)
    )
    x, bias = randn(generator, 3, 4, device=device), randn(generator, 4, device=device)
    torch.testing.assert_close(
        kernels.bias_act.bias_act(strided(x), bias.expand(4), "lrelu", 0.2, 1.0, 1),
        reference.bias_act(x, bias, "lrelu", 0.2, 1.0, dim=1),
    )
    xs, ys = randn(generator, 2, 5, 3, device=device), randn(generator, 2, 7, 3, device=device)
    h = randn(generator, 1, 7, device=device).expand(2, 7)
    torch.testing.assert_close(
        kernels.sinkhorn.sinkhorn_softmin(strided(xs), ys, h, 0.3, 2), softmin_oracle(xs, ys, h, 0.3, 2)
    )


def test_triton_kernels_refuse_bad_arguments(kernels, triton_device, generator):
    device = triton_device
    grads = randn(generator, 4, 3, device=device)
    norms = grads.norm(dim=1)
    one = torch.ones((), dtype=F64, device=device)
    with pytest.raises(ValueError, match=r"`eps` must have shape \[4\]"):
        kernels.penalty.interpolate(grads, grads, norms[:3])
    with pytest.raises(ValueError, match=r"`norms` must have shape \[4\]"):
        kernels.penalty.penalty_from_gradients_backward(one, grads, norms[:3], 1.0, False)
    with pytest.raises(ValueError, match="`grad_penalty` must hold one element"):
        kernels.penalty.penalty_from_gradients_backward(one.expand(3), grads, norms, 1.0, False)
    with pytest.raises(ValueError, match="`grads` must have a batch dimension"):
        kernels.penalty.penalty_from_gradients(grads[:0], 1.0, False)
    with pytest.raises(ValueError, match=r"`bias` must have shape \[3\]"):
        kernels.bias_act.bias_act(grads, norms, "relu", 0.2, 1.0, 1)
    with pytest.raises(IndexError, match="`dim`=2 is out of range"):
        kernels.bias_act.bias_act(grads, norms, "relu", 0.2, 1.0, 2)
    with pytest.raises(ValueError, match=r"`grad` must have shape \[4, 3\]"):
        kernels.bias_act.bias_act_grad(grads[:2], grads, None, "relu", 0.2, 1.0, 1, 1)
    x, y, a, b = points_problem(generator, device)
    with pytest.raises(ValueError, match=r"`h` must have shape \[2, 4\]"):
        kernels.sinkhorn.sinkhorn_softmin(x, y, b[:, :3], 0.3, 2)
    with pytest.raises(ValueError, match=r"`a` must have shape \[2, 5\]"):
        kernels.sinkhorn.sinkhorn_points(x, y, a[:, :4], b, 2, [0.5], True, -1.0, 3)
    f = torch.zeros(2, 2, 5, dtype=F64, device=device)
    g = torch.zeros(2, 2, 4, dtype=F64, device=device)
    with pytest.raises(ValueError, match=r"`g` must have shape \[2, 2, 4\]"):
        kernels.sinkhorn.sinkhorn_points_backward(norms[:2], x, y, a, b, f, g[:, :, :3], f, g, 2, 0.5)
    with pytest.raises(TypeError, match="`y` has dtype torch.float32 but `x` has torch.float64"):
        kernels.sinkhorn.sinkhorn_points_backward(norms[:2], x, y.float(), a, b, f, g, f, g, 2, 0.5)


def test_host_ops_refuse_mixed_devices():
    from fastgan import _library

    with pytest.raises(ValueError, match="must be on one device"):
        _library.on_host("emd", torch.zeros(1, 2), torch.zeros(1, 2, device="meta"), torch.zeros(1, 2, 2), 0)
