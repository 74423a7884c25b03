"""fastgan.penalty_from_gradients against the plain-autograd reference."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import seeded
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


# ---------------------------------------------------------------------------
# gradient_penalty and wgan_gp_critic_loss on whole critics


def mlp_critic(in_features: int = 3) -> nn.Module:
    return nn.Sequential(
        nn.Linear(in_features, 16), nn.LeakyReLU(0.2), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1)
    ).double()


def conv_critic() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ELU(),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 1),
    ).double()


CRITICS = {"mlp": (mlp_critic, (3,)), "conv": (conv_critic, (2, 8, 8))}
MODES = ["interpolate", "real", "fake", "dragan"]


def plain_penalty_and_grads(critic, x_hat, weight, center, one_sided):
    """The penalty by plain autograd on given points, and the critic's parameter gradients."""
    critic.zero_grad()
    x = x_hat.detach().requires_grad_()
    (g,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    excess = torch.linalg.vector_norm(g.flatten(1), dim=1) - center
    if one_sided:
        excess = excess.clamp_min(0)
    penalty = weight * excess.square().mean()
    penalty.backward()
    return penalty.detach(), [p.grad.clone() for p in critic.parameters() if p.grad is not None]


@pytest.mark.parametrize("critic_name", list(CRITICS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("one_sided", [False, True])
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("fused", [False, True])
def test_gradient_penalty_matches_plain_autograd(critic_name, mode, one_sided, batch, fused, generator):
    seed = seeded(generator)
    make, sample_shape = CRITICS[critic_name]
    critic = make()
    if fused:
        critic = fastgan.nn.fuse_activations_(critic)
    real = rand((batch, *sample_shape), generator)
    fake = rand((batch, *sample_shape), generator)
    center = 0.0 if mode in ("real", "fake") else 1.0
    critic.zero_grad()
    ours = fastgan.gradient_penalty(
        critic, real, fake, mode=mode, one_sided=one_sided, weight=7.0,
        generator=torch.Generator().manual_seed(seed),
    )
    ours.backward()
    ours_grads = [p.grad.clone() for p in critic.parameters() if p.grad is not None]
    # The same points, drawn from the same seed.
    x_hat = fastgan.penalty.penalty_points(
        real, fake, mode=mode, generator=torch.Generator().manual_seed(seed), backend="reference"
    )
    ref, ref_grads = plain_penalty_and_grads(critic, x_hat, 7.0, center, one_sided)
    torch.testing.assert_close(ours.detach(), ref, rtol=1e-6, atol=1e-12)
    assert len(ours_grads) == len(ref_grads) > 0
    for a, b in zip(ours_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-12)


def test_penalty_points(generator):
    real = rand((64, 3, 2), generator)
    fake = rand((64, 3, 2), generator)
    seed = seeded(generator)
    pts = fastgan.penalty.penalty_points(real, fake, generator=torch.Generator().manual_seed(seed))
    assert pts.requires_grad and pts.is_leaf
    eps = torch.rand(64, generator=torch.Generator().manual_seed(seed), dtype=torch.float32).double()
    torch.testing.assert_close(pts.detach(), eps.view(-1, 1, 1) * real + (1 - eps.view(-1, 1, 1)) * fake)
    # One epsilon per sample, uniform on [0, 1]: not one for the whole batch.
    assert eps.unique().numel() == 64
    for mode, expected in (("real", real), ("fake", fake)):
        assert fastgan.penalty.penalty_points(real, fake, mode=mode).detach().equal(expected)
    # DRAGAN: real plus non-negative noise of at most 0.5 std(real) per element.
    d = fastgan.penalty.penalty_points(real, mode="dragan", generator=generator).detach() - real
    assert bool((d >= 0).all()) and bool((d <= 0.5 * real.std() + 1e-12).all()) and float(d.abs().max()) > 0


def test_generator_reproducibility(generator):
    critic = mlp_critic()
    real, fake = rand((8, 3), generator), rand((8, 3), generator)

    def gp(seed):
        return fastgan.gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(seed))

    assert gp(3).equal(gp(3))
    assert not gp(3).equal(gp(4))


@pytest.mark.parametrize("arrangement", ["separate", "pair", "joint", "auto"])
@pytest.mark.parametrize("fused", [False, True])
def test_wgan_gp_critic_loss_matches_reference(arrangement, fused, generator):
    seed = seeded(generator)
    critic = conv_critic()
    ours_critic = fastgan.nn.fuse_activations_(copy.deepcopy(critic)) if fused else copy.deepcopy(critic)
    real = rand((4, 2, 8, 8), generator)
    fake = rand((4, 2, 8, 8), generator).requires_grad_()  # as if straight from the generator
    loss = fastgan.wgan_gp_critic_loss(
        ours_critic, real, fake, arrangement=arrangement, generator=torch.Generator().manual_seed(seed)
    )
    loss.backward()
    ref = reference.wgan_gp_critic_loss(critic, real, fake, generator=torch.Generator().manual_seed(seed))
    ref.backward()
    torch.testing.assert_close(loss.detach(), ref.detach(), rtol=1e-10, atol=1e-12)
    for a, b in zip(ours_critic.parameters(), critic.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-12)
    assert fake.grad is None  # nothing flows into the generator


def test_batchnorm_critic_is_never_concatenated(generator):
    critic = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1)).double()
    real, fake = rand((6, 3), generator), rand((6, 3), generator)
    with pytest.raises(ValueError, match="BatchNorm"):
        fastgan.wgan_gp_critic_loss(critic, real, fake, arrangement="pair")
    seed = seeded(generator)
    ours = fastgan.wgan_gp_critic_loss(critic, real, fake, generator=torch.Generator().manual_seed(seed))
    ref = reference.wgan_gp_critic_loss(critic, real, fake, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(ours, ref)


def test_lazy_regularization(generator):
    critic = mlp_critic()
    real, fake = rand((8, 3), generator), rand((8, 3), generator)
    seed = seeded(generator)
    parts = [
        fastgan.wgan_gp_critic_loss(
            critic, real, fake, penalty_every=4, step=step, return_parts=True,
            generator=torch.Generator().manual_seed(seed),
        )
        for step in (0, 1)
    ]
    plain = fastgan.wgan_gp_critic_loss(
        critic, real, fake, return_parts=True, generator=torch.Generator().manual_seed(seed)
    )
    torch.testing.assert_close(parts[0].penalty, 4 * plain.penalty)
    assert float(parts[1].penalty) == 0
    torch.testing.assert_close(parts[1].loss, -plain.wasserstein)
    torch.testing.assert_close(plain.loss.detach(), plain.penalty - plain.wasserstein)


def test_constant_critic_is_finite(generator):
    critic = nn.Sequential(nn.Linear(3, 1, bias=True)).double()
    nn.init.zeros_(critic[0].weight)
    penalty = fastgan.gradient_penalty(critic, rand((4, 3), generator), rand((4, 3), generator))
    penalty.backward()
    assert float(penalty.detach()) == pytest.approx(10.0)
    assert torch.isfinite(critic[0].weight.grad).all()


def test_under_no_grad(generator):
    critic = mlp_critic()
    with torch.no_grad():
        p = fastgan.gradient_penalty(critic, rand((4, 3), generator), rand((4, 3), generator))
    assert torch.isfinite(p)


def test_gradient_penalty_bad_input(generator):
    critic = mlp_critic()
    real, fake = rand((4, 3), generator), rand((4, 3), generator)
    with pytest.raises(ValueError, match="fake"):
        fastgan.gradient_penalty(critic, real)
    with pytest.raises(ValueError, match="shape"):
        fastgan.gradient_penalty(critic, real, rand((5, 3), generator))
    with pytest.raises(TypeError, match="real"):
        fastgan.gradient_penalty(critic, real.long(), fake)
    with pytest.raises(ValueError, match="weight"):
        fastgan.gradient_penalty(critic, real, fake, weight=-1.0)
    with pytest.raises(ValueError, match="mode"):
        fastgan.gradient_penalty(critic, real, fake, mode="r3")
    with pytest.raises(ValueError, match="one score per sample"):
        fastgan.gradient_penalty(lambda x: critic(x).mean(), real, fake)
    with pytest.raises(ValueError, match="arrangement"):
        fastgan.wgan_gp_critic_loss(critic, real, fake, arrangement="stacked")
    with pytest.raises(ValueError, match="penalty_every"):
        fastgan.wgan_gp_critic_loss(critic, real, fake, penalty_every=0)
    with pytest.raises(ValueError, match="eps"):
        torch.ops.fastgan.interpolate(real, fake, torch.rand(3, dtype=torch.float64))


def test_interpolate_op(generator):
    real, fake = rand((5, 2, 3), generator), rand((5, 2, 3), generator)
    eps = torch.rand(5, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(fastgan.penalty.interpolate(real, fake, eps), reference.interpolate(real, fake, eps))
    args = tuple(t.clone().requires_grad_() for t in (real, fake, eps))
    assert torch.autograd.gradcheck(torch.ops.fastgan.interpolate, args)
    torch.library.opcheck(torch.ops.fastgan.interpolate.default, tuple(t.float() for t in (real, fake, eps)))


def test_triton_penalty_kernels(triton_device, generator):
    from fastgan.kernels import penalty as kernel

    for dtype in (torch.float32, torch.float64):
        g = rand((6, 3, 5, 5), generator, dtype=dtype, scale=0.3).to(triton_device)
        g[2] = 0
        for one_sided in (False, True):
            p, norms = kernel.penalty_from_gradients(g, 1.0, one_sided)
            gr = g.detach().clone().requires_grad_()
            p_ref = reference.penalty_from_gradients(gr, one_sided=one_sided)
            (d_ref,) = torch.autograd.grad(p_ref * 3.0, gr)
            torch.testing.assert_close(p, p_ref.detach())
            d = kernel.penalty_from_gradients_backward(torch.tensor(3.0, dtype=dtype), g, norms, 1.0, one_sided)
            torch.testing.assert_close(d, d_ref)
        r, f = (rand((4, 7), generator, dtype=dtype).to(triton_device) for _ in range(2))
        e = torch.rand(4, generator=generator, dtype=torch.float64).to(dtype).to(triton_device)
        torch.testing.assert_close(kernel.interpolate(r, f, e), reference.interpolate(r, f, e))


def test_cuda_penalty_matches_cpu(device, generator):
    if device.type != "cuda":
        pytest.skip("the CUDA path (Triton kernels) needs a GPU")
    critic = conv_critic().float()
    real, fake = rand((8, 2, 8, 8), generator, dtype=torch.float32), rand((8, 2, 8, 8), generator, dtype=torch.float32)
    seed = seeded(generator)
    cpu = fastgan.wgan_gp_critic_loss(critic, real, fake, generator=torch.Generator().manual_seed(seed))
    gpu_critic = copy.deepcopy(critic).to(device)
    gpu = fastgan.wgan_gp_critic_loss(
        gpu_critic, real.to(device), fake.to(device), generator=torch.Generator().manual_seed(seed)
    )
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-5)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        p = fastgan.gradient_penalty(gpu_critic, real.to(device), fake.to(device))
    assert p.dtype == torch.float32


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_penalty_in_float32(dtype, generator):
    # Under autocast the critic runs in low precision; the norms and the
    # penalty are still accumulated and returned in float32.
    critic = mlp_critic().float()
    real, fake = rand((16, 3), generator, dtype=torch.float32), rand((16, 3), generator, dtype=torch.float32)
    seed = seeded(generator)
    with torch.autocast("cpu", dtype=dtype):
        p = fastgan.gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(seed))
        g = fastgan.penalty.penalty_points(real, fake, generator=torch.Generator().manual_seed(seed))
        (grads,) = torch.autograd.grad(critic(g).sum(), g)
    assert p.dtype == torch.float32
    torch.testing.assert_close(p.detach(), 10 * reference.penalty_from_gradients(grads.double()).float())
    low = grads.to(dtype)
    assert fastgan.penalty_from_gradients(low).dtype == torch.float32


