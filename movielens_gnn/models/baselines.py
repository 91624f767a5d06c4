"""Strong simple baselines for top-K recommendation: most popular, and EASE.

Both score every item for a batch of users from the binary training interaction matrix, so they
run through the same evaluation as the graph models (:class:`movielens_gnn.metrics.RankingMetrics`
over all items, training items excluded).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from movielens_gnn.models.graph import quiet_sparse_notices, row_pointers


def interaction_matrix(users: Tensor, items: Tensor, num_users: int, num_items: int, sparse: bool = False) -> Tensor:
    """``(U, I)`` float32 0/1 matrix with a 1 for each (user, item) pair (duplicates count once);
    a coalesced sparse COO tensor with ``sparse=True`` (for catalogues whose dense matrix is large)."""
    if sparse:
        keys = torch.unique(users.long() * num_items + items.long())  # sorted, de-duplicated pairs
        indices = torch.stack([keys // num_items, keys % num_items])
        # Valid by construction (unique, in range): no invariant check, said explicitly so torch does not warn.
        return torch.sparse_coo_tensor(indices, torch.ones(len(keys), device=keys.device), (num_users, num_items),
                                       is_coalesced=True, check_invariants=False)
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
        # Derived from the training data by fit(), like the graph: not written into checkpoints. The
        # training rows are kept as CSR (row starts, item columns), so a large user base costs its
        # interactions, not users x items.
        self.register_buffer("weights", torch.zeros(num_items, num_items), persistent=False)
        self.register_buffer("history_crow", torch.zeros(1, dtype=torch.int64), persistent=False)
        self.register_buffer("history_col", torch.zeros(0, dtype=torch.int64), persistent=False)

    def fit(self, matrix: Tensor) -> EASE:
        """Solve for ``B`` from the ``(U, I)`` binary training matrix, dense or sparse COO (float64 for
        the inverse; the ``I × I`` system is dense whatever the input)."""
        if matrix.is_sparse:
            matrix = matrix.coalesce()
            with quiet_sparse_notices():  # torch flags the CSR it uses inside on every call
                gram = torch.sparse.mm(matrix.t().double(), matrix.double()).to_dense()
            rows, cols = matrix.indices()  # coalesced: sorted by row, then column
        else:
            gram = matrix.T.double() @ matrix.double()
            rows, cols = matrix.nonzero(as_tuple=True)
        gram.diagonal().add_(self.l2)
        inverse = torch.linalg.inv(gram)
        weights = -inverse / inverse.diagonal()
        weights.diagonal().zero_()
        self.weights = weights.float()
        self.history_crow, self.history_col = row_pointers(rows, matrix.shape[0]), cols.contiguous()
        return self

    def rows(self, users: Tensor) -> Tensor:
        """``(B, I)`` dense 0/1 training rows of ``users``."""
        users = users.to(self.history_crow.device).long()
        starts = self.history_crow[users]
        counts = self.history_crow[users + 1] - starts
        row = torch.repeat_interleave(torch.arange(len(users), device=users.device), counts)
        first = torch.repeat_interleave(starts - (torch.cumsum(counts, 0) - counts), counts)
        position = torch.arange(int(counts.sum()), device=users.device) + first
        dense = torch.zeros(len(users), self.weights.shape[0], dtype=self.weights.dtype, device=users.device)
        dense[row, self.history_col[position]] = 1.0
        return dense

    def forward(self, users: Tensor) -> Tensor:
        """``(B, I)`` scores ``X[users] @ B``."""
        return self.rows(users) @ self.weights
