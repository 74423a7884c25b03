"""Offline image metrics for the 8x8 handwritten digits that scikit-learn ships.

A small classifier (an MLP, 64 -> 128 -> 64 -> 10) is trained once on the digits,
deterministically from a fixed seed, and cached on disk; its class probabilities give
an Inception-Score-style score and its 64-dimensional penultimate features a Fréchet
distance, the digits counterparts of IS and FID. Nothing is downloaded: the digits
(1797 images) come with scikit-learn, which this module needs
(``pip install scikit-learn``).

Images are float tensors with values in [0, 1] (scikit-learn's pixel values 0..16
divided by 16), of shape (N, 8, 8), (N, 1, 8, 8) or (N, 64).

The cache directory is ``$FASTGAN_CACHE`` if set, else ``$XDG_CACHE_HOME/fastgan``,
else ``~/.cache/fastgan``. Training takes well under a second on one CPU core.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Literal, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastgan._checks import float_tensor
from fastgan.metrics.scores import frechet_distance_from_features, inception_score

__all__ = [
    "DigitsClassifier",
    "cache_dir",
    "load_digits",
    "digits_classifier",
    "digits_inception_score",
    "digits_frechet_distance",
]

#: Bumped whenever the architecture, the data split or the training changes.
VERSION = 1
_SEED = 0
_TEST_SIZE = 297  # held out: 1500 training images remain
_EPOCHS = 25
_BATCH = 150
_LR = 1e-2

_loaded: dict[Path, "DigitsClassifier"] = {}


def cache_dir() -> Path:
    """Where the trained classifier is kept (see the module docstring)."""
    if os.environ.get("FASTGAN_CACHE"):
        return Path(os.environ["FASTGAN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastgan"


def load_digits(split: Literal["all", "train", "test"] = "all") -> tuple[Tensor, Tensor]:
    """The scikit-learn digits as (images (N, 8, 8) float32 in [0, 1], labels (N,) int64).

    ``split``: ``"train"`` (1500 images) and ``"test"`` (297) are the fixed, seeded
    split the classifier is trained and evaluated on; ``"all"`` is all 1797.
    """
    if split not in ("all", "train", "test"):
        raise ValueError(f"`split` must be 'all', 'train' or 'test', got {split!r}")
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as err:
        raise ImportError(
            "fastgan.metrics.digits needs scikit-learn for the digits data: pip install scikit-learn"
        ) from err
    data = sklearn_digits()
    images = torch.tensor(data.images, dtype=torch.float32) / 16.0
    labels = torch.tensor(data.target, dtype=torch.int64)
    if split == "all":
        return images, labels
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(_SEED))
    idx = order[:_TEST_SIZE] if split == "test" else order[_TEST_SIZE:]
    return images[idx], labels[idx]


def _as_batch(images: object, name: str) -> Tensor:
    x = float_tensor(images, name)
    if x.dim() == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if not ((x.dim() == 3 and x.shape[1:] == (8, 8)) or (x.dim() == 2 and x.shape[1] == 64)):
        raise ValueError(f"`{name}` must have shape (N, 8, 8), (N, 1, 8, 8) or (N, 64), got {tuple(images.shape)}")  # type: ignore[union-attr]
    check_unit_images(x, name, "digits")
    return x.reshape(x.shape[0], 64)


def check_unit_images(x: Tensor, name: str, kind: str) -> None:
    """ValueError naming ``name`` when the batch ``x`` is empty or has values outside [0, 1]."""
    if x.shape[0] == 0:
        raise ValueError(f"`{name}` is empty")
    lo, hi = x.min().item(), x.max().item()
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(
            f"`{name}` has values in [{lo:.3g}, {hi:.3g}]; {kind} images must lie in [0, 1] "
            "(e.g. map a tanh output with (x + 1) / 2)"
        )


class DigitsClassifier(nn.Module):
    """MLP classifier of 8x8 digits: 64 -> 128 -> 64 (features) -> 10 (logits)."""

    feature_dim = 64

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)
        #: Accuracy on the held-out split when it was trained (NaN if never trained).
        self.test_accuracy = float("nan")

    def forward(self, images: Tensor) -> Tensor:
        """Logits (N, 10) for images already flattened to (N, 64); no checks."""
        return self.head(self.body(images))

    def _run(self, images: object, name: str, head: bool) -> Tensor:
        p = next(self.parameters())
        x = _as_batch(images, name).to(p.device, p.dtype)
        with torch.no_grad():
            h = self.body(x)
            return self.head(h) if head else h

    def features(self, images: Tensor) -> Tensor:
        """Penultimate-layer features (N, 64) of checked images."""
        return self._run(images, "images", head=False)

    def probabilities(self, images: Tensor) -> Tensor:
        """Class probabilities p(y|x), shape (N, 10), of checked images."""
        return self._run(images, "images", head=True).softmax(-1)


def _train() -> DigitsClassifier:
    # One thread: the network is tiny (thread hand-offs would cost more than the
    # arithmetic, badly so on a busy machine) and the result does not depend on the
    # machine's thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_single_thread()
    finally:
        torch.set_num_threads(threads)


def fit_classifier(model: nn.Module, x: Tensor, y: Tensor, *, lr: float, epochs: int, batch: int,
                   generator: torch.Generator) -> None:
    """Adam on the cross-entropy of ``model(x)`` against labels ``y``: ``epochs`` passes in
    shuffled minibatches of ``batch`` (the order drawn from ``generator``), gradients enabled."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.enable_grad():  # also when first asked for under torch.no_grad()
        for _ in range(epochs):
            for idx in torch.randperm(len(y), generator=generator).split(batch):
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()


