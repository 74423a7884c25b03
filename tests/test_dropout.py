"""fastgan.nn.dropout: torch's dropout with the mask from a counter-based generator.

The masks differ from torch's by design, so the oracles are the distribution
(binomial counts, the closed forms E[y] = x and Var[y] = x^2 p / (1 - p)),
torch's own kept value 1 / (1 - p) and torch's autograd of ``x * mask``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import seeded
from torch import nn

import fastgan
from fastgan.nn import Dropout, dropout, use_fast_dropout_

pytestmark = pytest.mark.skipif(
    not fastgan._library.has_kernel("dropout_mask", "cpu"), reason="fastgan's compiled library lacks dropout_mask"
)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_the_kept_share_is_binomial_and_the_kept_value_is_torchs(p, generator):
    seeded(generator)
    n = 1 << 20
    x = torch.ones(n)
    y = dropout(x, p)
    kept = y != 0
    k = int(kept.sum())
    sd = math.sqrt(n * p * (1 - p))
    assert abs(k - n * (1 - p)) < 5 * sd, (k, n * (1 - p), sd)
    # The kept elements are x / (1 - p), the value torch's own dropout gives them.
    torch_value = F.dropout(torch.ones(64), p).max()
    assert torch.equal(y[kept].unique(), torch_value.reshape(1))


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_mean_and_variance_match_the_closed_forms(p, generator):
    seeded(generator)
    x = torch.randn(256, dtype=torch.float64) * 3
    ys = torch.stack([dropout(x, p) for _ in range(4000)])
    mean_sd = x.abs() * math.sqrt(p / (1 - p) / ys.shape[0])
    assert ((ys.mean(0) - x).abs() <= 5 * mean_sd + 1e-12).all()
    var = x**2 * p / (1 - p)
    # The sample variance of 4,000 draws lies within about 5 of its standard errors.
    rel = (ys.var(0) - var).abs() / var
    assert rel.max() < 0.25 and rel.mean() < 0.05, (rel.max(), rel.mean())


def test_masks_show_no_pattern_along_the_tensor_or_between_calls(generator):
    seeded(generator)
    p, n = 0.3, 1 << 18
    a = (dropout(torch.ones(n), p) != 0).double()
    b = (dropout(torch.ones(n), p) != 0).double()
    bound = 5 / math.sqrt(n)

    def corr(u, v):
        return float(((u - u.mean()) * (v - v.mean())).mean() / (u.std() * v.std()))

    for lag in (1, 2, 3, 32, 1024):
        assert abs(corr(a[:-lag], a[lag:])) < bound, lag
    assert abs(corr(a, b)) < bound  # two calls draw independent masks
    # Kept share of each block of 1,024 consecutive elements: binomial, chi-squared test.
    blocks = a.reshape(-1, 1024).sum(1)
    chi2 = float(((blocks - 1024 * (1 - p)) ** 2 / (1024 * p * (1 - p))).sum())
    df = blocks.numel()
    assert abs(chi2 - df) < 6 * math.sqrt(2 * df), (chi2, df)


def test_the_same_seed_gives_the_same_mask_on_any_number_of_threads(generator):
    seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
    x = torch.randn(8, 32, 14, 14)
    threads = torch.get_num_threads()
    masks = []
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            masks.append(torch.ops.fastgan.dropout_mask(x, 0.3, seed))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(masks[0], masks[1])
    assert not torch.equal(masks[0], torch.ops.fastgan.dropout_mask(x, 0.3, seed + 1))
    # torch.manual_seed (or a generator) makes dropout repeat.
    torch.manual_seed(seed)
    y1 = dropout(x, 0.3)
    torch.manual_seed(seed)
    assert torch.equal(y1, dropout(x, 0.3))
    g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    assert torch.equal(dropout(x, 0.3, generator=g1), dropout(x, 0.3, generator=g2))


def test_gradients_of_every_order_are_the_mask_times_the_incoming_one(generator):
    seeded(generator)
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    y = dropout(x, 0.4)
    mask = (y != 0).double() / 0.6
    torch.testing.assert_close(y, x * mask, rtol=0, atol=0)
    g = torch.randn_like(x)
    (gx,) = torch.autograd.grad(y, x, g, create_graph=True)
    torch.testing.assert_close(gx, g * mask, rtol=0, atol=0)
    # x * mask is linear in x: the second derivative of sum(y^2) is 2 mask^2.
    (h,) = torch.autograd.grad((y**2).sum(), x, create_graph=True)
    (hh,) = torch.autograd.grad(h.sum(), x)
    torch.testing.assert_close(hh, 2 * mask**2)
    seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))

    def fn(t):
        torch.manual_seed(seed)
        return dropout(t, 0.4)

    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_dtypes_layouts_and_edge_cases(dtype, generator):
    seeded(generator)
    x = torch.randn(4, 8, 6, 6).to(dtype) + 3  # no zeros
    for view in (x, x.transpose(1, 3), x.to(memory_format=torch.channels_last), x[:, ::2]):
        y = dropout(view, 0.5)
        assert y.shape == view.shape and y.dtype == dtype
        ratio = (y / view)[y != 0]
        assert torch.equal(ratio, torch.full_like(ratio, 2.0))
        assert 0.3 < float((y == 0).float().mean()) < 0.7
    assert dropout(x, 0.5, training=False) is x and dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    assert dropout(torch.empty(0, 3, dtype=dtype), 0.5).shape == (0, 3)
    z = x.clone()
    out = dropout(z, 0.5, inplace=True)
    assert out.data_ptr() == z.data_ptr() and bool(((z == 0) | (z == x * 2)).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16_bit_masks_are_the_float64_mask_rounded(dtype, generator):
    """A half / bfloat16 mask keeps the same elements as the float64 one of the same seed, its kept
    value 1 / (1 - p) rounded to the dtype, over lengths that end inside and outside a vector."""
    seeded(generator)
    for n in (1, 15, 16, 17, 1000, 64 * 32 * 14 * 14 + 3):
        for p in (0.3, 0.5, 0.9):
            seed = int(torch.randint(-(2**62), 2**62, (), generator=generator))
            mask = torch.ops.fastgan.dropout_mask(torch.empty(n, dtype=dtype), p, seed)
            wide = torch.ops.fastgan.dropout_mask(torch.empty(n, dtype=torch.float64), p, seed)
            assert mask.dtype == dtype
            assert torch.equal(mask, wide.to(dtype))
            assert torch.equal(mask != 0, wide != 0)


def test_bad_input_is_named():
    x = torch.randn(3)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="`p`"):
            dropout(x, bad)
    for bad in (True, "0.5", None):
        with pytest.raises(TypeError, match="`p` must be"):
            dropout(x, bad)
    with pytest.raises(TypeError, match="`input` has dtype torch.int64"):
        dropout(torch.ones(3, dtype=torch.int64), 0.5)
    with pytest.raises(TypeError, match="`input` must be a tensor"):
        dropout([1.0, 2.0], 0.5)
    with pytest.raises(ValueError, match="`generator` applies to CPU tensors"):
        dropout(torch.ones(3, device="meta"), 0.5, generator=torch.Generator())
    with pytest.raises(ValueError, match="`p` must lie in"):
        torch.ops.fastgan.dropout_mask(x, 1.5, 0)
    with pytest.raises(TypeError, match="`like` must have a floating dtype"):
        torch.ops.fastgan.dropout_mask(torch.ones(3, dtype=torch.int32), 0.5, 0)


def test_the_op_reads_only_the_shape_of_like_and_its_fake_matches():
    base = torch.randn(4, 6)
    for like in (base.t(), base[:1].expand(5, 6), base[:, ::2]):
        mask = torch.ops.fastgan.dropout_mask(like, 0.5, 7)
        assert mask.shape == like.shape and mask.is_contiguous()
    torch.library.opcheck(torch.ops.fastgan.dropout_mask.default, (base, 0.25, 3), test_utils=("test_schema", "test_faketensor"))


def test_the_module_and_the_in_place_switch(generator):
    seeded(generator)
    model = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.2), nn.Dropout(0.3), nn.Linear(8, 1), nn.Dropout(0.1, inplace=True))
    keys = list(model.state_dict())
    assert use_fast_dropout_(model) is model
    assert [type(m) for m in model if isinstance(m, nn.Dropout)] == [Dropout, Dropout]
    assert (model[2].p, model[4].p, model[4].inplace) == (0.3, 0.1, True) and list(model.state_dict()) == keys
    x = torch.randn(16, 4)
    model.eval()
    reference = nn.Sequential(*[m for m in model if not isinstance(m, nn.Dropout)])
    torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)
    model.train()
    assert not torch.equal(model(x), model(x))
    with pytest.raises(TypeError, match="`module` must be an nn.Module"):
        use_fast_dropout_(nn.Dropout)


def test_the_trainer_switches_the_critics_dropout_under_auto_only():
    from fastgan.train.presets import preset
    from fastgan.train.trainer import Trainer

    kinds = {}
    for backend in ("auto", "reference"):
        t = Trainer(preset("gan", data="digits", steps=2, critic_dropout=0.3, backend=backend, progress=False))
        kinds[backend] = {type(m) for m in t.D.modules() if isinstance(m, nn.Dropout)}
        t.train_steps(2)
    assert kinds == {"auto": {Dropout}, "reference": {nn.Dropout}}
