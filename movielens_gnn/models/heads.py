"""Rating heads: score a (user, item) pair from its two representations."""

from __future__ import annotations

import weakref
from typing import Literal, Sequence

import torch
from torch import Tensor, nn

from movielens_gnn.models.dropout import Dropout
from movielens_gnn.models.graph import ColumnSlices, cached_slices, csr_layout, csr_tensor, slice_width

HEADS = ("dot", "mlp")
PAIR_ROUTES = ("auto", "dense", "gather", "sparse")
PairRoute = Literal["auto", "dense", "gather", "sparse"]
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


class PairPattern:
    """A fixed set of ``(user, item)`` pairs laid out as CSR (rows = users) and as its transpose, once.

    This is what the ``sparse`` route of :func:`pair_dot` runs on: the forward pass is one sampled dense
    product (SDDMM, ``torch.sparse.sampled_addmm``) over the pattern, the backward two sparse-dense
    products (``grad_U = G @ V``, ``grad_V = Gᵀ @ U``, ``G`` the pattern with the incoming gradient as
    values): no ``(B, D)`` gathers and no atomic scatter-adds. Building it sorts the pairs twice, so it
    pays off when the same pairs are scored again (full-batch training: every epoch). Pairs that come
    already in CSR order (user-major, then item: how the data module hands out full-batch training
    edges) need no permutation between their order and the pattern's, in either pass.

    Args:
        users: ``(B,)`` user indices.
        items: ``(B,)`` item indices.
        num_users: ``U``.
        num_items: ``I``.
    """

    def __init__(self, users: Tensor, items: Tensor, num_users: int, num_items: int) -> None:
        self.shape = (num_users, num_items)
        users, items = users.long(), items.long()
        self.crow, self.col, order = csr_layout(users, items, num_users, num_items)  # order: CSR position -> pair
        arange = torch.arange(len(order), device=order.device)
        self.in_order = bool(torch.equal(order, arange))  # one host sync, at build time only
        # pair -> CSR position; not kept for pairs in CSR order (the identity: 8 bytes a pair for nothing).
        self.position: Tensor | None = None
        if not self.in_order:
            self.position = torch.empty_like(order)
            self.position[order] = arange
        # The transpose, laid out from the CSR entries: order_t maps a transposed position to a CSR position.
        self.crow_t, self.col_t, self.order_t = csr_layout(self.col, users[order], num_items, num_users)
        # (transposed?, slice width) -> (ColumnSlices, CSR position of each sliced position): matmul's.
        self._slices: dict[tuple[bool, int], tuple[ColumnSlices, Tensor]] = {}

    def csr(self, values: Tensor) -> Tensor:
        """``(U, I)`` sparse CSR with ``values`` in CSR order."""
        return csr_tensor(self.crow, self.col, values, self.shape)

    def csr_t(self, values: Tensor) -> Tensor:
        """``(I, U)`` sparse CSR of the transpose; ``values`` in (untransposed) CSR order."""
        return csr_tensor(self.crow_t, self.col_t, values.index_select(0, self.order_t), self.shape[::-1])

    def matmul(self, values: Tensor, x: Tensor, transpose: bool = False) -> Tensor:
        """``G @ x`` (``(U, D)`` from ``x`` ``(I, D)``), or ``Gᵀ @ x`` with ``transpose``, for ``G`` the
        pattern with ``values`` in CSR order; in column slices on CPU when ``x``'s rows overflow the
        caches (:func:`~movielens_gnn.models.graph.slice_width`: ``Gᵀ @ U`` at 25M ratings, 64 dims,
        0.65 s in one piece against 0.14 s in slices of 16,384 users, measured on 2 cores)."""
        crow, col, n_cols = (self.crow_t, self.col_t, self.shape[0]) if transpose else (self.crow, self.col, self.shape[1])
        width = slice_width(len(crow) - 1, n_cols, len(col), x.shape[1], x.element_size(), x.device)
        if width is None:
            return (self.csr_t(values) if transpose else self.csr(values)) @ x
        slices, order = cached_slices(self._slices, transpose, crow, col, n_cols, width,
                                      lambda order: (self.order_t[order].to(order.dtype) if transpose else order,))
        return slices.matmul(values.index_select(0, order), x)


