from __future__ import annotations

import pytest
import torch

from movielens_gnn.models.autoencoder import ItemAutoencoder
from movielens_gnn.models.graph import BipartiteGraph

USERS = torch.tensor([0, 0, 1, 2, 2])
ITEMS = torch.tensor([0, 1, 1, 0, 3])  # item 2 has no ratings
RATINGS = torch.tensor([5.0, 1.0, 3.0, 4.0, 2.0])


def _graph() -> BipartiteGraph:
    return BipartiteGraph(USERS, ITEMS, 3, 4, ratings=RATINGS, dtype=torch.float64)


def test_codes_match_the_dense_autorec_encoder_values_and_gradients():
    autoencoder = ItemAutoencoder(num_users=3, num_items=4, dim=2).double()
    with torch.no_grad():
        autoencoder.code_bias.copy_(torch.tensor([0.5, -1.0], dtype=torch.float64))
    user_table, codes = autoencoder(_graph())
    # I-AutoRec's encoder on the dense (items x users) rating matrix, zeros where unrated.
    ratings = torch.zeros(4, 3, dtype=torch.float64)
    ratings[ITEMS, USERS] = RATINGS.double()
    user_input = autoencoder.user_input.detach().clone().requires_grad_()
    reference = torch.sigmoid(ratings @ user_input + autoencoder.code_bias.detach())
    torch.testing.assert_close(codes, reference)
    torch.testing.assert_close(codes[2], torch.sigmoid(torch.tensor([0.5, -1.0], dtype=torch.float64)))
    assert user_table is autoencoder.user_output
    # Hand-checked: item 0 is rated 5 by user 0 and 4 by user 2.
    torch.testing.assert_close(codes[0], torch.sigmoid(5 * user_input[0] + 4 * user_input[2] + torch.tensor([0.5, -1.0], dtype=torch.float64)).detach())
    weights = torch.randn(4, 2, dtype=torch.float64)
    (codes * weights).sum().backward()
    (reference * weights).sum().backward()
    torch.testing.assert_close(autoencoder.user_input.grad, user_input.grad)


def test_autoencoder_needs_edge_ratings_and_a_positive_width():
    with pytest.raises(ValueError, match="built without edge ratings"):
        ItemAutoencoder(3, 4, 2)(BipartiteGraph(USERS, ITEMS, 3, 4))
    with pytest.raises(ValueError, match="positive integer, got 0"):
        ItemAutoencoder(3, 4, 0)
    with pytest.raises(ValueError, match="graph has 4 items; this autoencoder was built for 5"):
        ItemAutoencoder(3, 5, 2)(_graph())


def test_codes_of_many_users_come_from_the_sliced_product_with_equal_values_and_gradients():
    """5,000 users x 500 float dims (10 MB) are multiplied in slices of 2,048 users on CPU."""
    from movielens_gnn.models.graph import SlicedMatrix

    g = torch.Generator().manual_seed(9)
    keys = torch.unique(torch.randint(0, 5000 * 60, (20_000,), generator=g))
    graph = BipartiteGraph(keys // 60, keys % 60, 5000, 60, ratings=torch.randint(1, 6, (len(keys),), generator=g).float())
    autoencoder = ItemAutoencoder(num_users=5000, num_items=60, dim=500)
    forward, backward = graph.rating_matrix_operands(autoencoder.user_input)
    assert isinstance(forward, SlicedMatrix) and [b for _, b in forward.slices.bounds] == [2048, 4096, 5000]
    assert not isinstance(backward, SlicedMatrix)  # 60 items x 500: one piece
    _, codes = autoencoder(graph)
    weights = torch.randn(60, 500, generator=g)
    (codes * weights).sum().backward()
    user_input = autoencoder.user_input.detach().clone().requires_grad_()
    reference = torch.sigmoid(graph.rating_matrix()[0] @ user_input + autoencoder.code_bias.detach())
    (reference * weights).sum().backward()
    torch.testing.assert_close(codes, reference)
    torch.testing.assert_close(autoencoder.user_input.grad, user_input.grad)
