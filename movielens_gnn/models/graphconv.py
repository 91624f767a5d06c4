"""A GraphConv layer on torch sparse CSR, numerically equal to ``dgl.nn.GraphConv(norm="both")``."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from movielens_gnn.models.graph import BipartiteGraph, SlicedMatrix


class _SpMM(torch.autograd.Function):
    """``adj @ x`` whose backward multiplies by a cached ``adj.T`` in CSR.

    torch's own backward for a CSR product builds the transpose on every call, which on CPU
    is about 40x slower than the forward; the graph is fixed, so we build it once.
    """

    @staticmethod
    def forward(ctx, adj: Tensor, adj_t: Tensor, x: Tensor) -> Tensor:  # noqa: D401
        ctx.adj_t = adj_t
        return adj @ x

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        grad_x = ctx.adj_t @ grad_out if ctx.needs_input_grad[2] else None
        return None, None, grad_x


def spmm(graph: BipartiteGraph, x: Tensor, edge_scale: Tensor | None = None) -> Tensor:
    """Aggregate node features over the graph's normalised edges.

    Args:
        graph: The message-passing graph (on ``x``'s device).
        x: ``(N, F)`` node features.
        edge_scale: ``(E,)`` optional factor per training rating (edge dropout); no gradient
            flows to it.

    Returns:
        ``(N, F)``: row ``d`` is ``sum_s A[d, s] * x[s]``. On CPU, with features that overflow the
        caches, computed in column slices (:meth:`BipartiteGraph.adjacency_operand`).
    """
    adjacency = graph.adjacency_operand(x, edge_scale)
    return sparse_matmul(adjacency, adjacency, x)  # symmetric: its own transpose


def sparse_matmul(adj: Tensor | SlicedMatrix, adj_t: Tensor | SlicedMatrix, x: Tensor) -> Tensor:
    """``adj @ x`` for a CSR ``adj`` of shape ``(M, K)`` with its transpose ``adj_t`` given.

    Args:
        adj: ``(M, K)`` sparse CSR, or a :class:`~movielens_gnn.models.graph.SlicedMatrix`.
        adj_t: ``(K, M)`` likewise, equal to ``adj.T``; used by the backward pass.
        x: ``(K, F)`` dense.

    Returns:
        ``(M, F)``, in float32 when ``x`` is half or bfloat16: summing hundreds of neighbours
        in 8 mantissa bits loses too much, and sparse kernels for those types are missing on
        some devices.
    """
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    if adj.dtype != x.dtype:
        adj, adj_t = adj.to(x.dtype), adj_t.to(x.dtype)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _SpMM.apply(adj, adj_t, x)


class _Conv(nn.Module):
    """Weight, bias and activation shared by the convolutions; Xavier-uniform weight, zero bias (as DGL)."""

    def __init__(self, in_feats: int, out_feats: int, weight_shape: tuple[int, ...], bias: bool,
                 activation: Callable[[Tensor], Tensor] | None) -> None:
        super().__init__()
        self.in_feats = in_feats
        self.out_feats = out_feats
        self.weight = nn.Parameter(torch.empty(weight_shape))
        self.bias = nn.Parameter(torch.empty(out_feats)) if bias else None
        self.activation = activation
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for weight in self.weight.view(-1, self.in_feats, self.out_feats):
            nn.init.xavier_uniform_(weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _finish(self, h: Tensor) -> Tensor:
        # The sparse product returns float32 for half inputs; a model held in half precision itself
        # (Lightning's "bf16-true") goes on in its own dtype. A no-op for float32 weights, autocast's case.
        h = h.to(self.weight.dtype)
        if self.bias is not None:
            h = h + self.bias
        if self.activation is not None:
            h = self.activation(h)
        return h

    def extra_repr(self) -> str:
        return f"in_feats={self.in_feats}, out_feats={self.out_feats}, bias={self.bias is not None}"


class GraphConv(_Conv):
    """Graph convolution ``act(A_hat @ x @ W + b)`` as in Kipf & Welling and DGL's ``GraphConv``.

    Like DGL, the product is ordered to run the sparse aggregation on the narrower side:
    ``A_hat @ (x @ W)`` when the layer shrinks the features, ``(A_hat @ x) @ W`` otherwise.
    The weight has DGL's layout ``(in_feats, out_feats)`` and initialisation (Xavier-uniform
    weight, zero bias), so weights can be copied between the two one to one.

    Args:
        in_feats: Input width ``F_in``.
        out_feats: Output width ``F_out``.
        bias: Add a learned bias.
        activation: Applied to the output, or ``None``.
    """

    def __init__(self, in_feats: int, out_feats: int, bias: bool = True,
                 activation: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__(in_feats, out_feats, (in_feats, out_feats), bias, activation)

    def forward(self, graph: BipartiteGraph, x: Tensor, edge_scale: Tensor | None = None) -> Tensor:
        """Args:
            graph: The message-passing graph.
            x: ``(N, F_in)`` node features.
            edge_scale: ``(E,)`` optional factor per training rating, like DGL's ``edge_weight``.

        Returns:
            ``(N, F_out)`` node features.
        """
        if self.in_feats > self.out_feats:
            h = spmm(graph, x @ self.weight, edge_scale)
        else:
            h = spmm(graph, x, edge_scale).to(self.weight.dtype) @ self.weight  # see _finish
        return self._finish(h)


class RelGraphConv(_Conv):
    """Rating-aware graph convolution: ``act(sum_r A_r @ x @ W_r + b)``, one weight per rating level.

    As in GC-MC and R-GCN, a neighbour's message depends on the rating on the edge; ``A_r`` keeps
    the normalisation of the whole graph (:class:`BipartiteGraph`), so the sum over levels equals
    :class:`GraphConv`'s aggregation when all ``W_r`` are equal. The ``R`` products run as one
    sparse product with the relational adjacency.

    Args:
        in_feats: Input width ``F_in``.
        out_feats: Output width ``F_out``.
        num_relations: ``R``, the number of rating levels.
        bias: Add a learned bias.
        activation: Applied to the output, or ``None``.
    """

    def __init__(self, in_feats: int, out_feats: int, num_relations: int, bias: bool = True,
                 activation: Callable[[Tensor], Tensor] | None = None) -> None:
        self.num_relations = num_relations
        super().__init__(in_feats, out_feats, (num_relations, in_feats, out_feats), bias, activation)

    def forward(self, graph: BipartiteGraph, x: Tensor, edge_scale: Tensor | None = None) -> Tensor:
        """Args:
            graph: A graph built with edge ratings, ``graph.num_relations == R``.
            x: ``(N, F_in)`` node features.
            edge_scale: ``(E,)`` optional factor per training rating.

        Returns:
            ``(N, F_out)`` node features.
        """
        if graph.num_relations and graph.num_relations != self.num_relations:
            raise ValueError(f"The layer has {self.num_relations} relations; the graph has {graph.num_relations}.")
        messages = torch.einsum("nf,rfo->rno", x, self.weight).reshape(-1, self.out_feats)
        return self._finish(self._aggregate(graph, messages, edge_scale))

    def _aggregate(self, graph: BipartiteGraph, messages: Tensor, edge_scale: Tensor | None) -> Tensor:
        """``A_rel @ messages``: ``(R * N, F_out)`` per-(relation, source) messages to ``(N, F_out)``."""
        return sparse_matmul(*graph.relational_operands(messages, edge_scale), messages)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_relations={self.num_relations}"