class _SampledDot(torch.autograd.Function):
    """Dot products of a :class:`PairPattern`'s pairs: SDDMM forward, two SpMMs backward."""

    @staticmethod
    def forward(ctx, user_table: Tensor, item_table: Tensor, pattern: PairPattern) -> Tensor:  # noqa: D401
        zeros = torch.zeros(len(pattern.col), dtype=user_table.dtype, device=user_table.device)
        values = torch.sparse.sampled_addmm(pattern.csr(zeros), user_table, item_table.T, beta=0.0).values()
        ctx.save_for_backward(user_table, item_table)
        ctx.pattern = pattern
        return values.clone() if pattern.in_order else values.index_select(0, pattern.position)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        user_table, item_table = ctx.saved_tensors
        pattern = ctx.pattern
        if pattern.in_order:
            grad = grad_out.contiguous()
        else:
            grad = torch.empty_like(grad_out)
            grad[pattern.position] = grad_out  # into CSR order
        grad_user = pattern.matmul(grad, item_table) if ctx.needs_input_grad[0] else None
        grad_item = pattern.matmul(grad, user_table, transpose=True) if ctx.needs_input_grad[1] else None
        return grad_user, grad_item, None


SPARSE_DTYPES = (torch.float32, torch.float64)  # sampled_addmm's kernels (no half precision on CPU)


def dense_route(num_users: int, num_items: int, batch: int) -> bool:
    """Whether :func:`pair_dot` scores all ``num_users * num_items`` pairs for a batch of ``batch`` pairs."""
    return num_users * num_items <= min(DENSE_PAIR_MAX, DENSE_PAIR_RATIO * batch)


def resolve_route(route: PairRoute, pattern: PairPattern | None, dtype: torch.dtype, num_users: int, num_items: int,
                  batch: int) -> str:
    """The route :func:`pair_dot` takes: ``route`` itself, or for ``auto`` the rule its docstring gives."""
    if route not in PAIR_ROUTES:
        raise ValueError(f"Unknown pair route {route!r}; valid values: {', '.join(PAIR_ROUTES)}.")
    if route != "auto":
        return route
    if pattern is not None and dtype in SPARSE_DTYPES:
        return "sparse"
    return "dense" if dense_route(num_users, num_items, batch) else "gather"


def pair_dot(user_table: Tensor, item_table: Tensor, users: Tensor, items: Tensor, route: PairRoute = "auto",
             pattern: PairPattern | None = None) -> Tensor:
    """``(user_table[users] * item_table[items]).sum(-1)``, by one of three routes.

    * ``sparse``: SDDMM forward, two SpMMs backward over ``pattern`` (a :class:`PairPattern` of exactly
      these pairs; built here when not given). ``auto`` takes it whenever a pattern is given: it does
      ``B·D`` work against the dense route's ``U·I·D`` (measured on 2 cores at u1, forward + backward:
      2.5 vs 7.2 ms at 64 dims, 10.7 vs 33 ms at 500) and needs no ``(B, D)`` gathers.
    * ``dense``: all ``U × I`` pairs scored with one matrix product, the batch's picked out. ``auto`` takes it
      without a pattern when the batch covers at least ``1 / DENSE_PAIR_RATIO`` of all pairs and the
      score matrix stays under ``DENSE_PAIR_MAX`` entries.
    * ``gather``: the rows gathered chunk by chunk, memory linear in the batch; ``auto``'s fallback.

    Args:
        user_table: ``(U, D)`` user representations.
        item_table: ``(I, D)`` item representations.
        users: ``(B,)`` user indices.
        items: ``(B,)`` item indices.
        route: One of :data:`PAIR_ROUTES`.
        pattern: The pairs' :class:`PairPattern`, when the caller keeps one.

    Returns:
        ``(B,)`` dot products.
    """
    dtype = torch.promote_types(user_table.dtype, item_table.dtype)
    user_table, item_table = user_table.to(dtype), item_table.to(dtype)
    route = resolve_route(route, pattern, dtype, user_table.shape[0], item_table.shape[0], users.shape[0])
    if route == "dense":
        return (user_table @ item_table.T).flatten().index_select(0, users * item_table.shape[0] + items)
    if route == "sparse":
        if pattern is None:
            pattern = PairPattern(users, items, user_table.shape[0], item_table.shape[0])
        if dtype not in SPARSE_DTYPES:  # asked for by name with half tables: no such kernels, so in float32
            return _SampledDot.apply(user_table.float(), item_table.float(), pattern).to(dtype)
        return _SampledDot.apply(user_table, item_table, pattern)
    return _PairDot.apply(user_table, item_table, users, items)


