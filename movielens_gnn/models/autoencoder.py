"""Item autoencoder (I-AutoRec) as one round of rating-weighted message passing."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from movielens_gnn.models.graph import BipartiteGraph
from movielens_gnn.models.graphconv import sparse_matmul


class ItemAutoencoder(nn.Module):
    """Encodes each item from the ratings it received; users get free output embeddings.

    I-AutoRec (Sedhain et al., 2015) reconstructs an item's column of the rating matrix,
    ``r_i in R^U``, through ``sigmoid(V r_i + b)``. Written on the training graph, that code
    is one message-passing step from users to items in which user ``u`` sends its input
    embedding ``V_u`` scaled by its rating (a sum, not normalised):

        ``h_i = sigmoid(sum_{u in N(i)} r_ui * V_u + b)``

    and the reconstruction of ``r_ui`` is ``<W_u, h_i>`` plus biases, i.e. a :class:`DotHead`
    on ``(W, h)``. Unlike :class:`GraphEncoder`, items have no ID embedding: an item is only what its
    raters said about it, which regularises it differently from the GraphConv tower; the two
    make errors that average out (see :class:`RatingModel`'s ``autoencoder_dim``).

    Args:
        num_users: ``U``.
        num_items: ``I``.
        dim: ``K``, the width of the item code.
    """

    def __init__(self, num_users: int, num_items: int, dim: int) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"The autoencoder's width must be a positive integer, got {dim}.")
        self.num_items = num_items
        self.user_input = nn.Parameter(torch.empty(num_users, dim))
        self.code_bias = nn.Parameter(torch.zeros(dim))
        self.user_output = nn.Parameter(torch.empty(num_users, dim))
        # nn.Linear's default init for the two layers of the original network (fan-in U, then K).
        nn.init.uniform_(self.user_input, -1 / math.sqrt(num_users), 1 / math.sqrt(num_users))
        nn.init.uniform_(self.user_output, -1 / math.sqrt(dim), 1 / math.sqrt(dim))

    def forward(self, graph: BipartiteGraph) -> tuple[Tensor, Tensor]:
        """Args:
            graph: The training graph; it must carry edge ratings.

        Returns:
            ``(U, K)`` user output embeddings and ``(I, K)`` item codes. Items without training
            ratings get ``sigmoid(b)``.
        """
        if graph.num_items != self.num_items:
            raise ValueError(f"The graph has {graph.num_items} items; this autoencoder was built for {self.num_items}.")
        codes = torch.sigmoid(sparse_matmul(*graph.rating_matrix_operands(self.user_input), self.user_input)
                              + self.code_bias)
        return self.user_output, codes
