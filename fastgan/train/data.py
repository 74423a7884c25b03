"""Offline data sources for the training loops: 2-D toys, scikit-learn's digits, image folders, any Dataset.

Every source draws its batches from a ``torch.Generator`` it owns, so that a
checkpoint can store the generator's state and a resumed run draws the same
batches as an uninterrupted one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from fastgan.metrics import grid_centres, ring_centres, sample_mixture

__all__ = [
    "DataSource",
    "MixtureData",
    "SwissRoll",
    "TensorData",
    "DatasetData",
    "grid25",
    "ring8",
    "swiss_roll",
    "digits",
    "image_folder",
    "make_data",
    "DATA_NAMES",
]


class DataSource:
    """A source of real batches: ``sample(n)`` -> (n, ...) float32 tensor on the CPU.

    Attributes:
        shape: the shape of one sample.
        generator: the ``torch.Generator`` all draws come from (its state is checkpointed).
        centres, sigma: for Gaussian-mixture toys, the true centres (K, 2) and the
            standard deviation of every mode (used by ``mode_metrics``); else None.
        is_image: whether samples are (C, H, W) images in [-1, 1].
    """

    shape: tuple[int, ...] = ()
    centres: Optional[Tensor] = None
    sigma: Optional[float] = None
    is_image: bool = False
    name: str = "data"

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(int(seed))

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:  # pragma: no cover - abstract
        """``n`` samples drawn from ``generator`` (default: the source's own)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Tensor]:
        """The generator's state (a uint8 tensor), for checkpoints."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restores the generator's state saved by :meth:`state_dict`."""
        self.generator.set_state(state["generator"])


class MixtureData(DataSource):
    """A mixture of isotropic Gaussians N(centre_k, sigma^2 I) with equal weights."""

    def __init__(self, centres: Tensor, sigma: float, *, name: str = "mixture", seed: int = 0) -> None:
        super().__init__(seed)
        if not isinstance(centres, Tensor) or centres.dim() != 2 or centres.shape[0] == 0:
            raise ValueError("`centres` must be a non-empty (K, d) tensor")
        if not (isinstance(sigma, (int, float)) and sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"`sigma` must be a finite number > 0, got {sigma!r}")
        self.centres = centres.float()
        self.sigma = float(sigma)
        self.shape = (centres.shape[1],)
        self.name = name

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        return sample_mixture(self.centres, self.sigma, n, generator=generator or self.generator)

    def log_density(self, points: Tensor) -> Tensor:
        """Log density of the mixture at (M, d) ``points`` (for plots)."""
        d2 = torch.cdist(points.double(), self.centres.double()).square()
        dim = self.centres.shape[1]
        log_norm = -0.5 * dim * math.log(2 * math.pi * self.sigma**2) - math.log(self.centres.shape[0])
        return torch.logsumexp(-d2 / (2 * self.sigma**2), dim=1) + log_norm


def grid25(seed: int = 0) -> MixtureData:
    """VEEGAN / PacGAN grid: 25 Gaussians at (-4 + 2i, -4 + 2j), i, j in 0..4, sigma = 0.05."""
    return MixtureData(grid_centres(5, 2.0), 0.05, name="grid25", seed=seed)


def ring8(seed: int = 0) -> MixtureData:
    """VEEGAN / PacGAN ring: 8 Gaussians evenly spaced on a circle of radius 2, sigma = 0.02."""
    return MixtureData(ring_centres(8, 2.0), 0.02, name="ring8", seed=seed)


class SwissRoll(DataSource):
    """scikit-learn's 2-D swiss roll (x, z of ``make_swiss_roll``), scaled by 1/5, noise 0.25 before scaling."""

    def __init__(self, noise: float = 0.25, scale: float = 0.2, seed: int = 0) -> None:
        super().__init__(seed)
        self.noise, self.scale = float(noise), float(scale)
        self.shape = (2,)
        self.name = "swissroll"

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        g = generator or self.generator
        # make_swiss_roll's formula, drawn from our generator: t ~ 1.5 pi (1 + 2 U).
        t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g, dtype=torch.float64))
        x = torch.stack([t * t.cos(), t * t.sin()], dim=1)
        x = x + self.noise * torch.randn(n, 2, generator=g, dtype=torch.float64)
        return (self.scale * x).float()


def swiss_roll(seed: int = 0) -> SwissRoll:
    """The 2-D swiss roll toy."""
    return SwissRoll(seed=seed)