def _train_single_thread() -> DigitsClassifier:
    gen = torch.Generator().manual_seed(_SEED)
    model = DigitsClassifier()
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                bound = layer.in_features**-0.5
                layer.weight.uniform_(-bound, bound, generator=gen)
                layer.bias.uniform_(-bound, bound, generator=gen)
    x, y = load_digits("train")
    fit_classifier(model, x.reshape(-1, 64), y, lr=_LR, epochs=_EPOCHS, batch=_BATCH, generator=gen)
    model.eval()
    xt, yt = load_digits("test")
    with torch.no_grad():
        model.test_accuracy = (model(xt.reshape(-1, 64)).argmax(-1) == yt).double().mean().item()
    return model


def save_atomic(obj: object, path: Path) -> None:
    """``torch.save(obj, path)`` through a temporary file and a rename: concurrent first
    uses of a cache never read a half-written file. Creates the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _file(directory: Path) -> Path:
    return directory / f"digits-classifier-v{VERSION}.pt"


def digits_classifier(
    *, directory: Optional[Union[str, Path]] = None, retrain: bool = False
) -> DigitsClassifier:
    """The trained digits classifier (eval mode, frozen), from memory, disk or training.

    ``directory`` overrides :func:`cache_dir`. ``retrain=True`` trains again and
    overwrites the cached file. A cached file that cannot be read is replaced (with a
    warning). The file is written atomically, so concurrent first uses are safe.
    """
    path = _file(Path(directory) if directory is not None else cache_dir()).resolve()
    if not retrain and path in _loaded:
        return _loaded[path]
    model: Optional[DigitsClassifier] = None
    if not retrain and path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            model = DigitsClassifier()
            model.load_state_dict(saved["state_dict"])
            model.test_accuracy = float(saved["test_accuracy"])
        except Exception as err:  # noqa: BLE001 - any unreadable cache is retrained
            warnings.warn(f"fastgan: retraining the digits classifier; {path} is unreadable ({err})")
            model = None
    if model is None:
        model = _train()
        save_atomic({"state_dict": model.state_dict(), "test_accuracy": model.test_accuracy}, path)
    model.eval().requires_grad_(False)
    _loaded[path] = model
    return model


def digits_inception_score(
    images: Tensor, *, splits: int = 1, classifier: Optional[DigitsClassifier] = None
) -> tuple[float, float]:
    """Inception-Score-style score of digit images under the digits classifier.

    Returns (mean, std) over ``splits`` groups; see
    :func:`fastgan.metrics.scores.inception_score`. Between 1 and 10; the held-out real
    digits score close to 10.
    """
    model = classifier if classifier is not None else digits_classifier()
    return inception_score(model.probabilities(images).double(), splits=splits)


def digits_frechet_distance(
    images_a: Tensor, images_b: Tensor, *, classifier: Optional[DigitsClassifier] = None
) -> float:
    """Fréchet distance between two image sets in the classifier's 64-d feature space.

    The FID formula (:func:`fastgan.metrics.scores.frechet_distance`) on digits
    classifier features; each set needs at least 2 images (well over 64 for a
    full-rank covariance).
    """
    model = classifier if classifier is not None else digits_classifier()
    fa = model._run(images_a, "images_a", head=False).double()
    fb = model._run(images_b, "images_b", head=False).double()
    return frechet_distance_from_features(fa, fb)
