"""fastgan.nn.functional.bias_act, its modules and fuse_activations_ against torch."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import fastgan
from fastgan import reference
from fastgan.nn.functional import ACTIVATIONS, bias_act, resolve

ACTS = list(ACTIVATIONS)
PIECEWISE_LINEAR = [a for a, spec in ACTIVATIONS.items() if spec.piecewise_linear]


def rand(shape, generator, dtype=torch.float64, scale=2.0):
    return (torch.randn(shape, generator=generator, dtype=torch.float64) * scale).to(dtype)


# (x shape, dim): a Linear output, an image batch, the bias along the last dim.
CASES = [((5, 4), 1), ((3, 4, 2, 3), 1), ((2, 3, 4), -1), ((1, 1), 1)]


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape,dim", CASES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_value_and_two_derivatives_match_torch(act, shape, dim, with_bias, generator):
    x = rand(shape, generator).requires_grad_()
    b = rand((shape[dim],), generator).requires_grad_() if with_bias else None
    alpha, gain = resolve(act, None, None)
    inputs = [x] + ([b] if with_bias else [])

    def derivatives(fn):
        y = fn(x, b)
        gy = rand(shape, generator=torch.Generator().manual_seed(1))
        first = torch.autograd.grad(y, inputs, gy, create_graph=True)
        ggs = [rand(t.shape, generator=torch.Generator().manual_seed(2 + i)) for i, t in enumerate(first)]
        pairs = [(f, gg) for f, gg in zip(first, ggs) if f.requires_grad]
        second = [None] * len(inputs)
        if pairs:  # (the derivative of a linear function is constant)
            outs, grads = zip(*pairs)
            second = torch.autograd.grad(outs, inputs, grads, allow_unused=True)
        second = [torch.zeros_like(t) if s is None else s for s, t in zip(second, inputs)]
        return [y, *first, *second]

    ours = derivatives(lambda x, b: bias_act(x, b, act, dim=dim))
    ref = derivatives(lambda x, b: reference.bias_act(x, b, act, alpha, gain, dim))
    for a, r in zip(ours, ref):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("act", ACTS)
def test_gradcheck_and_gradgradcheck(act, generator):
    x = rand((3, 4, 2), generator).requires_grad_()
    b = rand((4,), generator).requires_grad_()
    # Keep away from the kinks of relu / lrelu / elu, where finite differences straddle them.
    x.data[x.data.abs() < 0.05] += 0.2

    def f(x, b):
        return bias_act(x, b, act, alpha=0.3 if act in ("lrelu", "elu") else None, gain=1.3)

    assert torch.autograd.gradcheck(f, (x, b))
    assert torch.autograd.gradgradcheck(f, (x, b))


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "swish", "elu", "selu", "softplus"])
def test_third_derivative(act, generator):
    x = rand((4, 3), generator).requires_grad_()
    alpha, gain = resolve(act, None, None)

    def third(fn):
        (d1,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), x, create_graph=True)
        (d3,) = torch.autograd.grad(d2.sum(), x)
        return d3

    ours = third(lambda x: bias_act(x, None, act))
    ref = third(lambda x: reference.bias_act(x, None, act, alpha, gain, 1))
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)
    # A fourth derivative is refused, not silently wrong.
    (d1,) = torch.autograd.grad(bias_act(x, None, act).sum(), x, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), x, create_graph=True)
    (d3,) = torch.autograd.grad(d2.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="order 4"):
        torch.autograd.grad(d3.sum(), x)


def _forward_graph_reached(act_module: nn.Module) -> bool:
    """Whether a gradient penalty's double backward sends anything back through the forward pass."""
    x = torch.randn(8, 3, requires_grad=True)
    w = torch.randn(3, 3, requires_grad=True)
    h = x @ w
    reached = []
    y = act_module(h).sum()
    (g,) = torch.autograd.grad(y, x, create_graph=True)
    # (Undefined gradients may still visit the node: they cost nothing.)
    h.register_hook(lambda grad: reached.append(grad) if grad is not None else None)
    (g.square().sum()).backward()
    return bool(reached)