class TensorData(DataSource):
    """Uniform draws with replacement from a fixed tensor of samples (N, ...)."""

    def __init__(self, samples: Tensor, *, name: str = "tensor", is_image: bool = False, seed: int = 0) -> None:
        super().__init__(seed)
        if not isinstance(samples, Tensor) or samples.dim() < 2 or samples.shape[0] == 0:
            raise ValueError("`samples` must be a non-empty (N, ...) tensor")
        self.samples = samples.float().contiguous()
        self.shape = tuple(samples.shape[1:])
        self.is_image = is_image
        self.name = name

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        index = torch.randint(self.samples.shape[0], (n,), generator=generator or self.generator)
        return self.samples[index]


def digits(size: int = 8, seed: int = 0) -> TensorData:
    """scikit-learn's 8x8 digits (1,797 images, bundled with scikit-learn: no download) in [-1, 1].

    ``size``: 8 (as stored) or a larger side such as 32 (bilinear resize), giving (1, size, size).
    """
    from sklearn.datasets import load_digits

    images = torch.from_numpy(load_digits().images).float() / 16.0  # (N, 8, 8) in [0, 1]
    images = images.unsqueeze(1)
    if size != 8:
        if not isinstance(size, int) or size < 8:
            raise ValueError(f"`size` must be an int >= 8, got {size!r}")
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return TensorData(images * 2 - 1, name=f"digits{size}", is_image=True, seed=seed)


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def image_folder(path: str | Path, size: int = 32, seed: int = 0) -> TensorData:
    """The user's own images: every image file under ``path``, RGB, resized to size x size, in [-1, 1]."""
    import numpy as np
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"image folder `path`={str(path)!r} is not a directory")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"image folder `path`={str(path)!r} holds no image ({', '.join(sorted(_IMAGE_SUFFIXES))})")
    arrays = []
    for f in files:
        try:
            with Image.open(f) as im:
                arrays.append(np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32))
        except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for truncated or damaged files
            raise ValueError(f"image folder `path`={str(path)!r}: cannot read {f} ({err})") from err
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1
    return TensorData(images, name=root.name, is_image=True, seed=seed)


class DatasetData(DataSource):
    """Any ``torch.utils.data.Dataset`` (items are tensors, or tuples whose first item is the sample)."""

    def __init__(self, dataset: torch.utils.data.Dataset, *, is_image: Optional[bool] = None, seed: int = 0) -> None:
        super().__init__(seed)
        if not hasattr(dataset, "__len__") or len(dataset) == 0:
            raise ValueError("`dataset` must be a non-empty map-style Dataset with __len__")
        self.dataset = dataset
        first = self._item(0)
        self.shape = tuple(first.shape)
        self.is_image = (first.dim() == 3) if is_image is None else bool(is_image)
        self.name = type(dataset).__name__

    def _item(self, i: int) -> Tensor:
        item = self.dataset[i]
        if isinstance(item, (tuple, list)):
            item = item[0]
        return torch.as_tensor(item).float()

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        index = torch.randint(len(self.dataset), (n,), generator=generator or self.generator)
        return torch.stack([self._item(int(i)) for i in index])


DATA_NAMES = ("grid25", "ring8", "swissroll", "digits", "digits32")


def make_data(data: object, seed: int = 0) -> DataSource:
    """A :class:`DataSource` from a name (see :data:`DATA_NAMES`), a directory, a Dataset or a tensor."""
    if isinstance(data, DataSource):
        return data
    if isinstance(data, Tensor):
        return TensorData(data, is_image=data.dim() == 4, seed=seed)
    if isinstance(data, torch.utils.data.Dataset):
        return DatasetData(data, seed=seed)
    if isinstance(data, (str, Path)):
        name = str(data)
        if name == "grid25":
            return grid25(seed)
        if name == "ring8":
            return ring8(seed)
        if name in ("swissroll", "swiss_roll"):
            return swiss_roll(seed)
        if name == "digits":
            return digits(8, seed)
        if name == "digits32":
            return digits(32, seed)
        if Path(name).is_dir():
            return image_folder(name, seed=seed)
        raise ValueError(f"unknown `data`={name!r}: expected one of {', '.join(DATA_NAMES)} or an image directory")
    raise TypeError(f"`data` must be a name, a directory, a Dataset or a Tensor, got {type(data).__name__}")
