"""The optional DGL engine: the same layers computed by ``dgl.nn.GraphConv`` and DGL message passing.

Imported only when ``engine="dgl"`` is chosen. PyPI's DGL is CPU-only and its newest wheel for
Python 3.11 (2.1.0) needs torch <= 2.2.1; see the README for the install and DGL's wheel index for
CUDA builds. Parameters keep the native engine's names and layouts, so checkpoints move freely
between the engines.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from movielens_gnn.models.graph import BipartiteGraph, row_indices
from movielens_gnn.models.graphconv import RelGraphConv

INSTALL_HINT = (
    'pip install -e ".[dgl]" (CPU: torch 2.2.1, dgl 2.1.0, torchdata 0.7.1, numpy<2, pydantic); '
    "for CUDA, install a DGL build from DGL's own wheel index that matches your torch and CUDA."
)


def import_dgl():
    """Import DGL or raise ``ImportError`` saying what is missing and how to install it."""
    try:
        import dgl  # noqa: F401
        import dgl.function  # noqa: F401
        from dgl.nn.pytorch import GraphConv  # noqa: F401
    except Exception as err:  # DGL fails in several ways: absent, wrong torch (graphbolt), missing deps
        raise ImportError(
            f"engine 'dgl' needs a working DGL, but importing it failed ({type(err).__name__}: {err}). "
            f"Install the tested stack with: {INSTALL_HINT} Or use --model.engine native."
        ) from err
    return dgl


def dgl_graphconv(in_feats: int, out_feats: int, activation: Callable[[Tensor], Tensor] | None):
    """``dgl.nn.GraphConv(norm="both")``; an item nobody rated in training aggregates zeros."""
    import_dgl()
    from dgl.nn.pytorch import GraphConv

    return GraphConv(in_feats, out_feats, norm="both", weight=True, bias=True, activation=activation,
                     allow_zero_in_degree=True)


def dgl_graph(graph: BipartiteGraph):
    """The training graph as a ``DGLGraph`` on the graph's device, built once per device.

    Edge ``k`` is entry ``k`` of the native CSR layout, so per-entry values line up.
    """
    dgl = import_dgl()
    cache = graph.__dict__.setdefault("_dgl_cache", {})
    key = ("plain", graph.col.device)
    if key not in cache:
        cache[key] = dgl.graph((graph.col.long(), row_indices(graph.crow)), num_nodes=graph.num_nodes)
    return cache[key]


def dgl_relational_graph(graph: BipartiteGraph):
    """A bipartite ``DGLGraph`` from ``R * N`` (rating level, source) nodes to the ``N`` nodes."""
    dgl = import_dgl()
    graph.relational_adjacency()  # raises when the graph has no ratings
    cache = graph.__dict__.setdefault("_dgl_cache", {})
    key = ("relational", graph.rel_col.device)
    if key not in cache:
        cache[key] = dgl.heterograph(
            {("source", "rates", "node"): (graph.rel_col.long(), row_indices(graph.rel_crow))},
            num_nodes_dict={"source": graph.num_relations * graph.num_nodes, "node": graph.num_nodes},
        )
    return cache[key]


def edge_weight(graph: BipartiteGraph, edge_scale: Tensor | None, prefix: str = "") -> Tensor | None:
    """Per-edge factors in the DGL graph's edge order, from per-rating ``edge_scale``."""
    if edge_scale is None:
        return None
    return edge_scale[getattr(graph, f"{prefix}edge")]


class DGLRelGraphConv(RelGraphConv):
    """:class:`RelGraphConv` whose aggregation runs as DGL message passing (same parameters)."""

    def _aggregate(self, graph: BipartiteGraph, messages: Tensor, edge_scale: Tensor | None) -> Tensor:
        import dgl.function as fn

        block = dgl_relational_graph(graph)
        weight = graph.rel_val.to(messages.dtype)
        if edge_scale is not None:
            weight = weight * edge_weight(graph, edge_scale, "rel_").to(messages.dtype)
        with block.local_scope():
            block.srcdata["h"] = messages
            block.edata["w"] = weight[:, None]
            block.update_all(fn.u_mul_e("h", "w", "m"), fn.sum("m", "h"))
            return block.dstdata["h"]
