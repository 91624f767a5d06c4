"""Top-K ranking metrics over all items at once: Precision, Recall, NDCG, HitRate and MRR at K; an epoch's mean loss.

:func:`ranking_metrics` is the pure, batched computation (sums over a batch of users);
:class:`RankingMetrics` wraps it as a torchmetrics ``Metric`` with sum states, so that batches of
users, and data-parallel ranks that each take a share of the users, add up exactly once.
:class:`MeanLoss` does the same for the training loss of an epoch.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

RANKING_METRICS = ("precision", "recall", "ndcg", "hitrate", "mrr")


def top_k_indices(scores: Tensor, k: int) -> Tensor:
    """``(B, min(k, I))`` indices of each row's ``k`` highest ``(B, I)`` scores (floating or integer; not
    bool, which ``topk`` does not take), best first, equal scores in ascending index order: exactly
    ``scores.sort(dim=1, descending=True, stable=True).indices[:, :k]``.

    Why not that sort: it orders all ``I`` items, about 60x the time of ``topk`` on 84,000 items (7.2 s
    against 0.12 s for 1,024 users on 2 CPU cores). ``topk`` of ``k + 1`` tells whether the k-th value is
    tied with an item outside the top k; where it is not, the top k is a set that ``topk`` found exactly
    and only its order among equal scores needs fixing, in ``(B, k)``. The rows with a tie at the cut (a
    popularity count, a degenerate model, fewer than ``k`` finite scores, a NaN) take the full sort.
    """
    num_items = scores.shape[1]
    k = min(k, num_items)
    if k == num_items:
        return scores.sort(dim=1, descending=True, stable=True).indices
    values, indices = scores.topk(k + 1, dim=1)  # sorted: the (k+1)-th is the best item left out
    exact = values[:, k - 1] > values[:, k]  # (B,) False at a tie across the cut (and with NaN there)
    # Ascending index order first, then a stable sort by score keeps it among equal scores.
    columns = indices[:, :k].sort(dim=1).values
    order = scores.gather(1, columns).sort(dim=1, descending=True, stable=True).indices
    out = columns.gather(1, order)
    if not bool(exact.all()):
        out[~exact] = scores[~exact].sort(dim=1, descending=True, stable=True).indices[:, :k]
    return out


def ranking_metrics(scores: Tensor, exclude: Tensor, relevant: Tensor, ks: Sequence[int]) -> dict[str, Tensor]:
    """Mean top-K metrics over the users that have at least one relevant item.

    Each user's items are ranked by score after removing ``exclude`` (the items the user rated in
    training), so known items never take a slot; equal scores rank the lower item index first.
    A user with a NaN score among the items ranked gets NaN metrics: sorted as the largest value, NaN
    would otherwise rank a diverged model's items by index, which on MovieLens (popular films first)
    scores well above chance and would never trip a finiteness check. Relevance is binary. ``mrr@K`` is the reciprocal
    rank of the first relevant item within the top K (0 when there is none).

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
    # Ties (popularity counts, say) go to the lower item index, so the top K does not depend on which
    # other cut-offs are asked for or on the kernel.
    ranked_scores = scores.masked_fill(exclude, float("-inf"))
    ranked = top_k_indices(ranked_scores, k_max)
    # NaN ranks first, so a row holds a NaN among its ranked items exactly when its first one is NaN: (B,).
    diverged = ranked_scores.gather(1, ranked[:, :1]).isnan().squeeze(1)
    # The arithmetic in float64 whatever the scores' dtype (bf16 scores would round the sums).
    dtype = torch.float64 if scores.device.type != "mps" else torch.float32
    rankable = relevant & ~exclude  # an excluded item can never be a hit, so it is not counted as relevant
    hits = rankable.gather(1, ranked).to(dtype)
    n_relevant = rankable.sum(1)
    counted = n_relevant > 0
    discount = 1.0 / torch.log2(torch.arange(2, k_max + 2, device=scores.device, dtype=dtype))
    ideal_dcg = torch.cumsum(discount, 0)
    out: dict[str, Tensor] = {"users": counted.sum()}
    for k in ks:
        top = hits[:, : min(k, k_max)]
        n_hits = top.sum(1)
        dcg = (top * discount[: top.shape[1]]).sum(1)
        ideal = ideal_dcg[(n_relevant.clamp(min=1, max=top.shape[1]) - 1)]
        first = torch.where(top.any(1), top.argmax(1).to(dtype) + 1, torch.full_like(n_hits, float("inf")))
        per_user = {
            "precision": n_hits / k,
            "recall": n_hits / n_relevant.clamp(min=1),
            "ndcg": dcg / ideal,
            "hitrate": (n_hits > 0).to(dtype),
            "mrr": 1.0 / first,
        }
        for name in RANKING_METRICS:
            out[f"{name}@{k}"] = per_user[name].masked_fill(diverged, float("nan"))[counted].sum()
    return out


class RankingMetrics(Metric):
    """Mean top-K metrics (:data:`RANKING_METRICS` at each K) over the users with a relevant item.

    ``update`` takes any batch of users; states are sums (one per metric and K, plus the number of
    users counted), reduced by summation across processes, so ranks may each score a disjoint share
    of the users and ``compute`` still gives the mean over all of them.

    Args:
        ks: Cut-offs, e.g. ``(10, 20)``.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, ks: Sequence[int] = (10, 20), **kwargs) -> None:
        super().__init__(**kwargs)
        if not ks or min(ks) < 1:
            raise ValueError(f"ks must be positive cut-offs, got {list(ks)}.")
        self.ks = tuple(int(k) for k in ks)
        self.names = [f"{name}@{k}" for k in self.ks for name in RANKING_METRICS]
        for name in (*self.names, "users"):
            self.add_state(_state(name), default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, scores: Tensor, exclude: Tensor, relevant: Tensor) -> None:
        """Add a batch of users: ``(B, I)`` scores, items to exclude, relevant items (see :func:`ranking_metrics`)."""
        sums = ranking_metrics(scores, exclude, relevant, self.ks)
        for name in (*self.names, "users"):
            state = getattr(self, _state(name))
            setattr(self, _state(name), state + sums[name].to(state))

    def compute(self) -> dict[str, Tensor]:
        """``{"ndcg@10": mean, ...}``; zeros when no user had a relevant item."""
        users = self.users_sum.clamp(min=1)
        return {name: (getattr(self, _state(name)) / users).float() for name in self.names}


class MeanLoss(Metric):
    """The mean loss per example over an epoch, from each batch's mean loss weighted by its size.

    Why not ``self.log(loss, on_epoch=True)`` at every step: each such call runs about 0.25 ms of
    Lightning's bookkeeping in Python (2-3% of a 10 ms step, more of a small minibatch's); an
    update here is two in-place additions on the loss's device, with no host synchronisation.
    The states are sums reduced by summation across processes, so under DDP ``compute`` is the mean
    over every rank's examples, not a mean of per-rank means.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # float32, as every model's parameters: it lives on the model's device whatever that is (MPS has no float64).
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, loss: Tensor, batch_size: int) -> None:
        """Add a batch: ``loss`` is its scalar mean loss over ``batch_size`` examples (gradients are not kept)."""
        self.total += loss.detach().to(self.total.dtype) * batch_size
        self.count += batch_size

    def compute(self) -> Tensor:
        """The scalar mean loss per example."""
        return self.total / self.count


def _state(name: str) -> str:
    """A valid attribute name for a metric's sum state: ``ndcg@10`` -> ``ndcg_at_10_sum``."""
    return name.replace("@", "_at_") + "_sum"
