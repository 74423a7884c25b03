"""fastgan.nn.spectral_norm / spectral_norm_all against torch's own spectral_norm parametrization."""

from __future__ import annotations

import copy
import os
import sys

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as torch_spectral_norm

import fastgan
from fastgan import reference
from fastgan.nn import spectral_norm, spectral_norm_all
from fastgan.nn.spectral_norm import ELIGIBLE_TYPES

RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}
ATOL = {torch.float32: 1e-6, torch.float64: 1e-12}

power_iteration = torch.ops.fastgan.spectral_norm_power_iteration.default
scale = torch.ops.fastgan.spectral_norm_scale.default
scale_backward = torch.ops.fastgan.spectral_norm_scale_backward.default
linear = torch.ops.fastgan.spectral_norm_linear.default


def layer_and_input(kind: str, generator: torch.Generator, batch: int = 3):
    """A layer of `kind` (fresh init from `generator`'s seed) and an input for it."""
    torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
    layers = {
        "linear": (lambda: nn.Linear(7, 5), (batch, 7)),
        "conv1d": (lambda: nn.Conv1d(3, 4, 3), (batch, 3, 9)),
        "conv2d": (lambda: nn.Conv2d(3, 6, 3, stride=2), (batch, 3, 8, 8)),
        "conv3d": (lambda: nn.Conv3d(2, 3, 2), (batch, 2, 4, 4, 4)),
        "convtranspose1d": (lambda: nn.ConvTranspose1d(3, 4, 3), (batch, 3, 5)),
        "convtranspose2d": (lambda: nn.ConvTranspose2d(4, 2, 3, stride=2), (batch, 4, 5, 5)),
        "convtranspose3d": (lambda: nn.ConvTranspose3d(2, 3, 2), (batch, 2, 3, 3, 3)),
        "embedding": (lambda: nn.Embedding(11, 6), None),
    }
    make, shape = layers[kind]
    layer = make()
    if shape is None:
        x = torch.randint(11, (batch, 4), generator=generator)
    else:
        x = torch.randn(shape, generator=generator)
    return layer, x


KINDS = ["linear", "conv1d", "conv2d", "conv3d", "convtranspose1d", "convtranspose2d", "convtranspose3d", "embedding"]


def parametrization(module: nn.Module, name: str = "weight"):
    return module.parametrizations[name][0]


def sigma_of(module: nn.Module) -> torch.Tensor:
    """u^T W_mat v from the module's buffers (one formula for both implementations)."""
    p = parametrization(module)
    w = module.parametrizations.weight.original.detach()
    mat = w.movedim(p.dim, 0).flatten(1)
    return torch.vdot(p._u, torch.mv(mat, p._v))


def assert_same_state(ours: nn.Module, theirs: nn.Module, dtype: torch.dtype) -> None:
    tol = dict(rtol=RTOL[dtype], atol=ATOL[dtype])
    for (name_a, a), (name_b, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        assert name_a == name_b
        torch.testing.assert_close(a, b, **tol, msg=lambda m: f"{name_a}: {m}")
    for a, b in zip(ours.modules(), theirs.modules()):
        if hasattr(a, "parametrizations"):
            torch.testing.assert_close(sigma_of(a), sigma_of(b), **tol)
            torch.testing.assert_close(a.weight, b.weight, **tol)


def train(model: nn.Module, x: torch.Tensor, steps: int, two_forwards: bool = True) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        out = model(x)
        loss = (out**2).mean() + torch.relu(1 - out).mean()
        if two_forwards:  # a critic sees real and fake in two forwards
            loss = loss + torch.relu(1 + model(x.flip(0))).mean()
        loss.backward()
        opt.step()


def pair(model: nn.Module, apply, dtype: torch.dtype):
    """torch's spectral_norm and `apply` on copies of `model`, fastgan's given torch's u and v."""
    theirs = copy.deepcopy(model).to(dtype)
    for m in list(theirs.modules()):
        if isinstance(m, ELIGIBLE_TYPES):
            torch_spectral_norm(m)
    ours = apply(copy.deepcopy(model).to(dtype))
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grouped", [False, True], ids=["spectral_norm", "spectral_norm_all"])
@pytest.mark.parametrize("kind", KINDS)
def test_ten_training_steps_match_torch(kind, grouped, dtype, generator):
    layer, x = layer_and_input(kind, generator)
    model = nn.Sequential(layer, nn.Flatten())
    apply = spectral_norm_all if grouped else (lambda m: (spectral_norm(m[0]), m)[1])
    ours, theirs = pair(model, apply, dtype)
    if x.is_floating_point():
        x = x.to(dtype)
    train(ours, x, 10)
    train(theirs, x, 10)
    assert_same_state(ours, theirs, dtype)
    # Eval mode: u and v stay, outputs agree.
    ours.eval()
    theirs.eval()
    u_before = parametrization(ours[0])._u.clone()
    tol = dict(rtol=RTOL[dtype], atol=ATOL[dtype])
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), **tol)
        torch.testing.assert_close(ours(x), theirs(x), **tol)
    assert torch.equal(parametrization(ours[0])._u, u_before)
    assert_same_state(ours, theirs, dtype)