# ---------------------------------------------------------------------------
# mlp_critic_penalty: a whole WGAN-GP evaluation of an MLP critic in one op


def piecewise_linear_mlp(depth: int, act: str, flat: bool, dtype=torch.float64, width: int = 12) -> nn.Sequential:
    """Linear layers with relu / lrelu (two slopes) / identity between them, one output."""
    acts = {"relu": lambda i: nn.ReLU(), "lrelu": lambda i: nn.LeakyReLU(0.2 if i % 2 == 0 else 0.05), "linear": lambda i: nn.Identity()}
    layers: list[nn.Module] = []
    d = 3
    for i in range(depth):
        layers += [nn.Linear(d, width), acts[act](i)]
        d = width
    layers.append(nn.Linear(d, 1))
    if flat:
        layers.append(fastgan.nn.Flat())
    return nn.Sequential(*layers).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("depth", [0, 1, 3])
@pytest.mark.parametrize("act", ["lrelu", "relu", "linear", "fused-lrelu"])
@pytest.mark.parametrize("center,one_sided", [(1.0, False), (1.0, True), (0.0, False)])
def test_mlp_critic_penalty_matches_autograd(dtype, depth, act, center, one_sided, generator):
    seeded(generator)
    theirs = piecewise_linear_mlp(depth, act.replace("fused-", ""), flat=depth != 1, dtype=dtype)
    ours = copy.deepcopy(theirs)
    if act.startswith("fused-"):
        ours = fastgan.nn.fuse_activations_(ours)
    real, fake, x_hat = (rand((n, 3), generator, dtype) for n in (5, 4, 6))
    # A loss that weighs every output differently, so that each part's gradient is checked.
    w_real, w_fake = rand((5,), generator, dtype), rand((4,), generator, dtype)
    d_real, d_fake, penalty = fastgan.mlp_critic_penalty(ours, real, fake, x_hat, center=center, one_sided=one_sided)
    ((w_real * d_real.reshape(-1)).sum() + (w_fake * d_fake.reshape(-1)).sum() + 3.0 * penalty).backward()

    x = x_hat.clone().requires_grad_()
    (g,) = torch.autograd.grad(theirs(x).sum(), x, create_graph=True)
    excess = torch.linalg.vector_norm(g, dim=1) - center
    ref_penalty = (excess.clamp_min(0) if one_sided else excess).square().mean()
    ref_real, ref_fake = theirs(real), theirs(fake)
    ((w_real * ref_real.reshape(-1)).sum() + (w_fake * ref_fake.reshape(-1)).sum() + 3.0 * ref_penalty).backward()

    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    assert d_real.shape == ref_real.shape and d_fake.shape == ref_fake.shape
    torch.testing.assert_close(d_real, ref_real.detach(), **tol)
    torch.testing.assert_close(d_fake, ref_fake.detach(), **tol)
    torch.testing.assert_close(penalty, ref_penalty.detach(), **tol)
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(a.grad, b.grad, **tol, msg=lambda m: f"{name}: {m}")


