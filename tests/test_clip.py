"""fastgan.clip_parameters_ against the pure-PyTorch reference and torch.clamp."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import fastgan
from fastgan import _library, reference

ALL_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
C = 0.01


def random_tensors(shapes, dtype, device, generator, scale=2 * C):
    """Normal(0, scale) tensors: roughly 30-60% of elements lie outside [-C, C]."""
    return [
        (torch.randn(s, generator=generator, dtype=torch.float64) * scale).to(dtype).to(device)
        for s in shapes
    ]


def expected(tensors, clip_value):
    """torch.clamp on copies, and the number of elements it changed."""
    clamped = [t.clamp(-clip_value, clip_value) for t in tensors]
    changed = sum(int((a != b).sum()) for a, b in zip(tensors, clamped))
    # NaN != NaN, but NaN is left as it is and not counted.
    changed -= sum(int(t.isnan().sum()) for t in tensors)
    return clamped, changed


def assert_clipped(tensors, clamped, count, changed, device):
    assert count.shape == () and count.dtype == torch.int64 and count.device.type == device.type
    assert int(count) == changed
    for t, want in zip(tensors, clamped):
        torch.testing.assert_close(t, want, rtol=0, atol=0, equal_nan=True)


# Shapes with odd sizes, size 1, size 0, and sizes across the CPU's parallel
# grain (32768) and the CUDA chunk (4096), so that ranges split inside tensors.
SHAPES = [(3, 5), (1,), (0,), (7, 0, 2), (4097,), (64, 3, 4, 4), (40000,), (33, 1025), (2,)]


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_matches_torch_clamp_and_reference(device, dtype, generator):
    tensors = random_tensors(SHAPES, dtype, device, generator)
    ref_tensors = [t.clone() for t in tensors]
    clamped, changed = expected(tensors, C)
    count = fastgan.clip_parameters_(tensors, C)
    assert_clipped(tensors, clamped, count, changed, device)
    ref_count = reference.clip_parameters_(ref_tensors, C)
    assert int(ref_count) == changed
    for t, r in zip(tensors, ref_tensors):
        torch.testing.assert_close(t, r, rtol=0, atol=0)


def test_many_tensors_mixed_dtypes(device, generator):
    # More tensors than one CUDA launch table holds, dtypes interleaved.
    shapes = [(int(n),) for n in torch.randint(1, 3000, (300,), generator=generator)]
    tensors = [
        t.to(ALL_DTYPES[i % 4])
        for i, t in enumerate(random_tensors(shapes, torch.float64, device, generator))
    ]
    clamped, changed = expected(tensors, C)
    count = fastgan.clip_parameters_(tensors, C)
    assert_clipped(tensors, clamped, count, changed, device)


def test_large_tensors_split_across_threads(device, generator):
    tensors = random_tensors([(1_000_003,), (5,), (250_001,)], torch.float32, device, generator)
    clamped, changed = expected(tensors, C)
    assert_clipped(tensors, clamped, fastgan.clip_parameters_(tensors, C), changed, device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_working_set_larger_than_the_caches(device, dtype, generator):
    # Over 8 MiB in all: the CPU kernel sweeps in blocks that prefetch ahead.
    # Odd sizes end in partial blocks; NaN and Inf land inside blocks, at
    # their edges and at a tensor's last element.
    tensors = random_tensors([(1_048_579,), (3,), (1_500_011,), (257,)], dtype, device, generator)
    for t in (tensors[0], tensors[2]):
        for i, value in zip((0, 255, 256, 70_001, t.numel() - 1), (math.nan, math.inf, -math.inf, math.nan, math.nan)):
            t[i] = value
    assert sum(t.numel() * t.element_size() for t in tensors) > 8 << 20
    clamped, changed = expected(tensors, C)
    assert_clipped(tensors, clamped, fastgan.clip_parameters_(tensors, C), changed, device)


def test_clip_value_rounds_like_torch_clamp(device, generator):
    # 0.01 is not representable in float16 / bfloat16: elements equal to the
    # rounded bound are unchanged and not counted, exactly as torch.clamp does.
    for dtype in (torch.float16, torch.bfloat16):
        bound = torch.tensor(C, dtype=dtype).item()
        t = torch.tensor([bound, -bound, 2 * bound, -2 * bound, 0.0], dtype=dtype, device=device)
        clamped, changed = expected([t], C)
        assert_clipped([t], clamped, fastgan.clip_parameters_(t, C), changed, device)
        assert changed == 2


def test_nan_and_inf(device):
    t = torch.tensor([math.nan, math.inf, -math.inf, 0.5, -0.5, 0.001], device=device)
    count = fastgan.clip_parameters_(t, 0.1)
    torch.testing.assert_close(
        t, torch.tensor([math.nan, 0.1, -0.1, 0.1, -0.1, 0.001], device=device), equal_nan=True
    )
    assert int(count) == 4


def test_non_contiguous_layouts(device, generator):
    base = random_tensors([(6, 10)], torch.float32, device, generator)[0]
    untouched = base[:, 1::2].clone()
    strided = base[:, ::2]  # not dense: goes through a copy
    transposed = random_tensors([(7, 9)], torch.float32, device, generator)[0].t()
    channels_last = random_tensors([(2, 3, 4, 5)], torch.float64, device, generator)[0].to(
        memory_format=torch.channels_last
    )
    tensors = [strided, transposed, channels_last]
    clamped, changed = expected(tensors, C)
    count = fastgan.clip_parameters_(tensors, C)
    assert_clipped(tensors, clamped, count, changed, device)
    torch.testing.assert_close(base[:, 1::2], untouched, rtol=0, atol=0)
    assert channels_last.is_contiguous(memory_format=torch.channels_last)


def test_module_with_parameters_that_require_grad(device, generator):
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
    critic = nn.Sequential(nn.Linear(3, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1)).to(device)
    loss = critic(torch.randn(8, 3, device=device)).mean()
    loss.backward()
    grads = [p.grad.clone() for p in critic.parameters()]
    versions = [p._version for p in critic.parameters()]
    clamped, changed = expected([p.detach() for p in critic.parameters()], C)

    count = fastgan.clip_parameters_(critic, C)  # grad mode on: no autograd error

    assert_clipped(list(critic.parameters()), clamped, count, changed, device)
    assert all(p.requires_grad and isinstance(p, nn.Parameter) for p in critic.parameters())
    # Like p.data.clamp_: version counters and gradients untouched.
    assert [p._version for p in critic.parameters()] == versions
    for p, g in zip(critic.parameters(), grads):
        torch.testing.assert_close(p.grad, g, rtol=0, atol=0)


def test_generator_and_single_tensor_arguments(device, generator):
    tensors = random_tensors([(10,), (20,)], torch.float32, device, generator)
    clamped, changed = expected(tensors, C)
    count = fastgan.clip_parameters_((t for t in tensors), C)
    assert_clipped(tensors, clamped, count, changed, device)
    single = random_tensors([(30,)], torch.float32, device, generator)[0]
    clamped, changed = expected([single], C)
    assert_clipped([single], clamped, fastgan.clip_parameters_(single, C), changed, device)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_empty_inputs(backend):
    for arg in ([], (), nn.Sequential(), [torch.empty(0), torch.empty(3, 0)]):
        count = fastgan.clip_parameters_(arg, C, backend=backend)
        assert count.shape == () and count.dtype == torch.int64 and int(count) == 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_mixed_devices_sum_counts(generator):
    cpu = random_tensors([(100,)], torch.float32, "cpu", generator)
    gpu = random_tensors([(200,)], torch.float32, "cuda", generator)
    tensors = [gpu[0], cpu[0]]
    clamped, changed = expected(tensors, C)
    count = fastgan.clip_parameters_(tensors, C)
    assert count.device.type == "cuda"
    assert_clipped(tensors, clamped, count, changed, torch.device("cuda"))


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_bad_clip_value(backend):
    t = torch.zeros(3)
    for bad in (0.0, -0.01, math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="clip_value"):
            fastgan.clip_parameters_(t, bad, backend=backend)
    for bad in ("0.01", None, torch.tensor(0.01), True):
        with pytest.raises(TypeError, match="clip_value"):
            fastgan.clip_parameters_(t, bad, backend=backend)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_bad_parameters(backend):
    ok = torch.zeros(3)
    for bad in (
        torch.zeros(3, dtype=torch.int64),
        torch.zeros(3, dtype=torch.bool),
        torch.zeros(3, dtype=torch.complex64),
    ):
        with pytest.raises(TypeError, match=r"parameters\[1\]"):
            fastgan.clip_parameters_([ok, bad], C, backend=backend)
    with pytest.raises(TypeError, match=r"parameters\[1\]"):
        fastgan.clip_parameters_([ok, "w"], C, backend=backend)
    with pytest.raises(TypeError, match="parameters"):
        fastgan.clip_parameters_(3.0, C, backend=backend)


def test_bad_input_leaves_tensors_untouched():
    big = torch.full((5,), 1.0)
    with pytest.raises(TypeError):
        fastgan.clip_parameters_([big, torch.zeros(2, dtype=torch.int32)], C)
    assert bool((big == 1.0).all())


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        fastgan.clip_parameters_(torch.zeros(2), C, backend="cuda")


def test_op_checks_its_own_arguments(device):
    # The registered op is public API for LibTorch users: same checks.
    t = torch.zeros(3, device=device)
    with pytest.raises(ValueError, match="clip_value"):
        torch.ops.fastgan.clip_([t], -1.0)
    with pytest.raises(TypeError, match=r"tensors\[1\]"):
        torch.ops.fastgan.clip_([t, torch.zeros(2, dtype=torch.int32, device=device)], C)
    with pytest.raises(ValueError, match=r"`tensors\[0\]` has internally overlapping memory"):
        torch.ops.fastgan.clip_([torch.zeros(1, device=device).expand(4)], C)


def test_missing_cuda_kernel_message(monkeypatch):
    # A build without CUDA: no op has a CUDA kernel.
    for op in _library.compiled_ops():
        monkeypatch.setitem(_library._kernel_cache, (op, "cuda"), False)
    with pytest.raises(RuntimeError, match="built without CUDA kernels.*pip install"):
        _library.require_kernel("clip_", torch.device("cuda"))


def test_opcheck(device, generator):
    tensors = random_tensors([(5, 3), (17,), (2, 2, 2)], torch.float32, device, generator)
    tensors.append(random_tensors([(9,)], torch.float64, device, generator)[0])
    torch.library.opcheck(torch.ops.fastgan.clip_.default, (tensors, C))


def test_torch_compile(device, generator):
    tensors = random_tensors([(33,), (4, 4)], torch.float32, device, generator)
    clamped, changed = expected(tensors, C)

    @torch.compile(backend="aot_eager", fullgraph=True)
    def clip_op(ts):
        return torch.ops.fastgan.clip_(ts, C)

    @torch.compile(backend="aot_eager", fullgraph=True)
    def clip_api(ts):
        return fastgan.clip_parameters_(ts, C)

    assert_clipped(tensors, clamped, clip_op(tensors), changed, device)
    again = random_tensors([(20,), (3, 7)], torch.float32, device, generator)
    clamped, changed = expected(again, C)
    assert_clipped(again, clamped, clip_api(again), changed, device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_triton_backend(triton_device, dtype, generator):
    tensors = random_tensors([(3, 5), (1,), (0,), (5000,)], dtype, triton_device, generator)
    tensors.append(random_tensors([(4, 6)], dtype, triton_device, generator)[0][:, ::2])
    clamped, changed = expected(tensors, C)
    count = fastgan.clip_parameters_(tensors, C, backend="triton")
    assert_clipped(tensors, clamped, count, changed, triton_device)