def critic(dtype: torch.dtype = torch.float64, act=lambda: nn.LeakyReLU(0.1)) -> nn.Sequential:
    """A small SN-GAN-style critic: convolutions, a transposed one, LeakyReLU 0.1 (or `act`), linear."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        act(),
        nn.Conv2d(8, 8, 4, stride=2, padding=1),
        act(),
        nn.ConvTranspose2d(8, 4, 3, stride=1, padding=1),
        act(),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 1),
    ).to(dtype)


def _penalized_critic_loss(model: nn.Module, real: torch.Tensor, fake: torch.Tensor, seed: int, hinge: bool) -> None:
    """Backward of a critic loss (hinge, or its smooth version softplus) plus the gradient penalty."""
    g = torch.Generator().manual_seed(seed)
    f = torch.relu if hinge else torch.nn.functional.softplus
    loss = f(1 - model(real)).mean() + f(1 + model(fake)).mean()
    loss = loss + fastgan.gradient_penalty(model, real, fake, generator=g, backend="reference")
    loss.backward()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_critic_training_with_gradient_penalty_matches_torch(dtype, generator):
    torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
    real = torch.randn(4, 3, 8, 8, generator=generator, dtype=dtype)
    fake = torch.randn(4, 3, 8, 8, generator=generator, dtype=dtype)
    if dtype == torch.float64:
        # Ten Adam steps of each on the hinge loss, then the whole state.
        ours, theirs = pair(critic(), spectral_norm_all, dtype)
        for model in (ours, theirs):
            opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.0, 0.9))
            for step in range(10):
                opt.zero_grad()
                _penalized_critic_loss(model, real, fake, step, hinge=True)
                opt.step()
        assert_same_state(ours, theirs, dtype)
        return
    # float32: two trajectories part ways (Adam makes a step of about lr out of a
    # near-zero gradient entry that each side rounds differently, and a kink of the
    # hinge or of LeakyReLU turns a rounding difference into another gradient). So a
    # smooth critic and loss, and each of ten steps along ours starts torch's model
    # from ours' state: gradients and the updated u and v compared step by step.
    ours, theirs = pair(critic(act=nn.SiLU), spectral_norm_all, dtype)
    opt = torch.optim.Adam(ours.parameters(), lr=1e-3, betas=(0.0, 0.9))
    for step in range(10):
        theirs.load_state_dict(ours.state_dict())
        for model in (ours, theirs):
            model.zero_grad()
            _penalized_critic_loss(model, real, fake, step, hinge=False)
        assert_same_state(ours, theirs, dtype)
        for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
            tol = dict(rtol=RTOL[dtype], atol=ATOL[dtype] + RTOL[dtype] * float(b.grad.abs().max()))
            torch.testing.assert_close(a.grad, b.grad, **tol, msg=lambda m: f"step {step}, {name}: {m}")
        opt.step()


def test_double_backward_matches_torch(generator):
    torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
    ours, theirs = pair(critic(), spectral_norm_all, torch.float64)
    x = torch.randn(3, 3, 8, 8, generator=generator, dtype=torch.float64)
    grads = []
    for model in (ours, theirs):
        penalty = fastgan.gradient_penalty(model, x, mode="real", center=1.0)
        grads.append(torch.autograd.grad(penalty, list(model.parameters()), allow_unused=True))
    for a, b in zip(*grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("direction", ["torch_to_fastgan", "fastgan_to_torch"])
def test_state_dict_interchange(direction, generator):
    torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
    base = critic()
    x = torch.randn(2, 3, 8, 8, generator=generator, dtype=torch.float64)
    ours = spectral_norm_all(copy.deepcopy(base))
    theirs = copy.deepcopy(base)
    for m in list(theirs.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            torch_spectral_norm(m)
    source, target = (theirs, ours) if direction == "torch_to_fastgan" else (ours, theirs)
    train(source, x, 3)
    assert list(source.state_dict()) == list(target.state_dict())
    target.load_state_dict(source.state_dict())
    source.eval()
    target.eval()
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=1e-12, atol=1e-14)


def test_parametrization_init_matches_torch():
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(3)
        theirs = torch_spectral_norm(nn.Conv2d(3, 5, 3).to(dtype))
        torch.manual_seed(3)
        ours = spectral_norm(nn.Conv2d(3, 5, 3).to(dtype))
        for buf in ("_u", "_v"):
            torch.testing.assert_close(
                getattr(parametrization(ours), buf), getattr(parametrization(theirs), buf),
                rtol=1e-4 if dtype == torch.float32 else 1e-9, atol=1e-6,
            )


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
@pytest.mark.parametrize("n_iter", [0, 1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_power_iteration_matches_reference(dim, n_iter, dtype, generator):
    # (3, 27, 40) at dim 1: rows split in three segments of 40, more than a block of 8 rows.
    shapes = [(5, 4, 3), (2, 7, 1), (1, 1, 1), (40, 300, 3), (3, 27, 40)]
    weights = [torch.randn(s, generator=generator, dtype=torch.float64).to(dtype) for s in shapes]
    # A non-contiguous weight, and a non-contiguous u.
    weights[0] = weights[0].transpose(0, 2).contiguous().transpose(0, 2)
    assert not weights[0].is_contiguous()
    dims = [dim % w.dim() for w in weights]
    us = [torch.randn(w.shape[d], generator=generator, dtype=torch.float64).to(dtype) for w, d in zip(weights, dims)]
    vs = [torch.randn(w.numel() // w.shape[d], generator=generator, dtype=torch.float64).to(dtype) for w, d in zip(weights, dims)]
    us[1] = torch.randn(2 * us[1].numel(), dtype=dtype)[::2]
    if us[1].numel() > 1:
        assert not us[1].is_contiguous()
    # The reference runs in float64: a float32 sum of 12000 products can be
    # off by more than 1e-5 of the result, and fastgan sums in float64.
    us_ref = [u.to(torch.float64, copy=True) for u in us]
    vs_ref = [v.to(torch.float64, copy=True) for v in vs]
    us_before, vs_before = [u.clone() for u in us], [v.clone() for v in vs]
    state = power_iteration(weights, us, vs, dims, n_iter, 1e-12)
    sigmas = reference.spectral_norm_power_iteration(
        [w.double() for w in weights], us_ref, vs_ref, dims, n_iter, 1e-12
    )
    tol = dict(rtol=RTOL[dtype], atol=ATOL[dtype])
    # sigma = u^T W v may cancel (n_iter = 0 uses the random u and v as given):
    # its rounding error scales with |u|^T |W| |v|, not with sigma itself.
    magnitudes = torch.stack([
        torch.vdot(u.double().abs(), torch.mv(w.double().movedim(d, 0).flatten(1).abs(), v.double().abs()))
        for w, u, v, d in zip(weights, us_before, vs_before, dims)
    ])
    error = (state[: len(weights)] - torch.stack(sigmas)).abs()
    assert bool((error <= RTOL[dtype] * magnitudes + ATOL[dtype]).all()), (error, magnitudes)
    for u, v, u_ref, v_ref in zip(us, vs, us_ref, vs_ref):
        torch.testing.assert_close(u.double(), u_ref, **tol)
        torch.testing.assert_close(v.double(), v_ref, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_power_iteration_does_not_depend_on_the_thread_count(dtype, generator):
    # Large enough that the sweep is split into many chunks of rows, whose
    # partial sums are added in a fixed order whatever the threads.
    shapes = [(300, 700), (64, 32, 3, 3), (1, 5000), (700, 3)]
    weights = [torch.randn(s, generator=generator, dtype=torch.float64).to(dtype) for s in shapes]
    us = [torch.randn(w.shape[0], generator=generator, dtype=torch.float64).to(dtype) for w in weights]
    vs = [torch.randn(w[0].numel(), generator=generator, dtype=torch.float64).to(dtype) for w in weights]
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            u, v = [x.clone() for x in us], [x.clone() for x in vs]
            state = power_iteration(weights, u, v, [0] * len(weights), 2, 1e-12)
            results.append((state, u, v))
    finally:
        torch.set_num_threads(threads)
    for state, u, v in results[1:]:
        assert torch.equal(state, results[0][0])
        assert all(torch.equal(a, b) for a, b in zip(u + v, results[0][1] + results[0][2]))


def test_empty_and_zero_weights():
    weights = [torch.zeros(3, 4), torch.empty(0, 4), torch.empty(3, 0), torch.randn(2, 2)]
    us = [torch.ones(3), torch.empty(0), torch.ones(3), torch.ones(2)]
    vs = [torch.ones(4), torch.ones(4), torch.empty(0), torch.ones(2)]
    us_ref = [u.clone() for u in us]
    vs_ref = [v.clone() for v in vs]
    state = power_iteration(weights, us, vs, [0, 0, 0, 0], 1, 1e-12)
    sigmas = reference.spectral_norm_power_iteration(weights, us_ref, vs_ref, [0] * 4, 1, 1e-12)
    torch.testing.assert_close(state[:4].float(), torch.stack(sigmas))
    for a, b in zip(us + vs, us_ref + vs_ref):
        torch.testing.assert_close(a, b)
    out = scale(weights[1], state, 1, 0, 0)
    assert out.shape == (0, 4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_close_to_torch(dtype):
    torch.manual_seed(0)
    base = nn.Linear(64, 32)
    theirs = torch_spectral_norm(copy.deepcopy(base).to(dtype))
    ours = spectral_norm(copy.deepcopy(base).to(dtype))
    ours.load_state_dict(theirs.state_dict())
    exact = torch_spectral_norm(copy.deepcopy(base).double())
    exact.load_state_dict({k: v.double() for k, v in theirs.state_dict().items()})
    w_exact = exact.weight
    err_torch = (theirs.weight.double() - w_exact).abs().max()
    err_ours = (ours.weight.double() - w_exact).abs().max()
    assert err_ours <= 2 * err_torch + 1e-3


@pytest.mark.parametrize("dim", [0, 1])
def test_gradcheck_fused_backward(dim, generator):
    w = torch.randn(4, 3, 5, generator=generator, dtype=torch.float64)
    rows = w.shape[dim]
    u = torch.nn.functional.normalize(torch.randn(rows, generator=generator, dtype=torch.float64), dim=0)
    v = torch.nn.functional.normalize(torch.randn(w.numel() // rows, generator=generator, dtype=torch.float64), dim=0)

    def normalized(weight):
        # n_iter = 0: sigma = u^T W v of this very weight, so finite differences see it move.
        state = power_iteration([weight], [u], [v], [dim], 0, 1e-12)
        return scale(weight, state, 0, 1, dim)

    w.requires_grad_()
    assert torch.autograd.gradcheck(normalized, (w,))
    assert torch.autograd.gradgradcheck(normalized, (w,))


def test_fused_backward_equals_composite(generator):
    w = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    u, v = torch.randn(6, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    state = power_iteration([w], [u], [v], [0], 2, 1e-12)
    g = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    fused = scale_backward(g, w, state, 0, 1, 0)
    wr = w.clone().requires_grad_()
    sigma = torch.vdot(u, torch.mv(wr, v))
    (expected,) = torch.autograd.grad(wr / sigma, wr, g)
    torch.testing.assert_close(fused, expected, rtol=1e-12, atol=1e-14)


def test_opcheck(generator):
    weights = [torch.randn(5, 4, generator=generator), torch.randn(3, 2, 2, generator=generator)]
    us = [torch.randn(5, generator=generator), torch.randn(2, generator=generator)]
    vs = [torch.randn(4, generator=generator), torch.randn(6, generator=generator)]
    torch.library.opcheck(power_iteration, (weights, us, vs, [0, 1], 1, 1e-12))
    state = power_iteration(weights, us, vs, [0, 1], 1, 1e-12)
    w = weights[1].clone().requires_grad_()
    torch.library.opcheck(scale, (w, state, 1, 2 + 5 + 4, 1))
    g = torch.randn(3, 2, 2, generator=generator)
    torch.library.opcheck(scale_backward, (g, weights[1], state, 1, 2 + 5 + 4, 1))


def linear_problem(generator, shape=(6, 5), out_features=4, dtype=torch.float64):
    """Input, weight, bias, and the state of one power-iteration step on the weight."""
    x = torch.randn(shape, generator=generator, dtype=dtype)
    w = torch.randn(out_features, shape[-1], generator=generator, dtype=dtype)
    b = torch.randn(out_features, generator=generator, dtype=dtype)
    u = torch.randn(out_features, generator=generator, dtype=dtype)
    v = torch.randn(shape[-1], generator=generator, dtype=dtype)
    state = power_iteration([w], [u], [v], [0], 1, 1e-12)
    return x, w, b, state


def linear_composite(x, w, b, state):
    """F.linear(x, W / sigma, b) with sigma = u^T W v from the state's u and v (constants)."""
    rows, cols = w.shape
    u, v = state[1 : 1 + rows].to(w.dtype), state[1 + rows : 1 + rows + cols].to(w.dtype)
    return torch.nn.functional.linear(x, w / torch.vdot(u, torch.mv(w, v)), b)