def test_mlp_critic_penalty_only_penalty_and_zero_gradient(generator):
    """Only the penalty in the loss (R1-like use); a critic whose input gradient is zero stays finite."""
    seeded(generator)
    critic = piecewise_linear_mlp(2, "relu", flat=True)
    ref = copy.deepcopy(critic)
    x = rand((6, 3), generator)
    _, _, penalty = fastgan.mlp_critic_penalty(critic, x[:0], x[:0], x)
    penalty.backward()
    _, ref_grads = plain_penalty_and_grads(ref, x, 1.0, 1.0, False)
    for a, b in zip(critic.parameters(), ref_grads):
        torch.testing.assert_close(a.grad, b)
    with torch.no_grad():
        for p in critic.parameters():
            p.zero_()
    critic.zero_grad()
    _, _, penalty = fastgan.mlp_critic_penalty(critic, x, x, x)
    penalty.backward()
    assert penalty.item() == 1.0  # (0 - 1)^2
    assert all(bool(torch.isfinite(p.grad).all()) for p in critic.parameters())


def test_mlp_critic_layers_recognises_only_what_the_op_computes():
    assert fastgan.mlp_critic_layers(piecewise_linear_mlp(2, "lrelu", flat=True)) is not None
    assert fastgan.mlp_critic_layers(fastgan.nn.fuse_activations_(piecewise_linear_mlp(2, "relu", flat=False))) is not None
    not_eligible = {
        "tanh": nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)),
        "two outputs": nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)),
        "no bias": nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 1)),
        "batchnorm": nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1)),
        "two activations": nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.ReLU(), nn.Linear(4, 1)),
        "conv": conv_critic(),
        "not sequential": nn.Linear(3, 1),
        "spectral norm on one layer": nn.Sequential(fastgan.nn.spectral_norm(nn.Linear(3, 4)), nn.ReLU(), nn.Linear(4, 1)),
        "torch's spectral norm": nn.Sequential(
            torch.nn.utils.parametrizations.spectral_norm(nn.Linear(3, 4)), nn.ReLU(), nn.Linear(4, 1)
        ),
        "biased activation": nn.Sequential(nn.Linear(3, 4), fastgan.nn.FusedLeakyReLU(4), nn.Linear(4, 1)),
    }
    for name, critic in not_eligible.items():
        assert fastgan.mlp_critic_layers(critic) is None, name
    hooked = piecewise_linear_mlp(1, "relu", flat=True)
    hooked[0].register_forward_hook(lambda *args: None)
    assert fastgan.mlp_critic_layers(hooked) is None
    own_forward = piecewise_linear_mlp(1, "relu", flat=True)
    own_forward[0].forward = lambda x: x
    assert fastgan.mlp_critic_layers(own_forward) is None
    grouped = fastgan.nn.spectral_norm_all(piecewise_linear_mlp(2, "lrelu", flat=True))
    layers = fastgan.mlp_critic_layers(grouped)
    assert layers is not None and layers.group is not None and len(layers.norms) == 3
    grouped.register_forward_hook(lambda *args: None)
    assert fastgan.mlp_critic_layers(grouped) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("penalty", [False, True])
