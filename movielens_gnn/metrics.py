"""Top-K ranking metrics over all items at once: Precision, Recall, NDCG and HitRate at K."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

RANKING_METRICS = ("precision", "recall", "ndcg", "hitrate")


def ranking_metrics(scores: Tensor, exclude: Tensor, relevant: Tensor, ks: Sequence[int]) -> dict[str, Tensor]:
    """Mean top-K metrics over the users that have at least one relevant item.

    Each user's items are ranked by score after removing ``exclude`` (the items the user rated in
    training), so known items never take a slot. Relevance is binary.

    Args:
        scores: ``(B, I)`` predicted scores of ``B`` users for all ``I`` items.
        exclude: ``(B, I)`` bool, items to leave out of the ranking.
        relevant: ``(B, I)`` bool, the held-out items that count as hits.
        ks: Cut-offs, e.g. ``(10, 20)``.

    Returns:
        ``{"precision@K": sum over users, ..., "users": number of users counted}`` as 0-d tensors:
        sums, not means, so batches of users can be added up before dividing by ``users``.
    """
    if scores.shape != exclude.shape or scores.shape != relevant.shape:
        raise ValueError(f"scores, exclude and relevant must have one shape, got {scores.shape}, {exclude.shape}, {relevant.shape}.")
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive cut-offs, got {list(ks)}.")
    k_max = min(max(ks), scores.shape[1])
    ranked = scores.masked_fill(exclude, float("-inf")).topk(k_max, dim=1).indices
    hits = relevant.gather(1, ranked).to(scores.dtype) * (~exclude.gather(1, ranked)).to(scores.dtype)
    n_relevant = relevant.sum(1)
    counted = n_relevant > 0
    discount = 1.0 / torch.log2(torch.arange(2, k_max + 2, device=scores.device, dtype=scores.dtype))
    ideal_dcg = torch.cumsum(discount, 0)
    out: dict[str, Tensor] = {"users": counted.sum()}
    for k in ks:
        top = hits[:, : min(k, k_max)]
        n_hits = top.sum(1)
        dcg = (top * discount[: top.shape[1]]).sum(1)
        ideal = ideal_dcg[(n_relevant.clamp(min=1, max=top.shape[1]) - 1)]
        per_user = {
            "precision": n_hits / k,
            "recall": n_hits / n_relevant.clamp(min=1),
            "ndcg": dcg / ideal,
            "hitrate": (n_hits > 0).to(scores.dtype),
        }
        for name in RANKING_METRICS:
            out[f"{name}@{k}"] = per_user[name][counted].sum()
    return out