@pytest.mark.parametrize(
    "shape, with_bias, input_grad",
    [((6, 5), True, True), ((5,), True, True), ((2, 3, 5), False, True), ((6, 5), True, False), ((0, 5), True, True)],
    ids=["2d", "1d", "3d-no-bias", "input-without-grad", "empty"],
)
def test_linear_matches_the_normalized_weight(shape, with_bias, input_grad, generator):
    x, w, b, state = linear_problem(generator, shape)
    b = b if with_bias else None
    grad = torch.randn((*shape[:-1], w.shape[0]), generator=generator, dtype=torch.float64)
    results = []
    for f in (linear, lambda *a: linear_composite(*a[:4])):
        xs = x.clone().requires_grad_(input_grad)
        ws = w.clone().requires_grad_()
        bs = b.clone().requires_grad_() if b is not None else None
        y = f(xs, ws, bs, state, 0, 1)
        wanted = [t for t in (xs, ws, bs) if t is not None and t.requires_grad]
        results.append((y, torch.autograd.grad(y, wanted, grad)))
    (y, grads), (y_ref, grads_ref) = results
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    for a, e in zip(grads, grads_ref):
        torch.testing.assert_close(a, e, rtol=1e-11, atol=1e-12)


def test_linear_gradcheck_and_gradgradcheck(generator):
    x, w, b, _ = linear_problem(generator)
    u = torch.nn.functional.normalize(torch.randn(4, generator=generator, dtype=torch.float64), dim=0)
    v = torch.nn.functional.normalize(torch.randn(5, generator=generator, dtype=torch.float64), dim=0)

    def f(x, w, b):
        # n_iter = 0: sigma = u^T W v of this very weight, so finite differences see it move.
        state = power_iteration([w], [u], [v], [0], 0, 1e-12)
        return linear(x, w, b, state, 0, 1)

    inputs = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_())
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


