from __future__ import annotations

import math

import pytest
import torch

from movielens_gnn.models.dropout import Dropout
from movielens_gnn.models.encoder import GraphEncoder
from movielens_gnn.models.heads import MLPHead


def test_cpu_mask_zeroes_a_share_p_and_scales_the_rest_with_matching_gradient():
    torch.manual_seed(0)
    p, n = 0.2, 1_000_000
    x = torch.rand(n, dtype=torch.float64).add_(0.5).requires_grad_()  # values in [0.5, 1.5): never 0 by chance
    y = Dropout(p)(x)
    dropped = y == 0
    # A binomial share: within 5 standard deviations of p.
    assert abs(dropped.double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / n)
    torch.testing.assert_close(y[~dropped], x.detach()[~dropped] / (1 - p))
    y.sum().backward()
    torch.testing.assert_close(x.grad, (~dropped).double() / (1 - p))


def test_same_seed_same_mask_and_evaluation_is_identity():
    x = torch.randn(300, 7)
    dropout = Dropout(0.5)
    torch.manual_seed(3)
    first = dropout(x)
    torch.manual_seed(3)
    assert torch.equal(dropout(x), first)
    assert not torch.equal(first, x)
    dropout.eval()
    assert dropout(x) is x


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_the_edge_probabilities_behave_as_torch_dropout(p):
    x = torch.randn(50, 3)
    torch.testing.assert_close(Dropout(p)(x), torch.nn.Dropout(p)(x))  # x itself, and all zeros


def test_the_models_use_it():
    encoder = GraphEncoder(4, 5, embedding_dim=8, hidden_dims=[8], dropout=0.3)
    assert type(encoder.dropout) is Dropout and encoder.dropout.p == 0.3
    head = MLPHead(8, hidden_dims=[16], dropout=0.1, rating_mean=3.0)
    assert [type(m) for m in head.mlp if isinstance(m, torch.nn.Dropout)] == [Dropout]
