from __future__ import annotations

import torch

from movielens_gnn.models.heads import DotHead, MLPHead


def test_dot_head_hand_computed():
    head = DotHead(num_users=3, num_items=2, rating_mean=3.5)
    with torch.no_grad():
        head.user_bias.weight.copy_(torch.tensor([[0.1], [0.2], [0.3]]))
        head.item_bias.weight.copy_(torch.tensor([[-0.5], [0.25]]))
    user_h = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    item_h = torch.tensor([[3.0, 4.0], [2.0, -1.0]])
    out = head(user_h, item_h, torch.tensor([2, 0]), torch.tensor([1, 0]))
    # 1*3 + 2*4 + 3.5 + 0.3 + 0.25 and 0*2 + 1*-1 + 3.5 + 0.1 - 0.5
    torch.testing.assert_close(out, torch.tensor([15.05, 2.1]))


def test_dot_head_starts_at_the_mean():
    head = DotHead(4, 4, rating_mean=3.53)
    out = head(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([2, 3]))
    torch.testing.assert_close(out, torch.full((2,), 3.53))
    assert "rating_mean" in head.state_dict()


def test_mlp_head_reads_the_pair_and_adds_the_mean():
    head = MLPHead(in_dim=2, hidden_dims=[5], dropout=0.0, rating_mean=3.0)
    first, _, _, last = head.mlp
    assert first.in_features == 6 and last.out_features == 1
    u, i = torch.randn(4, 2), torch.randn(4, 2)
    expected = head.mlp(torch.cat([u, i, u * i], 1)).squeeze(-1) + 3.0
    torch.testing.assert_close(head(u, i, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long)), expected)