def test_grouped_linear_layers_skip_the_normalized_weight(generator):
    """Inside the group's forward a Linear runs spectral_norm_linear; called alone, the parametrization."""
    torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
    model = spectral_norm_all(nn.Sequential(nn.Linear(3, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1)))
    x = torch.randn(4, 3, generator=generator)
    assert "SpectralNormLinear" in model(x).grad_fn.name()
    model[2].eval()  # alone, outside the group: the normalised weight, no update in eval
    assert "SpectralNormLinear" not in model[2](torch.randn(4, 8, generator=generator)).grad_fn.name()


def test_linear_opcheck(generator):
    x, w, b, state = linear_problem(generator, dtype=torch.float32)
    torch.library.opcheck(linear, (x.requires_grad_(), w.requires_grad_(), b, state, 0, 1))
    torch.library.opcheck(linear, (x, w, None, state, 0, 1))


def test_linear_bad_input_errors(generator):
    x, w, b, state = linear_problem(generator)
    with pytest.raises(ValueError, match=r"`input` must have shape \(\*, 5\)"):
        linear(x[:, :4], w, b, state, 0, 1)
    with pytest.raises(TypeError, match="`input` has dtype Float but `weight` has Double"):
        linear(x.float(), w, b, state, 0, 1)
    with pytest.raises(ValueError, match=r"`bias` must be a Double tensor of shape \(4,\)"):
        linear(x, w, b[:3], state, 0, 1)
    with pytest.raises(ValueError, match="`weight` must be 2-D"):
        linear(x, w.view(4, 5, 1), b, state, 0, 1)
    with pytest.raises(ValueError, match="do not fit a state"):
        linear(x, w, b, state, 0, 7)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="no parameter or buffer named 'weigth'"):
        spectral_norm(nn.Linear(3, 2), name="weigth")
    with pytest.raises(ValueError, match="n_power_iterations"):
        spectral_norm(nn.Linear(3, 2), n_power_iterations=0)
    with pytest.raises(TypeError, match="n_power_iterations"):
        spectral_norm(nn.Linear(3, 2), n_power_iterations=1.5)
    for eps in (0.0, -1.0):
        with pytest.raises(ValueError, match="eps"):
            spectral_norm(nn.Linear(3, 2), eps=eps)
    with pytest.raises(IndexError, match="dim"):
        spectral_norm(nn.Linear(3, 2), dim=2)
    with pytest.raises(TypeError, match="module"):
        spectral_norm(torch.randn(3, 2))
    with pytest.raises(ValueError, match="backend"):
        spectral_norm(nn.Linear(3, 2), backend="cuda")
    integer = nn.Module()
    integer.register_buffer("weight", torch.zeros(3, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="dtype"):
        spectral_norm(integer)
    with pytest.raises(ValueError, match="no layer"):
        spectral_norm_all(nn.ReLU())
    with pytest.raises(ValueError, match="n_power_iterations"):
        spectral_norm_all(nn.Linear(3, 2), n_power_iterations=0)
    w = torch.randn(3, 2)
    with pytest.raises(ValueError, match=r"us\[0\] must have shape \(3,\)"):
        power_iteration([w], [torch.ones(2)], [torch.ones(2)], [0], 1, 1e-12)
    with pytest.raises(ValueError, match="one entry per layer"):
        power_iteration([w], [torch.ones(3)], [], [0], 1, 1e-12)
    with pytest.raises(TypeError, match=r"vs\[0\] has dtype Double"):
        power_iteration([w], [torch.ones(3)], [torch.ones(2, dtype=torch.float64)], [0], 1, 1e-12)
    with pytest.raises(ValueError, match="`eps` must be > 0"):
        power_iteration([w], [torch.ones(3)], [torch.ones(2)], [0], 1, 0.0)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        power_iteration([torch.ones(3)], [torch.ones(3)], [torch.ones(1)], [0], 1, 1e-12)


def test_deepcopy_copies_the_group(generator):
    torch.manual_seed(0)
    model = spectral_norm_all(critic())
    x = torch.randn(2, 3, 8, 8, generator=generator, dtype=torch.float64)
    clone = copy.deepcopy(model)
    u_model = parametrization(model[0])._u.clone()
    out_clone = clone(x)
    # The copy's hooks iterate the copy's buffers, not the original's.
    assert torch.equal(parametrization(model[0])._u, u_model)
    assert not torch.equal(parametrization(clone[0])._u, u_model)
    torch.testing.assert_close(model(x), out_clone, rtol=1e-12, atol=1e-14)


def test_no_grad_and_direct_weight_access_match_torch(generator):
    torch.manual_seed(1)
    ours, theirs = pair(critic(), spectral_norm_all, torch.float64)
    x = torch.randn(2, 3, 8, 8, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-12, atol=1e-14)
    # Outside a forward of the model, each access iterates on its own (as torch's does).
    torch.testing.assert_close(ours[0].weight, theirs[0].weight, rtol=1e-12, atol=1e-14)
    assert_same_state(ours, theirs, torch.float64)


def test_mixed_train_and_eval_layers_in_a_group(generator):
    torch.manual_seed(2)
    ours, theirs = pair(critic(), spectral_norm_all, torch.float64)
    for model in (ours, theirs):
        model[2].eval()
    x = torch.randn(2, 3, 8, 8, generator=generator, dtype=torch.float64)
    train(ours, x, 3)
    train(theirs, x, 3)
    assert_same_state(ours, theirs, torch.float64)


def test_reference_backend_matches(generator):
    torch.manual_seed(4)
    base = critic()
    ours = spectral_norm_all(copy.deepcopy(base))
    ref = spectral_norm_all(copy.deepcopy(base), backend="reference")
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 8, 8, generator=generator, dtype=torch.float64)
    train(ours, x, 5)
    train(ref, x, 5)
    assert_same_state(ours, ref, torch.float64)