# The dot head's biases go into the sparse route's tables from this many pairs on (CPU). Alternating
# epochs on 2 cores: 1M ratings 0.071 -> 0.066 s, 10M 1.48 -> 1.34 s, 25M 5.93 -> 5.33 s; at u1's 76,000
# the gathers are cache-resident and it changed nothing (gcn_dot step 6.68 vs 6.72 ms), while the new
# summation order would move the small configs' training runs away from their published figures.
BIAS_COLUMNS_MIN_PAIRS = 1 << 19


class PatternCache:
    """The :class:`PairPattern` of edge sets that come back (the same tensors, full-batch, every epoch).

    A pattern is built the second time the very same ``(users, items)`` tensors are scored, so
    minibatches (new tensors every step) never pay for one. Tensors are held by weak reference:
    a cached pattern goes with its edge set.
    """

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._seen: list[tuple[weakref.ref, weakref.ref, tuple[int, int], PairPattern | None]] = []

    def get(self, users: Tensor, items: Tensor, num_users: int, num_items: int) -> PairPattern | None:
        self._seen = [entry for entry in self._seen if entry[0]() is not None and entry[1]() is not None]
        shape = (num_users, num_items)
        for index, (users_ref, items_ref, seen_shape, pattern) in enumerate(self._seen):
            if users_ref() is users and items_ref() is items and seen_shape == shape:
                if pattern is None:  # second sighting: worth building
                    pattern = PairPattern(users, items, num_users, num_items)
                    self._seen[index] = (users_ref, items_ref, shape, pattern)
                return pattern
        self._seen = (self._seen + [(weakref.ref(users), weakref.ref(items), shape, None)])[-self.size:]
        return None

    def __getstate__(self) -> dict:
        # Weak references do not pickle (torch.save of a whole model); the patterns are rebuilt on demand.
        return {"size": self.size, "_seen": []}


