from __future__ import annotations

import math

import pytest
import torch

from movielens_gnn.models.bpr import NegativeSampler, bpr_loss, l2_penalty
from movielens_gnn.models.graph import BipartiteGraph
from movielens_gnn.models.lightgcn import LightGCN, MatrixFactorization


def _interactions(num_users=6, num_items=9, seed=0):
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(num_users, num_items, generator=generator) < 0.4
    mask[0] = False
    mask[0, [0, 4, 8]] = True  # user 0: positives at both ends and in the middle
    mask[1, :] = True
    mask[1, 3] = False  # user 1: a single non-positive
    users, items = mask.nonzero(as_tuple=True)
    return users, items, mask


def test_sampler_never_returns_a_positive_and_covers_all_other_items():
    users, items, mask = _interactions()
    sampler = NegativeSampler(torch.cat([users, users[:5]]), torch.cat([items, items[:5]]), 6, 9)  # duplicates ok
    generator = torch.Generator().manual_seed(1)
    all_users = torch.arange(6).repeat_interleave(500)
    drawn = sampler(all_users, per_user=4, generator=generator)
    assert drawn.shape == (3000, 4) and drawn.min() >= 0 and drawn.max() < 9
    assert not mask[all_users.unsqueeze(1), drawn].any()  # never a training positive of that user
    for user in range(6):
        seen = set(drawn[all_users == user].flatten().tolist())
        assert seen == set(torch.nonzero(~mask[user]).flatten().tolist())  # every other item turns up
    counts = torch.bincount(drawn[all_users == 0].flatten(), minlength=9)[~mask[0]].double()
    expected = 2000 / 6  # user 0 has 6 non-positives
    assert ((counts - expected) ** 2 / expected).sum() < 25  # chi-square, 5 dof: uniform


def test_a_user_with_every_item_gets_minus_one_and_the_others_still_draw():
    sampler = NegativeSampler(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0]), 2, 2)
    assert sampler.full_users.tolist() == [0]
    drawn = sampler(torch.tensor([0, 1, 0, 1]), per_user=3)
    assert drawn.tolist() == [[-1] * 3, [1] * 3, [-1] * 3, [1] * 3]


def test_bpr_loss_and_gradient_by_hand():
    positive = torch.tensor([2.0, 0.5], requires_grad=True)
    negative = torch.tensor([[1.0, 3.0], [0.5, -1.0]], requires_grad=True)
    loss = bpr_loss(positive, negative)
    pairs = [(2.0, 1.0), (2.0, 3.0), (0.5, 0.5), (0.5, -1.0)]
    expected = sum(-math.log(1 / (1 + math.exp(-(p - n)))) for p, n in pairs) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # d/dp of -log sigmoid(p - n) is -(1 - sigmoid(p - n)); averaged over the 4 pairs.
    grad = lambda p, n: -(1 - 1 / (1 + math.exp(-(p - n)))) / 4  # noqa: E731
    assert positive.grad.tolist() == pytest.approx([grad(2, 1) + grad(2, 3), grad(0.5, 0.5) + grad(0.5, -1)], rel=1e-5)
    assert negative.grad.flatten().tolist() == pytest.approx(
        [-grad(2, 1), -grad(2, 3), -grad(0.5, 0.5), -grad(0.5, -1)], rel=1e-5)


def test_l2_penalty_by_hand():
    u, i = torch.tensor([[1.0, 2.0], [0.0, 1.0]]), torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    assert l2_penalty(u, i).item() == pytest.approx((1 + 4 + 0 + 1 + 9 + 0 + 1 + 1) / 2 / 2)


def test_lightgcn_equals_the_dense_propagation():
    users, items, mask = _interactions()
    graph = BipartiteGraph(users, items, 6, 9, dtype=torch.float64)
    model = LightGCN(6, 9, embedding_dim=4, num_layers=3).double()
    # Dense symmetric normalisation by hand: D^-1/2 A D^-1/2 over the 15 nodes (degrees clamped at 1).
    adjacency = torch.zeros(15, 15, dtype=torch.float64)
    adjacency[:6, 6:] = mask.double()
    adjacency[6:, :6] = mask.double().T
    scale = adjacency.sum(1).clamp(min=1).rsqrt()
    normalised = scale[:, None] * adjacency * scale[None, :]
    x = torch.cat([model.user_embedding.weight, model.item_embedding.weight])
    layers = [x]
    for _ in range(3):
        layers.append(normalised @ layers[-1])
    expected = torch.stack(layers).mean(0)
    user_table, item_table = model(graph)
    torch.testing.assert_close(torch.cat([user_table, item_table]), expected)
    # Gradients flow to the layer-0 embeddings through every layer.
    (user_table.sum() + item_table.pow(2).sum()).backward()
    dense = x.detach().clone().requires_grad_(True)
    out = torch.stack([dense, normalised @ dense, normalised @ normalised @ dense,
                       normalised @ normalised @ normalised @ dense]).mean(0)
    (out[:6].sum() + out[6:].pow(2).sum()).backward()
    torch.testing.assert_close(torch.cat([model.user_embedding.weight.grad, model.item_embedding.weight.grad]), dense.grad)


def test_matrix_factorization_is_lightgcn_without_layers():
    mf, zero = MatrixFactorization(3, 4, 2), LightGCN(3, 4, 2, num_layers=0)
    zero.load_state_dict(mf.state_dict())
    for a, b in zip(mf(), zero()):
        assert torch.equal(a, b)