def test_n_power_iterations_and_explicit_dim(generator):
    torch.manual_seed(5)
    base = nn.Conv2d(3, 4, 3).double()
    theirs = torch_spectral_norm(copy.deepcopy(base), n_power_iterations=3, dim=1)
    ours = spectral_norm(copy.deepcopy(base), n_power_iterations=3, dim=1)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 6, 6, generator=generator, dtype=torch.float64)
    train(ours, x, 4, two_forwards=False)
    train(theirs, x, 4, two_forwards=False)
    assert_same_state(ours, theirs, torch.float64)


def test_one_dimensional_weight_is_normalized():
    m = spectral_norm(nn.Linear(3, 4), name="bias")
    torch.testing.assert_close(m.bias, torch.nn.functional.normalize(m.parametrizations.bias.original, dim=0))


def test_torch_compile_matches_eager(generator):
    """The grouped power iteration traces under torch.compile (fake kernels, hooks)."""
    torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
    eager = spectral_norm_all(nn.Sequential(nn.Linear(4, 16), nn.LeakyReLU(0.1), nn.Linear(16, 1)))
    model = copy.deepcopy(eager)
    compiled = torch.compile(model, backend="aot_eager")
    x = torch.randn(8, 4, generator=generator)
    for _ in range(3):
        expected, got = eager(x), compiled(x)
        torch.testing.assert_close(got, expected)
        expected.square().sum().backward()
        got.square().sum().backward()
    for a, b in zip(eager.parameters(), model.parameters()):
        torch.testing.assert_close(b.grad, a.grad)
    for a, b in zip(eager.buffers(), model.buffers()):
        torch.testing.assert_close(b, a)


