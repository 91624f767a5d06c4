from __future__ import annotations

import pytest
import torch

from movielens_gnn.models import heads
from movielens_gnn.models.heads import DotHead, MLPHead, pair_dot


def test_dot_head_hand_computed():
    head = DotHead(num_users=3, num_items=2, rating_mean=3.5)
    with torch.no_grad():
        head.user_bias.weight.copy_(torch.tensor([[0.1], [0.2], [0.3]]))
        head.item_bias.weight.copy_(torch.tensor([[-0.5], [0.25]]))
    user_table = torch.tensor([[0.0, 1.0], [9.0, 9.0], [1.0, 2.0]])
    item_table = torch.tensor([[2.0, -1.0], [3.0, 4.0]])
    out = head(user_table, item_table, torch.tensor([2, 0]), torch.tensor([1, 0]))
    # 1*3 + 2*4 + 3.5 + 0.3 + 0.25 and 0*2 + 1*-1 + 3.5 + 0.1 - 0.5
    torch.testing.assert_close(out, torch.tensor([15.05, 2.1]))


def test_dot_head_starts_at_the_mean():
    head = DotHead(4, 4, rating_mean=3.53)
    out = head(torch.zeros(4, 3), torch.zeros(4, 3), torch.tensor([0, 1]), torch.tensor([2, 3]))
    torch.testing.assert_close(out, torch.full((2,), 3.53))
    assert "rating_mean" in head.state_dict()


@pytest.mark.parametrize("route, chunk", [("gather", 3), ("gather", 1 << 20), ("dense", 3)])
def test_pair_dot_value_gradient_and_gradcheck(monkeypatch, route, chunk):
    monkeypatch.setattr(heads, "PAIR_CHUNK", chunk)
    if route == "gather":
        monkeypatch.setattr(heads, "DENSE_PAIR_RATIO", 0)
    else:  # 7 pairs of a 5 x 6 table: dense; make sure the gather route is not taken
        monkeypatch.setattr(heads._PairDot, "apply", None)
    g = torch.Generator().manual_seed(0)
    users_t = torch.randn(5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    items_t = torch.randn(6, 4, dtype=torch.float64, generator=g, requires_grad=True)
    users = torch.tensor([0, 4, 4, 2, 1, 0, 3])
    items = torch.tensor([5, 0, 1, 1, 2, 5, 3])  # repeats on both sides
    reference = (users_t[users] * items_t[items]).sum(-1)
    torch.testing.assert_close(pair_dot(users_t, items_t, users, items), reference)
    assert torch.autograd.gradcheck(lambda u, i: pair_dot(u, i, users, items), (users_t, items_t))


def test_mlp_head_reads_the_pair_and_adds_the_mean():
    head = MLPHead(in_dim=2, hidden_dims=[5], dropout=0.0, rating_mean=3.0)
    first, _, _, last = head.mlp
    assert first.in_features == 6 and last.out_features == 1
    u, i = torch.randn(3, 2), torch.randn(4, 2)
    users, items = torch.tensor([0, 2, 2, 1]), torch.tensor([3, 0, 1, 1])
    pairs = torch.cat([u[users], i[items], u[users] * i[items]], 1)
    torch.testing.assert_close(head(u, i, users, items), head.mlp(pairs).squeeze(-1) + 3.0)
