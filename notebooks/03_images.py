# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 Images: a small CNN trained with SPACL, kNN accuracy and an embedding plot
#
# Fashion-MNIST from the Debian package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/`) when it is
# installed, else scikit-learn's 8x8 digits (no download). Views come from augmentations in plain torch (random
# resized crop and flip through one batched affine warp, brightness/contrast jitter): torchvision does not import
# beside the CPU torch build. Supervised mode: same label = positive candidates. `SPACL_NOTEBOOK_STEPS` sets the
# number of steps.

# %%
import gzip
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.manifold import TSNE
from sklearn.neighbors import KNeighborsClassifier

from spacl_hf.core import AdversarialNegativeGenerator, SPACLCriterion

torch.manual_seed(0)
steps = int(os.environ.get("SPACL_NOTEBOOK_STEPS", "150"))
FASHION = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)


if (FASHION / "train-images-idx3-ubyte.gz").is_file():
    name = "Fashion-MNIST"
    x_train = read_idx(FASHION / "train-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)[:6000]
    y_train = read_idx(FASHION / "train-labels-idx1-ubyte.gz", 8)[:6000]
    x_test = read_idx(FASHION / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)[:1000]
    y_test = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz", 8)[:1000]
    x_train, x_test = x_train / 255.0, x_test / 255.0
else:
    from sklearn.datasets import load_digits

    name = "digits (install dataset-fashion-mnist for Fashion-MNIST)"
    digits = load_digits()
    images = digits.images[:, None] / 16.0
    x_train, y_train, x_test, y_test = images[:1400], digits.target[:1400], images[1400:], digits.target[1400:]
x_train, x_test = torch.tensor(x_train, dtype=torch.float32), torch.tensor(x_test, dtype=torch.float32)
y_train, y_test = torch.tensor(y_train, dtype=torch.long), torch.tensor(y_test, dtype=torch.long)
print(name, tuple(x_train.shape), tuple(x_test.shape))

# %% [markdown]
# ## Views in plain torch

# %%


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random resized crop (scale 0.6-1) + horizontal flip as one affine warp, then brightness/contrast jitter."""
    n = images.shape[0]
    scale = 0.6 + 0.4 * torch.rand(n, generator=generator)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    shift = (1 - scale)[:, None] * (2 * torch.rand(n, 2, generator=generator) - 1)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = scale * flip, scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, align_corners=False, padding_mode="border")
    brightness = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=generator)
    contrast = 0.8 + 0.4 * torch.rand(n, 1, 1, 1, generator=generator)
    mean = warped.mean(dim=(2, 3), keepdim=True)
    return ((warped - mean) * contrast + mean * brightness).clamp(0, 1)


views_rng = torch.Generator().manual_seed(0)
example = augment(x_train[:6].repeat(2, 1, 1, 1), views_rng)
fig, axes = plt.subplots(2, 6, figsize=(9, 3))
for ax, image in zip(axes.flat, example):
    ax.imshow(image[0], cmap="gray")
    ax.axis("off")
plt.suptitle("two augmented views of six images")
plt.show()

# %% [markdown]
# ## Train

# %%
encoder = torch.nn.Sequential(
    torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
    torch.nn.Linear(64, 64),
)  # fmt: skip
criterion = SPACLCriterion(temperature=0.1, generator=AdversarialNegativeGenerator(64, warmup_steps=steps // 3))
optimizer = torch.optim.Adam(encoder.parameters(), lr=2e-3)
batch_rng = torch.Generator().manual_seed(1)
for step in range(steps):
    index = torch.randint(0, len(x_train), (128,), generator=batch_rng)
    images = x_train[index]
    views = torch.stack([encoder(augment(images, views_rng)) for _ in range(2)], dim=1)
    loss, stats = criterion(views, labels=y_train[index], return_stats=True)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % max(1, steps // 5) == 0:
        print(f"step {step:4d}  loss {loss.item():.3f}  kept negatives {stats['kept_negative_fraction']:.2f}")

# %% [markdown]
# ## kNN accuracy on frozen embeddings and a t-SNE picture

# %%
with torch.no_grad():
    train_embeddings = F.normalize(encoder(x_train), dim=-1).numpy()
    test_embeddings = F.normalize(encoder(x_test), dim=-1).numpy()
knn = KNeighborsClassifier(n_neighbors=20, metric="cosine", weights="distance").fit(train_embeddings, y_train)
accuracy = knn.score(test_embeddings, y_test)
print(f"{name}: kNN (k=20, cosine) test accuracy {accuracy:.3f}")

points = TSNE(n_components=2, init="pca", perplexity=30, random_state=0).fit_transform(test_embeddings[:500])
fig, ax = plt.subplots(figsize=(6, 5))
scatter = ax.scatter(points[:, 0], points[:, 1], c=y_test[:500], cmap="tab10", s=8)
ax.legend(*scatter.legend_elements(), title="class", fontsize=7, loc="best")
ax.set_title(f"t-SNE of SPACL test embeddings, kNN accuracy {accuracy:.2f}")
plt.show()
