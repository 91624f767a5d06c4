"""The CUDA side of every dot-head route, the autoencoder tower, fused Adam and dropout: the same values
and gradients as on CPU (GPU-marked; skipped without a CUDA device)."""

from __future__ import annotations

import pytest
import torch

from movielens_gnn.models.dropout import Dropout
from movielens_gnn.models.graph import BipartiteGraph
from movielens_gnn.models.heads import DotHead
from movielens_gnn.tasks.base import fused_if_available
from movielens_gnn.tasks.rating import RatingModel

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")]


def _edges(num_users: int, num_items: int, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    keys = torch.unique(torch.randint(0, num_users * num_items, (count,), generator=g))
    return keys // num_items, keys % num_items


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("route", ["gather", "dense", "sparse"])
def test_dot_head_route_on_cuda_matches_cpu_gather(route, dtype):
    users, items = _edges(300, 200, 5_000, seed=0)
    g = torch.Generator().manual_seed(1)
    tables = [torch.randn(n, 16, generator=g, dtype=dtype) for n in (300, 200)]
    weights = torch.randn(len(users), generator=g, dtype=dtype)
    results = {}
    for device, chosen in (("cpu", "gather"), ("cuda", route)):
        head = DotHead(300, 200, rating_mean=3.5, pair_route=chosen).to(device, dtype)
        with torch.no_grad():
            head.user_bias.weight.copy_(torch.linspace(-1, 1, 300, dtype=dtype)[:, None])
            head.item_bias.weight.copy_(torch.linspace(1, -1, 200, dtype=dtype)[:, None])
        inputs = [t.to(device).requires_grad_() for t in tables]
        pairs = (users.to(device), items.to(device))
        head(*inputs, *pairs)  # the sparse route builds its pattern on an edge set's second sighting
        out = head(*inputs, *pairs)
        grads = torch.autograd.grad((out * weights.to(device)).sum(), [*inputs, head.user_bias.weight, head.item_bias.weight])
        results[device] = [out, *grads]
    tolerance = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {}
    for got, expected in zip(results["cuda"], results["cpu"]):
        assert got.is_cuda
        torch.testing.assert_close(got.cpu(), expected, **tolerance)


@pytest.mark.parametrize("pair_route", ["auto", "sparse"])
def test_hybrid_model_on_cuda_matches_cpu_in_values_and_gradients(pair_route):
    """A small ml100k_best-shaped model (GraphConv tower with a dot head, autoencoder tower), float64."""
    users, items = _edges(120, 90, 2_000, seed=2)
    ratings = torch.randint(1, 6, (len(users),), generator=torch.Generator().manual_seed(3)).double()
    graph = BipartiteGraph(users, items, 120, 90, ratings=ratings, dtype=torch.float64)
    model = RatingModel(num_users=120, num_items=90, rating_mean=3.0, embedding_dim=8, hidden_dims=[8],
                        combine="mean", autoencoder_dim=12, pair_route=pair_route).double()
    model.attach_graph(graph)
    results = {}
    for device in ("cpu", "cuda"):
        model.to(device)
        model.zero_grad()
        pairs, targets = (users.to(device), items.to(device)), ratings.to(device)
        # Twice with the same tensors: the second pass takes the route a full-batch epoch takes from epoch 2 on.
        losses = [((model(*pairs) - targets) ** 2).mean() for _ in range(2)]
        losses[-1].backward()
        results[device] = [losses[-1].detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert len(results["cuda"]) == len(results["cpu"]) > 5
    for got, expected in zip(results["cuda"], results["cpu"]):
        torch.testing.assert_close(got.cpu(), expected)


def test_fused_adam_on_cuda_makes_the_unfused_updates():
    g = torch.Generator().manual_seed(4)
    start = [torch.randn(shape, generator=g) for shape in ((64, 8), (8,))]
    grads = [[torch.randn(t.shape, generator=g) for t in start] for _ in range(20)]
    finals = {}
    for name, build in (("fused", lambda p: fused_if_available(torch.optim.Adam(p, lr=0.01, weight_decay=1e-3))),
                        ("plain", lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-3, foreach=False))):
        params = [torch.nn.Parameter(t.cuda()) for t in start]
        optimizer = build(params)
        assert optimizer.defaults["fused"] is (True if name == "fused" else None)
        for step in grads:
            for p, grad in zip(params, step):
                p.grad = grad.cuda()
            optimizer.step()
        finals[name] = [p.detach().cpu() for p in params]
    for a, b in zip(finals["fused"], finals["plain"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_dropout_on_cuda_zeroes_about_p_and_scales_the_rest():
    layer = Dropout(0.3).train()
    x = torch.ones(200_000, device="cuda", requires_grad=True)
    out = layer(x)
    kept = out != 0
    assert out.is_cuda and abs(1 - kept.float().mean().item() - 0.3) < 0.01
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / 0.7))
    out.sum().backward()
    torch.testing.assert_close(x.grad, out.detach())
    assert torch.equal(layer.eval()(x), x)