@pytest.mark.parametrize("module", [nn.ReLU(), nn.LeakyReLU(0.2)])
def test_double_backward_skips_forward_path_where_second_derivative_is_zero(module):
    # torch's own activation sends a tensor of zeros back through the forward pass...
    assert _forward_graph_reached(module)
    # ...fastgan's sends nothing.
    assert not _forward_graph_reached(fastgan.nn.fuse_activations_(module))
    # With a curved activation the path is real and is taken.
    assert _forward_graph_reached(fastgan.nn.fuse_activations_(nn.Tanh()))


@pytest.mark.parametrize("act", ["lrelu", "tanh"])
def test_channels_last_and_non_contiguous(act, generator):
    x = rand((2, 5, 3, 4), generator).to(memory_format=torch.channels_last)
    b = rand((5,), generator)
    alpha, gain = resolve(act, None, None)
    y = bias_act(x, b, act)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, reference.bias_act(x, b, act, alpha, gain, 1))
    xt = rand((4, 6, 5), generator).transpose(0, 2)  # (5, 6, 4), non-contiguous
    bt = rand((6,), generator)
    torch.testing.assert_close(bias_act(xt, bt, act), reference.bias_act(xt, bt, act, alpha, gain, 1))
    gt = rand(xt.shape, generator).transpose(0, 1).contiguous().transpose(0, 1)
    torch.testing.assert_close(
        torch.ops.fastgan.bias_act_grad(gt, xt, bt, act, alpha, gain, 1, 1),
        reference.bias_act_grad(gt, xt, bt, act, alpha, gain, 1, 1),
    )


