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
# installed, else scikit-learn's 8x8 digits (no download). Views come from `spacl_hf.vision.ViewPipeline` (random
# resized crop and flip as one batched affine warp, brightness/contrast jitter, in plain torch: torchvision does not
# import beside the CPU torch build). Supervised mode: same label = positive candidates. `SPACL_NOTEBOOK_STEPS` sets the
# number of steps. Four views per image, so that the dynamic anchor and farthest-point selection have something to
# choose (with two views both are inert by construction); the last cell shows what the image study measured.

# %%
import os

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from sklearn.manifold import TSNE

from spacl_hf.core import AdversarialNegativeGenerator, SPACLCriterion
from spacl_hf.vision import ViewPipeline, knn_accuracy, linear_probe_accuracy, load_digits_dataset, load_fashion_mnist

torch.manual_seed(0)
steps = int(os.environ.get("SPACL_NOTEBOOK_STEPS", "150"))

try:
    train_set, test_set = load_fashion_mnist("train", limit=6000), load_fashion_mnist("test", limit=1000)
    name = "Fashion-MNIST"
except FileNotFoundError:
    digits = load_digits_dataset().train_test_split(test_size=397, seed=0)
    train_set, test_set = digits["train"], digits["test"]
    name = "digits (install dataset-fashion-mnist for Fashion-MNIST)"
train_rows, test_rows = train_set.with_format("torch")[:], test_set.with_format("torch")[:]
x_train, y_train = train_rows["pixel_values"], train_rows["label"]
x_test, y_test = test_rows["pixel_values"], test_rows["label"]
print(name, tuple(x_train.shape), tuple(x_test.shape))

# %% [markdown]
# ## Views in plain torch

# %%
pipeline = ViewPipeline(num_views=2, crop_scale=(0.6, 1.0), seed=0)
example = pipeline(x_train[:6])  # [6, 2, C, H, W]
fig, axes = plt.subplots(2, 6, figsize=(9, 3))
for column in range(6):
    for row in range(2):
        axes[row, column].imshow(example[column, row, 0], cmap="gray")
        axes[row, column].axis("off")
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
# the supervised recipe the image study chose on validation: 3 hard positives, similarity-weighted screening
criterion = SPACLCriterion(temperature=0.1, num_positives=3, screening_weight="similarity",
                           generator=AdversarialNegativeGenerator(64, warmup_steps=steps // 3))  # fmt: skip
optimizer = torch.optim.Adam(encoder.parameters(), lr=2e-3)
train_views = ViewPipeline(num_views=4, seed=0)
batch_rng = torch.Generator().manual_seed(1)
for step in range(steps):
    index = torch.randint(0, len(x_train), (64,), generator=batch_rng)
    views = train_views(x_train[index])  # [64, 4, C, H, W]
    views = encoder(views.flatten(0, 1)).view(64, 4, -1)
    loss, stats = criterion(views, labels=y_train[index], return_stats=True)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % max(1, steps // 5) == 0:
        print(f"step {step:4d}  loss {loss.item():.3f}  anchor moved {stats['anchor_not_first_view']:.2f}  "
              f"positives reordered {stats['positives_reordered']:.2f}  kept negatives "
              f"{stats['kept_negative_fraction']:.2f}")

# %% [markdown]
# ## kNN and linear-probe accuracy on frozen embeddings, and a t-SNE picture

# %%
with torch.no_grad():
    train_embeddings = F.normalize(encoder(x_train), dim=-1)
    test_embeddings = F.normalize(encoder(x_test), dim=-1)
knn = knn_accuracy(train_embeddings, y_train, test_embeddings, y_test, k=(20,))
probe = linear_probe_accuracy(train_embeddings, y_train, test_embeddings, y_test)
accuracy = knn["knn@20"]
print(f"{name}: kNN (k=20, cosine) test accuracy {accuracy:.3f}, linear probe {probe:.3f}")

points = TSNE(n_components=2, init="pca", perplexity=30, random_state=0).fit_transform(test_embeddings[:500].numpy())
fig, ax = plt.subplots(figsize=(6, 5))
scatter = ax.scatter(points[:, 0], points[:, 1], c=y_test[:500], cmap="tab10", s=8)
ax.legend(*scatter.legend_elements(), title="class", fontsize=7, loc="best")
ax.set_title(f"t-SNE of SPACL test embeddings, kNN accuracy {accuracy:.2f}")
plt.show()

# %% [markdown]
# ## What the image study measured
#
# `benchmarks/image_quality.py` trains SPACL, SupCon, SimCLR and cross-entropy on the same batches and views of
# Fashion-MNIST (400 steps, 128 images x 4 views), chooses every setting on a 5,000-image validation split, and reads
# the test split once, in its `final` phase. This cell prints its stored report (`benchmarks/results/`); the README
# has the commands and the analysis.

# %%
import json
from pathlib import Path

import spacl_hf

report_path = Path(spacl_hf.__file__).resolve().parents[1] / "benchmarks" / "results" / "image_quality.json"
if report_path.is_file():
    study = json.loads(report_path.read_text())
    print("validation kNN@20 (%): the two best settings of each method, seeds in brackets")
    for method in ("SPACL supervised", "SPACL self-supervised", "SupCon", "SimCLR", "cross-entropy"):
        for row in [r for r in study["sweep"] if r["configuration"]["method"] == method][:2]:
            score = row["scores"]["knn@20"]
            figure = f"{100 * score['mean']:6.2f} ± {100 * score['std']:.2f}"
            print(f"  {method:22s} {figure} {row['seeds']} {row['settings']}")
    for row in study["final"]:
        score = row["scores"]["knn@20"]
        print(f"test  {row['name']:40s} {100 * score['mean']:6.2f} ± {100 * score['std']:.2f}")
    for pair in study["paired"]:  # SPACL minus its peer, and full SPACL minus SPACL without one component
        difference = pair["knn@20"]
        print(f"paired {pair['dataset']:13s} {pair['pair']:70s} {100 * difference['mean']:+6.2f} ± "
              f"{100 * difference['std']:.2f} points")
else:
    print(f"{report_path} is not there: run `python benchmarks/image_quality.py spread` first.")
