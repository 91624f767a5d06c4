"""Node encoder: ID embeddings (+ side features) through a stack of GraphConv layers."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from movielens_gnn.models.dropout import Dropout
from movielens_gnn.models.graph import BipartiteGraph
from movielens_gnn.models.graphconv import GraphConv, RelGraphConv

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}
COMBINE_MODES = ("last", "mean", "concat")
ENGINES = ("native", "dgl")


def _choice(name: str, value: str, valid) -> None:
    if value not in valid:
        raise ValueError(f"Unknown {name} {value!r}; valid values: {', '.join(valid)}.")


def _add_features(ids: Tensor, projection: nn.Linear | None, features: Tensor | None, name: str) -> Tensor:
    """ID embeddings plus projected side features, when the encoder uses them."""
    if projection is None:
        return ids
    if features is None:
        raise ValueError(f"The encoder uses {name} side features but the graph carries none.")
    return ids + projection(features.to(ids.dtype))


class GraphEncoder(nn.Module):
    """Embeds every user and item, then propagates over the training graph.

    Layer 0 is the ID embedding (plus a linear projection of the side features when enabled);
    layers ``1..L`` are :class:`GraphConv` with ``activation`` after every layer but the last.
    ``combine`` selects the output: the last layer, or the mean or concatenation of all
    ``L + 1`` layers (as LightGCN does, which keeps each node's own embedding in the output).

    Args:
        num_users: ``U``.
        num_items: ``I``.
        embedding_dim: Width of the ID embeddings (layer 0).
        hidden_dims: Output width of each GraphConv layer; empty gives plain embeddings.
        activation: One of :data:`ACTIVATIONS`.
        dropout: Dropout on each layer's input.
        combine: One of :data:`COMBINE_MODES`; ``mean`` needs all widths equal.
        user_feature_dim: ``Fu``; 0 disables user side features.
        item_feature_dim: ``Fi``; 0 disables item side features.
        num_relations: ``R > 0`` uses rating-aware :class:`RelGraphConv` layers with one weight per
            rating level (the graph must carry edge ratings); 0 uses :class:`GraphConv`.
        edge_dropout: In training, the share of rating edges (both directions) left out of message
            passing at each forward pass; the rest are scaled by ``1 / (1 - edge_dropout)``.
        engine: ``native`` (torch sparse) or ``dgl`` (``dgl.nn.GraphConv`` and DGL message passing;
            needs DGL). Parameters are the same for both, so weights move between them.
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        embedding_dim: int,
        hidden_dims: Sequence[int] = (),
        activation: str = "relu",
        dropout: float = 0.0,
        combine: str = "last",
        user_feature_dim: int = 0,
        item_feature_dim: int = 0,
        num_relations: int = 0,
        edge_dropout: float = 0.0,
        engine: str = "native",
    ) -> None:
        super().__init__()
        _choice("engine", engine, ENGINES)
        _choice("activation", activation, ACTIVATIONS)
        _choice("combine", combine, COMBINE_MODES)
        dims = [embedding_dim, *hidden_dims]
        if combine == "mean" and len(set(dims)) != 1:
            raise ValueError(f"combine='mean' needs embedding_dim and hidden_dims equal, got {dims}.")
        for name, value in (("dropout", dropout), ("edge_dropout", edge_dropout)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}.")
        self.edge_dropout = edge_dropout
        self.engine = engine
        self.num_users = num_users
        self.combine = combine
        self.user_embedding = nn.Embedding(num_users, embedding_dim)
        self.item_embedding = nn.Embedding(num_items, embedding_dim)
        self.user_projection = nn.Linear(user_feature_dim, embedding_dim, bias=False) if user_feature_dim else None
        self.item_projection = nn.Linear(item_feature_dim, embedding_dim, bias=False) if item_feature_dim else None
        self.dropout = Dropout(dropout)
        last = len(dims) - 2

        def layer(k: int, d_in: int, d_out: int) -> nn.Module:
            act = None if k == last else ACTIVATIONS[activation]()
            if engine == "dgl":
                from movielens_gnn.models import dgl_engine

                if num_relations:
                    return dgl_engine.DGLRelGraphConv(d_in, d_out, num_relations, activation=act)
                return dgl_engine.dgl_graphconv(d_in, d_out, activation=act)
            if num_relations:
                return RelGraphConv(d_in, d_out, num_relations, activation=act)
            return GraphConv(d_in, d_out, activation=act)

        self.layers = nn.ModuleList(layer(k, d_in, d_out) for k, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])))
        self.out_dim = sum(dims) if combine == "concat" else dims[-1]
        # Small initial embeddings keep the first dot products near zero, i.e. predictions near the mean.
        nn.init.normal_(self.user_embedding.weight, std=0.1)
        nn.init.normal_(self.item_embedding.weight, std=0.1)

    def _inputs(self, graph: BipartiteGraph) -> Tensor:
        users = _add_features(self.user_embedding.weight, self.user_projection, graph.user_features, "user")
        items = _add_features(self.item_embedding.weight, self.item_projection, graph.item_features, "item")
        return torch.cat([users, items])

    def _propagate(self, layer: nn.Module, graph: BipartiteGraph, h: Tensor, edge_scale: Tensor | None) -> Tensor:
        if self.engine == "dgl" and not isinstance(layer, RelGraphConv):
            from movielens_gnn.models import dgl_engine

            # dgl.nn.GraphConv takes a DGLGraph and per-edge weights, in the native CSR's edge order.
            return layer(dgl_engine.dgl_graph(graph), h, edge_weight=dgl_engine.edge_weight(graph, edge_scale))
        return layer(graph, h, edge_scale)

    def forward(self, graph: BipartiteGraph) -> tuple[Tensor, Tensor]:
        """Args:
            graph: The training graph, with ``num_users + num_items`` nodes.

        Returns:
            ``(U, D)`` user and ``(I, D)`` item representations, ``D = out_dim``.
        """
        h = self._inputs(graph)
        edge_scale = None
        if self.training and self.edge_dropout > 0 and self.layers:
            # One draw per forward pass, shared by all layers, so a dropped rating is gone from the whole pass.
            keep = torch.rand(graph.num_ratings, device=h.device) >= self.edge_dropout
            edge_scale = keep.to(h.dtype) / (1.0 - self.edge_dropout)
        outputs = [h]
        for layer in self.layers:
            h = self._propagate(layer, graph, self.dropout(h), edge_scale)
            outputs.append(h)
        if self.combine == "last":
            h = outputs[-1]
        elif self.combine == "mean":
            # The same values as torch.stack(outputs).mean(0) (checked bit for bit), without the stacked
            # copy and the stacked gradient its backward divides (0.2 s of a 2 s epoch at 25M ratings).
            h = sum(outputs[1:], outputs[0]) / len(outputs)
        else:
            h = torch.cat(outputs, dim=1)
        return h[: self.num_users], h[self.num_users :]
