"""Slow, loop-based reference implementations of SPACL, written from the specification, for the tests."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def cos(u: torch.Tensor, v: torch.Tensor) -> float:
    return float(F.cosine_similarity(u.double(), v.double(), dim=0))


def ref_anchor(views, view_mask=None):
    batch, num_views, _ = views.shape
    out = []
    for b in range(batch):
        valid = [v for v in range(num_views) if view_mask is None or view_mask[b, v]]
        best, best_h = (valid[0] if valid else 0), -math.inf
        for u in valid:
            others = [w for w in valid if w != u]
            h = sum(1 - cos(views[b, u], views[b, w]) for w in others) / len(others) if others else 0.0
            if h > best_h + 1e-9:
                best, best_h = u, h
        out.append(best)
    return out


def ref_farthest(anchor, candidates, allowed, k, chosen=()):
    """candidates: list of vectors; allowed: list of bools; chosen: picks to continue from. Returns chosen indices
    (<= k)."""
    chosen = list(chosen)
    chosen_vecs = [anchor] + [candidates[c] for c in chosen]
    for _ in range(k - len(chosen)):
        best, best_d = None, -math.inf
        for c, vec in enumerate(candidates):
            if not allowed[c] or c in chosen:
                continue
            d = min(1 - cos(vec, s) for s in chosen_vecs)
            if d > best_d + 1e-9:
                best, best_d = c, d
        if best is None:
            break
        chosen.append(best)
        chosen_vecs.append(candidates[best])
    return chosen


def ref_screen(logits, mass, min_keep, valid):
    """One row: indices kept by the shortest top prefix holding `mass` of the softmax weight (ties kept)."""
    idx = [i for i in range(len(logits)) if valid[i]]
    if not idx:
        return set()
    idx.sort(key=lambda i: -logits[i])
    total = sum(math.exp(logits[i]) for i in idx)
    kept, acc = [], 0.0
    for i in idx:
        if acc >= mass * total - 1e-12 * total and len(kept) >= min_keep:
            break
        kept.append(i)
        acc += math.exp(logits[i])
    threshold = logits[kept[-1]]
    return {i for i in idx if logits[i] >= threshold}


def ref_screen_similarity(cosines, mass, min_keep, valid):
    """One row, the paper's rule on raw cosines: with a positive total, the shortest top prefix whose cumulative
    cosine reaches ``mass * total`` (at least ``min_keep``; ties with the last kept one kept); with a total <= 0,
    only the ``min_keep`` most similar (ties kept)."""
    idx = [i for i in range(len(cosines)) if valid[i]]
    if not idx:
        return set()
    idx.sort(key=lambda i: -cosines[i])
    total = sum(cosines[i] for i in idx)
    kept, acc = [], 0.0
    if total > 0:
        for i in idx:
            if acc >= mass * total - 1e-12 * abs(total) and len(kept) >= min_keep:
                break
            kept.append(i)
            acc += cosines[i]
    else:
        kept = idx[:min_keep]
    if not kept:
        return set()
    threshold = cosines[kept[-1]]
    return {i for i in idx if cosines[i] >= threshold}


def ref_spacl(
    views,
    temperature,
    num_positives,
    mass,
    min_negatives=1,
    labels=None,
    negatives=None,
    dynamic=True,
    farthest=True,
    screening=True,
    candidate_views="all",
    mask_duplicates=True,
    screening_weight="softmax",
    positive_pool="labels",
    anchor_mode="one",
):
    """Per-anchor loop implementation of the whole criterion (no generator); returns the mean loss (float)."""
    views = F.normalize(views.double(), dim=-1)
    batch, num_views, _ = views.shape
    if anchor_mode == "every_view":  # every view of every sample is an anchor
        anchor_of = [(i, v) for i in range(batch) for v in range(num_views)]
    else:
        anchor_of = list(enumerate(ref_anchor(views) if dynamic else [0] * batch))
    losses = []
    for i, anchor in anchor_of:
        a = views[i, anchor]
        # positive candidates: own views first, then same-label samples' views in order
        cands, cand_key = [], []
        for v in range(num_views):
            if v != anchor:
                cands.append(views[i, v])
                cand_key.append((i, v))
        num_own = len(cands)
        if labels is not None and positive_pool != "views":
            for j in range(batch):
                if j != i and labels[j] == labels[i]:
                    for v in range(num_views):
                        cands.append(views[j, v])
                        cand_key.append((j, v))
        if farthest and positive_pool == "views+labels":  # own views first (farthest among them), then classmates
            own_first = ref_farthest(a, cands, [c < num_own for c in range(len(cands))], num_positives)
            chosen = ref_farthest(a, cands, [True] * len(cands), num_positives, chosen=own_first)
        elif farthest:
            chosen = ref_farthest(a, cands, [True] * len(cands), num_positives)
        else:
            chosen = list(range(min(num_positives, len(cands))))
        if not chosen:
            continue
        pos = [cands[c] for c in chosen]
        keyset = [a] + pos
        # negatives
        negs = []
        for j in range(batch):
            if j == i or (labels is not None and labels[j] == labels[i]):
                continue
            for v in range(num_views):
                if candidate_views == "columns" and v == 0:
                    continue
                negs.append(views[j, v])
        if negatives is not None:
            for j in range(negatives.shape[0]):
                for n in range(negatives.shape[1]):
                    negs.append(F.normalize(negatives[j, n].double(), dim=0))
        if mask_duplicates:
            negs = [n for n in negs if not any(torch.equal(n, k) for k in keyset)]
        pos_logits = [cos(a, p) / temperature for p in pos]
        neg_logits = [cos(a, n) / temperature for n in negs]
        if screening and screening_weight == "similarity":
            kept = ref_screen_similarity(neg_logits, mass, min_negatives, [True] * len(neg_logits))
            neg_logits = [neg_logits[k] for k in sorted(kept)]
        elif screening:
            kept = ref_screen(neg_logits, mass, min_negatives, [True] * len(neg_logits))
            neg_logits = [neg_logits[k] for k in sorted(kept)]
        lse_all = torch.logsumexp(torch.tensor(pos_logits + neg_logits, dtype=torch.float64), 0)
        lse_pos = torch.logsumexp(torch.tensor(pos_logits, dtype=torch.float64), 0)
        losses.append(float(lse_all - lse_pos))
    return sum(losses) / max(1, len(losses))
