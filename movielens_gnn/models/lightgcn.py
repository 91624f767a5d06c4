"""Encoders for ranking: LightGCN (He et al. 2020) and plain matrix factorisation.

Building blocks of the ranking task (issue 12). Both map the training graph to ``(user_table,
item_table)`` like :class:`~movielens_gnn.models.encoder.GraphEncoder`, so the same heads and
scoring code apply.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from movielens_gnn.models.graph import BipartiteGraph
from movielens_gnn.models.graphconv import spmm


class MatrixFactorization(nn.Module):
    """One free embedding per user and per item; the graph is not used.

    Args:
        num_users: ``U``.
        num_items: ``I``.
        embedding_dim: ``D``.
    """

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64) -> None:
        super().__init__()
        self.user_embedding = nn.Embedding(num_users, embedding_dim)
        self.item_embedding = nn.Embedding(num_items, embedding_dim)
        nn.init.normal_(self.user_embedding.weight, std=0.1)
        nn.init.normal_(self.item_embedding.weight, std=0.1)

    def forward(self, graph: BipartiteGraph | None = None) -> tuple[Tensor, Tensor]:
        """``((U, D), (I, D))`` embedding tables."""
        return self.user_embedding.weight, self.item_embedding.weight


class LightGCN(MatrixFactorization):
    """LightGCN: embeddings propagated without weights or non-linearities, layers averaged.

    ``E⁽ˡ⁺¹⁾ = Â E⁽ˡ⁾`` with ``Â = D^-1/2 A D^-1/2`` the symmetric normalised user-item adjacency
    (the graph's own normalisation: in- and out-degrees are equal on it), and the output
    ``mean(E⁽⁰⁾, ..., E⁽ᴸ⁾)``. Each layer is one sparse product over the training graph.

    Args:
        num_users: ``U``.
        num_items: ``I``.
        embedding_dim: ``D``.
        num_layers: ``L`` (1-4 in the paper; 0 is matrix factorisation).
    """

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64, num_layers: int = 3) -> None:
        super().__init__(num_users, num_items, embedding_dim)
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}.")
        self.num_layers = num_layers

    def forward(self, graph: BipartiteGraph | None = None) -> tuple[Tensor, Tensor]:
        """``((U, D), (I, D))``: the mean over layers 0..L of the propagated embeddings."""
        x = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        total = x
        for _ in range(self.num_layers):
            if graph is None:
                raise ValueError("LightGCN needs the training graph to propagate over.")
            x = spmm(graph, x)
            total = total + x
        out = total / (self.num_layers + 1)
        num_users = self.user_embedding.num_embeddings
        return out[:num_users], out[num_users:]

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}"
