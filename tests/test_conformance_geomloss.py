"""fastgan.ot.SamplesLoss as a drop-in for GeomLoss's SamplesLoss, on fresh inputs, against the real GeomLoss."""

from __future__ import annotations

import pytest
import torch

import fastgan.ot as fot

geomloss = pytest.importorskip("geomloss")


def clouds(generator, batch, n, m, d=2):
    x = torch.randn(*batch, n, d, generator=generator, dtype=torch.float64)
    y = torch.randn(*batch, m, d, generator=generator, dtype=torch.float64) + 0.7
    a = torch.rand(*batch, n, generator=generator, dtype=torch.float64) + 0.1
    b = torch.rand(*batch, m, generator=generator, dtype=torch.float64) + 0.1
    return a / a.sum(-1, keepdim=True), x, b / b.sum(-1, keepdim=True), y


def value_and_gradients(loss, a, x, b, y, weighted: bool):
    """The loss and its gradients in x, y (and a, b when they are passed)."""
    leaves = [t.clone().requires_grad_() for t in (a, x, b, y)]
    value = loss(*leaves) if weighted else loss(leaves[1], leaves[3])
    wanted = leaves if weighted else [leaves[1], leaves[3]]
    return [value.detach(), *torch.autograd.grad(value.sum(), wanted)]


def assert_same(loss_args, generator, batch, weighted, rtol, atol):
    a, x, b, y = clouds(generator, batch, int(torch.randint(3, 40, (1,), generator=generator)),
                        int(torch.randint(3, 40, (1,), generator=generator)))
    ours = value_and_gradients(fot.SamplesLoss(**loss_args), a, x, b, y, weighted)
    theirs = value_and_gradients(geomloss.SamplesLoss(**loss_args), a, x, b, y, weighted)
    assert ours[0].shape == theirs[0].shape
    for o, t in zip(ours, theirs):
        torch.testing.assert_close(o, t, rtol=rtol, atol=atol)


@pytest.mark.parametrize("batch", [(), (3,)])
@pytest.mark.parametrize("weighted", [False, True])
def test_sinkhorn_default_call_values_and_gradients(generator, batch, weighted):
    """SamplesLoss("sinkhorn", p=2, blur=0.05, scaling=0.5, debias=True, reach=None) as loss(x, y) / loss(a, x, b, y)."""
    args = dict(loss="sinkhorn", p=2, blur=0.05, scaling=0.5, debias=True, reach=None)
    assert_same(args, generator, batch, weighted, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("debias", [True, False])
def test_sinkhorn_p_blur_scaling_debias(generator, p, debias):
    blur = float(torch.empty(()).uniform_(0.05, 1.0, generator=generator))
    args = dict(loss="sinkhorn", p=p, blur=blur, scaling=0.7, debias=debias)
    assert_same(args, generator, (2,), True, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("debias", [True, False])
def test_sinkhorn_reach_values_and_documented_gradient_difference(generator, debias):
    """Unbalanced OT: GeomLoss's values. Deliberately not its gradients: GeomLoss's autograd
    differentiates its value formula (rho + eps/2) T, fastgan returns the derivative of the
    unbalanced cost at fixed potentials, which carries (rho + eps) (and, without debias, the
    -eps/2 of the mass terms in the weights); tests/test_sinkhorn.py checks by finite
    differences that fastgan's is the derivative."""
    reach = float(torch.empty(()).uniform_(0.3, 2.0, generator=generator))
    blur = 0.1
    args = dict(loss="sinkhorn", p=2, blur=blur, reach=reach, debias=debias)
    a, x, b, y = clouds(generator, (), 25, 30)
    b = 1.3 * b  # unequal masses
    ours = value_and_gradients(fot.SamplesLoss(**args), a, x, b, y, True)
    theirs = value_and_gradients(geomloss.SamplesLoss(**args), a, x, b, y, True)
    rho, eps = reach**2, blur**2
    ratio = (rho + eps) / (rho + eps / 2)
    shift = 0.0 if debias else -eps / 2
    wanted = [theirs[0], ratio * theirs[1] + shift, ratio * theirs[2], ratio * theirs[3] + shift, ratio * theirs[4]]
    for o, t in zip(ours, wanted):
        torch.testing.assert_close(o, t, rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("loss", ["energy", "gaussian", "laplacian"])
@pytest.mark.parametrize("batch", [(), (2,)])
def test_kernel_losses(generator, loss, batch):
    blur = float(torch.empty(()).uniform_(0.1, 2.0, generator=generator))
    assert_same(dict(loss=loss, blur=blur), generator, batch, True, rtol=1e-10, atol=1e-12)


def test_float32(generator):
    a, x, b, y = (t.float() for t in clouds(generator, (), 30, 25))
    ours = fot.SamplesLoss("sinkhorn", blur=0.2)(a, x, b, y)
    theirs = geomloss.SamplesLoss("sinkhorn", blur=0.2)(a, x, b, y)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_what_is_not_offered_is_refused_by_name():
    with pytest.raises(NotImplementedError, match="hausdorff"):
        fot.SamplesLoss("hausdorff")
    with pytest.raises(NotImplementedError, match="multiscale"):
        fot.SamplesLoss("sinkhorn", backend="multiscale")
    with pytest.raises(NotImplementedError, match="potentials"):
        fot.SamplesLoss("sinkhorn", potentials=True)
    with pytest.raises(NotImplementedError, match="cost"):
        fot.SamplesLoss("sinkhorn", cost=lambda x, y: x @ y.T)
    with pytest.raises(ValueError, match="loss"):
        fot.SamplesLoss("no_such_loss")
    with pytest.raises(ValueError, match="p"):
        fot.SamplesLoss("sinkhorn", p=3)
    with pytest.raises(ValueError, match="arguments"):
        fot.SamplesLoss()(torch.zeros(3, 2))
