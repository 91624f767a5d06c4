"""Pieces of BPR training (Rendle et al. 2009): uniform negative sampling and the pairwise loss.

Building blocks of the ranking task (issue 12); plain tensor code, no Lightning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NegativeSampler(nn.Module):
    """Draws, for each (user, positive) pair, items the user has no training interaction with.

    Exact and uniform, without rejection loops: with a user's positives sorted as ``p_0 < p_1 <
    ...`` and ``q_j = p_j - j`` (how many non-positives come before ``p_j``), the ``r``-th
    non-positive item is ``r + #{j : q_j <= r}``. Drawing ``r`` uniformly in ``[0, I - deg(u))`` and
    counting with one ``searchsorted`` over all users' ``q`` (offset by ``user * I`` so the keys are
    globally sorted) gives a uniform non-positive for every row at once, on the tensors' device.

    A user who interacted with every item has nothing to draw: their rows get ``-1`` (see
    :attr:`full_users`), for the caller to leave out of the loss.

    Args:
        users: ``(E,)`` user of each training interaction.
        items: ``(E,)`` item of each training interaction (duplicates count once).
        num_users: ``U``.
        num_items: ``I``.
    """

    def __init__(self, users: Tensor, items: Tensor, num_users: int, num_items: int) -> None:
        super().__init__()
        keys = torch.unique(users.long() * num_items + items.long())  # sorted, de-duplicated
        key_users = keys // num_items
        degree = torch.bincount(key_users, minlength=num_users)
        #: ``(F,)`` the users who interacted with every item: no negatives, ``-1`` in their rows.
        self.full_users = torch.nonzero(degree >= num_items).flatten().cpu()
        starts = torch.cumsum(degree, 0) - degree
        rank_in_user = torch.arange(len(keys), device=keys.device) - starts[key_users]
        # q_j = p_j - j, offset per user so one sorted array serves every user.
        self.register_buffer("shifted", key_users * num_items + (keys % num_items - rank_in_user), persistent=False)
        self.register_buffer("starts", starts, persistent=False)
        self.register_buffer("degree", degree, persistent=False)
        self.num_items = num_items

    def forward(self, users: Tensor, per_user: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """``(B, per_user)`` negative items for ``(B,)`` users, drawn independently and uniformly, on
        the sampler's device (``generator``, if given, must live there too); ``-1`` for a user in
        :attr:`full_users`."""
        users = users.long().to(self.degree.device)
        free = (self.num_items - self.degree[users]).unsqueeze(1)  # (B, 1) non-positives per user
        # float64: float32 has 2^24 levels, which would bias the draw over very large catalogues.
        draw = torch.rand(len(users), per_user, device=users.device, dtype=torch.float64, generator=generator)
        rank = (draw * free).long().clamp(max=free - 1)  # r in [0, free)
        query = users.unsqueeze(1) * self.num_items + rank
        before = torch.searchsorted(self.shifted, query, right=True) - self.starts[users].unsqueeze(1)
        if len(self.full_users):
            return (rank + before).masked_fill(free == 0, -1)
        return rank + before


def bpr_loss(positive: Tensor, negative: Tensor) -> Tensor:
    """Mean of ``-log sigmoid(s_pos - s_neg)`` over all pairs.

    Args:
        positive: ``(B,)`` scores of the observed (user, item) pairs.
        negative: ``(B,)`` or ``(B, K)`` scores of sampled negatives for the same users.
    """
    if negative.dim() == positive.dim() + 1:
        positive = positive.unsqueeze(-1)
    pairs = F.softplus(negative - positive)  # softplus(-x) = -log sigmoid(x), stable
    return pairs.sum() / max(pairs.numel(), 1)  # 0, not NaN, for a batch with no pairs


def l2_penalty(*rows: Tensor) -> Tensor:
    """``sum ||row||² / 2 / B`` over the given ``(B, D)`` embedding rows (the BPR/LightGCN papers'
    regularisation of the batch's embeddings; multiply by the weight decay)."""
    batch = rows[0].shape[0]
    return sum(row.pow(2).sum() for row in rows) / 2 / max(batch, 1)
