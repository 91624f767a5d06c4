"""Strong simple baselines for top-K recommendation: most popular, and EASE.

Both score every item for a batch of users from the binary training interaction matrix, so they
run through the same evaluation as the graph models (:class:`movielens_gnn.metrics.RankingMetrics`
over all items, training items excluded).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def interaction_matrix(users: Tensor, items: Tensor, num_users: int, num_items: int) -> Tensor:
    """``(U, I)`` float32 0/1 matrix with a 1 for each (user, item) pair (duplicates count once)."""
    matrix = torch.zeros(num_users, num_items, device=users.device)
    matrix[users, items] = 1.0
    return matrix


class Popularity(nn.Module):
    """Ranks items by their number of training interactions, the same list for every user."""

    def __init__(self, num_items: int) -> None:
        super().__init__()
        self.register_buffer("counts", torch.zeros(num_items))

    def fit(self, matrix: Tensor) -> Popularity:
        """Count each item's interactions in the ``(U, I)`` training matrix."""
        self.counts = matrix.sum(0)
        return self

    def forward(self, users: Tensor) -> Tensor:
        """``(B, I)`` scores: the item counts, repeated per user."""
        return self.counts.expand(len(users), -1)


class EASE(nn.Module):
    """EASE (Steck, 2019): a closed-form item-item model ``B`` with a zero diagonal.

    ``B = argmin ||X - XB||² + λ||B||²  s.t. diag(B) = 0``, solved as ``P = (XᵀX + λI)⁻¹``,
    ``B_ij = -P_ij / P_jj`` (``B_jj = 0``). A user's scores are their training row times ``B``.

    Args:
        num_items: Number of items ``I`` (``B`` is ``I × I``).
        l2: The ridge weight ``λ`` (chosen on validation; a few hundred on ml-100k).
    """

    def __init__(self, num_items: int, l2: float = 500.0) -> None:
        super().__init__()
        if not l2 > 0:
            raise ValueError(f"EASE's l2 must be positive, got {l2}.")
        self.l2 = float(l2)
        # Derived from the training data by fit(), like the graph: not written into checkpoints.
        self.register_buffer("weights", torch.zeros(num_items, num_items), persistent=False)
        self.register_buffer("history", torch.zeros(0, num_items), persistent=False)

    def fit(self, matrix: Tensor) -> EASE:
        """Solve for ``B`` from the ``(U, I)`` binary training matrix (float64 for the inverse)."""
        gram = (matrix.T.double() @ matrix.double())
        gram.diagonal().add_(self.l2)
        inverse = torch.linalg.inv(gram)
        weights = -inverse / inverse.diagonal()
        weights.diagonal().zero_()
        self.weights = weights.float()
        self.history = matrix
        return self

    def forward(self, users: Tensor) -> Tensor:
        """``(B, I)`` scores ``X[users] @ B``."""
        return self.history[users] @ self.weights
