"""The user–item message-passing graph as device-resident sparse matrices."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn


def _csr(rows: Tensor, cols: Tensor, values: Tensor, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sort the COO entries of an ``(n, n)`` matrix by (row, col); return CSR ``(crow, col, values)``."""
    order = torch.argsort(rows * n + cols)
    counts = torch.bincount(rows, minlength=n)
    crow = torch.zeros(n + 1, dtype=torch.int64)
    crow[1:] = torch.cumsum(counts, 0)
    return crow, cols[order].contiguous(), values[order].contiguous()


class BipartiteGraph(nn.Module):
    """Users and items as one homogeneous graph with an edge each way per rating.

    Node ``u`` in ``[0, U)`` is user ``u``; node ``U + i`` is item ``i``. The adjacency is
    normalised like ``dgl.nn.GraphConv(norm="both")``: the entry for edge ``s -> d`` is
    ``out_deg(s)^-1/2 * in_deg(d)^-1/2`` with degrees clamped at 1, so a node without edges
    (an item nobody rated in training) aggregates zeros, never NaN.

    The matrix is stored as CSR with destination rows (``out = A @ x``) together with its
    transpose, which the backward pass of :func:`spmm` uses. All tensors are non-persistent
    buffers: they move with the module to any device but are not written into checkpoints,
    because they are data, rebuilt from the training edges.

    Args:
        users: ``(E,)`` internal user index of each training rating.
        items: ``(E,)`` internal item index of each training rating.
        num_users: ``U``.
        num_items: ``I``.
        user_features: ``(U, Fu)`` side features, or ``None``.
        item_features: ``(I, Fi)`` side features, or ``None``.
        dtype: Floating dtype of the normalised values.
    """

    def __init__(
        self,
        users: Tensor,
        items: Tensor,
        num_users: int,
        num_items: int,
        user_features: Tensor | None = None,
        item_features: Tensor | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if users.shape != items.shape or users.dim() != 1:
            raise ValueError(f"users and items must be 1-D and of equal length, got {tuple(users.shape)} and {tuple(items.shape)}.")
        if users.numel() and (int(users.max()) >= num_users or int(items.max()) >= num_items or int(users.min()) < 0 or int(items.min()) < 0):
            raise ValueError(f"Edge indices out of range for {num_users} users and {num_items} items.")
        self.num_users = num_users
        self.num_items = num_items
        users = users.to(torch.int64).cpu()
        items = items.to(torch.int64).cpu() + num_users
        src = torch.cat([users, items])
        dst = torch.cat([items, users])
        n = self.num_nodes
        out_deg = torch.bincount(src, minlength=n).clamp(min=1).to(torch.float64)
        in_deg = torch.bincount(dst, minlength=n).clamp(min=1).to(torch.float64)
        values = (out_deg[src].rsqrt() * in_deg[dst].rsqrt()).to(dtype)
        for prefix, rows, cols in (("", dst, src), ("t_", src, dst)):
            crow, col, val = _csr(rows, cols, values, n)
            self.register_buffer(f"{prefix}crow", crow, persistent=False)
            self.register_buffer(f"{prefix}col", col, persistent=False)
            self.register_buffer(f"{prefix}val", val, persistent=False)
        self.register_buffer("user_features", user_features, persistent=False)
        self.register_buffer("item_features", item_features, persistent=False)

    @property
    def num_nodes(self) -> int:
        return self.num_users + self.num_items

    @property
    def num_edges(self) -> int:
        """Directed edges: twice the number of training ratings."""
        return self.col.numel()

    def adjacency(self) -> tuple[Tensor, Tensor]:
        """The normalised adjacency and its transpose as sparse CSR tensors of shape ``(N, N)``."""
        size = (self.num_nodes, self.num_nodes)
        with warnings.catch_warnings():
            # torch flags every CSR tensor as "beta"; the invariants were established in __init__.
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            adj = torch.sparse_csr_tensor(self.crow, self.col, self.val, size, check_invariants=False)
            adj_t = torch.sparse_csr_tensor(self.t_crow, self.t_col, self.t_val, size, check_invariants=False)
        return adj, adj_t

    def to_dense(self) -> Tensor:
        """The normalised adjacency as a dense ``(N, N)`` matrix; for tests and small graphs."""
        return self.adjacency()[0].to_dense()

    def extra_repr(self) -> str:
        return f"num_users={self.num_users}, num_items={self.num_items}, num_edges={self.num_edges}"