def test_empty_and_scalar(generator):
    assert bias_act(torch.zeros(0, 3), torch.zeros(3)).shape == (0, 3)
    x = rand((), generator)
    torch.testing.assert_close(bias_act(x, None, "tanh"), torch.tanh(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("act", ["lrelu", "swish", "softplus"])
def test_low_precision(dtype, act, generator):
    x = rand((16, 8), generator).to(dtype)
    b = rand((8,), generator).to(dtype)
    alpha, gain = resolve(act, None, None)
    y = bias_act(x, b, act)
    assert y.dtype == dtype
    # Computed in float32 and rounded once: within one rounding of the exact value.
    exact = reference.bias_act(x.double(), b.double(), act, alpha, gain, 1)
    torch.testing.assert_close(y.double(), exact, rtol=torch.finfo(dtype).eps * 2, atol=1e-6)


def test_large_inputs_stay_finite():
    x = torch.tensor([[-1e4, -100.0, 0.0, 100.0, 1e4]], dtype=torch.float32).requires_grad_()
    for act in ACTS:
        y = bias_act(x, None, act)
        (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.sum(), x, allow_unused=True, materialize_grads=True)
        assert torch.isfinite(y).all() and torch.isfinite(g).all() and torch.isfinite(gg).all(), act


def test_opcheck(generator):
    x = rand((3, 4, 2), generator, dtype=torch.float32)
    b = rand((4,), generator, dtype=torch.float32)
    g = rand((3, 4, 2), generator, dtype=torch.float32)
    for act in ("lrelu", "tanh"):
        torch.library.opcheck(torch.ops.fastgan.bias_act.default, (x, b, act, 0.2, 1.0, 1))
        torch.library.opcheck(torch.ops.fastgan.bias_act_grad.default, (g, x, b, act, 0.2, 1.0, 1, 1))
        torch.library.opcheck(torch.ops.fastgan.bias_act_grad.default, (g, x, None, act, 0.2, 1.0, 1, 2))


def test_compiles():
    x = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    fn = torch.compile(lambda x, b: bias_act(x, b, "lrelu").square().sum(), backend="aot_eager", fullgraph=True)
    (gx, gb) = torch.autograd.grad(fn(x, b), (x, b))
    (rx, rb) = torch.autograd.grad(reference.bias_act(x, b, "lrelu", 0.2, math.sqrt(2), 1).square().sum(), (x, b))
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gb, rb)


def test_bad_input():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="act"):
        bias_act(x, None, "gelu")
    with pytest.raises(ValueError, match="bias"):
        bias_act(x, torch.zeros(4))
    with pytest.raises(TypeError, match="bias"):
        bias_act(x, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(TypeError, match="x"):
        bias_act(torch.zeros(2, 3, dtype=torch.int32))
    with pytest.raises(IndexError, match="dim"):
        bias_act(x, torch.zeros(3), dim=2)
    with pytest.raises(ValueError, match="alpha"):
        bias_act(x, None, "lrelu", alpha=math.nan)
    with pytest.raises(ValueError, match="order"):
        torch.ops.fastgan.bias_act_grad(x, x, None, "lrelu", 0.2, 1.0, 1, 4)
    with pytest.raises(ValueError, match="grad"):
        torch.ops.fastgan.bias_act_grad(torch.zeros(3, 2), x, None, "lrelu", 0.2, 1.0, 1, 1)


def test_modules(generator):
    m = fastgan.nn.FusedLeakyReLU(4)
    assert list(m.state_dict()) == ["bias"]
    m.bias.data = rand((4,), generator, dtype=torch.float32)
    x = rand((2, 4, 3, 3), generator, dtype=torch.float32)
    torch.testing.assert_close(m(x), torch.nn.functional.leaky_relu(x + m.bias.view(1, 4, 1, 1), 0.2) * math.sqrt(2))
    assert fastgan.nn.BiasAct("tanh")(x).equal(bias_act(x, None, "tanh"))
    assert fastgan.nn.FusedLeakyReLU(4, bias=False).bias is None


def _critic_with_every_activation() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ELU(0.7),
        nn.Conv2d(8, 8, 3, padding=1), nn.SELU(),
        nn.Sequential(nn.Conv2d(8, 8, 3), nn.Tanh(), nn.Conv2d(8, 8, 1), nn.Sigmoid()),
        nn.Conv2d(8, 8, 1), nn.SiLU(), nn.Conv2d(8, 8, 1), nn.Softplus(),
        nn.Conv2d(8, 8, 1), nn.Softplus(beta=2.0),
        nn.Flatten(), nn.Linear(8 * 6 * 6, 1),
    ).double()


