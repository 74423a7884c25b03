"""fastgan.metrics.inception_metrics: the torch-fidelity bridge (torch-fidelity itself is optional)."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from fastgan.metrics import inception_metrics, to_uint8_images


def test_missing_torch_fidelity_raises_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    with pytest.raises(ImportError, match="pip install torch-fidelity"):
        inception_metrics(torch.rand(2, 3, 8, 8))


def test_images_reach_torch_fidelity_as_uint8_rgb(monkeypatch):
    seen = {}

    def calculate_metrics(**kwargs):
        seen.update(kwargs)
        return {"inception_score_mean": torch.tensor(1.5), "frechet_inception_distance": 2.0}

    monkeypatch.setitem(sys.modules, "torch_fidelity", types.SimpleNamespace(calculate_metrics=calculate_metrics))
    generated = torch.rand(5, 1, 4, 4) * 2 - 1  # tanh range, grey
    real = torch.rand(3, 3, 4, 4)  # [0, 1]
    out = inception_metrics(generated, real, kid=True, cuda=False, kid_subset_size=2)
    assert out == {"inception_score_mean": 1.5, "frechet_inception_distance": 2.0}
    assert seen["isc"] and seen["fid"] and seen["kid"] and seen["kid_subset_size"] == 2 and not seen["cuda"]
    g, r = seen["input1"], seen["input2"]
    assert len(g) == 5 and len(r) == 3
    assert g[0].dtype == torch.uint8 and g[0].shape == (3, 4, 4)
    expected = ((generated[0, 0] + 1) * 127.5).round().to(torch.uint8)
    assert torch.equal(g[0][0], expected) and torch.equal(g[0][2], expected)
    assert torch.equal(r[1], (real[1] * 255).round().to(torch.uint8))


def test_bad_arguments(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", types.SimpleNamespace(calculate_metrics=dict))
    with pytest.raises(ValueError, match="real"):
        inception_metrics(torch.rand(2, 3, 4, 4), fid=True)
    with pytest.raises(ValueError, match="at least one"):
        inception_metrics(torch.rand(2, 3, 4, 4), isc=False, fid=False)
    with pytest.raises(ValueError, match="shape"):
        to_uint8_images(torch.rand(2, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        to_uint8_images(torch.full((1, 3, 2, 2), float("nan")))
    with pytest.raises(TypeError, match="uint8 or floating"):
        to_uint8_images(torch.zeros(1, 3, 2, 2, dtype=torch.int32))
    assert torch.equal(to_uint8_images(torch.full((1, 3, 1, 1), 300.0), "0..255"), torch.full((1, 3, 1, 1), 255, dtype=torch.uint8))
