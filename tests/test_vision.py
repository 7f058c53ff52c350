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
    knn_predict,
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


def test_knn_predict_matches_knn_accuracy_and_checks_shapes():
    g = torch.Generator().manual_seed(2)
    train, test = torch.randn(100, 6, generator=g), torch.randn(30, 6, generator=g)
    train_labels, test_labels = torch.randint(0, 3, (100,), generator=g), torch.randint(0, 3, (30,), generator=g)
    predictions = knn_predict(train, train_labels, test, k=(3, 200), show_progress_bar=False)
    accuracy = knn_accuracy(train, train_labels, test, test_labels, k=(3, 200), show_progress_bar=False)
    for k in (3, 200):
        assert accuracy[f"knn@{k}"] == pytest.approx(float((predictions[k] == test_labels).float().mean()))
    # k above the bank's size: every training point votes
    weights = (
        torch.nn.functional.normalize(test, dim=-1) @ torch.nn.functional.normalize(train, dim=-1).T / 0.07
    ).exp()
    votes = torch.zeros(30, 3).index_add_(1, train_labels, weights)
    assert torch.equal(predictions[200], votes.argmax(1))
    with pytest.raises(ValueError, match="test_embeddings"):
        knn_predict(train, train_labels, test[:, :4], show_progress_bar=False)


def _backbone_configs():
    from transformers import ConvNextConfig, Dinov2Config, ResNetConfig, SwinConfig, ViTConfig

    small = dict(image_size=32, num_channels=3)
    return {
        "vit": (
            ViTConfig(
                patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, **small
            ),
            "cls",
        ),  # fmt: skip
        "dinov2": (
            Dinov2Config(patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, **small),
            "pooler",
        ),  # fmt: skip
        "swin": (
            SwinConfig(patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4, **small),
            "pooler",
        ),  # fmt: skip
        "resnet": (ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1]), "pooler"),
        "convnext": (ConvNextConfig(num_channels=3, num_stages=2, hidden_sizes=[8, 16], depths=[1, 1]), "pooler"),
    }


@pytest.mark.parametrize("family", ["vit", "dinov2", "swin", "resnet", "convnext"])
def test_embedding_model_over_each_backbone_family(family):
    """The adapter from a config (no weights): [B, D] embeddings, the head's size, distinct images apart."""
    transformers = pytest.importorskip("transformers")
    from spacl_hf.common.pooling import EmbeddingModel

    torch.manual_seed(0)
    config, pooling = _backbone_configs()[family]
    backbone = transformers.AutoModel.from_config(config).eval()
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with_head = EmbeddingModel(backbone, pooling=pooling, projection_dim=24).eval()
    output = with_head(pixel_values=images).embeddings
    assert output.shape == (4, 24) and torch.isfinite(output).all()
    assert with_head.embedding_dim == 24
    features = with_head.features(pixel_values=images)
    assert features.shape == (4, with_head.head[0].in_features)
    assert (features.norm(dim=-1) > 0).all()
    assert not torch.allclose(features[0], features[1])  # different images, different embeddings
    bare = EmbeddingModel(backbone, pooling=pooling)
    assert bare(pixel_values=images).embeddings.shape == (4, bare.embedding_dim)
    loss = output.pow(2).sum()
    loss.backward()
    assert all(p.grad is not None for p in with_head.head.parameters())


FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.mark.skipif(not __import__("os").path.isdir(FASHION), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_files():
    test = load_fashion_mnist("test")
    assert len(test) == 10000 and test.features["label"].names[0] == "T-shirt/top"
    rows = test.with_format("torch")[:]
    assert rows["pixel_values"].shape == (10000, 1, 28, 28)
    assert 0 <= rows["pixel_values"].min() and rows["pixel_values"].max() <= 1
    assert torch.bincount(rows["label"]).tolist() == [1000] * 10
    assert len(load_fashion_mnist("train", limit=100)) == 100