def test_fuse_activations_keeps_parameters_state_and_outputs(generator):
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    critic = _critic_with_every_activation()
    fused = fastgan.nn.fuse_activations_(copy.deepcopy(critic))
    kinds = [type(m).__name__ for m in fused.modules()]
    assert kinds.count("BiasAct") == 8 and "Softplus" in kinds  # beta != 1 is left alone
    assert list(fused.state_dict()) == list(critic.state_dict())
    for a, b in zip(fused.state_dict().values(), critic.state_dict().values()):
        assert a.equal(b)
    x = rand((3, 3, 8, 8), generator).requires_grad_()
    torch.testing.assert_close(fused(x), critic(x), rtol=1e-12, atol=1e-12)
    # The gradient penalty's parameter gradients (second order) agree too.
    for model in (critic, fused):
        model.zero_grad()
        (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
        g.square().sum().backward()
    for p, q in zip(critic.parameters(), fused.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-12)
    # A bare activation is returned converted.
    assert isinstance(fastgan.nn.fuse_activations_(nn.ReLU()), fastgan.nn.BiasAct)
    with pytest.raises(TypeError, match="module"):
        fastgan.nn.fuse_activations_(lambda x: x)


@pytest.mark.parametrize("act", ACTS)
def test_triton_kernel(act, triton_device, generator):
    from fastgan.kernels import bias_act as kernel

    alpha, gain = resolve(act, None, None)
    for shape, dim, fmt in [((3, 5, 2, 2), 1, torch.channels_last), ((4, 6), 1, None), ((2, 3, 7), 2, None)]:
        x = rand(shape, generator, dtype=torch.float32).to(triton_device)
        if fmt is not None:
            x = x.to(memory_format=fmt)
        b = rand((shape[dim],), generator, dtype=torch.float32).to(triton_device)
        g = rand(shape, generator, dtype=torch.float32).to(triton_device)
        torch.testing.assert_close(
            kernel.bias_act(x, b, act, alpha, gain, dim), reference.bias_act(x, b, act, alpha, gain, dim)
        )
        for order in (1, 2):
            torch.testing.assert_close(
                kernel.bias_act_grad(g, x, b, act, alpha, gain, dim, order),
                reference.bias_act_grad(g, x, b, act, alpha, gain, dim, order),
                rtol=2e-5, atol=1e-5,
            )
        # The third derivative against the CPU kernel (itself checked against torch's autograd).
        torch.testing.assert_close(
            kernel.bias_act_grad(g, x, b, act, alpha, gain, dim, 3),
            torch.ops.fastgan.bias_act_grad(g.cpu(), x.cpu(), b.cpu(), act, alpha, gain, dim, 3).to(x.device),
            rtol=2e-5, atol=1e-5,
        )
    x64 = rand((5, 3), generator).to(triton_device)
    torch.testing.assert_close(
        kernel.bias_act(x64, None, act, alpha, gain, 1), reference.bias_act(x64, None, act, alpha, gain, 1),
        rtol=1e-12, atol=1e-12,
    )


def test_cuda_dispatch_matches_cpu(device, generator):
    if device.type != "cuda":
        pytest.skip("the CUDA path (Triton kernels) needs a GPU")
    x = rand((8, 16, 4, 4), generator, dtype=torch.float32)
    b = rand((16,), generator, dtype=torch.float32)
    for act in ACTS:
        xc, bc = x.to(device).requires_grad_(), b.to(device).requires_grad_()
        xs, bs = x.clone().requires_grad_(), b.clone().requires_grad_()
        yc, ys = bias_act(xc, bc, act, backend="fused"), bias_act(xs, bs, act)
        torch.testing.assert_close(yc.cpu(), ys, rtol=1e-5, atol=1e-5)
        gc = torch.autograd.grad(yc.square().sum(), (xc, bc))
        gs = torch.autograd.grad(ys.square().sum(), (xs, bs))
        for a, r in zip(gc, gs):
            torch.testing.assert_close(a.cpu(), r, rtol=1e-4, atol=1e-4)


def test_backends(device, generator):
    """``auto``: the fused kernels on the CPU, torch's own activations on CUDA
    (where the Triton launches cost more than they fuse at critic sizes);
    ``fused`` and ``reference`` force one or the other on every device."""
    x = rand((6, 5), generator).to(device)
    b = rand((5,), generator).to(device)
    torch_own = reference.bias_act(x, b, "lrelu", 0.2, math.sqrt(2), 1)
    auto = bias_act(x, b, "lrelu")
    if device.type == "cuda":
        assert torch.equal(auto, torch_own)
    else:
        assert torch.equal(auto, bias_act(x, b, "lrelu", backend="fused"))
    torch.testing.assert_close(bias_act(x, b, "lrelu", backend="fused"), torch_own)
    for make in (
        lambda: bias_act(x, b, "lrelu", backend="triton"),
        lambda: fastgan.nn.BiasAct("lrelu", backend="cuda"),
        lambda: fastgan.nn.fuse_activations_(nn.ReLU(), backend="fast"),
    ):
        with pytest.raises(ValueError, match="backend"):
            make()
    swapped = fastgan.nn.fuse_activations_(nn.Sequential(nn.Linear(5, 5), nn.ReLU()), backend="fused")
    assert swapped[1].backend == "fused"