def _ddp_worker(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        model, x, y = _ddp_problem()
        ddp = DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        part = x.shape[0] // world
        for _ in range(3):
            opt.zero_grad()
            loss = (ddp(x[rank * part:(rank + 1) * part]) - y[rank * part:(rank + 1) * part]).square().mean()
            loss.backward()
            opt.step()
        if rank == 0:
            torch.save(model.state_dict(), out)
        del ddp, opt
        dist.barrier()  # no rank tears its connections down while a peer still uses them
    finally:
        dist.destroy_process_group()
    # DistributedDataParallel keeps the gloo group's worker threads alive past
    # destroy_process_group (torch 2.14); leave without the interpreter's teardown racing them.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _ddp_problem():
    torch.manual_seed(1234)
    model = spectral_norm_all(
        nn.Sequential(nn.Linear(3, 32), nn.LeakyReLU(0.1), nn.Linear(32, 32), nn.LeakyReLU(0.1), nn.Linear(32, 1))
    ).double()
    x = torch.randn(16, 3, dtype=torch.float64)
    return model, x, x.sum(1, keepdim=True).sin()


def test_distributed_data_parallel_matches_one_process(tmp_path):
    """Two gloo processes, each on half of the batch, train as one process on all of it
    (u and v are buffers; every rank iterates the same weights)."""
    import torch.multiprocessing as mp

    out = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(2, f"file://{tmp_path / 'store'}", str(out)), nprocs=2, join=True)
    model, x, y = _ddp_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        (model(x) - y).square().mean().backward()
        opt.step()
    got = torch.load(out, weights_only=True)
    expected = model.state_dict()
    assert got.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-8)


