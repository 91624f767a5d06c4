from __future__ import annotations

import pytest
import torch

from movielens_gnn.models.encoder import GraphEncoder
from movielens_gnn.models.graph import BipartiteGraph


@pytest.fixture
def graph() -> BipartiteGraph:
    users = torch.tensor([0, 0, 1, 2, 3, 3])
    items = torch.tensor([0, 2, 1, 1, 0, 3])
    return BipartiteGraph(users, items, 4, 5, user_features=torch.randn(4, 3), item_features=torch.randn(5, 2))


def test_no_layers_returns_the_embeddings(graph):
    encoder = GraphEncoder(4, 5, embedding_dim=6)
    users, items = encoder(graph)
    assert torch.equal(users, encoder.user_embedding.weight)
    assert torch.equal(items, encoder.item_embedding.weight)


@pytest.mark.parametrize("combine", ["last", "mean", "concat"])
def test_two_layers_against_manual_composition(graph, combine):
    encoder = GraphEncoder(4, 5, embedding_dim=8, hidden_dims=[8, 8], activation="relu", combine=combine)
    x = torch.cat([encoder.user_embedding.weight, encoder.item_embedding.weight])
    conv1, conv2 = encoder.layers
    h1 = torch.relu(graph.to_dense() @ x @ conv1.weight + conv1.bias)
    h2 = graph.to_dense() @ h1 @ conv2.weight + conv2.bias  # no activation after the last layer
    expected = {"last": h2, "mean": (x + h1 + h2) / 3, "concat": torch.cat([x, h1, h2], 1)}[combine]
    users, items = encoder(graph)
    torch.testing.assert_close(torch.cat([users, items]), expected)
    assert users.shape == (4, encoder.out_dim) and encoder.out_dim == (24 if combine == "concat" else 8)


def test_side_features_are_projected_and_added(graph):
    encoder = GraphEncoder(4, 5, embedding_dim=6, user_feature_dim=3, item_feature_dim=2)
    users, items = encoder(graph)
    expected_users = encoder.user_embedding.weight + graph.user_features @ encoder.user_projection.weight.T
    torch.testing.assert_close(users, expected_users)
    no_features = BipartiteGraph(torch.tensor([0]), torch.tensor([0]), 4, 5)
    with pytest.raises(ValueError, match="uses user side features but the graph carries none"):
        encoder(no_features)


def test_dropout_only_in_training(graph):
    encoder = GraphEncoder(4, 5, embedding_dim=6, hidden_dims=[6], dropout=0.5)
    encoder.eval()
    a, b = encoder(graph)[0], encoder(graph)[0]
    assert torch.equal(a, b)
    encoder.train()
    assert not torch.equal(encoder(graph)[0], encoder(graph)[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"activation": "gelu"}, "Unknown activation 'gelu'; valid values: relu, leaky_relu, elu, tanh, identity"),
        ({"combine": "sum"}, "Unknown combine 'sum'; valid values: last, mean, concat"),
        ({"combine": "mean", "hidden_dims": [4]}, r"combine='mean' needs embedding_dim and hidden_dims equal, got \[6, 4\]"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ],
)
def test_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GraphEncoder(4, 5, embedding_dim=6, **kwargs)


def test_rating_relations_use_relational_layers():
    users, items = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 1, 4])
    rated = BipartiteGraph(users, items, 4, 5, ratings=torch.tensor([1.0, 5.0, 3.0, 4.0]))
    encoder = GraphEncoder(4, 5, embedding_dim=6, hidden_dims=[6, 6], num_relations=5)
    assert all(type(layer).__name__ == "RelGraphConv" for layer in encoder.layers)
    user_h, item_h = encoder(rated)
    assert user_h.shape == (4, 6) and item_h.shape == (5, 6)
    with pytest.raises(ValueError, match="built without edge ratings"):
        encoder(BipartiteGraph(users, items, 4, 5))


def test_edge_dropout_masks_whole_ratings_in_training_only(graph):
    torch.manual_seed(0)
    encoder = GraphEncoder(4, 5, embedding_dim=6, hidden_dims=[6], edge_dropout=0.5)
    encoder.eval()
    full = encoder(graph)
    torch.testing.assert_close(full, encoder(graph))
    encoder.train()
    dropped = encoder(graph)
    assert not torch.allclose(dropped[0], full[0])
    # What the training pass computed equals the layer run with some 0/2 scale per rating.
    x = torch.cat([encoder.user_embedding.weight, encoder.item_embedding.weight])
    candidates = torch.cartesian_prod(*[torch.tensor([0.0, 2.0])] * graph.num_ratings)
    matches = [s for s in candidates if torch.allclose(encoder.layers[0](graph, x, s), torch.cat(dropped))]
    assert len(matches) >= 1
