"""Inception-based IS / FID / KID through torch-fidelity, when the user has it installed.

fastgan does not reimplement Inception: these scores are only comparable
with published numbers when computed by the reference network and code, which
torch-fidelity provides (``pip install torch-fidelity``; it fetches the
Inception weights on first use). This module turns fastgan's image tensors
into what torch-fidelity reads and returns its numbers. For an offline
score, see :mod:`fastgan.metrics.digits`.
"""

from __future__ import annotations

import importlib
from typing import Literal

import torch
from torch import Tensor

__all__ = ["ImageDataset", "inception_metrics", "to_uint8_images"]

Range = Literal["auto", "-1..1", "0..1", "0..255"]


def to_uint8_images(images: Tensor, value_range: Range = "auto") -> Tensor:
    """Images ``(N, C, H, W)`` with C in {1, 3} as ``uint8`` RGB in [0, 255].

    ``value_range`` says how float images are scaled: ``"-1..1"`` (a tanh
    generator), ``"0..1"``, ``"0..255"``; ``"auto"`` picks ``"-1..1"`` when any
    value is negative, else ``"0..1"``. Grey images are repeated to three
    channels. Values outside the range are clamped.
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"`images` must be a Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"`images` must have shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        out = images
    else:
        if not images.is_floating_point():
            raise TypeError(f"`images` must be uint8 or floating point, got {images.dtype}")
        if not bool(torch.isfinite(images).all()):
            raise ValueError("`images` contains NaN or infinite values")
        x = images.detach().float()
        if value_range == "auto":
            value_range = "-1..1" if bool((x < 0).any()) else "0..1"
        if value_range == "-1..1":
            x = (x + 1) * 127.5
        elif value_range == "0..1":
            x = x * 255
        elif value_range != "0..255":
            raise ValueError(f"`value_range` must be 'auto', '-1..1', '0..1' or '0..255', got {value_range!r}")
        out = x.round().clamp(0, 255).to(torch.uint8)
    if out.shape[1] == 1:
        out = out.expand(-1, 3, -1, -1)
    return out.cpu().contiguous()


class ImageDataset(torch.utils.data.Dataset):
    """A tensor of uint8 RGB images as the dataset torch-fidelity iterates."""

    def __init__(self, images: Tensor, value_range: Range = "auto"):
        self.images = to_uint8_images(images, value_range)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> Tensor:
        return self.images[index]


def inception_metrics(
    generated: Tensor,
    real: Tensor | None = None,
    *,
    isc: bool = True,
    fid: bool = True,
    kid: bool = False,
    value_range: Range = "auto",
    cuda: bool | None = None,
    **options: object,
) -> dict[str, float]:
    """Inception Score, FID and KID of ``generated`` (against ``real``) via torch-fidelity.

    Args:
        generated: ``(N, C, H, W)`` images (see :func:`to_uint8_images`).
        real: the reference images; needed for ``fid`` and ``kid``.
        isc, fid, kid: which metrics (torch-fidelity's names).
        value_range: how float images are scaled.
        cuda: run Inception on the GPU; default: when one is available.
        **options: passed to ``torch_fidelity.calculate_metrics`` (e.g.
            ``kid_subset_size``, ``samples_find_deep``).

    Returns:
        torch-fidelity's dict, e.g. ``inception_score_mean``,
        ``frechet_inception_distance``, ``kernel_inception_distance_mean``.

    Raises:
        ImportError: torch-fidelity is not installed (it is optional).
        ValueError: ``fid`` or ``kid`` without ``real``, or no metric asked.
    """
    try:
        fidelity = importlib.import_module("torch_fidelity")
    except ImportError as err:
        raise ImportError(
            "fastgan.metrics.inception_metrics needs torch-fidelity (pip install torch-fidelity), "
            "which computes IS / FID / KID with the reference Inception network; fastgan does not "
            "reimplement it. For an offline score use fastgan.metrics.digits."
        ) from err
    if not (isc or fid or kid):
        raise ValueError("ask for at least one of `isc`, `fid`, `kid`")
    if (fid or kid) and real is None:
        raise ValueError("`real` images are needed for `fid` and `kid`")
    kwargs: dict[str, object] = dict(
        input1=ImageDataset(generated, value_range),
        isc=isc,
        fid=fid,
        kid=kid,
        cuda=torch.cuda.is_available() if cuda is None else cuda,
        verbose=False,
    )
    if real is not None:
        kwargs["input2"] = ImageDataset(real, value_range)
    kwargs.update(options)
    return {k: float(v) for k, v in fidelity.calculate_metrics(**kwargs).items()}
