"""fastgan.nn.conv: one-channel convolutions and their derivatives against torch's own."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastgan
from fastgan.nn import (
    SingleChannelConv2d,
    SingleChannelConvTranspose2d,
    conv2d_single_channel,
    conv_transpose2d_single_channel,
    use_single_channel_convs_,
)

ops = torch.ops.fastgan
F64 = torch.float64

# (batch, H, W, out channels, kernel, stride, padding): the critic's first layer
# on MNIST, odd sizes, a kernel wider than the stride, rectangular everything.
GEOMETRIES = [
    (3, 28, 28, 5, 4, 2, 1),
    (2, 9, 7, 4, 3, 1, 0),
    (2, 8, 8, 3, 5, 3, 2),
    (4, 6, 5, 3, (2, 3), (1, 2), (0, 1)),
    (1, 1, 1, 2, 1, 1, 0),
]


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


def _output_padding(h, w, k, s, p):
    """The output_padding that makes a transposed convolution give back an (h, w) image."""
    return tuple((n + 2 * pp - kk) % ss for n, kk, ss, pp in zip((h, w), _pair(k), _pair(s), _pair(p)))


def _first_derivatives(y, y_ref, inputs):
    """Both outputs' gradients with respect to ``inputs`` (graphs kept), asserted equal."""
    grad = torch.randn_like(y)
    ours = torch.autograd.grad(y, inputs, grad, create_graph=True)
    theirs = torch.autograd.grad(y_ref, inputs, grad, create_graph=True)
    for a, r in zip(ours, theirs):
        torch.testing.assert_close(a, r, rtol=0, atol=1e-12)
    return ours, theirs


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_conv_and_its_derivatives_match_torch(geometry):
    torch.manual_seed(100 + GEOMETRIES.index(geometry))
    b, h, w, o, k, s, p = geometry
    x = torch.randn(b, 1, h, w, dtype=F64, requires_grad=True)
    weight = torch.randn(o, 1, *_pair(k), dtype=F64, requires_grad=True)
    bias = torch.randn(o, dtype=F64, requires_grad=True)
    y, y_ref = conv2d_single_channel(x, weight, bias, s, p), F.conv2d(x, weight, bias, s, p)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
    ours, theirs = _first_derivatives(y, y_ref, (x, weight, bias))
    # A penalty-like second order: d/d(weight) of ||d y / d x||^2 through the input gradient.
    second = torch.autograd.grad(ours[0].square().sum(), (weight, x), allow_unused=True)
    second_ref = torch.autograd.grad(theirs[0].square().sum(), (weight, x), allow_unused=True)
    torch.testing.assert_close(second[0], second_ref[0], rtol=1e-12, atol=1e-10)
    assert (second[1] is None or not second[1].any()) and (second_ref[1] is None or not second_ref[1].any())


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_transposed_conv_and_its_derivatives_match_torch(geometry):
    torch.manual_seed(200 + GEOMETRIES.index(geometry))
    b, h, w, c, k, s, p = geometry
    weight = torch.randn(c, 1, *_pair(k), dtype=F64, requires_grad=True)
    small = F.conv2d(torch.zeros(b, 1, h, w, dtype=F64), weight.detach(), None, s, p).shape[2:]
    x = torch.randn(b, c, *small, dtype=F64, requires_grad=True)
    bias = torch.randn(1, dtype=F64, requires_grad=True)
    op = _output_padding(h, w, k, s, p)
    y = conv_transpose2d_single_channel(x, weight, bias, s, p, op)
    y_ref = F.conv_transpose2d(x, weight, bias, s, p, op)
    assert y.shape == y_ref.shape == (b, 1, h, w)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
    ours, theirs = _first_derivatives(y, y_ref, (x, weight, bias))
    second = torch.autograd.grad(ours[0].square().sum() + ours[1].square().sum(), (weight, x))
    second_ref = torch.autograd.grad(theirs[0].square().sum() + theirs[1].square().sum(), (weight, x))
    for a, r in zip(second, second_ref):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-10)


def test_every_order_by_finite_differences():
    torch.manual_seed(300)
    x = torch.randn(2, 1, 6, 6, dtype=F64, requires_grad=True)
    weight = torch.randn(3, 1, 4, 4, dtype=F64, requires_grad=True)
    h = torch.randn(2, 3, 3, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, w: conv2d_single_channel(x, w, None, 2, 1), (x, weight))
    assert torch.autograd.gradgradcheck(lambda h, w: conv_transpose2d_single_channel(h, w, None, 2, 1), (h, weight))