def test_reference_chooses_the_same_layers_by_itself():
    """fastgan.reference.spectral_norm_all picks its layers with its own rule (it imports
    nothing of fastgan.nn): the same layers as spectral_norm_all, listed here by hand."""
    torch.manual_seed(7)
    done = spectral_norm(nn.Linear(2, 2))  # already parametrized: left alone

    def zoo() -> nn.Module:
        return nn.ModuleDict({
            "linear": nn.Linear(3, 4), "bilinear": nn.Bilinear(2, 3, 4), "conv1d": nn.Conv1d(2, 3, 3),
            "conv2d": nn.Conv2d(2, 3, 3), "conv3d": nn.Conv3d(2, 3, 2), "tconv2d": nn.ConvTranspose2d(2, 3, 3),
            "embedding": nn.Embedding(5, 3), "norm": nn.LayerNorm(4), "batchnorm": nn.BatchNorm1d(4),
            "inner": nn.Sequential(nn.ReLU(), nn.Linear(4, 1)), "done": copy.deepcopy(done),
        })

    expected = {"linear", "bilinear", "conv1d", "conv2d", "conv3d", "tconv2d", "embedding", "inner.1"}
    for make in (lambda m: spectral_norm_all(m), lambda m: reference.spectral_norm_all(m)):
        model = make(zoo())
        normalised = {n for n, m in model.named_modules() if n and n != "done" and hasattr(m, "parametrizations")}
        assert normalised == expected
        assert len(model["done"].parametrizations.weight) == 1  # not stacked twice
        assert model["tconv2d"].parametrizations.weight[0].dim == 1  # ConvTranspose: output channels on dim 1
    for fn in (spectral_norm_all, reference.spectral_norm_all):
        with pytest.raises(ValueError, match="no layer with a parameter 'weight'"):
            fn(nn.Sequential(nn.ReLU(), nn.LayerNorm(3)))
        with pytest.raises(TypeError, match="`model` must be an nn.Module"):
            fn("critic")
