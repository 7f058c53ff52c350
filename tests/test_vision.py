"""Vision pieces: the plain-torch view pipeline, the dataset loaders and the frozen-embedding evaluators."""

import gzip
import struct

import numpy as np
import pytest
import torch

pytest.importorskip("datasets")
from spacl_hf.vision import (  # noqa: E402
    ViewPipeline,
    knn_accuracy,
    linear_probe_accuracy,
    load_digits_dataset,
    load_fashion_mnist,
    load_image_folder,
)


def test_view_pipeline_shapes_range_determinism_and_variety():
    images = torch.rand(6, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    a = ViewPipeline(num_views=3, blur_probability=0.5, seed=7)(images)
    b = ViewPipeline(num_views=3, blur_probability=0.5, seed=7)(images)
    assert a.shape == (6, 3, 3, 20, 24) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)  # same seed, same views
    assert not torch.allclose(a[:, 0], a[:, 1])  # the views differ
    c = ViewPipeline(num_views=3, seed=8)(images)
    assert not torch.equal(a, c)


def test_identity_settings_reproduce_the_image():
    images = torch.rand(2, 1, 16, 16)
    pipeline = ViewPipeline(num_views=1, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False, brightness=0.0,
                            contrast=0.0, seed=0)  # fmt: skip
    assert torch.allclose(pipeline(images)[:, 0], images, atol=1e-5)


def test_blur_smooths_and_flip_mirrors():
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None]) % 2
    images = checker.float()[None, None].repeat(4, 1, 1, 1)
    identity = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False, brightness=0.0, contrast=0.0)
    blurred = ViewPipeline(num_views=1, blur_probability=1.0, blur_sigma=(1.0, 1.0), seed=0, **identity)(images)
    assert blurred.std() < 0.5 * images.std()
    ramp = torch.linspace(0, 1, 16)[None, None, None].repeat(64, 1, 16, 1)
    flipped = ViewPipeline(num_views=1, **{**identity, "flip": True}, seed=0)(ramp)[:, 0]
    mirrored = torch.isclose(flipped, ramp.flip(-1), atol=1e-5).flatten(1).all(1)
    assert 10 < int(mirrored.sum()) < 54  # about half the images are mirrored


def test_view_pipeline_checks_arguments():
    with pytest.raises(ValueError, match="`crop_scale`"):
        ViewPipeline(crop_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="`brightness`"):
        ViewPipeline(brightness=1.5)
    with pytest.raises(ValueError, match="`images`"):
        ViewPipeline()(torch.rand(3, 8, 8))


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + b"".join(struct.pack(">I", n) for n in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_loader_reads_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28))
    labels = np.array([0, 3, 9, 1, 2])
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    dataset = load_fashion_mnist("test", folder=tmp_path).with_format("torch")
    assert len(dataset) == 5 and dataset[2]["label"] == 9
    assert torch.allclose(dataset[1]["pixel_values"], torch.tensor(images[1][None] / 255.0, dtype=torch.float32))
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train", folder=tmp_path)
    with pytest.raises(ValueError, match="`split`"):
        load_fashion_mnist("validation", folder=tmp_path)


def test_digits_and_image_folder_loaders(tmp_path):
    digits = load_digits_dataset().with_format("torch")
    assert len(digits) == 1797 and digits[0]["pixel_values"].shape == (1, 8, 8)
    image_module = pytest.importorskip("PIL.Image")
    for name in ("cats", "dogs"):
        (tmp_path / name).mkdir()
        for i in range(2):
            image_module.new("RGB", (8, 8), color=(i * 100, 50, 50)).save(tmp_path / name / f"{i}.png")
    folder = load_image_folder(tmp_path)
    assert len(folder) == 4 and sorted(set(folder["label"])) == [0, 1]
    with pytest.raises(FileNotFoundError, match="`folder`"):
        load_image_folder(tmp_path / "missing")


def test_knn_matches_a_brute_force_vote():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(200, 8, generator=g), torch.randn(40, 8, generator=g)
    train_labels, test_labels = torch.randint(0, 4, (200,), generator=g), torch.randint(0, 4, (40,), generator=g)
    result = knn_accuracy(train, train_labels, test, test_labels, k=(5, 20), temperature=0.1, batch_size=7,
                          show_progress_bar=False)  # fmt: skip
    tn, qn = torch.nn.functional.normalize(train, dim=-1), torch.nn.functional.normalize(test, dim=-1)
    for k in (5, 20):
        hits = 0
        for i in range(40):
            sims = tn @ qn[i]
            order = sims.argsort(descending=True)[:k]
            votes = torch.zeros(4)
            for j in order:
                votes[train_labels[j]] += torch.exp(sims[j] / 0.1)
            hits += int(votes.argmax() == test_labels[i])
        assert result[f"knn@{k}"] == pytest.approx(hits / 40)


def test_linear_probe_separates_separable_data_and_not_noise():
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (300,), generator=g)
    centres = torch.randn(3, 16, generator=g) * 3
    points = centres[labels] + torch.randn(300, 16, generator=g)
    accuracy = linear_probe_accuracy(points[:200], labels[:200], points[200:], labels[200:], show_progress_bar=False)
    assert accuracy > 0.95
    noise = torch.randn(300, 16, generator=g)
    chance = linear_probe_accuracy(noise[:200], labels[:200], noise[200:], labels[200:], show_progress_bar=False)
    assert chance < 0.6