def test_ops_read_strided_and_expanded_tensors_and_empty_batches():
    torch.manual_seed(400)
    weight = torch.randn(4, 1, 4, 4)
    grad = torch.randn(3, 4, 7, 7)
    want = F.conv_transpose2d(grad, weight, None, 2, 1)
    for g in (grad.transpose(2, 3).contiguous().transpose(2, 3), grad[:1].expand(3, 4, 7, 7), grad.to(memory_format=torch.channels_last)):
        got = ops.conv2d_single_channel_input_grad(g, weight, [2, 2], [1, 1], [14, 14])
        torch.testing.assert_close(got, F.conv_transpose2d(g, weight, None, 2, 1), rtol=1e-5, atol=1e-5)
    strided_weight = torch.randn(4, 1, 4, 8)[..., ::2]
    got = ops.conv2d_single_channel_input_grad(grad, strided_weight, [2, 2], [1, 1], [14, 14])
    torch.testing.assert_close(got, F.conv_transpose2d(grad, strided_weight, None, 2, 1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ops.conv2d_single_channel_input_grad(grad, weight, [2, 2], [1, 1], [14, 14]), want, rtol=1e-5, atol=1e-5)
    empty = ops.conv2d_single_channel_input_grad(grad[:0], weight, [2, 2], [1, 1], [14, 14])
    assert empty.shape == (0, 1, 14, 14)
    assert ops.conv2d_single_channel(torch.randn(0, 1, 14, 14), weight, [2, 2], [1, 1]).shape == (0, 4, 7, 7)


def test_bad_arguments_are_named():
    weight = torch.randn(4, 1, 4, 4)
    grad = torch.randn(2, 4, 7, 7)
    with pytest.raises(ValueError, match="`grad` must be"):
        ops.conv2d_single_channel_input_grad(grad, weight, [2, 2], [1, 1], [13, 20])
    with pytest.raises(ValueError, match="`stride`"):
        ops.conv2d_single_channel_input_grad(grad, weight, [0, 2], [1, 1], [14, 14])
    with pytest.raises(ValueError, match="`padding`"):
        ops.conv2d_single_channel(torch.randn(2, 1, 8, 8), weight, [2, 2], [-1, 1])
    with pytest.raises(ValueError, match="`input_size`"):
        ops.conv2d_single_channel_input_grad(grad, weight, [2, 2], [1, 1], [0, 14])
    with pytest.raises(TypeError, match="share a dtype"):
        ops.conv2d_single_channel_input_grad(grad.double(), weight, [2, 2], [1, 1], [14, 14])
    with pytest.raises(TypeError, match="floating-point"):
        ops.conv2d_single_channel(torch.ones(2, 1, 8, 8, dtype=torch.int64), weight.long(), [2, 2], [1, 1])
    with pytest.raises(ValueError, match=r"`input` must be \(B, 1, H, W\)"):
        conv2d_single_channel(torch.randn(2, 3, 8, 8), weight)
    with pytest.raises(ValueError, match="`weight` must be"):
        conv_transpose2d_single_channel(grad, torch.randn(4, 2, 4, 4))
    with pytest.raises(ValueError, match="larger than the padded"):
        ops.conv2d_single_channel(torch.randn(2, 1, 2, 2), weight, [1, 1], [0, 0])
    with pytest.raises(ValueError, match="`output_padding`"):
        conv_transpose2d_single_channel(grad, weight, None, 2, 1, 2)
    with pytest.raises(TypeError, match="`stride`"):
        conv2d_single_channel(torch.randn(2, 1, 8, 8), weight, None, 1.5)


def test_under_cpu_autocast_the_layers_are_torchs_in_bfloat16():
    """Inside CPU autocast both functions give F.conv2d's / F.conv_transpose2d's bfloat16 output
    and gradients exactly (a bfloat16 input with a float32 weight is autocast's business); outside
    it, mismatched dtypes stay an error."""
    torch.manual_seed(501)
    x = torch.randn(3, 1, 28, 28, requires_grad=True)
    h = torch.randn(3, 6, 14, 14, requires_grad=True)
    w, b = torch.randn(6, 1, 4, 4, requires_grad=True), torch.randn(6, requires_grad=True)
    cases = ((conv2d_single_channel, F.conv2d, x, b), (conv_transpose2d_single_channel, F.conv_transpose2d, h, None))
    for ours, torchs, inp, bias in cases:
        outs = []
        for fn in (ours, torchs):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = fn(inp.to(torch.bfloat16), w, bias, 2, 1)
            grads = torch.autograd.grad(y.float().square().sum(), [inp, w])
            outs.append((y, *grads))
        assert outs[0][0].dtype == torch.bfloat16
        for a, r in zip(*outs):
            torch.testing.assert_close(a, r, rtol=0, atol=0)
        with pytest.raises(TypeError, match="share a floating-point dtype"):
            ours(inp.detach().to(torch.bfloat16), w, bias, 2, 1)


def _small_models():
    torch.manual_seed(500)
    g = nn.Sequential(nn.Linear(8, 16 * 7 * 7), nn.Unflatten(1, (16, 7, 7)), nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(8, 1, 4, 2, 1), nn.Tanh())
    d = nn.Sequential(nn.Conv2d(1, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 16, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(16 * 7 * 7, 1))
    return g.double(), d.double()


def test_use_single_channel_convs_swaps_only_what_it_reproduces():
    g, d = _small_models()
    others = [nn.Conv2d(1, 4, 3, dilation=2), nn.Conv2d(1, 4, 3, padding_mode="reflect"), nn.Conv2d(1, 4, 3, padding="same"), nn.ConvTranspose2d(4, 1, 3, dilation=2), nn.Conv2d(2, 4, 3)]
    model = nn.Sequential(g, d, *others)
    keys = list(model.state_dict())
    assert use_single_channel_convs_(model) is model
    assert type(g[4]) is SingleChannelConvTranspose2d and type(d[0]) is SingleChannelConv2d
    assert type(g[2]) is nn.ConvTranspose2d and type(d[2]) is nn.Conv2d
    assert all(type(m) in (nn.Conv2d, nn.ConvTranspose2d) for m in others)
    assert list(model.state_dict()) == keys
    with pytest.raises(TypeError, match="`module`"):
        use_single_channel_convs_("critic")


def test_swapped_models_give_torch_gradient_penalty_and_spectral_norm():
    """A WGAN-GP critic step and an SN critic through the swapped layers equal torch's, to rounding."""
    g, d = _small_models()
    g2, d2 = use_single_channel_convs_(copy.deepcopy(g)), use_single_channel_convs_(copy.deepcopy(d))
    z = torch.randn(6, 8, dtype=F64)
    real = torch.rand(6, 1, 28, 28, dtype=F64) * 2 - 1

    def penalty_loss(gen, critic):
        fake = gen(z)
        x_hat = (0.3 * real + 0.7 * fake).requires_grad_(True)
        (grads,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
        return critic(fake).mean() - critic(real).mean() + 10 * (grads.flatten(1).norm(dim=1) - 1).square().mean()

    ours = torch.autograd.grad(penalty_loss(g2, d2), [*g2.parameters(), *d2.parameters()])
    theirs = torch.autograd.grad(penalty_loss(g, d), [*g.parameters(), *d.parameters()])
    for a, r in zip(ours, theirs):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-10)
    torch.manual_seed(501)  # the same starting u and v for both
    sn_ours = fastgan.nn.spectral_norm_all(d2)
    torch.manual_seed(501)
    sn_theirs = fastgan.nn.spectral_norm_all(d, backend="reference")
    x = real.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(sn_ours(x).sum(), x)
    (gx_ref,) = torch.autograd.grad(sn_theirs(x).sum(), x)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-10, atol=1e-10)


def test_trainer_uses_them_under_auto_only():
    from fastgan.train import Trainer

    auto = Trainer(algo="wgan-gp", data="digits", steps=2, progress=False)
    ref = Trainer(algo="wgan-gp", data="digits", steps=2, progress=False, backend="reference")
    assert any(type(m) is SingleChannelConvTranspose2d for m in auto.G.modules())
    assert any(isinstance(m, SingleChannelConv2d) for m in auto.D.modules())
    assert not any(isinstance(m, (SingleChannelConv2d, SingleChannelConvTranspose2d)) for m in [*ref.G.modules(), *ref.D.modules()])
    auto.train_steps(2)
    assert all(torch.isfinite(p).all() for p in auto.G.parameters())
