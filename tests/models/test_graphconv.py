from __future__ import annotations

import pytest
import torch

from movielens_gnn.models.graph import BipartiteGraph
from movielens_gnn.models.graphconv import GraphConv, RelGraphConv, spmm


def _graph(dtype=torch.float64) -> BipartiteGraph:
    g = torch.Generator().manual_seed(1)
    pairs = torch.randperm(12 * 15, generator=g)[:60]
    # The last item is left without edges on purpose.
    pairs = pairs[pairs % 15 != 14]
    return BipartiteGraph(pairs // 15, pairs % 15, 12, 15, dtype=dtype)


def test_spmm_value_and_gradient_match_dense():
    graph = _graph()
    x = torch.randn(graph.num_nodes, 5, dtype=torch.float64, requires_grad=True)
    out = spmm(graph, x)
    dense_x = x.detach().clone().requires_grad_()
    ref = graph.to_dense() @ dense_x
    torch.testing.assert_close(out, ref)
    weights = torch.randn_like(ref)
    (out * weights).sum().backward()
    (ref * weights).sum().backward()
    torch.testing.assert_close(x.grad, dense_x.grad)


def test_spmm_gradcheck():
    graph = _graph()
    x = torch.randn(graph.num_nodes, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: spmm(graph, t), (x,))


@pytest.mark.parametrize(("d_in", "d_out"), [(4, 6), (6, 4), (5, 5)])
def test_graphconv_matches_dense_formula_and_gradcheck(d_in, d_out):
    graph = _graph()
    conv = GraphConv(d_in, d_out, activation=torch.tanh).double()
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(graph.num_nodes, d_in, dtype=torch.float64, requires_grad=True)
    expected = torch.tanh(graph.to_dense() @ x @ conv.weight + conv.bias)
    torch.testing.assert_close(conv(graph, x), expected)
    # The isolated item only sees its bias.
    torch.testing.assert_close(conv(graph, x)[-1], torch.tanh(conv.bias))
    weight = conv.weight.detach().clone().requires_grad_()
    bias = conv.bias.detach().clone().requires_grad_()

    def run(t, w, b):
        return torch.func.functional_call(conv, {"weight": w, "bias": b}, (graph, t))

    assert torch.autograd.gradcheck(run, (x, weight, bias))


def test_graphconv_float32_close_to_float64():
    graph64 = _graph()
    graph32 = _graph(torch.float32)
    conv = GraphConv(8, 8)
    x = torch.randn(graph32.num_nodes, 8)
    out32 = conv(graph32, x)
    out64 = conv.double()(graph64, x.double())
    torch.testing.assert_close(out32.double(), out64, atol=1e-5, rtol=1e-5)


def test_dgl_layout_and_initialisation():
    conv = GraphConv(3, 7, bias=True)
    assert conv.weight.shape == (3, 7) and torch.equal(conv.bias, torch.zeros(7))
    bound = (6 / (3 + 7)) ** 0.5  # Xavier-uniform
    assert conv.weight.abs().max() <= bound
    assert GraphConv(3, 7, bias=False).bias is None


def _rated_graph():
    g = torch.Generator().manual_seed(2)
    pairs = torch.randperm(10 * 12, generator=g)[:50]
    ratings = torch.randint(1, 6, (50,), generator=g).double()
    return BipartiteGraph(pairs // 12, pairs % 12, 10, 12, ratings=ratings, dtype=torch.float64), pairs, ratings


def test_relgraphconv_matches_per_rating_dense_sum_and_gradcheck():
    graph, pairs, ratings = _rated_graph()
    conv = RelGraphConv(4, 3, num_relations=5, activation=torch.tanh).double()
    torch.nn.init.normal_(conv.bias)
    x = torch.randn(graph.num_nodes, 4, dtype=torch.float64, requires_grad=True)
    dense = graph.to_dense()
    users, items = pairs // 12, pairs % 12 + 10
    expected = torch.zeros(graph.num_nodes, 3, dtype=torch.float64)
    for level in range(5):
        mask = ratings == level + 1
        block = torch.zeros_like(dense)
        block[items[mask], users[mask]] = dense[items[mask], users[mask]]
        block[users[mask], items[mask]] = dense[users[mask], items[mask]]
        expected = expected + block @ x @ conv.weight[level]
    torch.testing.assert_close(conv(graph, x), torch.tanh(expected + conv.bias))
    weight = conv.weight.detach().clone().requires_grad_()

    def run(t, w):
        return torch.func.functional_call(conv, {"weight": w, "bias": conv.bias}, (graph, t))

    assert torch.autograd.gradcheck(run, (x, weight))


def test_relgraphconv_with_equal_weights_is_graphconv():
    graph, _, _ = _rated_graph()
    plain = GraphConv(4, 3).double()
    rel = RelGraphConv(4, 3, num_relations=5).double()
    with torch.no_grad():
        rel.weight.copy_(plain.weight.expand(5, 4, 3))
    x = torch.randn(graph.num_nodes, 4, dtype=torch.float64)
    torch.testing.assert_close(rel(graph, x), plain(graph, x))


def test_spmm_on_a_graph_whose_features_overflow_the_cache_runs_in_slices_with_equal_values_and_gradients():
    """40,000 nodes x 64 float features (10 MB) are multiplied in 16,384-column slices on CPU."""
    from movielens_gnn.models.graph import SlicedMatrix

    g = torch.Generator().manual_seed(5)
    num_users, num_items = 30_000, 10_000
    users, items = torch.randint(0, num_users, (20_000,), generator=g), torch.randint(0, num_items, (20_000,), generator=g)
    keys = torch.unique(users * num_items + items)
    graph = BipartiteGraph(keys // num_items, keys % num_items, num_users, num_items)
    x = torch.randn(graph.num_nodes, 64, generator=g, requires_grad=True)
    operand = graph.adjacency_operand(x)
    assert isinstance(operand, SlicedMatrix) and len(operand.slices.bounds) == 3
    weights = torch.randn(graph.num_nodes, 64, generator=g)
    out = spmm(graph, x)
    (out * weights).sum().backward()
    reference_x = x.detach().clone().requires_grad_()
    adjacency = graph.adjacency()[0]
    reference = adjacency @ reference_x
    (reference * weights).sum().backward()
    torch.testing.assert_close(out, reference)
    torch.testing.assert_close(x.grad, reference_x.grad)


def test_sliced_spmm_gradcheck():
    from movielens_gnn.models.graphconv import sparse_matmul

    graph = _graph()
    x = torch.randn(graph.num_nodes, 3, dtype=torch.float64, requires_grad=True)
    sliced = graph.adjacency_operand(x, slice_bytes=3 * 8 * 4).to(torch.float64)  # 4 columns a slice
    assert len(sliced.slices.bounds) == 7
    assert torch.autograd.gradcheck(lambda t: sparse_matmul(sliced, sliced, t), (x,))
