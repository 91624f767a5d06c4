"""Rating heads: score a (user, item) pair from its two representations."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

HEADS = ("dot", "mlp")
PAIR_CHUNK = 1 << 20
# Scoring every (user, item) pair with one matrix product and then picking the batch's pairs beats
# gathering the batch's rows once the batch covers more than 1/64 of all pairs: a matmul runs
# ~100x faster per multiply-add than a gather. The score matrix is capped at 2^26 entries (256 MiB).
DENSE_PAIR_RATIO = 64
DENSE_PAIR_MAX = 1 << 26


class _PairDot(torch.autograd.Function):
    """Row-wise dot products of gathered rows, in chunks, without keeping the gathers.

    Autograd's ``(U[users] * I[items]).sum(-1)`` keeps two ``(B, D)`` gathers for backward:
    6 GiB each at 25M ratings and 64 dims. This keeps only the tables and the indices and
    gathers again, chunk by chunk, in backward.
    """

    @staticmethod
    def forward(ctx, user_table: Tensor, item_table: Tensor, users: Tensor, items: Tensor) -> Tensor:  # noqa: D401
        out = torch.empty(users.shape[0], dtype=user_table.dtype, device=user_table.device)
        for start in range(0, users.shape[0], PAIR_CHUNK):
            end = start + PAIR_CHUNK
            # index_select is several times faster than advanced indexing on CPU.
            u = user_table.index_select(0, users[start:end])
            out[start:end] = (u * item_table.index_select(0, items[start:end])).sum(-1)
        ctx.save_for_backward(user_table, item_table, users, items)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        user_table, item_table, users, items = ctx.saved_tensors
        grad_user = torch.zeros_like(user_table) if ctx.needs_input_grad[0] else None
        grad_item = torch.zeros_like(item_table) if ctx.needs_input_grad[1] else None
        for start in range(0, users.shape[0], PAIR_CHUNK):
            end = start + PAIR_CHUNK
            g = grad_out[start:end, None]
            if grad_user is not None:
                grad_user.index_add_(0, users[start:end], g * item_table.index_select(0, items[start:end]))
            if grad_item is not None:
                grad_item.index_add_(0, items[start:end], g * user_table.index_select(0, users[start:end]))
        return grad_user, grad_item, None, None


def dense_route(num_users: int, num_items: int, batch: int) -> bool:
    """Whether :func:`pair_dot` scores all ``num_users * num_items`` pairs for a batch of ``batch`` pairs."""
    return num_users * num_items <= min(DENSE_PAIR_MAX, DENSE_PAIR_RATIO * batch)


def pair_dot(user_table: Tensor, item_table: Tensor, users: Tensor, items: Tensor) -> Tensor:
    """``(user_table[users] * item_table[items]).sum(-1)``, by the cheaper of two routes.

    When the batch covers at least ``1 / DENSE_PAIR_RATIO`` of all user–item pairs (full-batch
    training on MovieLens-100K) and the ``(U, I)`` score matrix stays under ``DENSE_PAIR_MAX``
    entries, all pairs are scored with one matrix product and the batch's are picked out.
    Otherwise the rows are gathered chunk by chunk, in memory linear in the batch (25M ratings).

    Args:
        user_table: ``(U, D)`` user representations.
        item_table: ``(I, D)`` item representations.
        users: ``(B,)`` user indices.
        items: ``(B,)`` item indices.

    Returns:
        ``(B,)`` dot products.
    """
    dtype = torch.promote_types(user_table.dtype, item_table.dtype)
    user_table, item_table = user_table.to(dtype), item_table.to(dtype)
    if dense_route(user_table.shape[0], item_table.shape[0], users.shape[0]):
        return (user_table @ item_table.T).flatten().index_select(0, users * item_table.shape[0] + items)
    return _PairDot.apply(user_table, item_table, users, items)


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

    def forward(self, user_table: Tensor, item_table: Tensor, users: Tensor, items: Tensor) -> Tensor:
        """Args:
            user_table: ``(U, D)`` representations of all users.
            item_table: ``(I, D)`` representations of all items.
            users: ``(B,)`` user indices of the pairs.
            items: ``(B,)`` item indices of the pairs.

        Returns:
            ``(B,)`` predicted ratings (unclamped).
        """
        dot = pair_dot(user_table, item_table, users, items)
        # index_select's backward is a scatter-add; nn.Embedding's sorts the indices first (4x slower here).
        user_bias = self.user_bias.weight.squeeze(1).index_select(0, users)
        item_bias = self.item_bias.weight.squeeze(1).index_select(0, items)
        return dot + self.rating_mean + user_bias + item_bias


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

    def forward(self, user_table: Tensor, item_table: Tensor, users: Tensor, items: Tensor) -> Tensor:
        """Same contract as :meth:`DotHead.forward`."""
        # index_select, not advanced indexing: its CPU backward accumulates in a fixed order, so runs repeat exactly.
        user_h, item_h = user_table.index_select(0, users), item_table.index_select(0, items)
        pair = torch.cat([user_h, item_h, user_h * item_h], dim=-1)
        return self.mlp(pair).squeeze(-1) + self.rating_mean
