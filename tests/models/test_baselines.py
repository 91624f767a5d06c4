from __future__ import annotations

import pytest
import torch

from movielens_gnn.models.baselines import EASE, Popularity, interaction_matrix


def test_interaction_matrix_and_popularity():
    matrix = interaction_matrix(torch.tensor([0, 0, 1, 2, 2]), torch.tensor([1, 1, 1, 0, 2]), 3, 4)
    assert matrix.tolist() == [[0, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0]]
    scores = Popularity(4).fit(matrix)(torch.tensor([0, 2]))
    assert scores.tolist() == [[1, 2, 1, 0], [1, 2, 1, 0]]


def test_ease_solves_the_constrained_ridge_problem():
    """B from the closed form equals the minimiser of ||X - XB||² + λ||B||² with diag(B) = 0,
    solved column by column as an ordinary ridge regression on the other items."""
    generator = torch.Generator().manual_seed(0)
    matrix = (torch.rand(30, 6, generator=generator) < 0.4).float()
    l2 = 3.0
    model = EASE(6, l2).fit(matrix)
    x = matrix.double()
    for j in range(6):
        others = [i for i in range(6) if i != j]
        a = x[:, others]
        column = torch.linalg.solve(a.T @ a + l2 * torch.eye(5, dtype=torch.float64), a.T @ x[:, j])
        expected = torch.zeros(6, dtype=torch.float64)
        expected[others] = column
        torch.testing.assert_close(model.weights[:, j].double(), expected, atol=1e-5, rtol=1e-5)
    assert torch.all(model.weights.diagonal() == 0)
    torch.testing.assert_close(model(torch.tensor([3])), matrix[3:4] @ model.weights)


def test_ease_needs_a_positive_l2():
    with pytest.raises(ValueError, match="l2 must be positive"):
        EASE(3, 0.0)


def test_sparse_interactions_give_the_dense_results():
    users, items = torch.tensor([0, 0, 1, 2, 2, 2, 3]), torch.tensor([1, 1, 1, 0, 2, 3, 3])
    dense = interaction_matrix(users, items, 4, 5)
    sparse = interaction_matrix(users, items, 4, 5, sparse=True)
    assert sparse.is_sparse and torch.equal(sparse.to_dense(), dense)  # the duplicate (0, 1) counts once
    by_dense, by_sparse = EASE(5, 2.0).fit(dense), EASE(5, 2.0).fit(sparse)
    torch.testing.assert_close(by_sparse.weights, by_dense.weights)
    torch.testing.assert_close(by_sparse(torch.tensor([3, 0])), by_dense(torch.tensor([3, 0])))
    assert torch.equal(by_sparse.rows(torch.tensor([2, 1, 2])), dense[[2, 1, 2]])
    with torch.inference_mode():  # as in Lightning's test loop
        torch.testing.assert_close(by_sparse(torch.tensor([3, 0])), dense[[3, 0]] @ by_dense.weights)