class DotHead(nn.Module):
    """``r = <u, i> + mu + b_u + b_i``, the biased matrix-factorisation score.

    Args:
        num_users: ``U``, for the user biases.
        num_items: ``I``, for the item biases.
        rating_mean: ``mu``, the mean training rating.
        pair_route: How the dot products are computed (:func:`pair_dot`); ``auto`` picks ``sparse`` for
            edge sets scored again (full batch, from the second epoch: :class:`PatternCache`), else
            ``dense`` for batches that cover many pairs, else ``gather``.
    """

    def __init__(self, num_users: int, num_items: int, rating_mean: float, pair_route: PairRoute = "auto") -> None:
        super().__init__()
        if pair_route not in PAIR_ROUTES:
            raise ValueError(f"Unknown pair route {pair_route!r}; valid values: {', '.join(PAIR_ROUTES)}.")
        self.pair_route = pair_route
        self.patterns = PatternCache()
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
        pattern = None
        if self.pair_route in ("auto", "sparse"):
            pattern = self.patterns.get(users, items, len(user_table), len(item_table))
        dtype = torch.promote_types(user_table.dtype, item_table.dtype)
        route = resolve_route(self.pair_route, pattern, dtype, len(user_table), len(item_table), len(users))
        if route == "sparse" and user_table.device.type == "cpu" and len(users) >= BIAS_COLUMNS_MIN_PAIRS:
            # The biases ride in two extra columns, <[u, b_u, 1], [i, 1, b_i]> = <u, i> + b_u + b_i: the
            # SDDMM adds them and the backward SpMMs sum their gradients, in place of two (B,) gathers,
            # their scatter-adds and two (B,) additions (0.2 s of a 1.9 s epoch at 10M ratings on 2 cores).
            # Not on GPUs, where those are cheap and 64-wide rows keep cuSPARSE's operands aligned.
            return pair_dot(*self._with_bias_columns(user_table, item_table, dtype), users, items, "sparse",
                            pattern) + self.rating_mean
        dot = pair_dot(user_table, item_table, users, items, route, pattern)
        # index_select's backward is a scatter-add; nn.Embedding's sorts the indices first (4x slower here).
        user_bias = self.user_bias.weight.squeeze(1).index_select(0, users)
        item_bias = self.item_bias.weight.squeeze(1).index_select(0, items)
        return dot + self.rating_mean + user_bias + item_bias

    def _with_bias_columns(self, user_table: Tensor, item_table: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``(U, D + 2)`` rows ``[u, b_u, 1]`` and ``(I, D + 2)`` rows ``[i, 1, b_i]``."""
        user_ones = torch.ones(len(user_table), 1, dtype=dtype, device=user_table.device)
        item_ones = torch.ones(len(item_table), 1, dtype=dtype, device=item_table.device)
        return (torch.cat([user_table.to(dtype), self.user_bias.weight.to(dtype), user_ones], 1),
                torch.cat([item_table.to(dtype), item_ones, self.item_bias.weight.to(dtype)], 1))


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
            layers += [nn.Linear(width, hidden), nn.ReLU(), Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("rating_mean", torch.tensor(float(rating_mean)))

    #: Floats of intermediate rows held at once when scoring without gradients (4 GiB): ranking every item
    #: of 1,024 users is 3.8M pairs on ml-1m and 60M on ml-25m, about 2 KB each at 64 dims (the gathered rows,
    #: ``[u, i, u * i]`` and the hidden layers), 8 and 120 GB in one piece.
    INFERENCE_FLOATS = 1 << 30

    def forward(self, user_table: Tensor, item_table: Tensor, users: Tensor, items: Tensor) -> Tensor:
        """Same contract as :meth:`DotHead.forward`. Without gradients, many pairs are scored in pieces of
        :attr:`INFERENCE_FLOATS` intermediate floats (each pair's row is scored alone, so the values are
        those of one piece)."""
        piece = max(1, self.INFERENCE_FLOATS // self._floats_per_pair(user_table.shape[1]))
        if torch.is_grad_enabled() or users.shape[0] <= piece:
            return self._score(user_table, item_table, users, items)
        return torch.cat([self._score(user_table, item_table, u, i) for u, i in zip(users.split(piece), items.split(piece))])

    def _floats_per_pair(self, dim: int) -> int:
        """Intermediate floats a pair needs at the peak of :meth:`_score`: its two rows and their product, the
        concatenation, and each hidden layer's output twice (linear, then activation)."""
        return 6 * dim + 2 * sum(layer.out_features for layer in self.mlp if isinstance(layer, nn.Linear))

    def _score(self, user_table: Tensor, item_table: Tensor, users: Tensor, items: Tensor) -> Tensor:
        # index_select, not advanced indexing: its CPU backward accumulates in a fixed order, so runs repeat exactly.
        user_h, item_h = user_table.index_select(0, users), item_table.index_select(0, items)
        pair = torch.cat([user_h, item_h, user_h * item_h], dim=-1)
        return self.mlp(pair).squeeze(-1) + self.rating_mean
