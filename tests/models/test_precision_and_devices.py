"""Mixed precision on CPU, and the same checks on a GPU when one is present."""

from __future__ import annotations

import pytest
import torch

from movielens_gnn.models.graph import BipartiteGraph
from movielens_gnn.models.graphconv import GraphConv, spmm
from movielens_gnn.tasks.rating import RatingModel

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def _graph() -> BipartiteGraph:
    g = torch.Generator().manual_seed(0)
    pairs = torch.randperm(40 * 60, generator=g)[:600]
    return BipartiteGraph(pairs // 60, pairs % 60, 40, 60)


def test_spmm_under_bf16_autocast_runs_in_float32():
    graph = _graph()
    x = torch.randn(graph.num_nodes, 16)
    reference = graph.to_dense() @ x
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = spmm(graph, x.bfloat16())
        conv_out = GraphConv(16, 8)(graph, x)
    assert out.dtype == torch.float32
    # Only the input's rounding to bfloat16 remains; the sum itself is float32.
    torch.testing.assert_close(out, graph.to_dense() @ x.bfloat16().float())
    torch.testing.assert_close(out, reference, atol=3e-2, rtol=1e-2)
    assert torch.isfinite(conv_out).all()


def test_bf16_gradient_flows_back_in_input_dtype():
    graph = _graph()
    x = torch.randn(graph.num_nodes, 4, dtype=torch.bfloat16, requires_grad=True)
    spmm(graph, x).sum().backward()
    assert x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad.float()).all()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, needs_cuda])])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("hidden_dims", [[8], [16, 4], [4, 16]])  # both product orders of GraphConv
def test_a_model_held_in_half_precision_runs_in_its_dtype(dtype, hidden_dims, device):
    """Lightning's "bf16-true"/"16-true": the weights themselves are half; the aggregation sums in
    float32 and each layer hands on its own dtype."""
    from movielens_gnn.models.baselines import EASE

    g = torch.Generator().manual_seed(0)
    pairs = torch.randperm(40 * 60, generator=g)[:600]
    rated_users, rated_items = pairs // 60, pairs % 60
    model = RatingModel(num_users=40, num_items=60, embedding_dim=8, hidden_dims=hidden_dims, rating_relations=True,
                        autoencoder_dim=6)
    model.attach_graph(BipartiteGraph(rated_users, rated_items, 40, 60,
                                      ratings=torch.randint(1, 6, (600,), generator=g).float()))
    users, items = torch.tensor([0, 5, 39]), torch.tensor([1, 2, 59])
    reference = model(users, items)
    model.to(device=device, dtype=dtype)
    out = model(users.to(device), items.to(device))
    out.sum().backward()
    assert model.encoder.user_embedding.weight.grad.dtype == dtype
    torch.testing.assert_close(out.float().cpu(), reference.detach(), atol=0.1, rtol=0.05)  # half's rounding only
    ease = EASE(60, l2=10.0).fit(torch.zeros(40, 60).index_put_((rated_users, rated_items), torch.tensor(1.0)))
    full = ease(users)
    torch.testing.assert_close(ease.to(device=device, dtype=dtype)(users.to(device)).float().cpu(), full,
                               atol=0.05, rtol=0.05)


@pytest.mark.gpu
@needs_cuda
def test_graph_moves_with_the_model_and_matches_cpu():
    graph = _graph()
    model = RatingModel(num_users=40, num_items=60, hidden_dims=[16, 16], embedding_dim=16)
    model.attach_graph(graph)
    users, items = torch.tensor([0, 5, 39]), torch.tensor([1, 2, 59])
    cpu = model(users, items)
    model.cuda()
    assert model.graph.crow.is_cuda and model.graph.val.is_cuda
    gpu = model(users.cuda(), items.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@needs_cuda
def test_spmm_gradient_on_gpu_matches_dense():
    graph = _graph().cuda()
    x = torch.randn(graph.num_nodes, 8, device="cuda", requires_grad=True)
    weights = torch.randn(graph.num_nodes, 8, device="cuda")
    (spmm(graph, x) * weights).sum().backward()
    torch.testing.assert_close(x.grad, graph.to_dense().T @ weights, atol=1e-5, rtol=1e-5)