def test_mlp_critic_penalty_under_spectral_norm_matches_the_model(dtype, penalty, generator):
    """Grouped spectral norm: the same losses, gradients, u and v as calling the model, over 5 SGD steps."""
    seeded(generator)
    base = piecewise_linear_mlp(3, "lrelu", flat=True, dtype=dtype)
    ours, theirs = fastgan.nn.spectral_norm_all(copy.deepcopy(base)), fastgan.nn.spectral_norm_all(copy.deepcopy(base))
    theirs.load_state_dict(ours.state_dict())
    real, fake, x_hat = (rand((n, 3), generator, dtype) for n in (6, 6, 5))
    opts = [torch.optim.SGD(m.parameters(), lr=0.05) for m in (ours, theirs)]
    for _ in range(5):
        for opt in opts:
            opt.zero_grad()
        d_real, d_fake, p = fastgan.mlp_critic_penalty(ours, real, fake, x_hat if penalty else None)
        loss = torch.relu(1 - d_real).mean() + torch.relu(1 + d_fake).mean() + 10 * p
        loss.backward()
        # One forward of the model (one power iteration), as the op runs one.
        x = x_hat.clone().requires_grad_()
        scores = theirs(torch.cat([real, fake, x] if penalty else [real, fake]))
        ref = torch.relu(1 - scores[:6]).mean() + torch.relu(1 + scores[6:12]).mean()
        if penalty:
            (g,) = torch.autograd.grad(scores[12:].sum(), x, create_graph=True)
            ref = ref + 10 * (g.norm(dim=1) - 1).square().mean()
        else:
            assert p.item() == 0
        ref.backward()
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(loss, ref, **tol)
        for a, b in zip(ours.parameters(), theirs.parameters()):
            # Both sides round differently in float32 (the op scales W by 1/sigma, the
            # model's Linear layers scale x W^T), and SGD carries the differences into
            # the next steps' parameters: a gradient entry that cancels is then off by
            # a few 1e-5 of the tensor's largest entry (2.9e-5 at worst in 200 seeds).
            scale = float(b.grad.abs().max()) if dtype == torch.float32 else 0.0
            torch.testing.assert_close(a.grad, b.grad, rtol=tol["rtol"], atol=tol["atol"] + 2e-4 * scale)
        for opt in opts:
            opt.step()
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        # The parameters carry those gradient differences, times the learning rate.
        scale = float(b.abs().max()) if dtype == torch.float32 else 0.0
        torch.testing.assert_close(a, b, rtol=tol["rtol"], atol=tol["atol"] + 1e-5 * scale, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("arrangement", ["fused", "pair", "auto"])
def test_wgan_gp_critic_loss_on_an_mlp_matches_reference(arrangement, generator):
    seed = seeded(generator)
    critic = piecewise_linear_mlp(3, "lrelu", flat=True)
    ours = copy.deepcopy(critic)
    real = rand((8, 3), generator)
    fake = rand((8, 3), generator).requires_grad_()
    loss = fastgan.wgan_gp_critic_loss(ours, real, fake, arrangement=arrangement, generator=torch.Generator().manual_seed(seed))
    loss.backward()
    ref = reference.wgan_gp_critic_loss(critic, real, fake, generator=torch.Generator().manual_seed(seed))
    ref.backward()
    torch.testing.assert_close(loss.detach(), ref.detach(), rtol=1e-10, atol=1e-12)
    for a, b in zip(ours.parameters(), critic.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12)
    assert fake.grad is None
    assert fastgan.penalty._arrangement(critic, "auto", torch.device("cpu")) == "fused"
    assert fastgan.penalty._arrangement(critic, "auto", torch.device("cpu"), "reference") == "pair"


def test_mlp_critic_penalty_bad_input(generator):
    critic = piecewise_linear_mlp(1, "lrelu", flat=True)
    x = rand((4, 3), generator)
    with pytest.raises(ValueError, match="`critic` must be an nn.Sequential"):
        fastgan.mlp_critic_penalty(conv_critic(), x, x, x)
    with pytest.raises(ValueError, match="arrangement='fused' needs an MLP critic"):
        fastgan.wgan_gp_critic_loss(conv_critic(), rand((2, 2, 8, 8), generator), rand((2, 2, 8, 8), generator), arrangement="fused")
    with pytest.raises(ValueError, match=r"`x_hat` must have shape \(N, 3\)"):
        fastgan.mlp_critic_penalty(critic, x, x, x[:, :2])
    with pytest.raises(TypeError, match="`fake` is Float"):
        fastgan.mlp_critic_penalty(critic, x, x.float(), x)
    with pytest.raises(RuntimeError, match="pass detached inputs"):
        fastgan.mlp_critic_penalty(critic, x.clone().requires_grad_(), x, x)
    _, _, penalty = fastgan.mlp_critic_penalty(critic, x, x, x)
    with pytest.raises(RuntimeError, match="derivatives of order 2"):
        torch.autograd.grad(penalty, list(critic.parameters()), create_graph=True)
    layers = fastgan.mlp_critic_layers(critic)
    with pytest.raises(ValueError, match="one slope per hidden layer"):
        torch.ops.fastgan.mlp_critic_penalty(x, x, x, layers.weights, layers.biases, [], 1.0, False)
    with pytest.raises(ValueError, match=r"biases\[1\] must have shape \(1,\)"):
        torch.ops.fastgan.mlp_critic_penalty(x, x, x, layers.weights, [layers.biases[0], layers.biases[0]], layers.alphas, 1.0, False)


def test_mlp_critic_penalty_opcheck(generator):
    critic = piecewise_linear_mlp(2, "lrelu", flat=True, dtype=torch.float32)
    layers = fastgan.mlp_critic_layers(critic)
    x = rand((5, 3), generator, torch.float32)
    torch.library.opcheck(
        torch.ops.fastgan.mlp_critic_penalty.default,
        (x, x + 1, x - 1, layers.weights, layers.biases, layers.alphas, 1.0, False),
    )


# ------------------------------------------------------------------ arrangements under spectral norm


def _power_rounds(w: torch.Tensor, u: torch.Tensor, v: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k steps of the power iteration, written out: u <- Wv/|Wv|, v <- W^T u/|W^T u|."""
    for _ in range(k):
        u = w @ v
        u = u / u.norm()
        v = w.T @ u
        v = v / v.norm()
    return u, v


def _normalised_mlp(weights, biases, slopes, uvs, x):
    """The MLP with each W / (u^T W v), u and v constants of the gradient."""
    for i, (w, b) in enumerate(zip(weights, biases)):
        u, v = uvs[i]
        x = x @ (w / (u @ w @ v)).T + b
        if i < len(slopes):
            x = torch.nn.functional.leaky_relu(x, slopes[i])
    return x.reshape(-1)


# Power-iteration rounds behind D(real), D(fake) and D(x_hat) in one critic step.
ROUNDS = {"separate": (1, 2, 3), "pair": (1, 1, 2), "joint": (1, 1, 1), "fused": (1, 1, 1)}


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("arrangement", list(ROUNDS))
def test_arrangements_under_spectral_norm_run_the_documented_rounds(arrangement, training, generator):
    """Each critic call runs one power-iteration round (training mode) and uses its sigma;
    in evaluation mode no round runs and every arrangement gives the same numbers."""
    seed = seeded(generator)
    critic = fastgan.nn.spectral_norm_all(piecewise_linear_mlp(2, "lrelu", flat=True)).train(training)
    norms = [m.parametrizations.weight[0] for m in critic if isinstance(m, nn.Linear)]
    for sn in norms:  # far from converged, so that every round shows
        sn._u.copy_(torch.nn.functional.normalize(rand(sn._u.shape, generator), dim=0))
        sn._v.copy_(torch.nn.functional.normalize(rand(sn._v.shape, generator), dim=0))
    linears = [m for m in critic if isinstance(m, nn.Linear)]
    weights = [m.parametrizations.weight.original.detach().clone().requires_grad_() for m in linears]
    biases = [m.bias.detach().clone().requires_grad_() for m in linears]
    start = [(sn._u.clone(), sn._v.clone()) for sn in norms]
    slopes = [m.negative_slope for m in critic if isinstance(m, nn.LeakyReLU)]
    real, fake = rand((6, 3), generator), rand((6, 3), generator)

    loss = fastgan.wgan_gp_critic_loss(critic, real, fake, arrangement=arrangement, generator=torch.Generator().manual_seed(seed))
    loss.backward()

    rounds = ROUNDS[arrangement] if training else (0, 0, 0)
    uvs = [[_power_rounds(w.detach(), u, v, k) for w, (u, v) in zip(weights, start)] for k in rounds]
    eps = torch.rand(6, generator=torch.Generator().manual_seed(seed)).double()[:, None]
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_()
    d_hat = _normalised_mlp(weights, biases, slopes, uvs[2], x_hat)
    (g,) = torch.autograd.grad(d_hat.sum(), x_hat, create_graph=True)
    d_real = _normalised_mlp(weights, biases, slopes, uvs[0], real)
    d_fake = _normalised_mlp(weights, biases, slopes, uvs[1], fake)
    expected = 10 * (g.norm(dim=1) - 1).square().mean() - (d_real.mean() - d_fake.mean())
    expected.backward()

    torch.testing.assert_close(loss.detach(), expected.detach(), rtol=1e-12, atol=1e-12)
    for ours, theirs in zip(linears, zip(weights, biases)):
        torch.testing.assert_close(ours.parametrizations.weight.original.grad, theirs[0].grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(ours.bias.grad, theirs[1].grad, rtol=1e-10, atol=1e-12)
    for sn, (u, v) in zip(norms, uvs[2]):  # the buffers after the last call's rounds
        torch.testing.assert_close(sn._u, u, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(sn._v, v, rtol=1e-12, atol=1e-12)
