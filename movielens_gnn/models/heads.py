"""Rating heads: score a (user, item) pair from its two representations."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

HEADS = ("dot", "mlp")


class DotHead(nn.Module):
    """``r = <u, i> + mu + b_u + b_i``, the biased matrix-factorisation score.

    Args:
        num_users: ``U``, for the user biases.
        num_items: ``I``, for the item biases.
        rating_mean: ``mu``, the mean training rating.
    """

    def __init__(self, num_users: int, num_items: int, rating_mean: float) -> None:
        super().__init__()
        self.user_bias = nn.Embedding(num_users, 1)
        self.item_bias = nn.Embedding(num_items, 1)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.register_buffer("rating_mean", torch.tensor(float(rating_mean)))

    def forward(self, user_h: Tensor, item_h: Tensor, users: Tensor, items: Tensor) -> Tensor:
        """Args:
            user_h: ``(B, D)`` representations of the pair's users.
            item_h: ``(B, D)`` representations of the pair's items.
            users: ``(B,)`` user indices.
            items: ``(B,)`` item indices.

        Returns:
            ``(B,)`` predicted ratings (unclamped).
        """
        dot = (user_h * item_h).sum(-1)
        return dot + self.rating_mean + self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1)


class MLPHead(nn.Module):
    """An MLP on ``[u, i, u * i]`` plus the mean rating.

    Args:
        in_dim: ``D``, the width of each representation.
        hidden_dims: Hidden layer widths.
        dropout: Dropout after each hidden layer.
        rating_mean: The mean training rating, added to the output.
    """

    def __init__(self, in_dim: int, hidden_dims: Sequence[int], dropout: float, rating_mean: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 3 * in_dim
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("rating_mean", torch.tensor(float(rating_mean)))

    def forward(self, user_h: Tensor, item_h: Tensor, users: Tensor, items: Tensor) -> Tensor:
        """Same contract as :meth:`DotHead.forward`; ``users`` and ``items`` are unused."""
        pair = torch.cat([user_h, item_h, user_h * item_h], dim=-1)
        return self.mlp(pair).squeeze(-1) + self.rating_mean
